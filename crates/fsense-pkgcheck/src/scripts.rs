//! Checks the PowerShell kit under `windows/` against the package: every script exists and is
//! strict (StrictMode, stop on error, elevation check), names only files the package build
//! produces, and loads the service (and instance) the INF installs.
//!
//! The scripts share one module, `Fsense.psm1`: it holds the INF's names, the minimum Windows
//! build and the helpers (elevation, native commands, filter and package checks). Each script must
//! import it and must not define its own copy of a function the module provides; the module's
//! names must match the INF and its `$MinimumBuild` the declared floor (`imports.rs`).

use std::path::Path;

use crate::imports::DECLARED_FLOOR;
use crate::inf::{self, MinifilterFacts};
use crate::{Finding, PACKAGE_FILES};

/// The module every script imports.
pub const MODULE: &str = "Fsense.psm1";

pub const REQUIRED_SCRIPTS: &[&str] = &[
    "Install-Fsense.ps1",
    "Test-Fsense.ps1",
    "Enable-Verifier.ps1",
    "Measure-Overhead.ps1",
    "Uninstall-Fsense.ps1",
];

/// Windows' own files a script may name (e.g. checking that the Filter Manager is there).
const SYSTEM_FILES: &[&str] = &["fltmgr.sys"];

/// Extensions of package-like files: a script naming one must name one the build produces.
const PACKAGE_EXTENSIONS: &[&str] = &["sys", "inf", "cer", "cat", "pfx", "exe"];

#[derive(Debug, thiserror::Error)]
pub enum ScriptsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Inf(#[from] inf::InfError),
}

