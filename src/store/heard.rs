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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::{DataDir, DataFile};
    use crate::store::Store;

    fn add_user(c: &Connection, name: &str, created_at: i64) -> UserId {
        c.execute(
            "INSERT INTO users (username, display_name, role, password_hash, created_at)
             VALUES (?1, ?1, 'parent', 'x', ?2)",
            params![name, created_at],
        )
        .expect("user");
        UserId(c.last_insert_rowid())
    }

    fn add_message(
        c: &Connection,
        id: &str,
        direction: &str,
        state: &str,
        at: i64,
    ) -> MessageRowId {
        c.execute(
            "INSERT INTO messages (public_id, toy, direction, sender_name, created_at, duration_ms, size, state, peaks, audio)
             VALUES (?1, 1, ?2, 'Bear', ?3, 1000, 1, ?4, x'', x'00')",
            params![id, direction, at, state],
        )
        .expect("message");
        MessageRowId(c.last_insert_rowid())
    }

    /// A database from before this table (the household's state only)
    /// upgrades with what the household heard counted as heard by each
    /// member; afterwards each member's state is their own, and a member
    /// who joins later does not inherit the older recordings as unread.
    #[test]
    fn upgrade_keeps_heard_recordings_heard_and_members_hear_for_themselves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = DataDir::new(dir.path()).path(DataFile::Database);
        let before = super::super::MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE heard"))
            .expect("the heard migration is listed");
        let (mum, dad, heard, fresh) = {
            let c = Connection::open(&path).expect("raw open");
            for sql in &super::super::MIGRATIONS[..before] {
                c.execute_batch(sql).expect("older schema");
            }
            c.pragma_update(None, "user_version", before as i64)
                .expect("version");
            c.execute(
                "INSERT INTO toys (toy_id, name, key_fp, paired_at) VALUES ('bear', 'Bear', 'fp', 0)",
                [],
            )
            .expect("toy");
            let mum = add_user(&c, "mum", 0);
            let dad = add_user(&c, "dad", 0);
            let heard = add_message(&c, "m1", "from_toy", "heard", 10);
            let fresh = add_message(&c, "m2", "from_toy", "received", 20);
            add_message(&c, "m3", "to_toy", "played", 30);
            (mum, dad, heard, fresh)
        };
        let store = Store::open(dir.path()).expect("open migrates");
        let bear = ToyRowId(1);
        store
            .write_blocking(move |tx| {
                for u in [mum, dad] {
                    assert_eq!(unread_per_toy(tx, u)?, HashMap::from([(bear, 1)]));
                    assert_eq!(heard_among(tx, u, &[heard, fresh])?, HashSet::from([heard]));
                }
                // Dad hears the new one: his count drops, Mum's stays.
                assert!(mark(tx, dad, fresh, 40)?);
                assert!(!mark(tx, dad, fresh, 41)?, "once");
                assert_eq!(unread_per_toy(tx, dad)?, HashMap::new());
                assert_eq!(unread_per_toy(tx, mum)?, HashMap::from([(bear, 1)]));
                assert_eq!(heard_by(tx, fresh)?, ["dad"]);
                // Gran joins at 50: the older recordings count as heard by her.
                let gran = add_user(tx, "gran", 50);
                assert_eq!(unread_per_toy(tx, gran)?, HashMap::new());
                let later = add_message(tx, "m4", "from_toy", "received", 60);
                assert_eq!(unread_per_toy(tx, gran)?, HashMap::from([(bear, 1)]));
                assert_eq!(
                    heard_among(tx, gran, &[fresh, later])?,
                    HashSet::from([fresh])
                );
                // Mark all, limited to other toys, marks nothing here.
                assert_eq!(mark_all(tx, mum, Some(&[ToyRowId(9)]), 70)?, 0);
                assert_eq!(mark_all(tx, mum, None, 70)?, 2);
                assert_eq!(unread_per_toy(tx, mum)?, HashMap::new());
                // A removed toy's recordings are not counted.
                tx.execute("UPDATE toys SET removed_at = 80", [])?;
                assert_eq!(unread_per_toy(tx, gran)?, HashMap::new());
                Ok(())
            })
            .expect("checks");
    }
}
