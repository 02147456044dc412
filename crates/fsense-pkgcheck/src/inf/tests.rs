//! The INF rules, tested against the shipped INF and broken copies of it.

use super::*;

/// The INF the package ships: the rules are tested against it and against broken copies.
const SHIPPED: &str = include_str!("../../../../inf/fsense.inf");

fn findings_after(from: &str, to: &str) -> Vec<String> {
    assert!(
        SHIPPED.contains(from),
        "fixture text `{from}` not in the INF"
    );
    let text = SHIPPED.replacen(from, to, 1);
    lint(&text)
        .expect("still parses")
        .into_iter()
        .map(|finding| finding.message)
        .collect()
}

fn assert_findings(from: &str, to: &str, expected: &str, count: usize) {
    let findings = findings_after(from, to);
    assert!(
        findings.len() == count && findings.iter().all(|finding| finding.contains(expected)),
        "replacing `{from}` by `{to}`: expected {count} finding(s) containing `{expected}`, got {findings:#?}"
    );
}

fn assert_one_finding(from: &str, to: &str, expected: &str) {
    assert_findings(from, to, expected, 1);
}

#[test]
fn the_shipped_inf_passes() {
    assert_eq!(lint(SHIPPED).unwrap(), vec![]);
}

#[test]
fn facts_come_from_the_shipped_inf() {
    let (findings, facts) = lint_parsed(&parse(SHIPPED).unwrap());
    assert!(findings.is_empty());
    let facts = facts.expect("facts");
    assert_eq!(facts.service_name, "fsense");
    assert_eq!(facts.instance_name, "fsense Instance");
    assert!(ALTITUDE_RANGE.contains(&facts.altitude.parse::<u32>().unwrap()));
    assert_eq!(facts.flags, "0x0");
}

#[test]
fn version_section_rules() {
    assert_one_finding(
        "Class       = \"ActivityMonitor\"",
        "Class       = \"AntiVirus\"",
        "Class is `AntiVirus`",
    );
    assert_one_finding(
        "{b86dff51-a31e-4bac-b3cf-e8cfe75c9fc2}",
        "{b1d1a169-c54f-4379-81db-bee7d88d7454}",
        "ClassGuid",
    );
    assert_one_finding("CatalogFile = fsense.cat", "CatalogFile =", "CatalogFile");
    assert_one_finding("PnpLockdown = 1\n", "", "no PnpLockdown");
    assert_one_finding(
        "\"fsense project\"",
        "\"Microsoft\"",
        "must not be Microsoft",
    );
    assert_one_finding("11/25/2026,0.1.0.0", "2026-11-25,0.1.0.0", "DriverVer");
    assert_one_finding("11/25/2026,0.1.0.0", "13/25/2026,0.1.0.0", "DriverVer");
    assert_one_finding("11/25/2026,0.1.0.0", "11/25/2026,0.1", "DriverVer");
    assert_one_finding(
        "Signature   = \"$WINDOWS NT$\"",
        "Signature = \"$CHICAGO$\"",
        "Signature",
    );
}

#[test]
fn primitive_driver_shape_rules() {
    assert_one_finding(
        "[DefaultInstall.NTamd64]\n",
        "[DefaultUninstall.NTamd64]\nLegacyUninstall = 1\n\n[DefaultInstall.NTamd64]\n",
        "DefaultUninstall",
    );
    assert_one_finding(
        "[SourceDisksNames]",
        "[Manufacturer]\n%ProviderName% = Models,NTamd64\n\n[SourceDisksNames]",
        "Manufacturer",
    );
    let undecorated = findings_after("[DefaultInstall.NTamd64]\n", "[DefaultInstall]\n");
    assert!(
        undecorated
            .iter()
            .any(|f| f.contains("architecture-decorated")),
        "{undecorated:?}"
    );
    assert!(
        undecorated
            .iter()
            .any(|f| f.contains("missing section [DefaultInstall.NTamd64]"))
    );
}

#[test]
fn files_go_to_the_driver_store() {
    // Both x64 install sections copy the same list: one finding for its one line.
    assert_one_finding(
        "Fsense.DriverFiles       = 13",
        "Fsense.DriverFiles       = 12",
        "DIRID 12",
    );
    assert_findings(
        "[Fsense.DriverFiles]\nfsense.sys",
        "[Fsense.DriverFiles]\nother.sys",
        "does not copy fsense.sys",
        2,
    );
    assert_one_finding(
        "fsense.sys = 1,,",
        "other.sys = 1,,",
        "[SourceDisksFiles.amd64] (or [SourceDisksFiles]) does not list fsense.sys",
    );
}

