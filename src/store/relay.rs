//! The relay's tables: the mailbox settings (without the secret, which is
//! the 0600 file `relay-secret`), shares, objects still to delete from the
//! mailbox, and replies awaiting a parent's approval.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};
use crate::domain::ToyRowId;

/// The mailbox settings as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `https://…` (or `http://` for a loopback or private address).
    pub endpoint: String,
    /// The SigV4 region.
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, ending with `/`.
    pub prefix: String,
    /// Path-style URLs (Garage, MinIO) instead of virtual-hosted ones.
    pub path_style: bool,
    /// The access key id.
    pub access_key_id: String,
    /// The PEM CA of a self-hosted endpoint.
    pub ca_cert: Option<String>,
    /// Seconds between two looks for replies.
    pub poll_seconds: u32,
}

/// The settings, when relay is configured.
pub fn settings(c: &Connection) -> StoreResult<Option<Settings>> {
    Ok(c.query_row(
        "SELECT endpoint, region, bucket, prefix, path_style, access_key_id, ca_cert, poll_seconds
         FROM relay_settings WHERE id = 1",
        [],
        |r| {
            Ok(Settings {
                endpoint: r.get(0)?,
                region: r.get(1)?,
                bucket: r.get(2)?,
                prefix: r.get(3)?,
                path_style: r.get(4)?,
                access_key_id: r.get(5)?,
                ca_cert: r.get(6)?,
                poll_seconds: r.get(7)?,
            })
        },
    )
    .optional()?)
}

/// Saves the settings.
pub fn save_settings(tx: &Connection, s: &Settings, now: i64) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO relay_settings (id, endpoint, region, bucket, prefix, path_style, access_key_id, ca_cert, poll_seconds, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(id) DO UPDATE SET endpoint = ?1, region = ?2, bucket = ?3, prefix = ?4,
           path_style = ?5, access_key_id = ?6, ca_cert = ?7, poll_seconds = ?8, updated_at = ?9",
        params![
            s.endpoint,
            s.region,
            s.bucket,
            s.prefix,
            s.path_style,
            s.access_key_id,
            s.ca_cert,
            s.poll_seconds,
            now
        ],
    )
    .map_err(w)?;
    Ok(())
}

/// Forgets the settings (relay off).
pub fn clear_settings(tx: &Connection) -> StoreResult<()> {
    tx.execute("DELETE FROM relay_settings", []).map_err(w)?;
    Ok(())
}

/// Where a share is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareState {
    /// Its link works; the hub looks for replies.
    Live,
    /// Ended; some of its objects are still to be deleted.
    Stopping,
    /// Ended and every object deleted.
    Ended,
}

impl ShareState {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Stopping => "stopping",
            Self::Ended => "ended",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "live" => Self::Live,
            "stopping" => Self::Stopping,
            _ => Self::Ended,
        }
    }
}

/// A share.
#[derive(Debug, Clone)]
pub struct Share {
    /// SID (32 hex digits).
    pub share_id: String,
    /// The shared message's public id.
    pub message_id: String,
    /// The toy of the shared message (replies are for it).
    pub toy: Option<ToyRowId>,
    /// Who the link is for.
    pub contact: String,
    /// The title the player shows.
    pub title: String,
    /// The username that shared it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// When every URL in it stops working.
    pub expires_at: i64,
    /// Reply slots (0 to 3).
    pub replies_allowed: u8,
    /// Bit n-1: slot n used.
    pub slots_used: u8,
    /// K, while live.
    pub link_key: Option<[u8; 16]>,
    /// `p/HASH/index.html`.
    pub player_key: String,
    /// Its state.
    pub state: ShareState,
    /// When it ended.
    pub ended_at: Option<i64>,
}

impl Share {
    /// Reply slots still free.
    pub fn replies_left(&self) -> u8 {
        (1..=self.replies_allowed)
            .filter(|n| self.slots_used & (1 << (n - 1)) == 0)
            .count() as u8
    }
}

const SHARE_COLS: &str = "share_id, message_id, toy, contact, title, created_by, created_at, expires_at, \
     replies_allowed, slots_used, link_key, player_key, state, ended_at";

