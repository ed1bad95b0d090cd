//! The store: the only place with SQL. One SQLite file in the data
//! directory, WAL mode, foreign keys on, `synchronous=FULL` so that a
//! committed write survives a power cut, migrations compiled into the
//! binary and run at start.
//!
//! Access goes through [`Store::read`] and [`Store::write`], which run the
//! given closure on a blocking thread (never on an async worker): one writer
//! connection behind a mutex, and a small set of reader connections.
//! Submodules hold the queries, one file per group of tables.
//!
//! **Architecture Invariant:** no other module contains SQL.

pub mod audit;
pub mod checklist;
pub mod heard;
pub mod household;
pub mod idempotency;
pub mod members;
pub mod messages;
pub mod relay;
pub mod sessions;
pub mod snapshot;
pub mod space;
pub mod toys;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction};

use crate::datadir::{DataDir, DataFile};

/// The schema, one entry per version; entry `i` brings the database from
/// version `i` to `i + 1`. Never edit a released entry: add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_members.sql"),
    include_str!("migrations/0003_relay.sql"),
    include_str!("migrations/0004_heard.sql"),
    include_str!("migrations/0005_characters.sql"),
    include_str!("migrations/0006_checklist.sql"),
];

/// The schema version this binary migrates databases to.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The disk (or SQLite's size limit) is full.
    #[error("the disk holding the database is full")]
    Full,
    /// The database was written by a newer Hearth.
    #[error(
        "the database {path} has schema version {found}, newer than this hearth understands ({known}); \
         install the newer hearth again, or restore a backup made with this version"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// A blocking task could not run.
    #[error("the database worker stopped: {0}")]
    Worker(String),
}