#[test]
fn service_rules() {
    assert_one_finding(
        "ServiceType    = 2 ",
        "ServiceType    = 1 ",
        "ServiceType is `1`",
    );
    assert_one_finding(
        "StartType      = 3 ",
        "StartType      = 0 ",
        "StartType is `0`",
    );
    assert_one_finding(
        "ErrorControl   = 1 ",
        "ErrorControl   = 3 ",
        "ErrorControl is `3`",
    );
    assert_one_finding(
        "LoadOrderGroup = \"FSFilter Activity Monitor\"",
        "LoadOrderGroup = \"FSFilter Anti-Virus\"",
        "LoadOrderGroup",
    );
    assert_one_finding("Dependencies   = FltMgr", "", "Dependencies");
    assert_one_finding("%13%\\fsense.sys", "%12%\\fsense.sys", "ServiceBinary");
    assert_findings(
        "ServiceName        = \"fsense\"",
        "ServiceName        = \"fsense2\"",
        "expected `fsense`",
        4,
    );
    // The downlevel section's service is checked as closely.
    assert_one_finding(
        "ErrorControl   = 1                        ; SERVICE_ERROR_NORMAL\nLoadOrderGroup = \"FSFilter Activity Monitor\"\nDependencies   = FltMgr\nAddReg         = Fsense.AddRegistry.Downlevel",
        "ErrorControl   = 3\nLoadOrderGroup = \"FSFilter Activity Monitor\"\nDependencies   = FltMgr\nAddReg         = Fsense.AddRegistry.Downlevel",
        "[Fsense.Service.Downlevel] ErrorControl is `3`",
    );
}

#[test]
fn instance_rules() {
    // One altitude string feeds both instance roots, so each reports it.
    assert_findings(
        "\"385210\"",
        "\"329999\"",
        "outside the FSFilter Activity Monitor range",
        2,
    );
    assert_findings("\"385210\"", "\"390000\"", "outside", 2);
    assert_findings("\"385210\"", "\"high\"", "outside", 2);
    // The legacy root alone is not enough, and the two roots must agree.
    let missing = findings_after(
        "HKR,\"Parameters\\Instances\",\"DefaultInstance\",0x00000000,%DefaultInstance%\n",
        "",
    );
    assert!(
        missing
            .iter()
            .any(|f| f.contains("Parameters\\Instances\\DefaultInstance")),
        "{missing:?}"
    );
    assert_one_finding(
        "HKR,\"Instances\\\"%Instance1.Name%,\"Altitude\",0x00000000,%Instance1.Altitude%",
        "HKR,\"Instances\\\"%Instance1.Name%,\"Altitude\",0x00000000,\"370000\"",
        "disagree",
    );
    assert_one_finding(
        "\"Flags\",0x00010001,%Instance1.Flags%\n\n;;",
        "\"Flags\",0x00000000,%Instance1.Flags%\n\n;;",
        "REG_DWORD",
    );
}

#[test]
fn both_install_sections_are_required() {
    assert_one_finding(
        "[DefaultInstall.NTamd64.10.0...25952]\n",
        "[DefaultInstall.NTamd64.10.0...22000]\n",
        "missing section [DefaultInstall.NTamd64.10.0...25952]",
    );
    let findings = findings_after(
        "[DefaultInstall.NTamd64.Services]\nAddService = %ServiceName%,,Fsense.Service.Downlevel\n",
        "",
    );
    assert!(
        findings
            .iter()
            .any(|f| f.contains("missing section [DefaultInstall.NTamd64.Services]")),
        "{findings:?}"
    );
}

