//! Sessions: browser cookies and API bearer tokens, stored by the SHA-256
//! of their secret.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};
use crate::domain::{SessionId, SessionKind, UserId};

/// A live session joined with its user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Row id (shown to the user to end a session).
    pub id: SessionId,
    /// The user's row id.
    pub user_id: UserId,
    /// Cookie or bearer.
    pub kind: SessionKind,
    /// The CSRF token bound to this session.
    pub csrf_token: String,
    /// Login time.
    pub created_at: i64,
    /// Last use.
    pub last_seen: i64,
    /// Absolute end.
    pub expires_at: i64,
    /// Browser or client, as it said.
    pub user_agent: String,
    /// Address it logged in from.
    pub client_ip: String,
}

const COLS: &str =
    "id, user_id, kind, csrf_token, created_at, last_seen, expires_at, user_agent, client_ip";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        user_id: r.get(1)?,
        kind: {
            let k: String = r.get(2)?;
            SessionKind::parse(&k).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    Box::new(std::io::Error::other(e.0)),
                )
            })?
        },
        csrf_token: r.get(3)?,
        created_at: r.get(4)?,
        last_seen: r.get(5)?,
        expires_at: r.get(6)?,
        user_agent: r.get(7)?,
        client_ip: r.get(8)?,
    })
}

/// What a new session needs.
pub struct NewSession<'a> {
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// Its user.
    pub user_id: UserId,
    /// Cookie or bearer.
    pub kind: SessionKind,
    /// Its CSRF token.
    pub csrf_token: &'a str,
    /// Now.
    pub now: i64,
    /// Absolute end.
    pub expires_at: i64,
    /// Client description.
    pub user_agent: &'a str,
    /// Client address.
    pub client_ip: &'a str,
}

/// Stores a new session.
pub fn insert(tx: &Connection, s: &NewSession<'_>) -> StoreResult<SessionId> {
    tx.execute(
        "INSERT INTO sessions (token_hash, user_id, kind, csrf_token, created_at, last_seen, expires_at, user_agent, client_ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
        params![s.token_hash, s.user_id, s.kind.as_str(), s.csrf_token, s.now, s.expires_at, s.user_agent, s.client_ip],
    )
    .map_err(w)?;
    Ok(SessionId(tx.last_insert_rowid()))
}

/// Looks a session up by token hash, whatever its age (the caller checks lifetimes).
pub fn by_token_hash(c: &Connection, hash: &[u8]) -> StoreResult<Option<Session>> {
    Ok(c.query_row(
        &format!("SELECT {COLS} FROM sessions WHERE token_hash = ?1"),
        [hash],
        row,
    )
    .optional()?)
}

/// Records a use.
pub fn touch(tx: &Connection, id: SessionId, now: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE sessions SET last_seen = ?1 WHERE id = ?2",
        params![now, id],
    )
    .map_err(w)?;
    Ok(())
}

/// Ends one session; true when it existed.
pub fn delete(tx: &Connection, id: SessionId) -> StoreResult<bool> {
    Ok(tx
        .execute("DELETE FROM sessions WHERE id = ?1", [id])
        .map_err(w)?
        == 1)
}

/// Ends one of a user's sessions; true when it was theirs and existed.
pub fn delete_for_user(tx: &Connection, user_id: UserId, id: SessionId) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "DELETE FROM sessions WHERE id = ?1 AND user_id = ?2",
            params![id, user_id],
        )
        .map_err(w)?
        == 1)
}

/// Ends all of a user's sessions except `keep`.
pub fn delete_others(
    tx: &Connection,
    user_id: UserId,
    keep: Option<SessionId>,
) -> StoreResult<usize> {
    tx.execute(
        "DELETE FROM sessions WHERE user_id = ?1 AND id IS NOT ?2",
        params![user_id, keep],
    )
    .map_err(w)
}

/// A user's sessions, newest first.
pub fn list_for_user(c: &Connection, user_id: UserId) -> StoreResult<Vec<Session>> {
    let mut st = c.prepare(&format!(
        "SELECT {COLS} FROM sessions WHERE user_id = ?1 ORDER BY last_seen DESC"
    ))?;
    let v = st
        .query_map([user_id], row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Deletes sessions past their absolute end or idle limit; returns their ids.
pub fn purge_expired(tx: &Connection, now: i64, idle_secs: i64) -> StoreResult<Vec<SessionId>> {
    let mut st = tx
        .prepare("DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen + ?2 <= ?1 RETURNING id")
        .map_err(w)?;
    let v = st
        .query_map(params![now, idle_secs], |r| r.get(0))
        .map_err(w)?
        .collect::<Result<Vec<SessionId>, _>>()
        .map_err(w)?;
    Ok(v)
}
