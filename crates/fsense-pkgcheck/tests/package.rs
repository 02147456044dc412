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

#[test]
#[ignore = "needs a built package: run `cargo make package-check`"]
fn the_packaged_driver_s_code_reads_within_its_contracts() {
    use fsense_pkgcheck::code;
    let data = std::fs::read(package_dir().join("fsense.sys")).expect("fsense.sys");
    let analysis = code::analyze(&data).expect("the code checks read the image");
    println!("{analysis}");
    assert!(analysis.is_supported());
    // The entry points come from the image itself: the PE entry and the registration's callbacks.
    let names: Vec<&str> = analysis.stacks.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "DriverEntry",
        "FilterUnloadCallback",
        "IRP_MJ_CREATE pre-operation",
        "IRP_MJ_WRITE post-operation",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not found in {names:?}"
        );
    }
    // Whatever the driver does with data imports (none, or the documented loads) and however its
    // frames change, every entry point is bounded and within the budget, and nothing is flagged.
    for entry in &analysis.stacks {
        let bytes = entry.bytes.unwrap_or(u32::MAX);
        assert!(
            bytes <= code::STACK_BUDGET,
            "{} takes {bytes} bytes",
            entry.name
        );
    }
    for data in &analysis.data_uses {
        let (module, name) = data.import.split_once('!').expect("module!name");
        let allowed = code::data_imports::allowed(module, name).expect("allow-listed");
        assert_eq!(data.loads, allowed.loads, "{data:?}");
    }
    assert!(
        analysis.findings.is_empty(),
        "{}",
        analysis
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Builds the driver for `target` with feature `image-probe` (src/ffi/image_probe.rs: PsThreadType
/// read with a third load, and an exported pre-operation-shaped callback with 3 KiB frames in it
/// and in the helper it calls) into its own target directory, and checks that the code checks
/// fail on it.
fn the_image_probe_fails_both_code_checks_for(target: &str) {
    use fsense_pkgcheck::code::{self, CodeFinding};
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("image-probe");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "rustc",
            "--locked",
            "-p",
            "fsense-driver",
            "--lib",
            "--release",
            "--target",
            target,
            "--crate-type",
            "cdylib",
            "--features",
            "image-probe",
            "--target-dir",
        ])
        .arg(&target_dir)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let image = target_dir.join(target).join("release/fsense_driver.dll");
    let analysis = code::analyze(&std::fs::read(&image).expect("probe image")).unwrap();
    println!("{target}:\n{analysis}");
    assert!(analysis.is_supported());
    const PROBE: &str = "fsense_image_probe_pre_operation";
    assert!(
        analysis.findings.iter().any(|finding| matches!(
            finding,
            CodeFinding::DataImportLoads { import, found: 3, expected: 2, function, .. }
                if import == "ntoskrnl.exe!PsThreadType" && function == PROBE
        )),
        "{:?}",
        analysis.findings
    );
    assert!(
        analysis.findings.iter().any(|finding| matches!(
            finding,
            CodeFinding::StackOverBudget { entry, bytes, path, .. }
                if entry == &format!("export {PROBE}") && *bytes > 6 * 1024 && path.len() >= 2
        )),
        "{:?}",
        analysis.findings
    );
}

#[test]
#[ignore = "builds the release driver with the image probe (about 15 s)"]
fn the_image_probe_fails_both_code_checks() {
    the_image_probe_fails_both_code_checks_for("x86_64-pc-windows-msvc");
}

/// The same probe built for ARM64: the A64 reading of both checks fails on it too.
#[test]
#[ignore = "builds the release driver with the image probe for ARM64 (about 15 s)"]
fn the_arm64_image_probe_fails_both_code_checks() {
    the_image_probe_fails_both_code_checks_for("aarch64-pc-windows-msvc");
}

/// The ARM64 image is in the package where the INF's `[SourceDisksFiles.arm64]` puts it, and
/// passes the ARM64 image checks, signed, with a right checksum, and its code reads within the
/// same contracts as the x64 image's (the same entry points, data imports and budget).
#[test]
#[ignore = "needs a built package: run `cargo make package-check`"]
fn the_arm64_driver_is_in_the_package_and_passes_the_image_checks() {
    use fsense_pkgcheck::image::{self, Architecture, ImageRules};
    let dir = package_dir();
    let inf = fsense_pkgcheck::inf::read_inf(&dir.join("fsense.inf")).expect("fsense.inf");
    let images = fsense_pkgcheck::inf::driver_images(&fsense_pkgcheck::inf::parse(&inf).unwrap());
    let arm64 = images
        .iter()
        .find(|image| image.architecture == Architecture::Arm64)
        .expect("the INF installs an ARM64 image");
    assert_eq!(arm64.package_path, "arm64/fsense.sys");
    let path = dir.join(&arm64.package_path);
    let data = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let rules = ImageRules {
        require_signature: true,
        floor: fsense_pkgcheck::imports::DECLARED_FLOOR,
    };
    let violations = image::check_architecture(&data, rules, Architecture::Arm64).unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    assert!(image::has_signature(&data));
    assert_eq!(
        fsense_pkgcheck::checksum::stored(&data).unwrap(),
        fsense_pkgcheck::checksum::compute(&data).unwrap()
    );
    let analysis = fsense_pkgcheck::code::analyze(&data).unwrap();
    println!("{analysis}");
    assert_eq!(analysis.machine, object::pe::IMAGE_FILE_MACHINE_ARM64.0);
    assert!(analysis.is_supported());
    let x64 =
        fsense_pkgcheck::code::analyze(&std::fs::read(dir.join("fsense.sys")).unwrap()).unwrap();
    let names = |analysis: &fsense_pkgcheck::code::Analysis| {
        let mut names: Vec<String> = analysis.stacks.iter().map(|s| s.name.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(
        names(&analysis),
        names(&x64),
        "the same entry points on both"
    );
    let imports = |analysis: &fsense_pkgcheck::code::Analysis| {
        let mut uses: Vec<(String, u32)> = analysis
            .data_uses
            .iter()
            .map(|data| (data.import.clone(), data.loads))
            .collect();
        uses.sort();
        uses
    };
    assert_eq!(
        imports(&analysis),
        imports(&x64),
        "the same data imports on both"
    );
    for entry in &analysis.stacks {
        let bytes = entry.bytes.unwrap_or(u32::MAX);
        assert!(
            bytes <= fsense_pkgcheck::code::STACK_BUDGET,
            "{} takes {bytes} bytes",
            entry.name
        );
    }
    assert!(analysis.findings.is_empty(), "{:?}", analysis.findings);
}
