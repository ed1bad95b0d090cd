//! Family members beyond the `users` row: the toys granted to relatives
//! (`relative_toys`), invitations (`invites`, `invite_toys`, codes stored
//! by their SHA-256), the last sign-in, role changes and removal.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};
use crate::domain::{Role, ToyRowId, UserId};

/// The toys granted to a relative (row ids).
pub fn granted_toys(c: &Connection, user: UserId) -> StoreResult<Vec<ToyRowId>> {
    let mut st = c.prepare("SELECT toy FROM relative_toys WHERE user_id = ?1 ORDER BY toy")?;
    let v = st
        .query_map([user], |r| r.get(0))?
        .collect::<Result<Vec<ToyRowId>, _>>()?;
    Ok(v)
}

/// Replaces a member's granted toys.
pub fn set_granted_toys(tx: &Connection, user: UserId, toys: &[ToyRowId]) -> StoreResult<()> {
    tx.execute("DELETE FROM relative_toys WHERE user_id = ?1", [user])
        .map_err(w)?;
    for t in toys {
        tx.execute(
            "INSERT OR IGNORE INTO relative_toys (user_id, toy) VALUES (?1, ?2)",
            params![user, t],
        )
        .map_err(w)?;
    }
    Ok(())
}

/// A member as the members list shows them.
#[derive(Debug, Clone)]
pub struct MemberRow {
    /// Row id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Name shown on messages.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// When the account was made.
    pub created_at: i64,
    /// Last sign-in, if any.
    pub last_sign_in: Option<i64>,
}

/// Every member, by username.
pub fn list(c: &Connection) -> StoreResult<Vec<MemberRow>> {
    let mut st = c.prepare(
        "SELECT id, username, role, created_at, last_sign_in, display_name FROM users ORDER BY username",
    )?;
    let v = st
        .query_map([], |r| {
            let role: String = r.get(2)?;
            Ok(MemberRow {
                id: r.get(0)?,
                username: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::Relative),
                created_at: r.get(3)?,
                last_sign_in: r.get(4)?,
                display_name: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Records a sign-in.
pub fn set_last_sign_in(tx: &Connection, user: UserId, now: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE users SET last_sign_in = ?1 WHERE id = ?2",
        params![now, user],
    )
    .map_err(w)?;
    Ok(())
}

/// Changes a member's role.
pub fn set_role(tx: &Connection, user: UserId, role: Role) -> StoreResult<()> {
    tx.execute(
        "UPDATE users SET role = ?1 WHERE id = ?2",
        params![role.as_str(), user],
    )
    .map_err(w)?;
    Ok(())
}

/// How many admins there are.
pub fn admin_count(c: &Connection) -> StoreResult<i64> {
    Ok(
        c.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
            r.get(0)
        })?,
    )
}

/// Deletes a member (their sessions and grants go with them).
pub fn delete_user(tx: &Connection, user: UserId) -> StoreResult<bool> {
    Ok(tx
        .execute("DELETE FROM users WHERE id = ?1", [user])
        .map_err(w)?
        == 1)
}

/// An invitation row.
#[derive(Debug, Clone)]
pub struct Invite {
    /// Row id.
    pub rowid: i64,
    /// The id shown to admins.
    pub public_id: String,
    /// The role it gives.
    pub role: Role,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// Its end.
    pub expires_at: i64,
    /// When it was used.
    pub used_at: Option<i64>,
    /// Who joined with it.
    pub used_by: Option<String>,
    /// When an admin revoked it.
    pub revoked_at: Option<i64>,
    /// The toys it grants (relatives).
    pub toys: Vec<ToyRowId>,
}

/// What a new invitation holds.
pub struct NewInvite<'a> {
    /// Its public id.
    pub public_id: &'a str,
    /// SHA-256 of its code.
    pub code_hash: &'a [u8],
    /// The role.
    pub role: Role,
    /// The admin who made it.
    pub created_by: &'a str,
    /// Now.
    pub now: i64,
    /// Its end.
    pub expires_at: i64,
    /// Granted toys.
    pub toys: &'a [ToyRowId],
}

/// Stores an invitation.
pub fn insert_invite(tx: &Connection, i: &NewInvite<'_>) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO invites (public_id, code_hash, role, created_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            i.public_id,
            i.code_hash,
            i.role.as_str(),
            i.created_by,
            i.now,
            i.expires_at
        ],
    )
    .map_err(w)?;
    let rowid = tx.last_insert_rowid();
    for t in i.toys {
        tx.execute(
            "INSERT OR IGNORE INTO invite_toys (invite, toy) VALUES (?1, ?2)",
            params![rowid, t],
        )
        .map_err(w)?;
    }
    Ok(())
}

const INVITE_COLS: &str =
    "id, public_id, role, created_by, created_at, expires_at, used_at, used_by, revoked_at";

fn invite_row(c: &Connection, r: &rusqlite::Row<'_>) -> rusqlite::Result<Invite> {
    let role: String = r.get(2)?;
    let rowid: i64 = r.get(0)?;
    let mut st = c.prepare_cached("SELECT toy FROM invite_toys WHERE invite = ?1 ORDER BY toy")?;
    let toys = st
        .query_map([rowid], |r| r.get(0))?
        .collect::<Result<Vec<ToyRowId>, _>>()?;
    Ok(Invite {
        rowid,
        public_id: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Relative),
        created_by: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        used_at: r.get(6)?,
        used_by: r.get(7)?,
        revoked_at: r.get(8)?,
        toys,
    })
}

/// An invitation by its code's hash.
pub fn invite_by_code(c: &Connection, code_hash: &[u8]) -> StoreResult<Option<Invite>> {
    Ok(c.query_row(
        &format!("SELECT {INVITE_COLS} FROM invites WHERE code_hash = ?1"),
        [code_hash],
        |r| invite_row(c, r),
    )
    .optional()?)
}

/// An invitation by its public id.
pub fn invite_by_id(c: &Connection, public_id: &str) -> StoreResult<Option<Invite>> {
    Ok(c.query_row(
        &format!("SELECT {INVITE_COLS} FROM invites WHERE public_id = ?1"),
        [public_id],
        |r| invite_row(c, r),
    )
    .optional()?)
}

/// Invitations made after `since`, newest first.
pub fn invites(c: &Connection, since: i64) -> StoreResult<Vec<Invite>> {
    let mut st = c.prepare(&format!(
        "SELECT {INVITE_COLS} FROM invites WHERE created_at >= ?1 ORDER BY id DESC LIMIT 100"
    ))?;
    let v = st
        .query_map([since], |r| invite_row(c, r))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Marks an invitation used, once: false when it was used or revoked meanwhile.
pub fn use_invite(tx: &Connection, rowid: i64, by: &str, now: i64) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE invites SET used_at = ?1, used_by = ?2
             WHERE id = ?3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?1",
            params![now, by, rowid],
        )
        .map_err(w)?
        == 1)
}

/// Revokes an open invitation: false when it was used or revoked already.
pub fn revoke_invite(tx: &Connection, public_id: &str, now: i64) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE invites SET revoked_at = ?1
             WHERE public_id = ?2 AND used_at IS NULL AND revoked_at IS NULL",
            params![now, public_id],
        )
        .map_err(w)?
        == 1)
}

/// Forgets invitations that ended before `cutoff`.
pub fn purge_invites(tx: &Connection, cutoff: i64) -> StoreResult<usize> {
    tx.execute("DELETE FROM invites WHERE expires_at < ?1", [cutoff])
        .map_err(w)
}
