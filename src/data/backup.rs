//! Encrypted backups: a consistent snapshot of the database (SQLite's
//! online backup, `store::snapshot`) and the hub's keys, packed in a tar
//! archive and encrypted in the age format with a passphrase (scrypt), so
//! `age -d` opens it without Hearth. Inside, every file sits under
//! `hearth-backup/`, with a `manifest.json` that lists them with their
//! SHA-256. A backup is checked (decrypted and verified without touching
//! the hub) or restored into an empty directory; paired toys keep working
//! because the CA's key comes back with it.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use tokio::sync::mpsc;

use super::{ChannelReader, ChannelWriter, Download, spawn_download};
use crate::accounts::Client;
use crate::clock::rfc3339;
use crate::datadir::{DataDir, DataFile, PRIVATE_FILE_MODE, create_private_dir};
use crate::domain::Role;
use crate::error::{Code, Error, Result};
use crate::state::AppState;
use crate::store::{
    self, Store,
    audit::{Action, AuditEntry, Outcome},
    snapshot::Inspection,
    users::User,
};

/// The folder every file of the archive sits in.
const FOLDER: &str = "hearth-backup";
/// The manifest's `format`.
const FORMAT: &str = "hearth-backup-1";
/// The shortest passphrase accepted for a new backup.
pub const MIN_PASSPHRASE: usize = 12;
/// The longest.
pub const MAX_PASSPHRASE: usize = 1024;

/// The files a backup carries, besides its manifest; `CaPrevious` only
/// when the hub has one.
const FILES: [DataFile; 6] = [
    DataFile::Database,
    DataFile::CaKey,
    DataFile::CaCert,
    DataFile::ServerKey,
    DataFile::ServerCert,
    DataFile::CaPrevious,
];

/// A backup passphrase (never logged, never stored).
pub struct Passphrase(SecretString);

impl Passphrase {
    /// A passphrase for a new backup: 12 to 1024 characters.
    pub fn new_for_backup(p: String) -> Result<Self> {
        let n = p.chars().count();
        if n < MIN_PASSPHRASE {
            return Err(Error::new(
                Code::WeakPassword,
                format!("a backup passphrase needs at least {MIN_PASSPHRASE} characters"),
            ));
        }
        if n > MAX_PASSPHRASE {
            return Err(Error::new(
                Code::WeakPassword,
                format!("a backup passphrase has at most {MAX_PASSPHRASE} characters"),
            ));
        }
        Ok(Self(SecretString::from(p)))
    }

    /// A passphrase to open an existing backup (any length: it is only tried).
    pub fn to_open(p: String) -> Self {
        Self(SecretString::from(p))
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The Hearth version that made it.
    pub hearth_version: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// The household's name.
    pub household: Option<String>,
    /// The database's schema version.
    pub schema_version: i64,
    /// Every other file, with its size and SHA-256 (hex).
    pub files: Vec<ManifestFile>,
}

/// One file of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Its name in the data directory.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What a checked or restored backup holds.
#[derive(Debug, Clone)]
pub struct Contents {
    /// Its manifest.
    pub manifest: Manifest,
    /// What its database holds.
    pub database: Inspection,
}

impl Contents {
    /// A sentence for people.
    pub fn summary(&self) -> String {
        format!(
            "backup of {} made {}: {} accounts, {} toys, {} messages",
            self.manifest
                .household
                .as_deref()
                .unwrap_or("a hub before setup"),
            self.manifest.created_at,
            self.database.users,
            self.database.toys,
            self.database.messages
        )
    }
}

/// Why a backup could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The passphrase is not the one it was made with.
    #[error("the passphrase does not open this backup; nothing was changed")]
    WrongPassphrase,
    /// Not an age file, or an age file that is not a Hearth backup.
    #[error(
        "this file is not a Hearth backup ({0}): choose the .age file a Hearth hub made; nothing was changed"
    )]
    NotABackup(String),
    /// A Hearth backup that is damaged or incomplete.
    #[error("this backup is damaged or incomplete ({0}); was it copied whole? Nothing was changed")]
    Damaged(String),
    /// Made by a newer Hearth, whose database this one cannot read.
    #[error(
        "this backup was made by a newer Hearth (its database is version {found}, this hub reads up to version {known}): update this hub's Hearth, then restore again; nothing was changed"
    )]
    TooNew {
        /// The backup's schema version.
        found: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// A backup of a hub that was never set up: nothing to restore.
    #[error(
        "this backup was made before its hub was set up, so it holds no household to restore; nothing was changed"
    )]
    NoHousehold,
    /// The files could not be written or read here.
    #[error("{0:#}")]
    Local(anyhow::Error),
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::WrongPassphrase => Error::new(Code::WrongPassphrase, e.to_string()),
            OpenError::NotABackup(_) | OpenError::Damaged(_) | OpenError::NoHousehold => {
                Error::new(Code::InvalidBackup, e.to_string())
            }
            OpenError::TooNew { .. } => Error::new(Code::BackupTooNew, e.to_string()),
            OpenError::Local(cause) => {
                if let Some(io) = cause.downcast_ref::<io::Error>() {
                    if io.kind() == io::ErrorKind::StorageFull {
                        return Error::new(
                            Code::StorageFull,
                            "the hub's disk is too full for this backup; nothing was changed",
                        );
                    }
                }
                Error::internal(cause)
            }
        }
    }
}