/// Checks every required script in `dir` against the INF text.
pub fn check_dir(dir: &Path, inf_text: &str) -> Result<Vec<Finding>, ScriptsError> {
    let mut scripts = Vec::new();
    let mut findings = Vec::new();
    for name in REQUIRED_SCRIPTS.iter().chain([&MODULE]) {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => scripts.push((name.to_string(), text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                findings.push(Finding::new(*name, "missing"));
            }
            Err(source) => {
                return Err(ScriptsError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    findings.extend(check_scripts(&scripts, inf_text)?);
    findings.extend(crate::agent_service::check(&scripts));
    Ok(findings)
}

/// Checks (file name, text) pairs against the INF text.
pub fn check_scripts(
    scripts: &[(String, String)],
    inf_text: &str,
) -> Result<Vec<Finding>, ScriptsError> {
    let parsed = inf::parse(inf_text)?;
    let (inf_findings, facts) = inf::lint_parsed(&parsed);
    let mut findings = Vec::new();
    let Some(facts) = facts else {
        findings.push(Finding::new(
            "fsense.inf",
            format!(
                "the INF does not define the service and instances cleanly ({} findings), so the scripts cannot be checked against it",
                inf_findings.len()
            ),
        ));
        return Ok(findings);
    };
    let module = scripts
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(MODULE));
    let provided = match module {
        Some((_, text)) => {
            check_module(text, &facts, &mut findings);
            check_driver_images(text, &inf::driver_images(&parsed), &mut findings);
            function_names(&code_lines(text))
        }
        None => Vec::new(),
    };
    for (name, text) in scripts {
        if !name.eq_ignore_ascii_case(MODULE) {
            check_script(name, text, &facts, &provided, &mut findings);
        }
    }
    Ok(findings)
}

/// The module's `$DriverImages` must name each architecture's image where the INF takes it from
/// (`amd64 = 'fsense.sys'`, `arm64 = 'arm64\fsense.sys'`): the installer picks one by the machine.
fn check_driver_images(text: &str, images: &[inf::DriverSource], findings: &mut Vec<Finding>) {
    let code = code_lines(text);
    let entries: Vec<String> = code
        .lines()
        .map(|line| {
            line.split_whitespace()
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .collect();
    for image in images {
        let key = inf::source_extension(image.architecture);
        let path = image.package_path.replace('/', "\\");
        let wanted = format!("{key}='{path}'").to_ascii_lowercase();
        if !entries.contains(&wanted) {
            findings.push(Finding::new(
                MODULE,
                format!(
                    "$DriverImages does not give `{key} = '{path}'`, where the INF installs the {} \
                     image from",
                    image.architecture.name()
                ),
            ));
        }
    }
}

/// The module: strict, the INF's names, the declared floor, and the helpers scripts rely on.
fn check_module(text: &str, facts: &MinifilterFacts, findings: &mut Vec<Finding>) {
    let code = code_lines(text);
    let lower = code.to_ascii_lowercase();
    if !lower.contains("set-strictmode -version latest") {
        findings.push(Finding::new(
            MODULE,
            "does not call `Set-StrictMode -Version Latest`",
        ));
    }
    check_common(MODULE, &code, facts, findings);
    check_assignment(
        MODULE,
        &code,
        "ServiceName",
        &facts.service_name,
        true,
        findings,
    );
    check_assignment(MODULE, &code, "Altitude", &facts.altitude, true, findings);
    check_assignment(
        MODULE,
        &code,
        "InstanceName",
        &facts.instance_name,
        true,
        findings,
    );
    let floor = DECLARED_FLOOR.build.to_string();
    check_assignment(MODULE, &code, "MinimumBuild", &floor, true, findings);
    let features = format!("{:#x}", inf::SUPPORTED_FEATURES);
    check_assignment(
        MODULE,
        &code,
        "SupportedFeatures",
        &features,
        true,
        findings,
    );
    if !text.contains(&DECLARED_FLOOR.phrase()) {
        findings.push(Finding::new(
            MODULE,
            format!(
                "does not state the minimum Windows, `{}`",
                DECLARED_FLOOR.phrase()
            ),
        ));
    }
    let functions = function_names(&code);
    for required in ["Assert-Elevated", "Assert-SupportedWindows"] {
        if !functions.iter().any(|f| f.eq_ignore_ascii_case(required)) {
            findings.push(Finding::new(
                MODULE,
                format!("does not define `{required}`"),
            ));
        }
    }
    if !lower.contains("[security.principal.windowsbuiltinrole]::administrator") {
        findings.push(Finding::new(
            MODULE,
            "Assert-Elevated does not check the Administrator role",
        ));
    }
    if !lower.contains("$minimumbuild") || !lower.contains("osversion.version.build") {
        findings.push(Finding::new(
            MODULE,
            "Assert-SupportedWindows does not compare the Windows build with $MinimumBuild",
        ));
    }
}

fn check_script(
    name: &str,
    text: &str,
    facts: &MinifilterFacts,
    provided: &[String],
    findings: &mut Vec<Finding>,
) {
    let code = code_lines(text);
    let lower = code.to_ascii_lowercase();
    if !lower.contains("set-strictmode -version latest") {
        findings.push(Finding::new(
            name,
            "does not call `Set-StrictMode -Version Latest`",
        ));
    }
    if !(lower.contains("$erroractionpreference = 'stop'")
        || lower.contains("$erroractionpreference = \"stop\""))
    {
        findings.push(Finding::new(
            name,
            "does not set `$ErrorActionPreference = 'Stop'`",
        ));
    }
    let imports_module = lower
        .lines()
        .any(|line| line.contains("import-module") && line.contains(&MODULE.to_ascii_lowercase()));
    if !imports_module {
        findings.push(Finding::new(
            name,
            format!(
                "does not import {MODULE} (Import-Module (Join-Path $PSScriptRoot '{MODULE}'))"
            ),
        ));
    }
    let checks_elevation = text
        .to_ascii_lowercase()
        .contains("#requires -runasadministrator")
        || lower.contains("[security.principal.windowsbuiltinrole]::administrator")
        || (imports_module && calls(&lower, "assert-elevated"));
    if !checks_elevation {
        findings.push(Finding::new(name, "does not check that it runs elevated"));
    }
    if !lower.contains("exit 1") && !lower.contains("throw") {
        findings.push(Finding::new(
            name,
            "has no failure exit (`exit 1` or `throw`)",
        ));
    }
    for function in function_names(&code) {
        if provided.iter().any(|p| p.eq_ignore_ascii_case(&function)) {
            findings.push(Finding::new(
                name,
                format!(
                    "defines `{function}`, which {MODULE} provides: use the module's, not a copy"
                ),
            ));
        }
    }
    let is_installer = name.eq_ignore_ascii_case("Install-Fsense.ps1");
    if is_installer && !calls(&lower, "get-machinearchitecture") {
        findings.push(Finding::new(
            name,
            "does not call Get-MachineArchitecture (the driver image must be the machine's: x64 or ARM64)",
        ));
    }
    if is_installer && !calls(&lower, "assert-supportedwindows") {
        findings.push(Finding::new(
            name,
            format!(
                "does not call Assert-SupportedWindows (refuse Windows older than {})",
                DECLARED_FLOOR.phrase()
            ),
        ));
    }

    check_common(name, &code, facts, findings);
    // Names the module provides need not be repeated; a script that defines them anyway is held
    // to the INF like the module.
    let uses_service =
        lower.contains("fltmc") || lower.contains("sc.exe") || lower.contains("$servicename");
    check_assignment(
        name,
        &code,
        "ServiceName",
        &facts.service_name,
        uses_service && !imports_module,
        findings,
    );
    let installer_needs = is_installer && !imports_module;
    check_assignment(
        name,
        &code,
        "Altitude",
        &facts.altitude,
        installer_needs,
        findings,
    );
    check_assignment(
        name,
        &code,
        "InstanceName",
        &facts.instance_name,
        installer_needs,
        findings,
    );
}

/// Checks for scripts and module alike: file names the package has, fltmc on the INF's service.
fn check_common(name: &str, code: &str, facts: &MinifilterFacts, findings: &mut Vec<Finding>) {
    for file in file_names(code) {
        let known = PACKAGE_FILES
            .iter()
            .chain(SYSTEM_FILES)
            .any(|known| known.eq_ignore_ascii_case(&file));
        // Other .exe names are tools (fltmc.exe, verifier.exe, diskspd.exe); only ours must match.
        let ours_or_package_like = !file.to_ascii_lowercase().ends_with(".exe")
            || file.to_ascii_lowercase().starts_with("fsense");
        if !known && ours_or_package_like {
            findings.push(Finding::new(
                name,
                format!("names `{file}`, which the package does not contain"),
            ));
        }
    }
    for (verb, target) in fltmc_targets(code) {
        let matches = target.eq_ignore_ascii_case("$ServiceName")
            || target.eq_ignore_ascii_case(&facts.service_name);
        if !matches {
            findings.push(Finding::new(
                name,
                format!(
                    "`fltmc {verb} {target}` does not name the INF's service `{}`",
                    facts.service_name
                ),
            ));
        }
    }
}

/// Whether `lower` (lower-cased code) uses `command` as a word (a call, not a definition).
fn calls(lower: &str, command: &str) -> bool {
    lower.lines().any(|line| {
        let line = line.trim();
        !line.starts_with("function ")
            && line
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .any(|word| word == command)
    })
}

/// Names of the functions `code` defines (`function Name` at the start of a line).
fn function_names(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let rest = line.trim_start();
            let rest = rest
                .get(..9)
                .filter(|head| head.eq_ignore_ascii_case("function "))
                .map(|_| &rest[9..])?;
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The script without `#` comments (but keeping `#Requires`, which is handled separately).
fn code_lines(text: &str) -> String {
    let mut out = String::new();
    let mut in_block_comment = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if in_block_comment {
            if trimmed.contains("#>") {
                in_block_comment = false;
            }
            continue;
        }
        if trimmed.starts_with("<#") {
            in_block_comment = !trimmed.contains("#>");
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Words that look like file names with a package-like extension.
fn file_names(code: &str) -> Vec<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let mut names = Vec::new();
    let mut start = 0;
    for (at, c) in code.char_indices().chain([(code.len(), ' ')]) {
        if is_name_char(c) {
            continue;
        }
        let word = &code[start..at];
        // `$PackageFiles.Inf` is a variable's member, not a file name.
        let is_variable = code[..start].ends_with('$');
        start = at + c.len_utf8();
        if is_variable {
            continue;
        }
        let word = word.trim_matches('.');
        let Some((stem, extension)) = word.rsplit_once('.') else {
            continue;
        };
        if stem.is_empty() || !stem.chars().any(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        if PACKAGE_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(extension))
        {
            names.push(word.to_string());
        }
    }
    names
}

/// `$Name = 'value'` must equal `expected`; `required` says whether the script must define it.
fn check_assignment(
    script: &str,
    code: &str,
    variable: &str,
    expected: &str,
    required: bool,
    findings: &mut Vec<Finding>,
) {
    let prefix = format!("${variable}").to_ascii_lowercase();
    let mut found = false;
    for line in code.lines() {
        let trimmed = line.trim();
        let Some(rest) = trimmed
            .get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(&prefix))
            .map(|_| &trimmed[prefix.len()..])
        else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        found = true;
        let value = value.trim().trim_matches(['\'', '"']);
        if value != expected {
            findings.push(Finding::new(
                script,
                format!("${variable} is `{value}`, but the INF says `{expected}`"),
            ));
        }
    }
    if required && !found {
        findings.push(Finding::new(
            script,
            format!("does not define ${variable} (the INF's is `{expected}`)"),
        ));
    }
}

/// (verb, first argument) of every `fltmc load|unload|attach|detach|instances -f` call.
fn fltmc_targets(code: &str) -> Vec<(String, String)> {
    let mut targets = Vec::new();
    for line in code.lines() {
        // `Invoke-Native 'fltmc.exe' @('load', $ServiceName)` reads as `fltmc.exe load $ServiceName`.
        let line: String = line
            .chars()
            .map(|c| {
                if matches!(c, '\'' | '"' | '@' | '(' | ')' | ',') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let words: Vec<&str> = line.split_whitespace().collect();
        for (index, word) in words.iter().enumerate() {
            let command = word.trim_start_matches('&').to_ascii_lowercase();
            if command != "fltmc" && command != "fltmc.exe" {
                continue;
            }
            let Some(verb) = words.get(index + 1).map(|verb| verb.to_ascii_lowercase()) else {
                continue;
            };
            if !matches!(verb.as_str(), "load" | "unload" | "attach" | "detach") {
                continue;
            }
            if let Some(target) = words.get(index + 2) {
                targets.push((verb, target.trim_end_matches(';').to_string()));
            }
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: &str = include_str!("../../../inf/fsense.inf");

    fn shipped() -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../windows");
        REQUIRED_SCRIPTS
            .iter()
            .chain([&MODULE])
            .map(|name| {
                let text = std::fs::read_to_string(dir.join(name))
                    .unwrap_or_else(|error| panic!("windows/{name}: {error}"));
                (name.to_string(), text)
            })
            .collect()
    }

    fn findings_after(script: &str, from: &str, to: &str) -> Vec<String> {
        let mut scripts = shipped();
        let entry = scripts
            .iter_mut()
            .find(|(name, _)| name == script)
            .expect("script");
        assert!(entry.1.contains(from), "`{from}` not in {script}");
        entry.1 = entry.1.replacen(from, to, 1);
        check_scripts(&scripts, INF)
            .unwrap()
            .into_iter()
            .map(|finding| finding.to_string())
            .collect()
    }

    fn assert_one(script: &str, from: &str, to: &str, expected: &str) {
        let findings = findings_after(script, from, to);
        assert!(
            findings.len() == 1 && findings[0].contains(expected),
            "{script}: `{from}` -> `{to}`: expected one finding with `{expected}`, got {findings:#?}"
        );
    }

    #[test]
    fn the_shipped_scripts_pass() {
        let findings = check_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../windows"),
            INF,
        )
        .unwrap();
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn a_missing_script_is_reported() {
        let dir =
            std::env::temp_dir().join(format!("fsense-pkgcheck-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let findings = check_dir(&dir, INF).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(findings.len(), REQUIRED_SCRIPTS.len() + 1);
        assert!(findings.iter().all(|finding| finding.message == "missing"));
        assert!(findings.iter().any(|finding| finding.subject == MODULE));
    }

    #[test]
    fn strictness_rules() {
        assert_one(
            "Test-Fsense.ps1",
            "Set-StrictMode -Version Latest",
            "",
            "Set-StrictMode",
        );
        assert_one(
            "Uninstall-Fsense.ps1",
            "$ErrorActionPreference = 'Stop'",
            "",
            "ErrorActionPreference",
        );
        // Elevation: the script calls the module's check, and the module's check is real.
        assert_one(
            "Enable-Verifier.ps1",
            "    Assert-Elevated\n",
            "",
            "does not check that it runs elevated",
        );
        assert_one(
            MODULE,
            "[Security.Principal.WindowsBuiltInRole]::Administrator",
            "[Security.Principal.WindowsBuiltInRole]::User",
            "does not check the Administrator role",
        );
    }

    #[test]
    fn every_script_imports_the_module_instead_of_copying_it() {
        let findings = findings_after(
            "Uninstall-Fsense.ps1",
            "Import-Module (Join-Path $PSScriptRoot 'Fsense.psm1') -Force",
            "",
        );
        // Without the module the script neither checks elevation nor names its service.
        assert!(
            findings
                .iter()
                .any(|f| f.contains("does not import Fsense.psm1")),
            "{findings:#?}"
        );
        assert!(findings.iter().any(|f| f.contains("elevated")));
        assert!(
            findings
                .iter()
                .any(|f| f.contains("does not define $ServiceName"))
        );
        assert_one(
            "Test-Fsense.ps1",
            "function Start-Watch(",
            "function Invoke-Native { }\n\nfunction Start-Watch(",
            "defines `Invoke-Native`, which Fsense.psm1 provides",
        );
    }

    #[test]
    fn the_module_holds_the_declared_floor() {
        assert_one(
            MODULE,
            "$MinimumBuild = 19041",
            "$MinimumBuild = 18362",
            "$MinimumBuild is `18362`, but the INF says `19041`",
        );
        assert_one(
            MODULE,
            "Windows 10 version 2004 (build 19041). The driver",
            "Windows 10. The driver",
            "does not state the minimum Windows",
        );
        assert_one(
            "Install-Fsense.ps1",
            "    Assert-SupportedWindows\n",
            "",
            "does not call Assert-SupportedWindows",
        );
        assert_one(
            MODULE,
            "$SupportedFeatures = 0x9",
            "$SupportedFeatures = 0x3",
            "$SupportedFeatures is `0x3`",
        );
    }

    #[test]
    fn foreign_file_names_are_reported() {
        assert_one(
            "Install-Fsense.ps1",
            "fsense.sys'",
            "fsense-test.sys'",
            "fsense-test.sys",
        );
        assert_one(MODULE, "'fsense.exe'", "'fsensed.exe'", "fsensed.exe");
    }

    #[test]
    fn the_installer_picks_the_machines_image_as_the_inf_places_it() {
        assert_one(
            MODULE,
            "arm64 = 'arm64\\fsense.sys'",
            "arm64 = 'fsense.sys'",
            "$DriverImages does not give `arm64 = 'arm64\\fsense.sys'`",
        );
        assert_one(
            MODULE,
            "amd64 = 'fsense.sys'",
            "amd64 = 'amd64\\fsense.sys'",
            "where the INF installs the AMD64 image from",
        );
        assert_one(
            "Install-Fsense.ps1",
            "$architecture = Get-MachineArchitecture",
            "$architecture = 'amd64'",
            "does not call Get-MachineArchitecture",
        );
    }

    #[test]
    fn the_service_name_must_match_the_inf() {
        assert_one(
            MODULE,
            "$ServiceName = 'fsense'",
            "$ServiceName = 'fsensor'",
            "`fsensor`",
        );
        assert_one(
            "Install-Fsense.ps1",
            "@('load', $ServiceName)",
            "@('load', 'minispy')",
            "fltmc load minispy",
        );
        // A script that sets its own anyway is held to the INF too.
        assert_one(
            "Uninstall-Fsense.ps1",
            "function Main {",
            "$ServiceName = 'fsensor'\nfunction Main {",
            "`fsensor`",
        );
    }

    #[test]
    fn the_altitude_must_match_the_inf() {
        assert_one(
            MODULE,
            "$Altitude = '385210'",
            "$Altitude = '370000'",
            "Altitude",
        );
    }

    #[test]
    fn file_names_ignore_tools_and_numbers() {
        let names = file_names(
            "fltmc.exe load x; & $Dir\\fsense.exe watch; copy fsense.sys; 1.5.cat; verifier.exe; $PackageFiles.Inf",
        );
        assert_eq!(
            names,
            vec!["fltmc.exe", "fsense.exe", "fsense.sys", "verifier.exe"]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(function |Import-Module |\\$[A-Za-z]{1,12}|[A-Za-z.]{1,12}| = |'|\n|#|<#|#>|fltmc |\\PC){0,60}") {
            let kit = [
                (MODULE.to_string(), text.clone()),
                ("Install-Fsense.ps1".to_string(), text),
            ];
            let _ = check_scripts(&kit, INF).unwrap();
        }
    }
}
