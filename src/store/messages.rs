//! Voice messages: Ogg Opus audio as a BLOB, with direction, state and
//! the metadata the pages draw.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};
use crate::domain::{Direction, MessageRowId, MessageState, ToyId, ToyRowId, UserId};

/// A message without its audio.
#[derive(Debug, Clone)]
pub struct Message {
    /// Row id (orders messages).
    pub rowid: MessageRowId,
    /// Opaque public id.
    pub public_id: String,
    /// The toy's row id.
    pub toy: ToyRowId,
    /// The toy's own id.
    pub toy_id: ToyId,
    /// Which way.
    pub direction: Direction,
    /// Display name of the sender: a member's current display name (the
    /// one stored with the message once the member is gone), or the toy's name.
    pub sender_name: String,
    /// Sender's user row, for parent messages.
    pub sender_user: Option<UserId>,
    /// When stored.
    pub created_at: i64,
    /// Length of the audio.
    pub duration_ms: i64,
    /// Size of the Ogg Opus body.
    pub size: i64,
    /// Where it is in its life.
    pub state: MessageState,
    /// Kept past retention.
    pub keep: bool,
    /// Waveform for drawing.
    pub peaks: Vec<u8>,
    /// For a child's recording, whether the member it is shown to has
    /// heard it (`None` until a use case fills it in for one member).
    pub heard_by_me: Option<bool>,
}

const COLS: &str = "m.id, m.public_id, m.toy, t.toy_id, m.direction, COALESCE(u.display_name, m.sender_name), m.sender_user, m.created_at, m.duration_ms, m.size, m.state, m.keep, m.peaks";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let dir: String = r.get(4)?;
    let state: String = r.get(10)?;
    Ok(Message {
        rowid: r.get(0)?,
        public_id: r.get(1)?,
        toy: r.get(2)?,
        toy_id: super::toys::toy_id_column(r, 3)?,
        direction: Direction::parse(&dir).unwrap_or(Direction::ToToy),
        sender_name: r.get(5)?,
        sender_user: r.get(6)?,
        created_at: r.get(7)?,
        duration_ms: r.get(8)?,
        size: r.get(9)?,
        state: MessageState::parse(&state).unwrap_or(MessageState::Queued),
        keep: r.get(11)?,
        peaks: r.get(12)?,
        heard_by_me: None,
    })
}

/// What a new message needs.
pub struct NewMessage<'a> {
    /// Opaque public id.
    pub public_id: &'a str,
    /// The toy's row id.
    pub toy: ToyRowId,
    /// Which way.
    pub direction: Direction,
    /// Sender's user row (parent messages).
    pub sender_user: Option<UserId>,
    /// Sender's display name.
    pub sender_name: &'a str,
    /// Now.
    pub now: i64,
    /// Length.
    pub duration_ms: i64,
    /// Waveform.
    pub peaks: &'a [u8],
    /// Ogg Opus.
    pub audio: &'a [u8],
}

/// Stores a message.
pub fn insert(tx: &Connection, m: &NewMessage<'_>) -> StoreResult<MessageRowId> {
    let state = match m.direction {
        Direction::ToToy => MessageState::Queued,
        Direction::FromToy => MessageState::Received,
    };
    tx.execute(
        "INSERT INTO messages (public_id, toy, direction, sender_user, sender_name, created_at, duration_ms, size, state, peaks, audio)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            m.public_id,
            m.toy,
            m.direction.as_str(),
            m.sender_user,
            m.sender_name,
            m.now,
            m.duration_ms,
            m.audio.len() as i64,
            state.as_str(),
            m.peaks,
            m.audio
        ],
    )
    .map_err(w)?;
    Ok(MessageRowId(tx.last_insert_rowid()))
}

/// A message by public id.
pub fn get(c: &Connection, public_id: &str) -> StoreResult<Option<Message>> {
    Ok(c.query_row(
        &format!(
            "SELECT {COLS} FROM messages m JOIN toys t ON t.id = m.toy LEFT JOIN users u ON u.id = m.sender_user WHERE m.public_id = ?1"
        ),
        [public_id],
        row,
    )
    .optional()?)
}

/// The audio of a message.
pub fn audio(c: &Connection, public_id: &str) -> StoreResult<Option<Vec<u8>>> {
    Ok(c.query_row(
        "SELECT audio FROM messages WHERE public_id = ?1",
        [public_id],
        |r| r.get(0),
    )
    .optional()?)
}