fn damaged(what: impl std::fmt::Display) -> OpenError {
    OpenError::Damaged(what.to_string())
}

fn not_a_backup(what: impl std::fmt::Display) -> OpenError {
    OpenError::NotABackup(what.to_string())
}

/// A failure to read the decrypted archive: a file cut short ends in a
/// chunk whose authentication fails, or early.
fn unreadable(e: io::Error) -> OpenError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => damaged("it ends too early"),
        io::ErrorKind::InvalidData => damaged("it ends too early or was changed after it was made"),
        _ => damaged(e),
    }
}

fn local(e: impl Into<anyhow::Error>) -> OpenError {
    OpenError::Local(e.into())
}

/// A database snapshot in a scratch file, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let gone = if self.0.is_dir() {
            std::fs::remove_dir_all(&self.0)
        } else {
            std::fs::remove_file(&self.0)
        };
        if let Err(e) = gone {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), "cannot remove a scratch file: {e}");
            }
        }
    }
}

/// Takes the snapshot (blocking) and lists what the archive will hold.
fn prepare(data_dir: &Path, now: i64) -> anyhow::Result<(Scratch, Manifest)> {
    let dir = DataDir::new(data_dir);
    let scratch = Scratch(dir.scratch_path("backup.db"));
    // Created first with mode 0600, so the copy is never readable by others.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&scratch.0)
        .context("cannot create the snapshot file in the data directory")?;
    store::snapshot::copy(&dir.path(DataFile::Database), &scratch.0)
        .context("cannot take a snapshot of the database")?;
    let inspection = store::snapshot::inspect(&scratch.0)?;
    let mut files = Vec::new();
    for f in FILES {
        let path = source(&dir, &scratch, f);
        if f == DataFile::CaPrevious && !path.exists() {
            continue;
        }
        let (size, sha256) =
            hash_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
        files.push(ManifestFile {
            name: f.name().to_owned(),
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        hearth_version: env!("CARGO_PKG_VERSION").into(),
        created_at: rfc3339(now),
        household: inspection.household,
        schema_version: inspection.schema_version,
        files,
    };
    Ok((scratch, manifest))
}

fn source(dir: &DataDir, scratch: &Scratch, f: DataFile) -> PathBuf {
    if f == DataFile::Database {
        scratch.0.clone()
    } else {
        dir.path(f)
    }
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Encrypts the archive of `manifest`'s files into `out` (blocking).
fn write_encrypted(
    data_dir: &Path,
    scratch: &Scratch,
    manifest: &Manifest,
    passphrase: &Passphrase,
    now: i64,
    out: impl Write,
) -> anyhow::Result<()> {
    let dir = DataDir::new(data_dir);
    let encryptor = age::Encryptor::with_user_passphrase(passphrase.0.clone());
    let sealed = encryptor.wrap_output(out)?;
    let mut tar = tar::Builder::new(sealed);
    let json = serde_json::to_vec_pretty(manifest)?;
    append(
        &mut tar,
        "manifest.json",
        json.len() as u64,
        now,
        json.as_slice(),
    )?;
    for file in &manifest.files {
        let f = FILES
            .into_iter()
            .find(|f| f.name() == file.name)
            .context("a manifest entry without a file")?;
        let reader = std::fs::File::open(source(&dir, scratch, f))?;
        // The size of the manifest: a file that changed since would make the
        // tar entry wrong, so read exactly that much.
        append(&mut tar, &file.name, file.size, now, reader.take(file.size))?;
    }
    let sealed = tar.into_inner()?;
    sealed.finish()?.flush()?;
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    now: i64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(PRIVATE_FILE_MODE);
    h.set_mtime(u64::try_from(now).unwrap_or(0));
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, format!("{FOLDER}/{name}"), data)
}

/// The ledger entry of a backup.
fn backup_entry(actor: &str, now: i64, manifest: &Manifest, how: &str) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: Some(actor.to_owned()),
        action: Action::BackupCreated,
        subject: None,
        toy: None,
        client: String::new(),
        outcome: Outcome::Success,
        detail: format!("{how}, database schema {}", manifest.schema_version),
    }
}

