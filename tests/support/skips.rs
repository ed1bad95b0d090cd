//! The skip registry: how a test that cannot run on this machine says so
//! where people look. Shared by source (`#[path]`) between the library's
//! unit tests, the `integration` test binary and the `skipped` summary
//! binary, so it uses only `std`.
//!
//! A test that lacks a tool or root calls [`skip`]. That
//!
//! 1. panics instead when `HEARTH_TEST_REQUIRE_ALL=1` (CI sets it: there
//!    every prerequisite is installed, so a skip is a broken set-up);
//! 2. writes `skipped: <test>: <reason> (<fix>)` straight to the standard
//!    error stream, which libtest's output capture does not intercept (it
//!    only captures the `print!` family), so the line shows in a plain
//!    `cargo test` next to the test's `ok`;
//! 3. appends the same facts to a registry file keyed by the `cargo`
//!    process that started the test binary. `tests/skipped.rs`, the last
//!    test target cargo runs, prints the list and removes the file, so the
//!    end of every `cargo test` run says what did not run and how to fix it.
//!
//! Why not a summary at process exit: Rust runs no code at exit for statics,
//! libtest runs tests on threads of its own, and `atexit` needs `unsafe`,
//! which this crate forbids.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The environment variable that turns every skip into a failure.
pub const REQUIRE_ALL: &str = "HEARTH_TEST_REQUIRE_ALL";

/// One skipped test, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The test binary (`hearth` for the library's unit tests, `integration`).
    pub binary: String,
    /// The test's name as libtest reports it (`browser::browser_end_to_end`).
    pub test: String,
    /// Why it could not run.
    pub reason: String,
    /// What makes it run (an install line, "run as root").
    pub fix: String,
}

impl Skip {
    fn to_line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        format!(
            "{}\t{}\t{}\t{}\n",
            clean(&self.binary),
            clean(&self.test),
            clean(&self.reason),
            clean(&self.fix)
        )
    }

    fn from_line(line: &str) -> Option<Skip> {
        let mut f = line.splitn(4, '\t');
        Some(Skip {
            binary: f.next()?.to_owned(),
            test: f.next()?.to_owned(),
            reason: f.next()?.to_owned(),
            fix: f.next()?.to_owned(),
        })
    }
}

/// Records that the calling test cannot run: see the module docs. `fix`
/// says what would make it run, e.g. `sudo apt install opus-tools`.
/// The caller returns right after.
pub fn skip(reason: &str, fix: &str) {
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("a test")
        .to_owned();
    if std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1") {
        panic!("{test} cannot run: {reason}; {fix} ({REQUIRE_ALL}=1 forbids skipping)");
    }
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            // Cargo names test executables `<target>-<16 hex digits>`.
            Some((name, hash)) if hash.len() == 16 => name.to_owned(),
            _ => s,
        })
        .unwrap_or_else(|| "tests".into());
    let s = Skip {
        binary,
        test,
        reason: reason.to_owned(),
        fix: fix.to_owned(),
    };
    // Straight to the stream: `eprintln!` would be captured and hidden.
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipped: {}: {} ({})",
        s.test,
        s.reason,
        s.fix
    );
    if let Some(path) = registry_file() {
        let _ = append(&path, &s);
    }
}

fn append(path: &std::path::Path, s: &Skip) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // One short write per line with O_APPEND: test binaries run one after
    // another, and threads of one binary never interleave within a line.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(s.to_line().as_bytes())
}

/// Where the registry files live.
pub fn registry_dir() -> PathBuf {
    std::env::temp_dir().join("hearth-test-skips")
}

/// `<pid>-<start time>` of a process: unique even when pids are reused.
pub fn process_key(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = stat.rsplit_once(')')?.1;
    // rest starts with field 3 (state); the start time is field 22.
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid}-{start}"))
}

/// The registry file of the `cargo test` run this process belongs to: the
/// one of its parent process (cargo runs every test binary directly).
pub fn registry_file() -> Option<PathBuf> {
    let key = process_key(std::os::unix::process::parent_id())?;
    Some(registry_dir().join(key))
}

/// Reads and removes this run's registry, and removes the files of runs
/// whose cargo process is gone (interrupted runs).
pub fn take_this_run() -> Vec<Skip> {
    let mut out = Vec::new();
    if let Some(path) = registry_file() {
        if let Ok(text) = std::fs::read_to_string(&path) {
            out = text.lines().filter_map(Skip::from_line).collect();
        }
        let _ = std::fs::remove_file(&path);
    }
    if let Ok(entries) = std::fs::read_dir(registry_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let alive = name
                .split_once('-')
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
                .and_then(process_key)
                .is_some_and(|k| k == name);
            if !alive {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    out
}
