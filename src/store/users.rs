//! Household members: usernames, roles and password hashes.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};
use crate::domain::{Role, UserId};

/// A user row.
#[derive(Debug, Clone)]
pub struct User {
    /// Row id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Name shown on messages.
    pub display_name: String,
    /// What they may do.
    pub role: Role,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Relative),
        password_hash: r.get(4)?,
    })
}

const COLS: &str = "id, username, display_name, role, password_hash";

/// Adds a user; `Ok(None)` when the username is taken.
pub fn insert(
    tx: &Connection,
    username: &str,
    display_name: &str,
    role: Role,
    password_hash: &str,
    now: i64,
) -> StoreResult<Option<UserId>> {
    let n = tx
        .execute(
            "INSERT INTO users (username, display_name, role, password_hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(username) DO NOTHING",
            params![username, display_name, role.as_str(), password_hash, now],
        )
        .map_err(w)?;
    Ok((n == 1).then(|| UserId(tx.last_insert_rowid())))
}

/// Finds a user by name.
pub fn by_username(c: &Connection, username: &str) -> StoreResult<Option<User>> {
    Ok(c.query_row(
        &format!("SELECT {COLS} FROM users WHERE username = ?1"),
        [username],
        row,
    )
    .optional()?)
}

/// Finds a user by id.
pub fn by_id(c: &Connection, id: UserId) -> StoreResult<Option<User>> {
    Ok(c.query_row(
        &format!("SELECT {COLS} FROM users WHERE id = ?1"),
        [id],
        row,
    )
    .optional()?)
}

/// All users, by name.
pub fn list(c: &Connection) -> StoreResult<Vec<User>> {
    let mut st = c.prepare(&format!("SELECT {COLS} FROM users ORDER BY username"))?;
    let v = st.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// True once any admin exists (setup is done).
pub fn any_admin(c: &Connection) -> StoreResult<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')",
        [],
        |r| r.get(0),
    )?)
}

/// Replaces a password hash.
pub fn set_password_hash(tx: &Connection, id: UserId, hash: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE users SET password_hash = ?1 WHERE id = ?2",
        params![hash, id],
    )
    .map_err(w)?;
    Ok(())
}

/// Replaces the name shown for a member.
pub fn set_display_name(tx: &Connection, id: UserId, name: &str) -> StoreResult<()> {
    tx.execute(
        "UPDATE users SET display_name = ?1 WHERE id = ?2",
        params![name, id],
    )
    .map_err(w)?;
    Ok(())
}