#[test]
fn the_decorated_section_follows_driver_package_isolation() {
    // A value at the service key's root.
    assert_one_finding(
        "[Fsense.AddRegistry]\n",
        "[Fsense.AddRegistry]\nHKR,,\"Tag\",0x00010001,1\n",
        "outside the service's Parameters subkey",
    );
    // Another root key altogether.
    assert_one_finding(
        "[Fsense.AddRegistry]\n",
        "[Fsense.AddRegistry]\nHKLM,\"System\\CurrentControlSet\\Services\\fsense\",\"Tag\",0x00010001,1\n",
        "writes `HKLM,",
    );
    // `ParametersX` is not `Parameters`.
    assert_one_finding(
        "[Fsense.AddRegistry]\n",
        "[Fsense.AddRegistry]\nHKR,\"ParametersX\",\"Tag\",0x00010001,1\n",
        "outside the service's Parameters subkey",
    );
    // The INF before the split: both instance roots in the decorated section.
    let findings = findings_after(
        "HKR,\"Parameters\\Instances\",\"DefaultInstance\"",
        "HKR,\"Instances\",\"DefaultInstance\",0x00000000,%DefaultInstance%\nHKR,\"Parameters\\Instances\",\"DefaultInstance\"",
    );
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].contains("writes `HKR,Instances,DefaultInstance`"));
    // The downlevel section may write at the root: that is where older builds read.
    assert_eq!(
        findings_after(
            "[Fsense.AddRegistry.Downlevel]\n",
            "[Fsense.AddRegistry.Downlevel]\nHKR,,\"Tag\",0x00010001,1\n"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn supported_features_rules() {
    assert_findings(
        "SupportedFeatures  = 0x9",
        "SupportedFeatures  = 0xb",
        "declares OFFLOAD_WRITE",
        2,
    );
    assert_findings(
        "SupportedFeatures  = 0x9",
        "SupportedFeatures  = 0x1",
        "expected 0x9",
        2,
    );
    assert_one_finding(
        "HKR,\"Parameters\",\"SupportedFeatures\",0x00010001",
        "HKR,\"Parameters\",\"SupportedFeatures\",0x00000000",
        "SupportedFeatures must be a REG_DWORD",
    );
    assert_one_finding(
        "HKR,\"Parameters\",\"SupportedFeatures\",0x00010001,%SupportedFeatures%\n",
        "",
        "sets no SupportedFeatures under Parameters",
    );
    assert_one_finding(
        "HKR,,\"SupportedFeatures\",0x00010001,%SupportedFeatures%\n",
        "",
        "sets no SupportedFeatures under the service key",
    );
}

#[test]
fn settings_go_under_parameters_as_dwords() {
    assert_one_finding(
        "HKR,\"Parameters\",\"QueueCapacity\",0x00010001,%QueueCapacity%\nHKR,\"Instances\"",
        "HKR,,\"QueueCapacity\",0x00010001,%QueueCapacity%\nHKR,\"Instances\"",
        "the driver reads it from Parameters",
    );
    assert_one_finding(
        "HKR,\"Parameters\",\"QueueCapacity\",0x00010001,%QueueCapacity%\nHKR,\"Parameters",
        "HKR,\"Parameters\",\"BatchRecords\",0x00000000,\"many\"\nHKR,\"Parameters",
        "BatchRecords must be a REG_DWORD number",
    );
}

#[test]
fn undefined_strings_are_reported() {
    assert_one_finding(
        "ProviderName       = \"fsense project\"\n",
        "",
        "%ProviderName% is not defined",
    );
}

#[test]
fn parser_handles_quotes_comments_and_continuations() {
    let inf = parse(
        "[A]\nkey = \"semi;colon\", two ; comment\nlong = first,\\\n  second\nHKR,\"a\\\"%s%,\"x\"\"y\"\n[Strings]\ns = \"sub\"\n",
    )
    .unwrap();
    let section = inf.section("a").unwrap();
    assert_eq!(section.entries[0].fields, vec!["semi;colon", "two"]);
    assert_eq!(section.entries[1].fields, vec!["first", "second"]);
    assert_eq!(section.entries[1].line, 3);
    assert_eq!(section.entries[2].fields, vec!["HKR", "a\\sub", "x\"y"]);
    assert!(inf.undefined_strings.is_empty());
}

#[test]
fn syntax_errors_are_errors() {
    assert!(matches!(
        parse("key = value\n"),
        Err(InfError::Syntax { line: 1, .. })
    ));
    assert!(matches!(
        parse("[Version\n"),
        Err(InfError::Syntax { line: 1, .. })
    ));
}

proptest::proptest! {
    #[test]
    fn never_panics(text in "[\\[\\]=,;\"%\\\\a-zA-Z0-9 \\n]{0,300}") {
        if let Ok(inf) = parse(&text) {
            let _ = lint_parsed(&inf);
        }
    }
}

/// The INF without its NTarm64 sections: what it was before issue 30.
fn without_arm64() -> String {
    let mut text = String::new();
    let mut skipping = false;
    for line in SHIPPED.lines() {
        if let Some(name) = line.strip_prefix('[') {
            let lower = name.to_ascii_lowercase();
            skipping = lower.contains("ntarm64")
                || lower.contains(".arm64")
                || lower.starts_with("fsense.service.arm64");
        }
        if !skipping && !line.starts_with("Fsense.DriverFiles.Arm64") {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn messages(text: &str) -> Vec<String> {
    lint(text)
        .expect("still parses")
        .into_iter()
        .map(|finding| finding.message)
        .collect()
}

#[test]
fn an_inf_without_ntarm64_sections_fails() {
    let findings = messages(&without_arm64());
    for expected in [
        "missing section [DefaultInstall.NTarm64.10.0...25952]",
        "missing section [DefaultInstall.NTarm64]",
        "[SourceDisksFiles.arm64] (or [SourceDisksFiles]) does not list fsense.sys",
    ] {
        assert!(
            findings.iter().any(|f| f.contains(expected)),
            "expected `{expected}` in {findings:#?}"
        );
    }
    // Only one of the split's NTarm64 sections is not enough either.
    let findings = findings_after(
        "[DefaultInstall.NTarm64]\n",
        "[DefaultInstall.NTarm64.10.0...22000]\n",
    );
    assert!(
        findings
            .iter()
            .any(|f| f == "missing section [DefaultInstall.NTarm64]"),
        "{findings:#?}"
    );
}

#[test]
fn each_architecture_installs_its_own_image() {
    let images = driver_images(&parse(SHIPPED).unwrap());
    let paths: Vec<(&str, &str)> = images
        .iter()
        .map(|image| (image.architecture.name(), image.package_path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [("AMD64", "fsense.sys"), ("ARM64", "arm64/fsense.sys")]
    );
    // An undecorated [SourceDisksFiles] would hand the x64 image to both.
    let shared = SHIPPED
        .replacen("\n[SourceDisksFiles.amd64]\n", "\n[SourceDisksFiles]\n", 1)
        .replacen("[SourceDisksFiles.arm64]\nfsense.sys = 1,arm64", "", 1);
    let findings = messages(&shared);
    assert!(
        findings
            .iter()
            .any(|f| f.contains("AMD64 and ARM64 both install the package's fsense.sys")),
        "{findings:#?}"
    );
    // The ARM64 service must run the ARM64 image.
    assert_findings(
        "ServiceBinary  = %13%\\arm64\\fsense.sys",
        "ServiceBinary  = %13%\\fsense.sys",
        "ServiceBinary is `%13%\\fsense.sys`, expected `%13%\\arm64\\fsense.sys`",
        1,
    );
    // A file run from the driver store keeps its source subdir.
    assert_one_finding(
        "Fsense.DriverFiles.Arm64 = 13,arm64",
        "Fsense.DriverFiles.Arm64 = 13",
        "a file run from the driver store keeps its SourceDisksFiles subdir",
    );
    // The ARM64 list copying nothing is reported for both ARM64 sections.
    assert_findings(
        "[Fsense.DriverFiles.Arm64]\nfsense.sys",
        "[Fsense.DriverFiles.Arm64]\nother.sys",
        "does not copy fsense.sys",
        2,
    );
}

#[test]
fn both_architectures_install_the_same_service() {
    // ARM64 with its own copy of the registry section, one setting changed.
    let start = SHIPPED.find("\n[Fsense.AddRegistry]\n").unwrap() + 1;
    let end = start + SHIPPED[start..].find("\n\n").unwrap();
    let copy = SHIPPED[start..end]
        .replace("[Fsense.AddRegistry]", "[Fsense.AddRegistry.Arm64]")
        .replace("%QueueCapacity%", "1024");
    assert_one_finding(
        "AddReg         = Fsense.AddRegistry\n\n;;; Flags 0",
        &format!("AddReg         = Fsense.AddRegistry.Arm64\n\n{copy}\n\n;;; Flags 0"),
        "the AddReg content of [Fsense.Service.Arm64]",
    );
    let findings = findings_after(
        "ServiceBinary  = %13%\\arm64\\fsense.sys\n",
        "ServiceBinary  = %13%\\arm64\\fsense.sys\nLoadOrderGroupPriority = 1\n",
    );
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(findings[0].contains("differs from [Fsense.Service] (service of [DefaultInstall.NTamd64.10.0...25952]) in more than ServiceBinary"));
}
