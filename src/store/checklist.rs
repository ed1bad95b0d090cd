//! The first-run checklist's state (table `checklist_marks`): each
//! member's own marks, and the household facts its other items are ticked
//! from (a paired toy, a second member or an invitation, a backup or an
//! export in the ledger).

use rusqlite::{Connection, params};

use super::{StoreResult, w};
use crate::domain::UserId;

/// The marks `user` has set, in their stored form.
pub fn marks(c: &Connection, user: UserId) -> StoreResult<Vec<String>> {
    let mut st = c.prepare("SELECT mark FROM checklist_marks WHERE user_id = ?1 ORDER BY mark")?;
    let v = st
        .query_map(params![user], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(v)
}

/// Sets `mark` for `user` (kept at its first time when set again).
pub fn set_mark(tx: &Connection, user: UserId, mark: &str, now: i64) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO checklist_marks (user_id, mark, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, mark) DO NOTHING",
        params![user, mark, now],
    )
    .map_err(w)?;
    Ok(())
}

/// What the household has done of the checklist's shared items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// A toy is paired.
    pub toy_paired: bool,
    /// Someone else is a member, or an invitation was made.
    pub family_invited: bool,
    /// A backup or an export was made (the ledger says so).
    pub backup_made: bool,
}

/// The household's [`Progress`].
pub fn progress(c: &Connection) -> StoreResult<Progress> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM toys WHERE removed_at IS NULL),
                (SELECT COUNT(*) FROM users) > 1 OR EXISTS (SELECT 1 FROM invites),
                EXISTS (SELECT 1 FROM audit
                         WHERE action IN ('backup_created', 'export_created')
                           AND outcome = 'success')",
        [],
        |r| {
            Ok(Progress {
                toy_paired: r.get(0)?,
                family_invited: r.get(1)?,
                backup_made: r.get(2)?,
            })
        },
    )?)
}
