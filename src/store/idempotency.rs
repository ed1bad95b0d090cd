//! Idempotency keys: the first answer to a request, replayed for a retry
//! with the same key within 24 hours.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};
use crate::domain::IdempotencyScope;

/// How long a key is remembered.
pub const KEY_LIFETIME_SECS: i64 = 24 * 3600;

/// The stored answer for `key` in `scope`, if used in the last 24 hours.
pub fn lookup(
    c: &Connection,
    scope: IdempotencyScope,
    key: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    Ok(c.query_row(
        "SELECT response FROM idempotency WHERE scope = ?1 AND key = ?2 AND created_at > ?3",
        params![scope.key(), key, now - KEY_LIFETIME_SECS],
        |r| r.get(0),
    )
    .optional()?)
}

/// Remembers the answer (in the same transaction as what it answers).
pub fn remember(
    tx: &Connection,
    scope: IdempotencyScope,
    key: &str,
    now: i64,
    response: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO idempotency (scope, key, created_at, response) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(scope, key) DO UPDATE SET created_at = excluded.created_at, response = excluded.response",
        params![scope.key(), key, now, response],
    )
    .map_err(w)?;
    Ok(())
}

/// Forgets keys older than 24 hours.
pub fn purge(tx: &Connection, now: i64) -> StoreResult<usize> {
    tx.execute(
        "DELETE FROM idempotency WHERE created_at <= ?1",
        [now - KEY_LIFETIME_SECS],
    )
    .map_err(w)
}