/// An admin downloads a backup. The snapshot is taken (and the ledger
/// entry written) before the first byte is sent; the archive is then
/// encrypted as it is sent.
pub async fn download(state: &AppState, by: &User, passphrase: Passphrase) -> Result<Download> {
    crate::accounts::require(by, Role::Admin)?;
    let now = state.now();
    let data_dir = state.config.data_dir.clone();
    let dir = data_dir.clone();
    let (scratch, manifest) = tokio::task::spawn_blocking(move || prepare(&dir, now))
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("the backup worker stopped: {e}")))?
        .map_err(Error::internal)?;
    let entry = backup_entry(by.username.as_str(), now, &manifest, "downloaded");
    state
        .store
        .write(move |tx| store::audit::record(tx, &entry))
        .await?;
    let chunks = spawn_download("backup", move |sink: &mut ChannelWriter| {
        write_encrypted(&data_dir, &scratch, &manifest, &passphrase, now, sink)
    });
    Ok(Download {
        file_name: format!("hearth-backup-{}.age", super::export::file_date(now)),
        chunks,
    })
}

/// Writes a backup of the hub whose data directory is `data_dir` to the
/// new file `out` (the command line and the schedule), then records it in
/// the ledger through `store`. Blocking. The file is written to a
/// temporary name and renamed, so `out` is whole or absent.
pub fn write_file(
    store: &Store,
    data_dir: &Path,
    out: &Path,
    passphrase: &Passphrase,
    now: i64,
    actor: &str,
) -> anyhow::Result<Manifest> {
    let (scratch, manifest) = prepare(data_dir, now)?;
    let tmp = out.with_extension("partial");
    let result = (|| -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = io::BufWriter::new(file);
        write_encrypted(data_dir, &scratch, &manifest, passphrase, now, &mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    let entry = backup_entry(
        actor,
        now,
        &manifest,
        &format!("written to {}", out.display()),
    );
    store.write_blocking(|tx| store::audit::record(tx, &entry))?;
    Ok(manifest)
}

/// Decrypts `input` and unpacks its files into the empty directory `into`,
/// then verifies them against the manifest and inspects the database.
/// Blocking. On failure the caller removes `into`.
fn unpack(
    input: impl Read,
    passphrase: &Passphrase,
    into: &Path,
) -> std::result::Result<Contents, OpenError> {
    let decryptor = age::Decryptor::new(io::BufReader::new(input)).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            not_a_backup("it is not an age-encrypted file")
        }
        age::DecryptError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            not_a_backup("it is not an age-encrypted file")
        }
        other => damaged(other),
    })?;
    if !decryptor.is_scrypt() {
        return Err(not_a_backup("it is encrypted with a key, not a passphrase"));
    }
    let identity = age::scrypt::Identity::new(passphrase.0.clone());
    let plain = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => OpenError::WrongPassphrase,
            other => damaged(other),
        })?;
    let mut archive = tar::Archive::new(plain);
    let mut written: Vec<(String, u64, String)> = Vec::new();
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = entry
            .path()
            .map_err(unreadable)?
            .to_string_lossy()
            .into_owned();
        let name = path
            .strip_prefix(&format!("{FOLDER}/"))
            .ok_or_else(|| not_a_backup(format!("it holds {path:?}")))?
            .to_owned();
        if name == "manifest.json" {
            let mut text = Vec::new();
            entry
                .by_ref()
                .take(1 << 20)
                .read_to_end(&mut text)
                .map_err(unreadable)?;
            let m: Manifest = serde_json::from_slice(&text)
                .map_err(|e| not_a_backup(format!("its manifest: {e}")))?;
            if m.format != FORMAT {
                return Err(not_a_backup(format!("unknown format {:?}", m.format)));
            }
            // Refused before its files are written: the manifest comes first.
            let known = store::schema_version();
            if m.schema_version > known {
                return Err(OpenError::TooNew {
                    found: m.schema_version,
                    known,
                });
            }
            manifest = Some(m);
            continue;
        }
        if !FILES.iter().any(|f| f.name() == name) {
            return Err(not_a_backup(format!("it holds {path:?}")));
        }
        let target = into.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&target)
            .map_err(|e| local(anyhow::anyhow!("cannot write {}: {e}", target.display())))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(unreadable)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(local)?;
        }
        out.sync_all().map_err(local)?;
        written.push((name, size, hex::encode(h.finalize())));
    }
    // Read to the end of the age file: its last chunk's tag is checked
    // only there, and a file cut after the archive's end is still cut.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(unreadable)?;
    let manifest = manifest.ok_or_else(|| not_a_backup("it has no manifest"))?;
    for f in &manifest.files {
        let ok = written
            .iter()
            .any(|(n, size, sha)| *n == f.name && *size == f.size && *sha == f.sha256);
        if !ok {
            return Err(damaged(format!(
                "{} is missing or differs from the manifest",
                f.name
            )));
        }
    }
    for needed in [DataFile::Database, DataFile::CaKey, DataFile::CaCert] {
        if !written.iter().any(|(n, _, _)| n == needed.name()) {
            return Err(damaged(format!("it has no {}", needed.name())));
        }
    }
    let database =
        store::snapshot::inspect(&into.join(DataFile::Database.name())).map_err(|e| match e {
            store::StoreError::TooNew { found, known, .. } => OpenError::TooNew { found, known },
            other => damaged(format!("its database: {other}")),
        })?;
    if let Some(why) = &database.damage {
        return Err(damaged(format!("its database is damaged: {why}")));
    }
    Ok(Contents { manifest, database })
}

