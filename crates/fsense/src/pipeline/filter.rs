//! What is not reported: our own I/O, paths the user excluded. What is flagged: content rules.

use fsense_proto::Operation;
use globset::{GlobSet, GlobSetBuilder};

use crate::output::ocsf::MatchedRule;
use crate::pipeline::content::Rules;

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    SelfExcluded,
    Excluded,
    /// Not under any of the watched roots.
    Outside,
}

/// Exclusions and rules.
pub struct Filter {
    /// Our own pid, for live sources; `None` when the events come from elsewhere.
    self_pid: Option<u32>,
    excludes: GlobSet,
    rules: Option<Rules>,
    /// When non-empty, only paths under one of these are reported (compared ASCII
    /// case-insensitively when `roots_fold_case`, as Windows paths are).
    roots: Vec<String>,
    roots_fold_case: bool,
}

/// An `--exclude` pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid --exclude pattern '{pattern}': {reason}")]
pub struct BadExclude {
    pattern: String,
    reason: String,
}

impl Filter {
    /// `excludes` are globs over the displayed path (`*` and `?` do not cross a `/`; `**`
    /// does; `\` is an ordinary character, so Windows paths match with `*`). Case-sensitive.
    pub fn new(
        self_pid: Option<u32>,
        excludes: &[String],
        rules: Option<Rules>,
    ) -> Result<Self, BadExclude> {
        let mut set = GlobSetBuilder::new();
        for pattern in excludes {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(false)
                .build()
                .map_err(|e| BadExclude {
                    pattern: pattern.clone(),
                    reason: e.kind().to_string(),
                })?;
            set.add(glob);
        }
        let excludes = set.build().map_err(|e| BadExclude {
            pattern: excludes.join(" "),
            reason: e.to_string(),
        })?;
        Ok(Self {
            self_pid,
            excludes,
            rules,
            roots: Vec::new(),
            roots_fold_case: false,
        })
    }

    /// Reports only paths under `roots` (for sources that see more than was asked for: the
    /// Windows driver reports every volume). Separators `\\` and `/` both end a root.
    #[must_use]
    pub fn with_roots(mut self, roots: Vec<String>, fold_case: bool) -> Self {
        self.roots = roots
            .into_iter()
            .map(|r| r.trim_end_matches(['\\', '/']).to_string())
            .collect();
        self.roots_fold_case = fold_case;
        self
    }

    fn under_roots(&self, path: &str) -> bool {
        self.roots.is_empty()
            || self.roots.iter().any(|root| {
                let Some(head) = path.get(..root.len()) else {
                    return false;
                };
                let same = if self.roots_fold_case {
                    head.eq_ignore_ascii_case(root)
                } else {
                    head == root
                };
                same && matches!(path.as_bytes().get(root.len()), None | Some(b'\\' | b'/'))
            })
    }

    /// Whether an event is reported at all.
    pub fn verdict(&self, pid: u32, path: &str) -> Verdict {
        if self.self_pid == Some(pid) {
            return Verdict::SelfExcluded;
        }
        if !self.under_roots(path) {
            return Verdict::Outside;
        }
        if !self.excludes.is_empty() && self.excludes.is_match(path) {
            return Verdict::Excluded;
        }
        Verdict::Keep
    }

    /// Runs the content rules; fills `out` and returns the highest OCSF severity id (1 when
    /// nothing matched).
    pub fn rules(
        &mut self,
        operation: Operation,
        path: &str,
        target: Option<&str>,
        pid: u32,
        time_ms: u64,
        out: &mut Vec<MatchedRule>,
    ) -> u8 {
        match self.rules.as_mut() {
            Some(rules) => rules.evaluate_named(operation, path, target, pid, time_ms, out),
            None => {
                out.clear();
                1
            }
        }
    }

    /// Replaces the content rules (live reload; called between two events).
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = Some(rules);
    }

    /// The version of the loaded content, if any.
    /// Writes the content rules could not track (0 without rules).
    pub fn untracked_writes(&self) -> u64 {
        self.rules.as_ref().map_or(0, Rules::untracked_writes)
    }

    pub fn content_version(&self) -> Option<u64> {
        self.rules.as_ref().map(Rules::version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_and_globs_are_excluded() {
        let f = Filter::new(Some(5), &["**/*.tmp".into(), "/var/log/*".into()], None).unwrap();
        assert_eq!(f.verdict(5, "/x"), Verdict::SelfExcluded);
        assert_eq!(f.verdict(6, "/a/b/c.tmp"), Verdict::Excluded);
        assert_eq!(f.verdict(6, "/var/log/syslog"), Verdict::Excluded);
        assert_eq!(f.verdict(6, "/var/log/apt/history"), Verdict::Keep);
        assert_eq!(f.verdict(6, "/a/b/c.txt"), Verdict::Keep);
        let windows = Filter::new(None, &["C:\\Windows\\**".into()], None).unwrap();
        assert_eq!(
            windows.verdict(5, "C:\\Windows\\a\\b.dll"),
            Verdict::Excluded
        );
    }

    #[test]
    fn roots_scope_events_case_insensitively_on_component_boundaries() {
        let f = Filter::new(None, &[], None)
            .unwrap()
            .with_roots(vec!["C:\\Users\\Ann\\".into()], true);
        assert_eq!(f.verdict(1, "c:\\users\\ann\\a.txt"), Verdict::Keep);
        assert_eq!(f.verdict(1, "C:\\Users\\Ann"), Verdict::Keep);
        assert_eq!(f.verdict(1, "C:\\Users\\Anna\\a.txt"), Verdict::Outside);
        assert_eq!(f.verdict(1, "D:\\x"), Verdict::Outside);
    }

    #[test]
    fn a_bad_glob_is_one_clear_error() {
        let e = Filter::new(None, &["a[".into()], None).err().unwrap();
        assert!(e.to_string().starts_with("invalid --exclude pattern 'a['"));
    }
}
