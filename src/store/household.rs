//! The household: its name and retention setting (one row).

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, w};

/// The household row.
#[derive(Debug, Clone)]
pub struct Household {
    /// Display name, also the mDNS instance name.
    pub name: String,
    /// Days messages are kept; `None` keeps them forever.
    pub retention_days: Option<u32>,
}

/// Creates the household (first-run setup).
pub fn create(tx: &Connection, name: &str, now: i64) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO household (id, name, created_at) VALUES (1, ?1, ?2)",
        params![name, now],
    )
    .map_err(w)?;
    Ok(())
}

/// The household, if setup is done.
pub fn get(c: &Connection) -> StoreResult<Option<Household>> {
    Ok(c.query_row(
        "SELECT name, retention_days FROM household WHERE id = 1",
        [],
        |r| {
            Ok(Household {
                name: r.get(0)?,
                retention_days: r.get(1)?,
            })
        },
    )
    .optional()?)
}

/// Renames the household.
pub fn rename(tx: &Connection, name: &str) -> StoreResult<()> {
    tx.execute("UPDATE household SET name = ?1 WHERE id = 1", [name])
        .map_err(w)?;
    Ok(())
}

/// Sets the retention period (`None`: keep forever).
pub fn set_retention(tx: &Connection, days: Option<u32>) -> StoreResult<()> {
    tx.execute(
        "UPDATE household SET retention_days = ?1 WHERE id = 1",
        [days],
    )
    .map_err(w)?;
    Ok(())
}
