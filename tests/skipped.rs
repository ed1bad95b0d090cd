//! The last test target of `cargo test`: prints which tests were skipped
//! on this machine in this run, why, and what makes them run (see
//! `tests/support/skips.rs`). It has no test harness (`harness = false`),
//! so its output is never captured, and cargo runs test targets sorted by
//! name, so `skipped` comes after `integration` and the library's unit
//! tests. Keep it last when adding test targets.

#[path = "support/skips.rs"]
mod skips;

fn main() {
    // `cargo test -- --list` and filters reach every target: stay quiet.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let skipped = skips::take_this_run();
    if skipped.is_empty() {
        println!("\nhearth: no test was skipped in this run.\n");
        return;
    }
    println!(
        "\nhearth: {} check(s) were SKIPPED in this run (their tests still report ok):",
        skipped.len()
    );
    for s in &skipped {
        println!("  {} (in {}): {}", s.test, s.binary, s.reason);
        println!("      to run it: {}", s.fix);
    }
    println!(
        "The README's prerequisites (run as root for the network-namespace tests) make them all run;\n\
         HEARTH_TEST_REQUIRE_ALL=1 turns every skip into a failure.\n"
    );
}