fn share_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Share> {
    let key: Option<Vec<u8>> = r.get(10)?;
    let state: String = r.get(12)?;
    Ok(Share {
        share_id: r.get(0)?,
        message_id: r.get(1)?,
        toy: r.get(2)?,
        contact: r.get(3)?,
        title: r.get(4)?,
        created_by: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        replies_allowed: r.get(8)?,
        slots_used: r.get(9)?,
        link_key: key.and_then(|k| k.try_into().ok()),
        player_key: r.get(11)?,
        state: ShareState::parse(&state),
        ended_at: r.get(13)?,
    })
}

/// Stores a new live share.
pub fn insert_share(tx: &Connection, s: &Share) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO shares ({SHARE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
        params![
            s.share_id,
            s.message_id,
            s.toy,
            s.contact,
            s.title,
            s.created_by,
            s.created_at,
            s.expires_at,
            s.replies_allowed,
            s.slots_used,
            s.link_key.map(|k| k.to_vec()),
            s.player_key,
            s.state.as_str(),
            s.ended_at
        ],
    )
    .map_err(w)?;
    Ok(())
}

/// A share by SID.
pub fn share(c: &Connection, share_id: &str) -> StoreResult<Option<Share>> {
    Ok(c.query_row(
        &format!("SELECT {SHARE_COLS} FROM shares WHERE share_id = ?1"),
        [share_id],
        share_row,
    )
    .optional()?)
}

/// Every share, newest first (at most `limit`).
pub fn shares(c: &Connection, limit: u32) -> StoreResult<Vec<Share>> {
    let mut st = c.prepare(&format!(
        "SELECT {SHARE_COLS} FROM shares ORDER BY id DESC LIMIT ?1"
    ))?;
    let v = st
        .query_map([limit], share_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Shares in `state`.
pub fn shares_in(c: &Connection, state: ShareState) -> StoreResult<Vec<Share>> {
    let mut st = c.prepare(&format!(
        "SELECT {SHARE_COLS} FROM shares WHERE state = ?1 ORDER BY id"
    ))?;
    let v = st
        .query_map([state.as_str()], share_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Live shares of one message.
pub fn live_shares_of(c: &Connection, message_id: &str) -> StoreResult<Vec<Share>> {
    let mut st = c.prepare(&format!(
        "SELECT {SHARE_COLS} FROM shares WHERE message_id = ?1 AND state = 'live' ORDER BY id"
    ))?;
    let v = st
        .query_map([message_id], share_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Ends a live share: `stopping`, its key forgotten. True when it was live.
pub fn end_share(tx: &Connection, share_id: &str, now: i64, reason: &str) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE shares SET state = 'stopping', link_key = NULL, ended_at = ?2, end_reason = ?3
             WHERE share_id = ?1 AND state = 'live'",
            params![share_id, now, reason],
        )
        .map_err(w)?
        == 1)
}

/// Marks `slot` of a share used.
pub fn use_slot(tx: &Connection, share_id: &str, slot: u8) -> StoreResult<()> {
    tx.execute(
        "UPDATE shares SET slots_used = slots_used | ?2 WHERE share_id = ?1",
        params![share_id, 1i64 << (slot - 1)],
    )
    .map_err(w)?;
    Ok(())
}

/// Stopping shares with no object left to delete become `ended`.
pub fn finish_stopped(tx: &Connection) -> StoreResult<usize> {
    tx.execute(
        "UPDATE shares SET state = 'ended' WHERE state = 'stopping'
         AND NOT EXISTS (SELECT 1 FROM relay_deletes d WHERE d.share_id = shares.share_id)",
        [],
    )
    .map_err(w)
}

/// Whether a share other than `except` that is not `ended` uses `player_key`.
pub fn player_in_use(c: &Connection, player_key: &str, except: &str) -> StoreResult<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM shares WHERE player_key = ?1 AND state = 'live' AND share_id != ?2)",
        params![player_key, except],
        |r| r.get(0),
    )?)
}

/// An object waiting to be deleted from the mailbox.
#[derive(Debug, Clone)]
pub struct PendingDelete {
    /// The key under the prefix.
    pub object_key: String,
    /// The share it belongs to, if any.
    pub share_id: Option<String>,
    /// Tries so far.
    pub attempts: u32,
}