/// Decrypts and verifies a backup without restoring it (blocking): its
/// files go to a scratch directory inside `data_dir`, removed afterwards.
pub fn check(
    input: impl Read,
    passphrase: &Passphrase,
    data_dir: &Path,
) -> std::result::Result<Contents, OpenError> {
    let scratch = Scratch(DataDir::new(data_dir).scratch_path("check"));
    create_private_dir(&scratch.0).map_err(local)?;
    unpack(input, passphrase, &scratch.0)
}

/// An admin checks an uploaded backup, read from `upload` as it arrives;
/// the ledger records the check and its outcome.
pub async fn check_upload(
    state: &AppState,
    by: &User,
    upload: mpsc::Receiver<io::Result<Vec<u8>>>,
    passphrase: Passphrase,
) -> Result<Contents> {
    crate::accounts::require(by, Role::Admin)?;
    let data_dir = state.config.data_dir.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        check(ChannelReader::new(upload), &passphrase, &data_dir)
    })
    .await
    .map_err(|e| Error::internal(anyhow::anyhow!("the backup worker stopped: {e}")))?;
    let now = state.now();
    let entry = AuditEntry {
        at: now,
        actor: Some(by.username.to_string()),
        action: Action::BackupChecked,
        subject: None,
        toy: None,
        client: String::new(),
        outcome: if outcome.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        detail: match &outcome {
            Ok(c) => c.summary(),
            Err(e) => e.to_string(),
        },
    };
    state
        .store
        .write(move |tx| store::audit::record(tx, &entry))
        .await?;
    Ok(outcome?)
}

