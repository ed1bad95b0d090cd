//! Build script: links Hearth's binaries with packed relative relocations
//! (`-z pack-relative-relocs`, DT_RELR) on GNU/Linux. A position-independent
//! executable otherwise carries one 24-byte record for every pointer the
//! loader must adjust at start: about half a megabyte of the hub's binary
//! (issue 14, BENCHMARKS.md (m)). Needs glibc 2.36 and binutils 2.38 or newer
//! (Debian 12 and Raspberry Pi OS 12 have both); an older GNU ld ignores the
//! option with a warning and links as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
