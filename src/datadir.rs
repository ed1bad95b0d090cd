//! The hub's data directory and its layout: which file holds what, the
//! modes they must have, and the one atomic writer for private files.
//!
//! Every other module asks [`DataDir`] for a path instead of joining a file
//! name itself, so the layout is written down once (`store` opens
//! [`DataDir::database`], `pki` keeps its keys where [`DataDir`] says,
//! `accounts` writes the setup code, `doctor` checks the modes, and the
//! reference toy's state uses [`write_private_file`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Mode of the data directory (and the toy's state directory): the owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every key, certificate and secret written there.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

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

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("hearth.db")
    }

    /// The hub CA's private key (PEM).
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// The hub CA's certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }

    /// The server leaf's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }

    /// The server leaf's certificate (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.crt")
    }

    /// The one-time setup code, present until the first admin exists.
    pub fn setup_code(&self) -> PathBuf {
        self.root.join("setup-code")
    }

    /// The secrets that must be [`PRIVATE_FILE_MODE`] (checked by `doctor`).
    pub fn secret_files(&self) -> [PathBuf; 3] {
        [self.ca_key(), self.server_key(), self.setup_code()]
    }

    /// Creates the directory ([`DIR_MODE`]) when missing and checks that
    /// this user can write in it; warns when others can read it.
    pub fn prepare(&self) -> anyhow::Result<()> {
        let dir = &self.root;
        if !dir.exists() {
            create_private_dir(dir)
                .with_context(|| format!("cannot create the data directory {}; create it or choose another with --data-dir", dir.display()))?;
        }
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .with_context(|| format!("the data directory {} is not writable by this user; fix its owner or choose another with --data-dir", dir.display()))?;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data directory is readable by other users; chmod 700 it");
        }
        Ok(())
    }
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
        let p = d.setup_code();
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
