//! Holds text (the INF, README, docs, scripts) to the declared minimum Windows
//! ([`imports::DECLARED_FLOOR`]): where a file must state the minimum it states exactly that one,
//! and no file claims another Windows 10 release as the minimum ("1903+", "(1903 or later)").
//! Mentions of a release as the start of a feature ("since Windows 10 1903", "1903 and later")
//! are not claims about fsense and pass.

use crate::Finding;
use crate::imports::{self, WindowsRelease};

/// Checks `text`; with `must_state`, the text must also state the floor in its canonical phrase.
pub fn check_text(subject: &str, text: &str, must_state: bool) -> Vec<Finding> {
    check_text_against(subject, text, must_state, imports::DECLARED_FLOOR)
}

fn check_text_against(
    subject: &str,
    text: &str,
    must_state: bool,
    floor: WindowsRelease,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let phrase = floor.phrase();
    if must_state && !text.contains(&phrase) {
        findings.push(Finding::new(
            subject,
            format!("does not state the minimum Windows as `{phrase}`"),
        ));
    }
    let floor_version = floor.name.rsplit(' ').next().unwrap_or(floor.name);
    for (line_number, line) in text.lines().enumerate() {
        for version in minimum_claims(line) {
            if version != floor_version {
                findings.push(Finding::new(
                    subject,
                    format!(
                        "line {}: claims Windows 10 {version} as the minimum; the declared minimum is {phrase}",
                        line_number + 1
                    ),
                ));
            }
        }
    }
    findings
}

/// Windows 10 versions `line` names as a minimum: "Windows 10 1903+", "Windows 10, version 1903 or
/// later", "Windows 10 (1903 or later)", "Windows 10 20H2 or newer".
fn minimum_claims(line: &str) -> Vec<&str> {
    let mut claims = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("Windows 10") {
        rest = &rest[at + "Windows 10".len()..];
        let after_name = rest.trim_start_matches([',', ' ', '(']);
        let after_name = after_name
            .strip_prefix("version ")
            .unwrap_or(after_name)
            .trim_start_matches('(');
        let length = after_name
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after_name.len());
        let (version, after) = after_name.split_at(length);
        if !is_release_version(version) {
            continue;
        }
        let after = after.trim_start_matches(')');
        if after.starts_with('+')
            || after.starts_with(" or later")
            || after.starts_with(" or newer")
        {
            claims.push(version);
        }
    }
    claims
}

/// `1903`, `2004` or `20H2`, `21H2`: how Windows 10 releases are named.
fn is_release_version(word: &str) -> bool {
    let bytes = word.as_bytes();
    match bytes {
        [a, b, c, d] => {
            a.is_ascii_digit()
                && b.is_ascii_digit()
                && (c.is_ascii_digit() || *c == b'H')
                && d.is_ascii_digit()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str, must_state: bool) -> Vec<String> {
        check_text("doc", text, must_state)
            .into_iter()
            .map(|finding| finding.message)
            .collect()
    }

    #[test]
    fn stale_minimum_claims_are_found() {
        for claim in [
            "A primitive driver package (Windows 10 1903+): decorated sections",
            "1. A Windows 10 (1903 or later) or Windows 11 x64 VM",
            "needs Windows 10, version 1809 or later",
            "runs on Windows 10 20H2 or newer",
        ] {
            let found = messages(claim, false);
            assert_eq!(found.len(), 1, "{claim}: {found:?}");
            assert!(found[0].contains("as the minimum"), "{found:?}");
        }
    }

    #[test]
    fn the_floor_and_feature_mentions_pass() {
        for text in [
            "Minimum Windows: Windows 10 version 2004 (build 19041) or later.",
            "needs Windows 10, version 2004 or later",
            "Windows 10 2004+ only",
            "[DefaultUninstall] is prohibited since Windows 10 1903",
            "on Windows 10 1903 and later InstallHinfSection hands such an INF to DiInstallDriver",
            "IoOpenDriverRegistryKey is supported on Windows 10 1803 and later versions",
            "Windows 10 or Windows 11",
        ] {
            assert_eq!(messages(text, false), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn the_statement_is_required_where_asked() {
        assert_eq!(
            messages("Windows 10 version 2004 (build 19041)", true),
            Vec::<String>::new()
        );
        let found = messages("needs a recent Windows", true);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("`Windows 10 version 2004 (build 19041)`"));
        // Against another floor, today's statement is a different release.
        let older = check_text_against("doc", "Windows 10 2004+", true, imports::WINDOWS_10_1803);
        assert_eq!(older.len(), 2, "{older:?}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(Windows 10|version |[0-9H]{1,5}|[(),+ ]| or later| or newer|\\PC){0,40}") {
            let _ = check_text("doc", &text, true);
        }
    }
}