/// Messages, newest first, optionally for one toy, before a given message.
pub fn list(
    c: &Connection,
    toy: Option<ToyRowId>,
    before_rowid: Option<MessageRowId>,
    limit: u32,
) -> StoreResult<Vec<Message>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS} FROM messages m JOIN toys t ON t.id = m.toy LEFT JOIN users u ON u.id = m.sender_user
         WHERE (?1 IS NULL OR m.toy = ?1) AND (?2 IS NULL OR m.id < ?2)
         ORDER BY m.id DESC LIMIT ?3"
    ))?;
    let v = st
        .query_map(params![toy, before_rowid, limit], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Like [`list`], among the toys granted to relative `user` only.
pub fn list_granted(
    c: &Connection,
    user: UserId,
    toy: Option<ToyRowId>,
    before_rowid: Option<MessageRowId>,
    limit: u32,
) -> StoreResult<Vec<Message>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS} FROM messages m JOIN toys t ON t.id = m.toy LEFT JOIN users u ON u.id = m.sender_user
         WHERE m.toy IN (SELECT toy FROM relative_toys WHERE user_id = ?1)
           AND (?2 IS NULL OR m.toy = ?2) AND (?3 IS NULL OR m.id < ?3)
         ORDER BY m.id DESC LIMIT ?4"
    ))?;
    let v = st
        .query_map(params![user, toy, before_rowid, limit], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// The toy's inbox: messages to it not yet played, oldest first.
pub fn inbox(c: &Connection, toy: ToyRowId) -> StoreResult<Vec<Message>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS} FROM messages m JOIN toys t ON t.id = m.toy LEFT JOIN users u ON u.id = m.sender_user
         WHERE m.toy = ?1 AND m.direction = 'to_toy' AND m.state != 'played'
         ORDER BY m.id ASC"
    ))?;
    let v = st.query_map([toy], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Moves a message forward to `state` (never backwards). True when it changed.
pub fn advance_state(
    tx: &Connection,
    rowid: MessageRowId,
    from_rank_below: u8,
    state: MessageState,
) -> StoreResult<bool> {
    // The rank check is done by the caller's read of the current state; the
    // WHERE clause repeats it so a concurrent change cannot move it back.
    let allowed: &[&str] = match from_rank_below {
        1 => &["queued", "received"],
        2 => &["queued", "received", "delivered"],
        _ => &[],
    };
    let mut changed = false;
    for s in allowed {
        changed |= tx
            .execute(
                "UPDATE messages SET state = ?1 WHERE id = ?2 AND state = ?3",
                params![state.as_str(), rowid, s],
            )
            .map_err(w)?
            == 1;
    }
    Ok(changed)
}

/// Sets or clears the keep flag. True when the message exists.
pub fn set_keep(tx: &Connection, public_id: &str, keep: bool) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE messages SET keep = ?1 WHERE public_id = ?2",
            params![keep, public_id],
        )
        .map_err(w)?
        == 1)
}

/// Deletes a message. True when it existed.
pub fn delete(tx: &Connection, public_id: &str) -> StoreResult<bool> {
    Ok(tx
        .execute("DELETE FROM messages WHERE public_id = ?1", [public_id])
        .map_err(w)?
        == 1)
}

/// Deletes messages created before `cutoff` that are not kept; returns their public ids.
pub fn delete_expired(tx: &Connection, cutoff: i64) -> StoreResult<Vec<String>> {
    let mut st =
        tx.prepare("DELETE FROM messages WHERE created_at < ?1 AND keep = 0 RETURNING public_id")?;
    let v = st
        .query_map([cutoff], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()
        .map_err(w)?;
    Ok(v)
}

/// Per toy (row id), its `from_toy` messages not yet heard (toys with
/// none are absent).
pub fn unheard_per_toy(c: &Connection) -> StoreResult<std::collections::HashMap<ToyRowId, i64>> {
    let mut st = c.prepare(
        "SELECT toy, COUNT(*) FROM messages WHERE direction = 'from_toy' AND state = 'received' GROUP BY toy",
    )?;
    let v = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Number of `from_toy` messages not yet heard.
pub fn count_unheard(c: &Connection) -> StoreResult<i64> {
    Ok(c.query_row(
        "SELECT COUNT(*) FROM messages WHERE direction = 'from_toy' AND state = 'received'",
        [],
        |r| r.get(0),
    )?)
}

/// Calls `f` for every message, oldest first, with its toy's name and its
/// audio, one row at a time (so memory holds one clip, whatever the
/// household's size). Used by the export.
pub fn for_each_with_audio<E: From<rusqlite::Error>>(
    c: &Connection,
    mut f: impl FnMut(Message, String, Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS}, t.name, m.audio FROM messages m JOIN toys t ON t.id = m.toy LEFT JOIN users u ON u.id = m.sender_user ORDER BY m.id ASC"
    ))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let m = row(r)?;
        let toy_name: String = r.get(13)?;
        let audio: Vec<u8> = r.get(14)?;
        f(m, toy_name, audio)?;
    }
    Ok(())
}

/// Deletes every message of one toy; returns their public ids.
pub fn delete_for_toy(tx: &Connection, toy: ToyRowId) -> StoreResult<Vec<String>> {
    let mut st = tx.prepare("DELETE FROM messages WHERE toy = ?1 RETURNING public_id")?;
    let v = st
        .query_map([toy], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()
        .map_err(w)?;
    Ok(v)
}

/// How many messages are stored.
pub fn count(c: &Connection) -> StoreResult<i64> {
    Ok(c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?)
}
