//! The hub's data directory and its layout: which file holds what, the
//! modes they must have, and the one atomic writer for private files.
//!
//! Every other module asks [`DataDir::path`] for a [`DataFile`] instead of
//! joining a file name itself, so the layout is written down once (`store`
//! opens the database, `pki` keeps its keys there, `accounts` writes the
//! setup code, `doctor` checks the modes, and the reference toy's state
//! uses [`write_private_file`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Mode of the data directory (and the toy's state directory): the owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every key, certificate and secret written there.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// How scratch paths ([`DataDir::scratch_path`]) begin.
const SCRATCH_PREFIX: &str = ".scratch-";

/// The files of the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFile {
    /// The SQLite database (its `-wal` and `-shm` sit next to it).
    Database,
    /// The hub CA's private key (PEM).
    CaKey,
    /// The hub CA's certificate (PEM).
    CaCert,
    /// The server leaf's private key (PEM).
    ServerKey,
    /// The server leaf's certificate (PEM).
    ServerCert,
    /// Earlier certificates of the hub CA (same key), kept when the CA was
    /// reissued with name constraints, so their hashes stay recognised.
    CaPrevious,
    /// The one-time setup code, present until the first admin exists.
    SetupCode,
    /// The MQTT broker password (`hearth mqtt set-password`, the admin's
    /// MQTT page): kept out of the world-readable configuration file.
    MqttPassword,
    /// Space held back so a full disk still lets the hub start, sign in
    /// and delete (`store::space`).
    Reserve,
    /// The relay mailbox's secret access key (`relay`), present while
    /// relay is configured.
    RelaySecret,
}

impl DataFile {
    /// The file's name in the directory.
    pub fn name(self) -> &'static str {
        match self {
            Self::Database => "hearth.db",
            Self::CaKey => "ca.key",
            Self::CaCert => "ca.crt",
            Self::ServerKey => "server.key",
            Self::ServerCert => "server.crt",
            Self::CaPrevious => "ca-previous.pem",
            Self::SetupCode => "setup-code",
            Self::Reserve => "reserve.bin",
            Self::MqttPassword => "mqtt-password",
            Self::RelaySecret => "relay-secret",
        }
    }
}

/// The data directory of a hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout rooted at `root` (nothing is touched on disk).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `file` lives.
    pub fn path(&self, file: DataFile) -> PathBuf {
        self.root.join(file.name())
    }

    /// A new path for a temporary file or directory inside the data
    /// directory (same file system, same private mode), such as a backup's
    /// database snapshot. Its user removes it when done; [`Self::prepare`]
    /// removes any a crash left behind, since they may hold recordings.
    pub fn scratch_path(&self, what: &str) -> PathBuf {
        let tag = hex::encode(rand::random::<[u8; 8]>());
        self.root.join(format!("{SCRATCH_PREFIX}{what}-{tag}"))
    }

    /// Removes scratch files and directories left by an interrupted backup.
    fn remove_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) {
                let p = e.path();
                let gone = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if let Err(err) = gone {
                    tracing::warn!(path = %p.display(), "cannot remove a leftover scratch file: {err}");
                }
            }
        }
    }

    /// The secrets that must be [`PRIVATE_FILE_MODE`] (checked by `doctor`).
    pub fn secret_files(&self) -> [PathBuf; 5] {
        [
            DataFile::CaKey,
            DataFile::ServerKey,
            DataFile::SetupCode,
            DataFile::MqttPassword,
            DataFile::RelaySecret,
        ]
        .map(|f| self.path(f))
    }

    /// Creates the directory ([`DIR_MODE`]) when missing and checks that
    /// this user can write in it; warns when others can read it.
    pub fn prepare(&self) -> anyhow::Result<()> {
        let dir = &self.root;
        if let Some(why) = blocked_by_file(dir) {
            anyhow::bail!(why);
        }
        if !dir.exists() {
            create_private_dir(dir)
                .with_context(|| format!("cannot create the data directory {}; create it or choose another with --data-dir", dir.display()))?;
        }
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .with_context(|| format!("the data directory {} is not writable by this user; fix its owner or choose another with --data-dir", dir.display()))?;
        self.remove_scratch();
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data directory is readable by other users; chmod 700 it");
        }
        Ok(())
    }
}

/// Why `dir` can never be a data directory, when it is a file or lies
/// under one: said before trying, so the message names the file instead of
/// an OS error about permissions.
fn blocked_by_file(dir: &Path) -> Option<String> {
    let file = dir
        .ancestors()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_dir()))?;
    Some(if file == dir {
        format!(
            "the data directory {} is a file, not a directory; choose a directory with --data-dir (or data_dir in the configuration)",
            dir.display()
        )
    } else {
        format!(
            "cannot create the data directory {}: {} is a file, not a directory; choose another with --data-dir (or data_dir in the configuration)",
            dir.display(),
            file.display()
        )
    })
}

/// Creates `dir` and its parents with mode [`DIR_MODE`].
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Writes `data` to `path` with mode [`PRIVATE_FILE_MODE`], atomically
/// (temporary file, fsync, rename, fsync of the directory), so a power cut
/// leaves the old file or the new one, never half of one.
pub fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_replace_the_old_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(dir.path());
        let p = d.path(DataFile::SetupCode);
        write_private_file(&p, b"one").expect("write");
        write_private_file(&p, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, PRIVATE_FILE_MODE);
        assert!(!p.with_extension("tmp").exists(), "no temporary file left");
    }

    #[test]
    fn prepare_makes_a_private_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(&dir.path().join("a/data"));
        d.prepare().expect("prepare");
        let mode = std::fs::metadata(d.root())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, DIR_MODE);
        assert!(d.secret_files().iter().all(|f| f.starts_with(d.root())));
    }
}
