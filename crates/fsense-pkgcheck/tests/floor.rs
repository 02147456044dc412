//! One minimum Windows everywhere: the INF, the README, the Windows docs and the PowerShell kit
//! state the floor declared next to the import table (`src/imports.rs`), and nothing in them
//! claims another Windows 10 release as the minimum.

use std::path::Path;

use fsense_pkgcheck::floor::check_text;

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

#[test]
fn every_place_that_states_the_minimum_states_the_declared_one() {
    let mut findings = Vec::new();
    // These state the minimum.
    for path in [
        "inf/fsense.inf",
        "README.md",
        "docs/windows.md",
        "windows/Fsense.psm1",
        "windows/Install-Fsense.ps1",
    ] {
        findings.extend(check_text(path, &repo(path), true));
    }
    // These mention Windows releases and must not contradict it.
    for path in [
        "docs/hlk.md",
        "windows/Test-Fsense.ps1",
        "windows/Uninstall-Fsense.ps1",
        "windows/Enable-Verifier.ps1",
        "windows/Measure-Overhead.ps1",
        "crates/fsense-pkgcheck/src/inf.rs",
    ] {
        findings.extend(check_text(path, &repo(path), false));
    }
    assert!(
        findings.is_empty(),
        "{}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
