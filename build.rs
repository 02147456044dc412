//! Link settings that turn the root package's cdylib into a kernel-mode driver image (`fsense.sys`).
//!
//! Only the `*-windows-msvc` target gets them, so host builds (unit tests, the simulator, Miri) are
//! untouched. Two ways in:
//! - default (any host, `rust-lld` from rustup): the flags below, verified on Linux by
//!   `fsense-pkgcheck` (subsystem, entry point, integrity check, NX, ASLR, CET, checksum);
//! - feature `wdk` on a Windows host with the WDK: `wdk-build` emits the WDM driver flags exactly as
//!   windows-drivers-rs users expect (it reads `[package.metadata.wdk.driver-model]`), and we add
//!   only what it leaves out.

use std::env;

/// Driver link flags for `rust-lld` / `link.exe`. `/RELEASE` makes the linker write the PE checksum
/// the kernel loader verifies (lld writes 0 without it); the package step re-checks it anyway.
const DRIVER_LINK_ARGS: &[&str] = &[
    "/NODEFAULTLIB",
    "/DRIVER",
    "/SUBSYSTEM:NATIVE,10.00",
    "/ENTRY:DriverEntry",
    "/BASE:0x140000000",
    "/DYNAMICBASE",
    "/NXCOMPAT",
    "/INTEGRITYCHECK",
    "/OPT:REF,ICF",
    "/RELEASE",
    // Marks the image compatible with kernel-mode hardware-enforced stack protection (shadow
    // stacks), which refuses to load drivers without it; fsense-pkgcheck checks the mark.
    "/CETCOMPAT",
];

/// What `wdk-build` 0.6 does not emit for a WDM driver but our image should have.
#[cfg_attr(not(all(feature = "wdk", windows)), allow(dead_code))]
const EXTRA_WDK_LINK_ARGS: &[&str] = &["/BASE:0x140000000", "/RELEASE", "/CETCOMPAT"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    emit_build_id();

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let driver_target = target_os == "windows" && target_env == "msvc";

    if cfg!(feature = "wdk") {
        configure_wdk(driver_target);
    } else if driver_target {
        emit_driver_link_args(DRIVER_LINK_ARGS);
    }
}

fn emit_driver_link_args(args: &[&str]) {
    for arg in args {
        // Not `rustc-cdylib-link-arg`: `[lib]` declares no cdylib (a host cdylib of this no_std crate
        // could not link), the package step asks for one with `cargo rustc --crate-type cdylib`.
        // Only artefacts linked for the msvc target see these, and the rlib links nothing.
        println!("cargo::rustc-link-arg={arg}");
    }
}

#[cfg(all(feature = "wdk", windows))]
fn configure_wdk(driver_target: bool) {
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        println!("cargo::error=wdk-build could not configure the driver build: {error}");
        return;
    }
    if driver_target {
        emit_driver_link_args(EXTRA_WDK_LINK_ARGS);
    }
}

#[cfg(not(all(feature = "wdk", windows)))]
fn configure_wdk(_driver_target: bool) {
    // The wdk-build crate only exists for Windows hosts (see Cargo.toml); say so instead of failing
    // somewhere deep inside it.
    println!(
        "cargo::error=feature `wdk` needs a Windows host with the WDK (eWDK prompt); \
         on Linux build the package with `cargo make package` (or scripts/package.sh) without it"
    );
}

/// The build id the driver reports in its health messages: `FSENSE_BUILD_ID` if set (32 hex
/// digits at most), else the commit being built, else nothing (zeros).
fn emit_build_id() {
    println!("cargo::rerun-if-env-changed=FSENSE_BUILD_ID");
    println!("cargo::rerun-if-changed=.git/HEAD");
    println!("cargo::rerun-if-changed=.git/refs/heads");
    let id = env::var("FSENSE_BUILD_ID").ok().or_else(|| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    let hex: String = id
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(32)
        .collect();
    println!("cargo::rustc-env=FSENSE_BUILD_ID={hex}");
}
