//! Build script: link settings for Hearth's binaries (issue 14).
//!
//! - Packed relative relocations (`-z pack-relative-relocs`, DT_RELR) on
//!   GNU/Linux. A position-independent executable otherwise carries one
//!   24-byte record for every pointer the loader must adjust at start: about
//!   half a megabyte of the hub's binary (BENCHMARKS.md (m)). Needs glibc 2.36
//!   and binutils 2.38 or newer (Debian 12 and Raspberry Pi OS 12 have both);
//!   an older GNU ld ignores the option with a warning and links as before.
//! - The hub's code in the order it runs (`packaging/hearth.order`, written by
//!   `benches/code-order.sh` from a profile of a household's workload): a
//!   release build of `hearth` for x86-64 GNU/Linux, where rustc links with
//!   LLD, places the functions a running hub uses next to each other, so that
//!   fewer pages of the executable become resident (BENCHMARKS.md (o)).
//!   Symbols the file names that the build does not have are skipped, so an
//!   outdated file only makes the order less complete. Left out where the
//!   linker may not be LLD: Rust before 1.90 (GNU ld by default), any link
//!   option in `RUSTFLAGS`, or a linker in `CARGO_TARGET_<triple>_LINKER`;
//!   `BUILD_HEARTH_NO_CODE_ORDER=1` turns it off by hand.
//! - `BUILD_HEARTH_LINK_MAP=FILE` writes the hub's link map there (what
//!   `benches/code-order.sh` reads to name the functions it profiled).
//!
//! The build's variables do not start with `HEARTH_`: the hub refuses
//! unknown `HEARTH_*` variables, and these may still be set when it runs.

use std::env::var;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=packaging/hearth.order");
    println!("cargo:rerun-if-env-changed=BUILD_HEARTH_NO_CODE_ORDER");
    println!("cargo:rerun-if-env-changed=BUILD_HEARTH_LINK_MAP");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let os = var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("packaging/hearth.order");
    if links_with_lld()
        && var("PROFILE").is_ok_and(|p| p == "release")
        && var("BUILD_HEARTH_NO_CODE_ORDER").is_err()
        && order.is_file()
    {
        println!(
            "cargo:rustc-link-arg-bin=hearth=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=hearth=-Wl,--no-warn-symbol-ordering");
    }
    if let Ok(map) = var("BUILD_HEARTH_LINK_MAP") {
        println!("cargo:rustc-link-arg-bin=hearth=-Wl,-Map={map}");
    }
}

/// Whether rustc links this build with its own LLD: the default for
/// x86-64 GNU/Linux since Rust 1.90, unless a linker is chosen.
fn links_with_lld() -> bool {
    if var("TARGET").ok().as_deref() != Some("x86_64-unknown-linux-gnu")
        || var("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_ok()
        || var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"))
    {
        return false;
    }
    let rustc = var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .lines()
        .find_map(|l| l.strip_prefix("release: 1."))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
