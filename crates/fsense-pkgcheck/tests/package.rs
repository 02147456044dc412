//! The checker over a real package built by `cargo make package` (or `bash scripts/package.sh`).
//!
//! Ignored by default because it needs the package: `cargo make package-check` (or
//! `scripts/test.sh`) builds it, then runs this with `--ignored`. The package is looked for in
//! `FSENSE_PACKAGE_DIR`, else `$CARGO_TARGET_DIR/package`, else `target/package`; when it is not
//! there the test fails instead of passing vacuously.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `scripts/package.sh` writes the package, unless `FSENSE_PACKAGE_DIR` says otherwise.
fn package_dir() -> PathBuf {
    let dir = std::env::var_os("FSENSE_PACKAGE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|target| PathBuf::from(target).join("package"))
        })
        .unwrap_or_else(|| PathBuf::from("target/package"));
    // Relative paths are relative to the workspace root, where cargo make runs.
    let dir = if dir.is_relative() {
        workspace_root().join(dir)
    } else {
        dir
    };
    assert!(
        dir.join("fsense.sys").is_file(),
        "no package in {}: build it first (`cargo make package`) or set FSENSE_PACKAGE_DIR",
        dir.display()
    );
    dir
}

#[test]
#[ignore = "needs a built package: run `cargo make package-check`"]
fn the_built_package_passes_every_check() {
    let dir = package_dir();
    let findings = fsense_pkgcheck::package::check(&dir, Some(&workspace_root().join("windows")))
        .expect("package readable");
    assert!(
        findings.is_empty(),
        "{}:\n{}",
        dir.display(),
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
#[ignore = "needs a built package: run `cargo make package-check`"]
fn the_packaged_driver_is_signed_and_its_checksum_is_right() {
    let data = std::fs::read(package_dir().join("fsense.sys")).expect("fsense.sys");
    assert!(fsense_pkgcheck::image::has_signature(&data));
    assert_eq!(
        fsense_pkgcheck::checksum::stored(&data),
        fsense_pkgcheck::checksum::compute(&data)
    );
}
