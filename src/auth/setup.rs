//! The one-time setup code of the first start: `NNNN-NNNN` (8 random
//! digits), printed in the log on a line of its own and written to
//! `DATA_DIR/setup-code` (0600); the file is removed once setup is done.
//! `accounts` replaces the code when it expires or has seen too many wrong
//! guesses, and writes the new one here.

use std::path::{Path, PathBuf};

use crate::datadir::{DataDir, DataFile, write_private_file};

/// The file holding the code.
pub fn code_path(data_dir: &Path) -> PathBuf {
    DataDir::new(data_dir).path(DataFile::SetupCode)
}

/// A new code.
pub fn new_code() -> String {
    let n: u32 = rand::random_range(0..100_000_000);
    let digits = format!("{n:08}");
    format!("{}-{}", &digits[..4], &digits[4..])
}

/// Normalises what a person typed: digits only, dash optional, spaces forgiven.
pub fn normalise(input: &str) -> String {
    let digits: String = input.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() == 8
        && input
            .chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == ' ')
    {
        format!("{}-{}", &digits[..4], &digits[4..])
    } else {
        String::new()
    }
}

/// Reuses the code in the file (a restart before setup keeps the same code)
/// or makes and writes a new one. Returns the code and its age in seconds,
/// from the file's modification time (0 for a new code).
pub fn load_or_create(data_dir: &Path) -> std::io::Result<(String, i64)> {
    let path = code_path(data_dir);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let code = normalise(text.trim());
        if !code.is_empty() {
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            return Ok((code, age));
        }
    }
    Ok((replace(data_dir)?, 0))
}

/// Makes a new code and writes it to the file.
pub fn replace(data_dir: &Path) -> std::io::Result<String> {
    let code = new_code();
    write_private_file(&code_path(data_dir), format!("{code}\n").as_bytes())?;
    Ok(code)
}

/// Removes the file after setup.
pub fn remove(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(code_path(data_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_format() {
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert!(c.chars().filter(|c| *c != '-').all(|c| c.is_ascii_digit()));
        }
        assert_eq!(normalise("1234-5678"), "1234-5678");
        assert_eq!(normalise("12345678"), "1234-5678");
        assert_eq!(normalise("1234 5678"), "1234-5678");
        assert_eq!(normalise("1234-567"), "");
        assert_eq!(normalise("abcd-5678"), "");
    }

    #[test]
    fn the_code_file_lives_until_setup_and_survives_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("the file system works");
        let path = code_path(dir.path());
        assert_eq!(path, dir.path().join("setup-code"));

        let (code, age) = load_or_create(dir.path()).expect("the file system works");
        assert_eq!(normalise(&code), code, "a well-formed code: {code:?}");
        assert_eq!(age, 0);
        assert_eq!(
            std::fs::read_to_string(&path).expect("the file system works"),
            format!("{code}\n")
        );
        let mode = std::fs::metadata(&path)
            .expect("the file system works")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // A restart an hour later keeps the code and knows its age.
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("the file system works")
            .set_modified(an_hour_ago)
            .expect("the file system works");
        let (again, age) = load_or_create(dir.path()).expect("the file system works");
        assert_eq!(again, code);
        assert!((3600..3700).contains(&age), "age {age}");

        // A damaged file gets a new code.
        std::fs::write(&path, "not a code\n").expect("the file system works");
        let (fresh, age) = load_or_create(dir.path()).expect("the file system works");
        assert_eq!(normalise(&fresh), fresh);
        assert_eq!(age, 0);
        assert_eq!(
            std::fs::read_to_string(&path).expect("the file system works"),
            format!("{fresh}\n")
        );

        // Replaced: a new one in the file (two equal draws of 10^8 are rare
        // enough; three in a row do not happen).
        let replaced = (0..3)
            .map(|_| replace(dir.path()).expect("the file system works"))
            .find(|c| *c != fresh)
            .expect("a new code");
        assert_eq!(
            std::fs::read_to_string(&path).expect("the file system works"),
            format!("{replaced}\n")
        );

        remove(dir.path()).expect("the file system works");
        assert!(!path.exists());
        remove(dir.path()).expect("removing what is gone is fine");
        // Any other failure is told.
        std::fs::create_dir(&path).expect("the file system works");
        std::fs::write(path.join("x"), "").expect("the file system works");
        assert!(
            remove(dir.path()).is_err(),
            "a directory in the way is an error"
        );
    }

    #[test]
    fn normalise_accepts_only_eight_digits_with_dashes_and_spaces() {
        for ok in [
            "0000-0000",
            " 1234 - 5678 ",
            "12-34-56-78",
            "1234\u{20}5678",
        ] {
            assert_eq!(normalise(ok).len(), 9, "{ok:?}");
        }
        assert_eq!(normalise("0012 3400"), "0012-3400");
        for bad in [
            "",
            "1234-56789",
            "1234_5678",
            "1234.5678",
            "1234-5678x",
            "x12345678",
            "١٢٣٤٥٦٧٨",
        ] {
            assert_eq!(normalise(bad), "", "{bad:?}");
        }
    }
}