/// Rebuilds a hub from a backup into `target`, which must be missing or
/// empty (blocking; the command line). On any failure `target` is left as
/// it was. The ledger of the restored hub records the restore.
pub fn restore(
    input: impl Read,
    passphrase: &Passphrase,
    target: &Path,
    now: i64,
) -> std::result::Result<Contents, OpenError> {
    let existed = target.exists();
    if existed {
        let mut entries = std::fs::read_dir(target)
            .map_err(|e| local(anyhow::anyhow!("cannot read {}: {e}", target.display())))?;
        if entries.next().is_some() {
            return Err(local(anyhow::anyhow!(
                "{} is not empty: restore into a new or empty directory (a restore never mixes with an existing hub)",
                target.display()
            )));
        }
    } else {
        create_private_dir(target).map_err(local)?;
    }
    let result = unpack(input, passphrase, target).and_then(|contents| {
        let store = Store::open(target).map_err(local)?;
        let entry = AuditEntry {
            at: now,
            actor: Some(store::audit::SYSTEM.to_owned()),
            action: Action::RestoreDone,
            subject: None,
            toy: None,
            client: String::new(),
            outcome: Outcome::Success,
            detail: contents.summary(),
        };
        store
            .write_blocking(|tx| store::audit::record(tx, &entry))
            .map_err(local)?;
        Ok(contents)
    });
    if result.is_err() {
        // Leave the directory as it was found: empty, or absent.
        if let Ok(entries) = std::fs::read_dir(target) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if !existed {
            let _ = std::fs::remove_dir(target);
        }
    }
    result
}

/// The first-run setup page's restore: a hub with no household yet takes
/// the household, accounts, toys, messages, ledger and keys of a backup,
/// live. Protected like setup (the setup code, throttled per address, is
/// checked before a byte of the upload is read); the upload is decrypted
/// into a scratch directory as it arrives, verified, migrated to this
/// binary's schema and its keys checked before anything of the hub is
/// replaced. Then the database is replaced (only while no admin exists),
/// the keys installed and swapped into TLS, mDNS re-announced, the setup
/// code retired and `restore_done` recorded. On any failure before the
/// replacement, nothing of the hub changed and setup still works.
pub async fn restore_at_setup(
    state: &AppState,
    client: &Client,
    setup_code: &str,
    passphrase: Option<Passphrase>,
    upload: mpsc::Receiver<io::Result<Vec<u8>>>,
) -> Result<Contents> {
    crate::accounts::check_setup_code(state, client, setup_code).await?;
    let passphrase = passphrase.ok_or_else(|| {
        Error::new(
            Code::InvalidInput,
            "type the passphrase the backup was made with",
        )
    })?;
    let scratch = Scratch(DataDir::new(&state.config.data_dir).scratch_path("restore"));
    let dir = scratch.0.clone();
    let (pki, now) = (state.pki.clone(), state.clock.now());
    let staged = tokio::task::spawn_blocking(move || -> std::result::Result<_, OpenError> {
        create_private_dir(&dir).map_err(local)?;
        let contents = unpack(ChannelReader::new(upload), &passphrase, &dir)?;
        if contents.manifest.household.is_none() || contents.database.users == 0 {
            return Err(OpenError::NoHousehold);
        }
        store::snapshot::bring_up_to_date(&dir.join(DataFile::Database.name()))
            .map_err(|e| damaged(format!("its database: {e}")))?;
        let keys = pki
            .stage_restore(&dir, now)
            .map_err(|e| damaged(format!("its keys: {e}")))?;
        Ok((contents, keys))
    })
    .await
    .map_err(|e| Error::internal(anyhow::anyhow!("the restore worker stopped: {e}")))?;
    let (contents, keys) = staged?;
    let db = scratch.0.join(DataFile::Database.name());
    let replaced = state
        .store
        .replace_with(db, |c| Ok(!store::users::any_admin(c)?))
        .await?;
    if !replaced {
        return Err(Error::new(
            Code::AlreadySetUp,
            "this hub was set up meanwhile; sign in instead (nothing was restored)",
        ));
    }
    let pki = state.pki.clone();
    tokio::task::spawn_blocking(move || pki.install(keys))
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("the restore worker stopped: {e}")))?
        .map_err(|e| Error::internal(e.into()))?;
    // A pairing code shown for the hub's first CA could never match now.
    state.pairings.clear();
    if let Some(d) = &state.discovery {
        if let Err(e) = d.set_ca(&state.pki.ca_sha256()) {
            tracing::warn!("cannot advertise the restored certificate authority yet: {e}");
        }
    }
    let at = state.now();
    let entry = AuditEntry {
        at,
        actor: Some(store::audit::SYSTEM.to_owned()),
        action: Action::RestoreDone,
        subject: None,
        toy: None,
        client: client.ip.clone(),
        outcome: Outcome::Success,
        detail: format!("at first-run setup: {}", contents.summary()),
    };
    state
        .store
        .write(move |tx| store::audit::record(tx, &entry))
        .await?;
    let household = crate::accounts::household_name(state).await?;
    crate::accounts::setup_done(state, &household);
    tracing::warn!(
        "the hub was restored from a backup at first-run setup: {}",
        contents.summary()
    );
    Ok(contents)
}

