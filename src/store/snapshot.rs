//! Consistent copies of the database for backups, and the checks a copy
//! must pass before it is trusted (integrity, schema version, what it
//! holds). The copy uses SQLite's online backup API in one step, so it is
//! one moment of the database even while the hub keeps writing; copying
//! the live file (and its WAL) could tear.

use std::path::Path;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{MIGRATIONS, StoreError, StoreResult};

/// Copies the database at `db` to the new file `to` (which must not exist)
/// as one consistent snapshot.
pub fn copy(db: &Path, to: &Path) -> StoreResult<()> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut dst = Connection::open_with_flags(
        to,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    {
        let backup = Backup::new(&src, &mut dst)?;
        // -1: every page in one step, under one read transaction.
        match backup.step(-1)? {
            StepResult::Done => {}
            other => {
                return Err(StoreError::Worker(format!(
                    "the database snapshot did not complete ({other:?}); try again"
                )));
            }
        }
    }
    // The copy keeps the WAL flag of the source; fold any WAL it made back
    // into the file so the snapshot is one self-contained file.
    dst.execute_batch("PRAGMA journal_mode = DELETE;")?;
    Ok(())
}

/// Copies the database at `from` over the database of `to` (every page,
/// one step, one transaction), the restore direction of [`copy`].
pub(super) fn copy_into(from: &Path, to: &mut Connection) -> StoreResult<()> {
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let backup = Backup::new(&src, to)?;
    match backup.step(-1).map_err(super::w)? {
        StepResult::Done => Ok(()),
        other => Err(StoreError::Worker(format!(
            "the restored database could not be copied in ({other:?}); try again"
        ))),
    }
}

/// Brings the copy at `db` (a restored backup, not yet in use) to this
/// binary's schema by the same migrations as a start, then folds its WAL
/// back into the file. Refuses a newer schema.
pub fn bring_up_to_date(db: &Path) -> StoreResult<()> {
    let mut c = super::open_connection(db)?;
    super::migrate(&mut c, db)?;
    c.execute_batch("PRAGMA journal_mode = DELETE;")?;
    Ok(())
}

/// What a database copy holds, and whether it is sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `PRAGMA integrity_check`'s complaint, `None` when sound.
    pub damage: Option<String>,
    /// Its schema version.
    pub schema_version: i64,
    /// The household's name (none before setup).
    pub household: Option<String>,
    /// Accounts.
    pub users: i64,
    /// Toys (paired or removed).
    pub toys: i64,
    /// Messages.
    pub messages: i64,
}

/// Opens the copy at `db` read-only and reports on it; refuses a schema
/// newer than this binary knows.
pub fn inspect(db: &Path) -> StoreResult<Inspection> {
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let damage = (check != "ok").then_some(check);
    let schema_version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if schema_version > known {
        return Err(StoreError::TooNew {
            path: db.to_owned(),
            found: schema_version,
            known,
        });
    }
    let count = |table: &str| -> StoreResult<i64> {
        Ok(c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok(Inspection {
        damage,
        schema_version,
        household: super::household::get(&c)?.map(|h| h.name),
        users: count("users")?,
        toys: count("toys")?,
        messages: count("messages")?,
    })
}
