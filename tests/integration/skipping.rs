//! The skip registry itself (`tests/support/skips.rs`), checked through a
//! real child process of this test binary: a skip shows on the child's
//! stderr even with output capture on, lands in the registry of the
//! process that started it, and becomes a failure under
//! `HEARTH_TEST_REQUIRE_ALL=1`.

use std::process::Command;

use crate::skips;

/// Set only for the child run below; otherwise the demo skips nothing.
const DEMO_ENV: &str = "HEARTH_TEST_SKIP_DEMO";

#[test]
fn skip_demo() {
    if std::env::var_os(DEMO_ENV).is_some() {
        skips::skip("the demo reason", "the demo fix");
    }
}

fn run_demo(require_all: bool) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args(["--exact", "skipping::skip_demo", "--test-threads=1"])
        .env(DEMO_ENV, "1")
        .env_remove(skips::REQUIRE_ALL);
    if require_all {
        cmd.env(skips::REQUIRE_ALL, "1");
    }
    cmd.output().expect("run this test binary")
}

#[test]
fn a_skip_is_shown_recorded_and_can_be_forbidden() {
    // This process is the child's parent, so its registry file is ours.
    let key = skips::process_key(std::process::id()).expect("read /proc/self/stat");
    let registry = skips::registry_dir().join(key);
    let _ = std::fs::remove_file(&registry);

    let out = run_demo(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a skip is not a failure: {stderr}");
    assert!(
        stderr.contains("skipped: skipping::skip_demo: the demo reason (the demo fix)"),
        "the skip shows despite output capture: {stderr}"
    );
    let text = std::fs::read_to_string(&registry).expect("the registry file was written");
    let _ = std::fs::remove_file(&registry);
    assert_eq!(
        text,
        "integration\tskipping::skip_demo\tthe demo reason\tthe demo fix\n"
    );

    let out = run_demo(true);
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{} forbids skipping: {all}",
        skips::REQUIRE_ALL
    );
    assert!(
        all.contains("the demo reason") && all.contains("forbids skipping"),
        "{all}"
    );
    let _ = std::fs::remove_file(&registry);
}