/// How scheduled backups are named: `hearth-backup-20261130-152152.age`
/// (UTC), so names sort by time.
const SCHEDULED_PREFIX: &str = "hearth-backup-";
const SCHEDULED_SUFFIX: &str = ".age";
const SCHEDULED_STAMP: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]-[hour][minute][second]");

/// The scheduled backups in `dir`, oldest first, with their times.
fn scheduled_files(dir: &Path) -> io::Result<Vec<(PathBuf, i64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stamp) = name
            .strip_prefix(SCHEDULED_PREFIX)
            .and_then(|n| n.strip_suffix(SCHEDULED_SUFFIX))
        else {
            continue;
        };
        if let Ok(t) = time::PrimitiveDateTime::parse(stamp, SCHEDULED_STAMP) {
            out.push((e.path(), t.assume_utc().unix_timestamp()));
        }
    }
    out.sort_by_key(|(_, t)| *t);
    Ok(out)
}

/// Reads the passphrase file: its first line, and only when no one but
/// its owner can read it.
fn read_passphrase_file(path: &Path) -> anyhow::Result<Passphrase> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the backup passphrase file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(
        mode & 0o077 == 0,
        "the backup passphrase file {} can be read by others (mode {mode:o}); chmod 600 it",
        path.display()
    );
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the backup passphrase file {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    Passphrase::new_for_backup(line).map_err(|e| {
        anyhow::anyhow!(
            "the backup passphrase in {} is refused: {}",
            path.display(),
            e.message
        )
    })
}

/// The scheduled backup: when `[backups]` names a directory and its
/// newest backup there is `every_hours` old (or there is none), writes a
/// new one and deletes all but the newest `keep`. Returns the new file.
/// Its errors carry their whole cause, for the hub's log.
pub async fn scheduled(state: &AppState) -> anyhow::Result<Option<PathBuf>> {
    let cfg = state.config.backups.clone();
    let (Some(dir), Some(pass_file)) = (cfg.directory, cfg.passphrase_file) else {
        return Ok(None);
    };
    let now = state.now();
    let store = state.store.clone();
    let data_dir = state.config.data_dir.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Option<PathBuf>> {
        // One scheduled backup at a time in this process: a second caller
        // (the start-up run and the timer, or a test) waits, then finds the
        // new file and has nothing to do, instead of racing for its name.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let existing = scheduled_files(&dir)
            .with_context(|| format!("cannot read the backup directory {}", dir.display()))?;
        if existing
            .last()
            .is_some_and(|(_, t)| now - t < i64::from(cfg.every_hours) * 3600)
        {
            return Ok(None);
        }
        let passphrase = read_passphrase_file(&pass_file)?;
        let t = time::OffsetDateTime::from_unix_timestamp(now)?;
        let stamp = t.format(SCHEDULED_STAMP)?;
        let out = dir.join(format!("{SCHEDULED_PREFIX}{stamp}{SCHEDULED_SUFFIX}"));
        write_file(
            &store,
            &data_dir,
            &out,
            &passphrase,
            now,
            store::audit::SYSTEM,
        )?;
        let all = scheduled_files(&dir)?;
        let surplus = all.len().saturating_sub(cfg.keep as usize);
        for (old, _) in all.into_iter().take(surplus) {
            std::fs::remove_file(&old)
                .with_context(|| format!("cannot delete the old backup {}", old.display()))?;
        }
        Ok(Some(out))
    })
    .await
    .map_err(|e| anyhow::anyhow!("the backup worker stopped: {e}"))?
}