impl StoreError {
    fn classify(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.code == rusqlite::ErrorCode::DiskFull {
                return Self::Full;
            }
        }
        Self::Sqlite(e)
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A write that may wait: retried before later writes until it succeeds.
type Deferred = Arc<dyn Fn(&Transaction<'_>) -> StoreResult<()> + Send + Sync>;

/// Most writes kept waiting; older ones are dropped beyond.
const MAX_DEFERRED: usize = 10_000;

struct Inner {
    path: PathBuf,
    space: space::Space,
    deferred: Mutex<Vec<Deferred>>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // auto_vacuum only takes effect on a new, empty database, which is
    // exactly when it must be chosen: retention gives space back with
    // incremental vacuum.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;",
    )?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) `hearth.db` in `data_dir` and migrates it.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        let path = DataDir::new(data_dir).path(DataFile::Database);
        // Before SQLite needs room for its WAL and shared-memory files.
        let space = space::Space::new(data_dir);
        let mut writer = open_connection(&path).map_err(full_or)?;
        migrate(&mut writer, &path)?;
        let readers = (0..2)
            .map(|_| open_connection(&path))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                space,
                deferred: Mutex::new(Vec::new()),
                writer: Mutex::new(writer),
                readers: Mutex::new(readers),
            }),
        })
    }

    /// `Err(Full)` when an upload of `bytes` must be refused for lack of
    /// space (see [`space`]): checked before the upload is processed.
    pub fn admit_upload(&self, bytes: u64) -> StoreResult<()> {
        if self.inner.space.admit_upload(bytes) {
            Ok(())
        } else {
            Err(StoreError::Full)
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a write transaction on a blocking thread. The transaction
    /// commits (and reaches the disk) before this returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.on_writer(move |inner, conn| {
            inner.catch_up(conn);
            write_sync(conn, f)
        })
        .await
    }

    /// Runs `f` with the writer connection, under its lock, on a blocking
    /// thread, after the disk's reserve was looked after.
    async fn on_writer<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| StoreError::Worker("writer lock poisoned".into()))?;
            inner.space.before_write();
            f(&inner, &mut conn)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// A write that must not fail its caller, such as marking a message
    /// delivered while serving it: tried now, and when it fails (a full
    /// disk) kept and tried again before later writes. `Some` with its
    /// result when it was written now, `None` when it was put off.
    pub async fn write_or_defer<T, F>(&self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: Fn(&Transaction<'_>) -> StoreResult<T> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let now = Arc::clone(&f);
        match self.write(move |tx| now(tx)).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("a state change waits for free disk space: {e}");
                if let Ok(mut d) = self.inner.deferred.lock() {
                    if d.len() >= MAX_DEFERRED {
                        d.remove(0);
                    }
                    d.push(Arc::new(move |tx| f(tx).map(|_| ())));
                }
                None
            }
        }
    }

    /// Runs `f` with a reader connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// Synchronous write for command-line tools (never call on an async thread).
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self
            .inner
            .writer
            .lock()
            .map_err(|_| StoreError::Worker("writer lock poisoned".into()))?;
        self.inner.space.before_write();
        write_sync(&mut conn, f)
    }

    /// Synchronous read for command-line tools (never call on an async thread).
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.inner.with_reader(f)
    }

    /// Runs `PRAGMA integrity_check`; `Ok(None)` when the database is sound.
    pub fn integrity_check(&self) -> StoreResult<Option<String>> {
        self.read_blocking(|c| {
            let r: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            Ok((r != "ok").then_some(r))
        })
    }

    /// Gives free pages back to the file system (after retention deletes).
    pub async fn reclaim_space(&self) -> StoreResult<()> {
        self.maintenance("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
            .await
    }

    /// Runs `sql` (statements outside any transaction, such as `VACUUM`
    /// and checkpoints) on the writer connection.
    async fn maintenance(&self, sql: &'static str) -> StoreResult<()> {
        self.on_writer(move |_, conn| conn.execute_batch(sql).map_err(StoreError::classify))
            .await
    }

    /// Deletes every row of every table in one transaction (foreign keys
    /// checked at commit, when nothing is left), so tables added later are
    /// covered without a change here. Then [`Store::compact_fully`].
    pub async fn erase_everything(&self) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute_batch("PRAGMA defer_foreign_keys = ON;")?;
            let tables: Vec<String> = tx
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for t in tables {
                tx.execute(&format!("DELETE FROM \"{}\"", t.replace('"', "\"\"")), [])
                    .map_err(w)?;
            }
            Ok(())
        })
        .await?;
        self.compact_fully().await
    }

    /// Rewrites the database without free pages (`VACUUM`) and empties the
    /// WAL before and after (`wal_checkpoint(TRUNCATE)`), so no deleted
    /// content is left in the file, its free pages or its WAL.
    /// (`secure_delete` already zeroes deleted content as it goes.)
    pub async fn compact_fully(&self) -> StoreResult<()> {
        self.maintenance(
            "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .await
    }

    /// Replaces the whole database, live, with the checked copy at `from`
    /// (SQLite's online backup API into the writer connection, in one step
    /// and one transaction: readers see the old database or the new one,
    /// never a mix, and the next statement of every connection sees the new
    /// schema). `only_if` runs first on the writer, under its lock: `false`
    /// leaves everything as it was and returns `false`. Writes put off for
    /// a full disk are dropped: they were about the old rows.
    pub async fn replace_with(
        &self,
        from: PathBuf,
        only_if: impl FnOnce(&Connection) -> StoreResult<bool> + Send + 'static,
    ) -> StoreResult<bool> {
        self.on_writer(move |inner, conn| {
            if !only_if(conn)? {
                return Ok(false);
            }
            snapshot::copy_into(&from, conn)?;
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(StoreError::classify)?;
            if let Ok(mut d) = inner.deferred.lock() {
                d.clear();
            }
            Ok(true)
        })
        .await
    }

    /// Size of the database file and its WAL, in bytes.
    pub fn file_size(&self) -> u64 {
        let wal = self.inner.path.with_extension("db-wal");
        [self.inner.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

impl Inner {
    /// Retries put-off writes, oldest first, until one fails again.
    fn catch_up(&self, conn: &mut Connection) {
        let waiting: Vec<Deferred> = match self.deferred.lock() {
            Ok(mut d) if !d.is_empty() => std::mem::take(&mut *d),
            _ => return,
        };
        let done = waiting
            .iter()
            .take_while(|f| write_sync(conn, |tx| f(tx)).is_ok())
            .count();
        let rest: Vec<Deferred> = waiting.into_iter().skip(done).collect();
        if !rest.is_empty() {
            if let Ok(mut d) = self.deferred.lock() {
                let newer = std::mem::take(&mut *d);
                *d = rest;
                d.extend(newer);
            }
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let taken = self
            .readers
            .lock()
            .map_err(|_| StoreError::Worker("reader pool poisoned".into()))?
            .pop();
        let conn = match taken {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < 4 {
                pool.push(conn);
            }
        }
        out
    }
}

fn write_sync<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(StoreError::classify)?;
    let out = f(&tx)?;
    tx.commit().map_err(StoreError::classify)?;
    Ok(out)
}

fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}

/// Typed row ids are stored as SQLite integers.
macro_rules! sql_row_id {
    ($($t:ty),*) => {$(
        impl rusqlite::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.0))
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(v).map(Self)
            }
        }
    )*};
}

sql_row_id!(
    crate::domain::UserId,
    crate::domain::SessionId,
    crate::domain::ToyRowId,
    crate::domain::MessageRowId
);

/// Recognises a full disk in an error from opening.
fn full_or(e: StoreError) -> StoreError {
    match e {
        StoreError::Sqlite(inner) => StoreError::classify(inner),
        other => other,
    }
}

