//! Checks the PowerShell kit under `windows/` against the package: every script exists and is
//! strict (StrictMode, stop on error, elevation check), names only files the package build
//! produces, and loads the service (and instance) the INF installs.

use std::path::Path;

use crate::inf::{self, MinifilterFacts};
use crate::{Finding, PACKAGE_FILES};

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
    for name in REQUIRED_SCRIPTS {
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
    for (name, text) in scripts {
        check_script(name, text, &facts, &mut findings);
    }
    Ok(findings)
}

fn check_script(name: &str, text: &str, facts: &MinifilterFacts, findings: &mut Vec<Finding>) {
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
    let checks_elevation = text
        .to_ascii_lowercase()
        .contains("#requires -runasadministrator")
        || lower.contains("[security.principal.windowsbuiltinrole]::administrator");
    if !checks_elevation {
        findings.push(Finding::new(name, "does not check that it runs elevated"));
    }
    if !lower.contains("exit 1") && !lower.contains("throw") {
        findings.push(Finding::new(
            name,
            "has no failure exit (`exit 1` or `throw`)",
        ));
    }

    for file in file_names(&code) {
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

    let uses_service =
        lower.contains("fltmc") || lower.contains("sc.exe") || lower.contains("$servicename");
    check_assignment(
        name,
        &code,
        "ServiceName",
        &facts.service_name,
        uses_service,
        findings,
    );
    let is_installer = name.eq_ignore_ascii_case("Install-Fsense.ps1");
    check_assignment(
        name,
        &code,
        "Altitude",
        &facts.altitude,
        is_installer,
        findings,
    );
    check_assignment(
        name,
        &code,
        "InstanceName",
        &facts.instance_name,
        is_installer,
        findings,
    );

    for (verb, target) in fltmc_targets(&code) {
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
    for word in code.split(|c: char| !is_name_char(c)) {
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
        assert_eq!(findings.len(), REQUIRED_SCRIPTS.len());
        assert!(findings.iter().all(|finding| finding.message == "missing"));
    }

    #[test]
    fn strictness_rules() {
        let findings = findings_after("Test-Fsense.ps1", "Set-StrictMode -Version Latest", "");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("Set-StrictMode"));
        let findings = findings_after(
            "Uninstall-Fsense.ps1",
            "$ErrorActionPreference = 'Stop'",
            "",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("ErrorActionPreference"));
        let findings = findings_after(
            "Enable-Verifier.ps1",
            "[Security.Principal.WindowsBuiltInRole]::Administrator",
            "[Security.Principal.WindowsBuiltInRole]::User",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("elevated"));
    }

    #[test]
    fn foreign_file_names_are_reported() {
        let findings = findings_after("Install-Fsense.ps1", "'fsense.cer'", "'fsense-test.cer'");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("fsense-test.cer"));
        let findings = findings_after("Test-Fsense.ps1", "'fsense.exe'", "'fsensed.exe'");
        assert_eq!(findings.len(), 1, "{findings:?}");
    }

    #[test]
    fn the_service_name_must_match_the_inf() {
        let findings = findings_after(
            "Uninstall-Fsense.ps1",
            "$ServiceName = 'fsense'",
            "$ServiceName = 'fsensor'",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("`fsensor`"));
        let findings = findings_after(
            "Install-Fsense.ps1",
            "@('load', $ServiceName)",
            "@('load', 'minispy')",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("fltmc load minispy"));
    }

    #[test]
    fn the_installer_altitude_must_match_the_inf() {
        let findings = findings_after(
            "Install-Fsense.ps1",
            "$Altitude = '385210'",
            "$Altitude = '370000'",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("Altitude"));
    }

    #[test]
    fn file_names_ignore_tools_and_numbers() {
        let names = file_names(
            "fltmc.exe load x; & $Dir\\fsense.exe watch; copy fsense.sys; 1.5.cat; verifier.exe",
        );
        assert_eq!(
            names,
            vec!["fltmc.exe", "fsense.exe", "fsense.sys", "verifier.exe"]
        );
    }
}