/// Queues a delete (due now); a key already queued stays as it is.
pub fn queue_delete(
    tx: &Connection,
    object_key: &str,
    share_id: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO relay_deletes (object_key, share_id, next_attempt) VALUES (?1, ?2, ?3)
         ON CONFLICT(object_key) DO NOTHING",
        params![object_key, share_id, now],
    )
    .map_err(w)?;
    Ok(())
}

/// Drops a queued delete (the object is wanted again, or it is gone).
pub fn unqueue_delete(tx: &Connection, object_key: &str) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM relay_deletes WHERE object_key = ?1",
        [object_key],
    )
    .map_err(w)?;
    Ok(())
}

/// Deletes due at `now` (all of them when `now` is `None`).
pub fn due_deletes(c: &Connection, now: Option<i64>) -> StoreResult<Vec<PendingDelete>> {
    let mut st = c.prepare(
        "SELECT object_key, share_id, attempts FROM relay_deletes
         WHERE ?1 IS NULL OR next_attempt <= ?1 ORDER BY id",
    )?;
    let v = st
        .query_map([now], |r| {
            Ok(PendingDelete {
                object_key: r.get(0)?,
                share_id: r.get(1)?,
                attempts: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Number of deletes still queued.
pub fn pending_deletes(c: &Connection) -> StoreResult<i64> {
    Ok(c.query_row("SELECT COUNT(*) FROM relay_deletes", [], |r| r.get(0))?)
}

/// A delete failed: tried again at `next`.
pub fn delete_failed(tx: &Connection, object_key: &str, next: i64, error: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE relay_deletes SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3
         WHERE object_key = ?1",
        params![object_key, next, error],
    )
    .map_err(w)?;
    Ok(())
}

/// A reply awaiting approval (without its audio).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Opaque public id (the message id of the API).
    pub public_id: String,
    /// The share it answered.
    pub share_id: String,
    /// The toy of the shared message.
    pub toy: Option<ToyRowId>,
    /// The contact who recorded it.
    pub contact: String,
    /// The slot it came through.
    pub slot: u8,
    /// When it was fetched.
    pub created_at: i64,
    /// Its length.
    pub duration_ms: i64,
    /// Size of its Ogg Opus.
    pub size: i64,
    /// Waveform.
    pub peaks: Vec<u8>,
}

const REPLY_COLS: &str =
    "public_id, share_id, toy, contact, slot, created_at, duration_ms, size, peaks";

fn reply_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Reply> {
    Ok(Reply {
        public_id: r.get(0)?,
        share_id: r.get(1)?,
        toy: r.get(2)?,
        contact: r.get(3)?,
        slot: r.get(4)?,
        created_at: r.get(5)?,
        duration_ms: r.get(6)?,
        size: r.get(7)?,
        peaks: r.get(8)?,
    })
}

/// Stores a reply.
pub fn insert_reply(tx: &Connection, r: &Reply, audio: &[u8]) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO relay_replies ({REPLY_COLS}, audio) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            r.public_id,
            r.share_id,
            r.toy,
            r.contact,
            r.slot,
            r.created_at,
            r.duration_ms,
            r.size,
            r.peaks,
            audio
        ],
    )
    .map_err(w)?;
    Ok(())
}

/// A reply by public id, with its audio.
pub fn reply(c: &Connection, public_id: &str) -> StoreResult<Option<(Reply, Vec<u8>)>> {
    Ok(c.query_row(
        &format!("SELECT {REPLY_COLS}, audio FROM relay_replies WHERE public_id = ?1"),
        [public_id],
        |r| Ok((reply_row(r)?, r.get(9)?)),
    )
    .optional()?)
}

/// Replies awaiting approval, oldest first.
pub fn replies(c: &Connection) -> StoreResult<Vec<Reply>> {
    let mut st = c.prepare(&format!(
        "SELECT {REPLY_COLS} FROM relay_replies ORDER BY id"
    ))?;
    let v = st
        .query_map([], reply_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Removes a reply (approved or discarded). True when it existed.
pub fn delete_reply(tx: &Connection, public_id: &str) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "DELETE FROM relay_replies WHERE public_id = ?1",
            [public_id],
        )
        .map_err(w)?
        == 1)
}