/// Maps a write error, recognising a full disk.
pub(crate) fn w(e: rusqlite::Error) -> StoreError {
    StoreError::classify(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled SQLite is built without what Hearth never uses
    /// (`.cargo/config.toml`, `LIBSQLITE3_FLAGS`): no full-text search, no
    /// R-trees, no extension loading; JSON stays.
    #[test]
    fn sqlite_is_built_without_unused_extensions() {
        let c = rusqlite::Connection::open_in_memory().expect("open");
        let mut q = c.prepare("PRAGMA compile_options").expect("pragma");
        let opts: Vec<String> = q
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("options");
        for gone in [
            "ENABLE_FTS3",
            "ENABLE_FTS5",
            "ENABLE_RTREE",
            "ENABLE_DBSTAT_VTAB",
        ] {
            assert!(!opts.iter().any(|o| o == gone), "{gone} in {opts:?}");
        }
        assert!(opts.iter().any(|o| o == "OMIT_LOAD_EXTENSION"), "{opts:?}");
        let n: i64 = c
            .query_row("SELECT json_array_length('[1,2,3]')", [], |r| r.get(0))
            .expect("json");
        assert_eq!(n, 3);
    }

    #[test]
    fn opens_migrates_and_sets_pragmas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .read_blocking(|c| {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                assert_eq!(mode, "wal");
                let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                assert_eq!(sync, 2, "synchronous must be FULL");
                let fk: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                assert_eq!(fk, 1);
                let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
                assert_eq!(av, 2, "auto_vacuum must be INCREMENTAL");
                Ok(())
            })
            .expect("pragmas");
        assert_eq!(store.integrity_check().expect("check"), None);
    }

    #[test]
    fn refuses_a_newer_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        let c =
            Connection::open(DataDir::new(dir.path()).path(DataFile::Database)).expect("raw open");
        c.pragma_update(None, "user_version", 99).expect("bump");
        drop(c);
        let err = Store::open(dir.path()).err().expect("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("99") && msg.contains("newer"), "{msg}");
    }

    #[test]
    fn reopening_keeps_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.write_blocking(|tx| household::create(tx, "Home", 0))
            .expect("create");
        drop(s);
        let s = Store::open(dir.path()).expect("reopen");
        let h = s.read_blocking(household::get).expect("get");
        assert_eq!(h.map(|h| h.name), Some("Home".to_owned()));
    }

    /// Whether `needle` occurs in the database file (after a checkpoint).
    fn file_holds(path: &Path, needle: &[u8]) -> bool {
        let bytes = std::fs::read(path).expect("read the database file");
        bytes.windows(needle.len()).any(|w| w == needle)
    }

    /// `secure_delete` is what keeps a deleted row's bytes out of a page
    /// that stays in use (no vacuum frees it): proven against a positive
    /// control, the same steps with it off.
    #[test]
    fn secure_delete_zeroes_a_deleted_row_in_a_page_still_in_use() {
        let needle = b"KNOWN-PATTERN-0123456789-abcdefghijklmnopqrstuvwxyz";
        let detail = String::from_utf8_lossy(needle).into_owned();
        let insert = |c: &Connection| {
            for d in [detail.as_str(), "a neighbour that keeps the page in use"] {
                c.execute(
                    "INSERT INTO audit (at, action, outcome, detail) VALUES (0, 'setup', 'success', ?1)",
                    [d],
                )?;
            }
            Ok::<_, rusqlite::Error>(())
        };
        let delete = |c: &Connection| {
            c.execute("DELETE FROM audit WHERE detail = ?1", [detail.as_str()])?;
            Ok::<_, rusqlite::Error>(())
        };
        let checkpoint =
            |c: &Connection| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.write_blocking(|tx| Ok(insert(tx)?)).expect("insert");
        store
            .read_blocking(|c| Ok(checkpoint(c)?))
            .expect("checkpoint");
        assert!(file_holds(store.path(), needle), "the row is in the file");
        store.write_blocking(|tx| Ok(delete(tx)?)).expect("delete");
        store
            .read_blocking(|c| Ok(checkpoint(c)?))
            .expect("checkpoint");
        assert!(
            !file_holds(store.path(), needle),
            "the deleted row's bytes are still in the file"
        );

        // Positive control: the same with secure_delete off keeps the bytes.
        let other = tempfile::tempdir().expect("tempdir");
        drop(Store::open(other.path()).expect("make the schema"));
        let path = DataDir::new(other.path()).path(DataFile::Database);
        let c = Connection::open(&path).expect("raw open");
        c.execute_batch("PRAGMA secure_delete = OFF;").expect("off");
        insert(&c).expect("insert");
        delete(&c).expect("delete");
        checkpoint(&c).expect("checkpoint");
        drop(c);
        assert!(file_holds(&path, needle), "the control must find the bytes");
    }
}
