//! Per-member heard state of children's recordings (table `heard`): which
//! member has heard which `from_toy` message, and each member's unread
//! counts per toy. The household-wide state stays on the message row.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, params};

use super::{StoreResult, w};
use crate::domain::{MessageRowId, ToyRowId, UserId};

/// Records that `user` heard message `message`. True when it was new.
pub fn mark(tx: &Connection, user: UserId, message: MessageRowId, now: i64) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "INSERT INTO heard (user_id, message, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, message) DO NOTHING",
            params![user, message, now],
        )
        .map_err(w)?
        == 1)
}

/// The condition on `m` (a `messages` row joined with `toys t`) for a
/// recording `?1` (a user id) has not heard: from a paired toy, stored
/// since the member's account existed, not in `heard`.
const UNHEARD: &str = "m.direction = 'from_toy' AND t.removed_at IS NULL
    AND m.created_at >= (SELECT created_at FROM users WHERE id = ?1)
    AND NOT EXISTS (SELECT 1 FROM heard h WHERE h.user_id = ?1 AND h.message = m.id)";

/// Marks every recording `user` has not heard as heard, of one toy or of
/// the toys in `among` (all toys when `None`). Returns how many.
pub fn mark_all(
    tx: &Connection,
    user: UserId,
    among: Option<&[ToyRowId]>,
    now: i64,
) -> StoreResult<usize> {
    let unread = unheard_rows(tx, user)?;
    let mut n = 0;
    for (message, toy) in unread {
        if among.is_none_or(|a| a.contains(&toy)) {
            n += usize::from(mark(tx, user, message, now)?);
        }
    }
    Ok(n)
}

fn unheard_rows(c: &Connection, user: UserId) -> StoreResult<Vec<(MessageRowId, ToyRowId)>> {
    let mut st = c.prepare(&format!(
        "SELECT m.id, m.toy FROM messages m JOIN toys t ON t.id = m.toy WHERE {UNHEARD}"
    ))?;
    let v = st
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Per toy, how many recordings `user` has not heard (toys with none are
/// absent). Whether the member may see a toy is the caller's rule.
pub fn unread_per_toy(c: &Connection, user: UserId) -> StoreResult<HashMap<ToyRowId, i64>> {
    let mut st = c.prepare(&format!(
        "SELECT m.toy, COUNT(*) FROM messages m JOIN toys t ON t.id = m.toy
         WHERE {UNHEARD} GROUP BY m.toy"
    ))?;
    let v = st
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(v)
}

/// Which of `messages` `user` counts as heard: those in `heard`, and
/// those stored before the member's account existed.
pub fn heard_among(
    c: &Connection,
    user: UserId,
    messages: &[MessageRowId],
) -> StoreResult<HashSet<MessageRowId>> {
    let mut st = c.prepare(
        "SELECT m.id FROM messages m WHERE m.id = ?2 AND (
             m.created_at < (SELECT created_at FROM users WHERE id = ?1)
             OR EXISTS (SELECT 1 FROM heard h WHERE h.user_id = ?1 AND h.message = m.id))",
    )?;
    let mut out = HashSet::new();
    for m in messages {
        if st.exists(params![user, m])? {
            out.insert(*m);
        }
    }
    Ok(out)
}

/// Who has heard a message: usernames, in the order they heard it.
pub fn heard_by(c: &Connection, message: MessageRowId) -> StoreResult<Vec<String>> {
    let mut st = c.prepare(
        "SELECT u.username FROM heard h JOIN users u ON u.id = h.user_id
         WHERE h.message = ?1 ORDER BY h.at, u.username",
    )?;
    let v = st
        .query_map([message], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(v)
}
