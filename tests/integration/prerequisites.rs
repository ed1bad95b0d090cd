//! The README's prerequisites stay true: its apt line is the one `.ci/run`
//! installs, and it names the package behind every tool a test would
//! otherwise skip without (see `skips`).

use std::collections::BTreeSet;

fn read(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The packages of the README's main `sudo apt-get install -y ...` line
/// (the one with build-essential; an earlier one only fetches curl).
fn readme_apt_line() -> BTreeSet<String> {
    let readme = read("README.md");
    let line = readme
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sudo apt-get install -y "))
        .find(|l| l.contains("build-essential"))
        .expect("the README has a `sudo apt-get install -y build-essential ...` line");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn readme_apt_line_is_what_ci_installs() {
    let ci = read(".ci/run");
    let list = ci
        .lines()
        .find_map(|l| l.strip_prefix("APT_PACKAGES=("))
        .and_then(|l| l.strip_suffix(')'))
        .expect(".ci/run has an APT_PACKAGES=(...) line");
    let ci: BTreeSet<String> = list.split_whitespace().map(str::to_owned).collect();
    assert_eq!(readme_apt_line(), ci, "README.md and .ci/run disagree");
}

#[test]
fn readme_apt_line_covers_what_tests_need() {
    let apt = readme_apt_line();
    // The package behind each tool a test or the build needs.
    for p in [
        "build-essential", // cc for the build and the linker
        "cmake",           // libopus, built from source by the opus crate
        "nodejs",          // the browser test
        "chromium",        // the browser
        "opus-tools",      // opusinfo, opusdec, opusenc
        "openssl",         // openssl verify, an independent certificate check
        "iproute2",        // ip, for the network-namespace tests
        "mosquitto",       // the MQTT broker for the Home Assistant events (DESIGN.md)
        "age",             // decrypts the hub's encrypted backups
    ] {
        assert!(apt.contains(p), "the README's apt line lacks {p}");
    }
    let readme = read("README.md");
    // Debian 12's nodejs is 18; playwright-core needs 20 (and NodeSource's
    // nodejs brings npm, which the browser test runs).
    assert!(
        readme.contains("deb.nodesource.com/setup_20.x"),
        "the README says how to get Node.js 20"
    );
    assert!(
        readme.contains("rustup.rs"),
        "the README says how to get a new enough Rust"
    );
    assert!(
        readme.contains("cargo install --locked garage"),
        "the README says how to get Garage"
    );
}
