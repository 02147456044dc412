//! The agent service's name: the scripts that install, test and remove the consumer service
//! must name the service `fsense service install` creates, as they must name the driver's.
//!
//! The name is read from the consumer's source (`SERVICE_NAME` in
//! `crates/fsense/src/cli/service.rs`), so renaming it there without the scripts fails here.

use crate::Finding;

/// The consumer source that defines the service name.
const SERVICE_SOURCE: &str = include_str!("../../fsense/src/cli/service.rs");
const SERVICE_SOURCE_PATH: &str = "crates/fsense/src/cli/service.rs";
/// The scripts that manage the agent service, and the variable they name it with.
pub const AGENT_SCRIPTS: &[&str] = &[
    "Install-Fsense.ps1",
    "Test-Fsense.ps1",
    "Uninstall-Fsense.ps1",
];
const VARIABLE: &str = "$AgentServiceName";

/// `SERVICE_NAME` as the consumer's source defines it.
pub fn service_name_in_code() -> Option<&'static str> {
    const_value(SERVICE_SOURCE, "SERVICE_NAME")
}

/// The string value of `pub const NAME: &str = "...";` in Rust source.
fn const_value<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let declaration = format!("pub const {name}: &str = \"");
    source.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(&declaration)?;
        rest.strip_suffix("\";")
    })
}

/// Checks (file name, text) pairs: each agent script assigns `$AgentServiceName`, and every
/// assignment in any script is the name the code installs.
pub fn check(scripts: &[(String, String)]) -> Vec<Finding> {
    let Some(expected) = service_name_in_code() else {
        return vec![Finding::new(
            SERVICE_SOURCE_PATH,
            "defines no `pub const SERVICE_NAME: &str` to check the scripts against",
        )];
    };
    check_against(scripts, expected)
}

fn check_against(scripts: &[(String, String)], expected: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, text) in scripts {
        let mut assigned = false;
        for value in assignments(text) {
            assigned = true;
            if value != expected {
                findings.push(Finding::new(
                    name,
                    format!(
                        "{VARIABLE} is `{value}`, but fsense installs the agent as `{expected}`"
                    ),
                ));
            }
        }
        let manages_agent = AGENT_SCRIPTS.iter().any(|s| s.eq_ignore_ascii_case(name));
        if manages_agent && !assigned {
            findings.push(Finding::new(
                name,
                format!("does not define {VARIABLE} (fsense installs the agent as `{expected}`)"),
            ));
        }
    }
    findings
}

/// Values assigned to `$AgentServiceName` outside comments.
fn assignments(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let head = line.get(..VARIABLE.len())?;
            if !head.eq_ignore_ascii_case(VARIABLE) {
                return None;
            }
            let value = line[VARIABLE.len()..].trim_start().strip_prefix('=')?;
            Some(value.trim().trim_matches(['\'', '"']).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit() -> Vec<(String, String)> {
        AGENT_SCRIPTS
            .iter()
            .map(|name| {
                let path = format!("{}/../../windows/{name}", env!("CARGO_MANIFEST_DIR"));
                (name.to_string(), std::fs::read_to_string(path).unwrap())
            })
            .collect()
    }

    #[test]
    fn the_code_defines_the_name() {
        assert_eq!(service_name_in_code(), Some("fsense-agent"));
        assert_eq!(
            const_value("  pub const X: &str = \"a b\";\n", "X"),
            Some("a b")
        );
        assert_eq!(const_value("const X: u32 = 1;", "X"), None);
    }

    #[test]
    fn the_shipped_scripts_agree_with_the_code() {
        assert_eq!(check(&kit()), vec![]);
    }

    #[test]
    fn a_renamed_service_in_a_script_is_found() {
        let mut scripts = kit();
        scripts[1].1 = scripts[1].1.replace(
            "$AgentServiceName = 'fsense-agent'",
            "$AgentServiceName = 'fsense-agnt'",
        );
        let findings = check(&scripts);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].subject, "Test-Fsense.ps1");
        assert!(findings[0].message.contains("`fsense-agnt`"));
    }

    #[test]
    fn a_script_without_the_name_is_found_and_comments_do_not_count() {
        let scripts = vec![(
            "Uninstall-Fsense.ps1".to_string(),
            "# $AgentServiceName = 'fsense-agent'\nsc.exe delete fsense-agent\n".to_string(),
        )];
        let findings = check_against(&scripts, "fsense-agent");
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.starts_with("does not define"));
        let other = vec![("Enable-Verifier.ps1".to_string(), String::new())];
        assert!(check_against(&other, "fsense-agent").is_empty());
    }
}
