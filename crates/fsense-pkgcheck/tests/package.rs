//! The checker over a real package built by `cargo make package` (or `bash scripts/package.sh`).
//!
//! Ignored by default because it needs the package: `cargo make package-check` builds it and runs
//! this with `--ignored` and `FSENSE_PACKAGE_DIR` set. Run by hand:
//! `FSENSE_PACKAGE_DIR=target/package cargo test -p fsense-pkgcheck --test package -- --ignored`.
//! Without `FSENSE_PACKAGE_DIR` the test fails instead of passing vacuously.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn package_dir() -> PathBuf {
    let dir = std::env::var_os("FSENSE_PACKAGE_DIR")
        .map(PathBuf::from)
        .expect("FSENSE_PACKAGE_DIR must name the built package directory (e.g. target/package)");
    // Relative paths are relative to the workspace root, where cargo make runs.
    if dir.is_relative() {
        workspace_root().join(dir)
    } else {
        dir
    }
}

#[test]
#[ignore = "needs a built package: run `cargo make package-check`"]
fn the_built_package_passes_every_check() {
    let dir = package_dir();
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
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
