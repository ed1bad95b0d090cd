//! Disk space as a state the hub lives through: a free-space floor for
//! uploads and a reserve file for everything else.
//!
//! The data directory holds `reserve.bin`, [`RESERVE_BYTES`] of zeros
//! written while there is room. Uploads are admitted only while the
//! reserve exists and at least [`FLOOR_BYTES`] stay free after them, so a
//! disk filled by uploads still leaves room for the small writes that
//! must always work: sign-ins, deletes (with `secure_delete` and WAL, a
//! delete first needs free space about the size of what it deletes),
//! marking messages heard, starting. When the disk is nearly full anyway
//! (something else filled it), the reserve file is deleted before a write
//! so those writes still fit, and the log says what to do; it is written
//! again, and uploads resume by themselves, once there is room.
//!
//! No SQL here: this is file-system bookkeeping next to the database.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Size of the reserve file.
pub const RESERVE_BYTES: u64 = 8 << 20;
/// Free space that must stay after an upload.
pub const FLOOR_BYTES: u64 = 4 << 20;
/// Below this much free space, the reserve is released before a write.
pub const RELEASE_BELOW: u64 = 1 << 20;

/// The reserve and the checks around it.
pub struct Space {
    dir: PathBuf,
    /// Serialises creating and releasing the file.
    lock: Mutex<()>,
}

/// Free bytes for an unprivileged writer on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

impl Space {
    /// The reserve of the data directory `dir`; releases it at once when
    /// the disk is already nearly full, else writes it when missing.
    pub fn new(dir: &Path) -> Self {
        let space = Self {
            dir: dir.to_owned(),
            lock: Mutex::new(()),
        };
        space.before_write();
        if !space.release_needed() {
            space.ensure_reserve();
        }
        space
    }

    fn path(&self) -> PathBuf {
        crate::datadir::DataDir::new(&self.dir).path(crate::datadir::DataFile::Reserve)
    }

    /// Whether the reserve file is there, whole.
    pub fn reserve_present(&self) -> bool {
        std::fs::metadata(self.path()).is_ok_and(|m| m.len() == RESERVE_BYTES)
    }

    fn release_needed(&self) -> bool {
        free_bytes(&self.dir).is_some_and(|f| f < RELEASE_BELOW)
    }

    /// Call before any write: when the disk is nearly full, the reserve is
    /// deleted so that the write fits.
    pub fn before_write(&self) {
        if !self.release_needed() {
            return;
        }
        let Ok(_g) = self.lock.lock() else { return };
        if std::fs::remove_file(self.path()).is_ok() {
            tracing::warn!(
                data_dir = %self.dir.display(),
                "the disk holding the data directory is full: the hub released its {} MiB reserve \
                 so that signing in and deleting keep working; uploads are refused (507) until \
                 there is room again. Delete old messages on the hub's page, or free space on \
                 this disk (`df -h`); uploads resume by themselves, no restart needed",
                RESERVE_BYTES >> 20
            );
        }
    }

    /// Writes the reserve file when it is missing and the disk has room
    /// for it and the floor. True when it is there afterwards.
    pub fn ensure_reserve(&self) -> bool {
        if self.reserve_present() {
            return true;
        }
        let Ok(_g) = self.lock.lock() else {
            return false;
        };
        let free = free_bytes(&self.dir).unwrap_or(0);
        let have = std::fs::metadata(self.path()).map(|m| m.len()).unwrap_or(0);
        if free + have < RESERVE_BYTES + FLOOR_BYTES {
            return false;
        }
        match write_zeros(&self.path(), RESERVE_BYTES) {
            Ok(()) => {
                tracing::info!("disk space reserve in place ({} MiB)", RESERVE_BYTES >> 20);
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(self.path());
                tracing::warn!("cannot write the disk space reserve: {e}");
                false
            }
        }
    }

    /// Whether an upload of `bytes` may be stored: the reserve is there (or
    /// could be written again) and [`FLOOR_BYTES`] stay free after it.
    pub fn admit_upload(&self, bytes: u64) -> bool {
        if !self.ensure_reserve() {
            return false;
        }
        free_bytes(&self.dir).is_none_or(|f| f >= bytes.saturating_add(FLOOR_BYTES))
    }
}

/// Allocates `len` bytes for the file at `path` (fallocate where the file
/// system can, else zeros written out).
fn write_zeros(path: &Path, len: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    if nix::fcntl::posix_fallocate(&f, 0, len as _).is_ok() {
        return Ok(());
    }
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_written_and_uploads_respect_the_floor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = free_bytes(dir.path()).expect("statvfs");
        if free < 4 * (RESERVE_BYTES + FLOOR_BYTES) {
            eprintln!("skipped: not enough free space for the reserve test");
            return;
        }
        let s = Space::new(dir.path());
        assert!(s.reserve_present(), "the reserve is written at start");
        assert!(s.admit_upload(1 << 20));
        assert!(
            !s.admit_upload(free),
            "an upload that would pass the floor is refused"
        );
        std::fs::remove_file(s.path()).expect("rm");
        assert!(
            s.admit_upload(1),
            "the reserve is written again when there is room"
        );
        assert!(s.reserve_present());
    }
}
