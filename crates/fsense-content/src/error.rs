//! The one error type of this crate: always one readable line, naming the rule and field when the
//! content is at fault.

use std::fmt;

/// What kind of failure this is; decides the CLI exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The content itself is invalid (syntax, template, field, range, size). Exit code 2.
    Invalid,
    /// Content or metadata was refused: failed TUF verification, rollback, not newer. Exit code 2.
    Refused,
    /// Anything else: I/O, missing files, key problems. Exit code 1.
    Failed,
}

/// Why content could not be compiled, published, verified, installed or loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentError {
    kind: ErrorKind,
    rule: Option<String>,
    field: Option<String>,
    detail: String,
}

// Some constructors serve only the `distribution` feature's modules.
#[cfg_attr(not(feature = "distribution"), allow(dead_code))]
impl ContentError {
    /// Invalid content, located at `rule` (an id, or `#N` when the id itself is unusable) and `field`.
    pub(crate) fn invalid(
        rule: Option<&str>,
        field: Option<&str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: ErrorKind::Invalid,
            rule: rule.map(str::to_owned),
            field: field.map(str::to_owned),
            detail: one_line(detail.into()),
        }
    }

    pub fn refused(detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Refused,
            rule: None,
            field: None,
            detail: one_line(detail.into()),
        }
    }

    pub fn failed(detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Failed,
            rule: None,
            field: None,
            detail: one_line(detail.into()),
        }
    }

    /// An I/O failure on `path`.
    pub(crate) fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Self::failed(format!("{what} {}: {err}", path.display()))
    }

    /// A failure reported by `tough`, with its whole source chain on one line.
    pub(crate) fn tuf(kind: ErrorKind, context: &str, err: &dyn std::error::Error) -> Self {
        let mut detail = format!("{context}: {err}");
        let mut source = err.source();
        while let Some(inner) = source {
            let text = inner.to_string();
            if !detail.contains(&text) {
                detail.push_str(": ");
                detail.push_str(&text);
            }
            source = inner.source();
        }
        Self {
            kind,
            rule: None,
            field: None,
            detail: one_line(detail),
        }
    }

    /// Re-classifies this error (e.g. invalid content found during an update is a refusal there).
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Adds context in front of the detail.
    pub(crate) fn context(mut self, context: &str) -> Self {
        self.detail = one_line(format!("{context}: {}", self.detail));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The rule the error is about, if any (its id, or `#N` for the N-th rule, 1-based).
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The process exit code the CLI uses for this error.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Invalid | ErrorKind::Refused => 2,
            ErrorKind::Failed => 1,
        }
    }
}

/// One line, safe to print: line breaks become `; `, and every other character a terminal or log
/// viewer would interpret (C0 controls, DEL, C1 controls, bidirectional overrides and isolates) is
/// shown as a `\u{..}` escape. Error text quotes repository data and file names, which an
/// attacker may control.
pub(crate) fn one_line(text: String) -> String {
    let joined = if text.contains(['\n', '\r']) {
        text.split(['\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        text
    };
    if !joined.chars().any(needs_escape) {
        return joined;
    }
    let mut escaped = String::with_capacity(joined.len() + 16);
    for c in joined.chars() {
        if needs_escape(c) {
            escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.rule, &self.field) {
            (Some(rule), Some(field)) => {
                write!(f, "rule `{rule}`, field `{field}`: {}", self.detail)
            }
            (Some(rule), None) => write!(f, "rule `{rule}`: {}", self.detail),
            (None, Some(field)) => write!(f, "rules file, field `{field}`: {}", self.detail),
            (None, None) => f.write_str(&self.detail),
        }
    }
}

impl std::error::Error for ContentError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_rule_and_field_on_one_line() {
        let err = ContentError::invalid(
            Some("mass-write"),
            Some("writes"),
            "0 is out of range\n1..=5",
        );
        assert_eq!(
            err.to_string(),
            "rule `mass-write`, field `writes`: 0 is out of range; 1..=5"
        );
        assert_eq!(err.exit_code(), 2);
        assert_eq!(ContentError::failed("x").exit_code(), 1);
    }

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        let hostile =
            "unknown variant `\x1b]0;PWNED\x07\x1b[2K\tok\u{9b}31m\u{7f}\u{202e}exe\u{2066}`";
        let shown = ContentError::refused(hostile).to_string();
        assert_eq!(
            shown,
            "unknown variant `\\u{1b}]0;PWNED\\u{7}\\u{1b}[2K\\u{9}ok\\u{9b}31m\\u{7f}\\u{202e}exe\\u{2066}`"
        );
        assert!(!shown.chars().any(needs_escape));
        let context = ContentError::failed("x").context("in \u{1b}[31m");
        assert_eq!(context.to_string(), "in \\u{1b}[31m: x");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn any_text_becomes_one_printable_line(text in ".*", extra in proptest::collection::vec(proptest::char::any(), 0..16)) {
            let text: String = text.chars().chain(extra).collect();
            let shown = ContentError::failed(text.clone()).to_string();
            proptest::prop_assert!(!shown.chars().any(needs_escape), "{:?}", shown);
            // Plain text passes unchanged.
            if !text.chars().any(needs_escape) {
                proptest::prop_assert_eq!(shown, text);
            }
        }
    }
}
