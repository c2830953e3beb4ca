//! Link options for the `herald` binary only (not its tests or benches): on Linux with glibc,
//! its relative relocations are packed (`-z pack-relative-relocs`, DT_RELR).
//!
//! The binary is position-independent, so every pointer in its read-only data (vtables, string
//! tables: 2 MB of `.data.rel.ro`) is fixed up by the loader at start, from one 24-byte record
//! each in `.rela.dyn`. Those 2.2 MB of records were read once and then stayed in the daemon's
//! resident memory for good; packed, they take 34 KB, and the daemon's peak RSS in the embedded
//! bench is about 2 MB lower, for the same emails a second (BENCHMARKS.md, "One file: memory").
//! Needs binutils 2.38 or lld 15 to link and glibc 2.36 to run (Debian bookworm, the
//! Dockerfile's images, has both); an older linker ignores the option with a warning.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
