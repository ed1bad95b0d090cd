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
//!   outdated file only makes the order less complete. `HEARTH_NO_CODE_ORDER=1`
//!   turns it off (for a linker other than LLD).
//! - `HEARTH_LINK_MAP=FILE` writes the hub's link map there (what
//!   `benches/code-order.sh` reads to name the functions it profiled).

use std::env::var;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=packaging/hearth.order");
    println!("cargo:rerun-if-env-changed=HEARTH_NO_CODE_ORDER");
    println!("cargo:rerun-if-env-changed=HEARTH_LINK_MAP");
    let os = var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("packaging/hearth.order");
    let lld_by_default = var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if lld_by_default
        && var("PROFILE").is_ok_and(|p| p == "release")
        && var("HEARTH_NO_CODE_ORDER").is_err()
        && order.is_file()
    {
        println!(
            "cargo:rustc-link-arg-bin=hearth=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=hearth=-Wl,--no-warn-symbol-ordering");
    }
    if let Ok(map) = var("HEARTH_LINK_MAP") {
        println!("cargo:rustc-link-arg-bin=hearth=-Wl,-Map={map}");
    }
}
