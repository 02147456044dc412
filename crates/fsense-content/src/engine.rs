//! Runs a compiled [`RuleSet`] over events.
//!
//! Per event the cost is one glob-automaton pass over each name a rule looks at (linear in its
//! length) plus one O(1) window update per windowed rule that counts the event (`write_burst`:
//! writes; `rename_burst`: renames to a new extension; `delete_burst`: writes and deletes).
//! Expired windows are dropped a few at a time, oldest first, never by a scan of the table.
//! State is bounded: each windowed rule keeps at most [`MAX_TRACKED_PROCESSES`] windows.

use std::hash::{Hash, Hasher};

use fsense_proto::Operation;
use globset::Candidate;

use crate::Severity;
use crate::rules::{NameField, RuleOperation, RuleSet, Template};

mod windows;
pub use windows::MAX_TRACKED_PROCESSES;
use windows::Windows;

/// What the engine looks at in one event.
#[derive(Clone, Copy, Debug)]
pub struct EventFacts<'a> {
    pub operation: Operation,
    /// The file path as the sensor reports it (`\` or `/` separators): for a rename its old
    /// name, for a link the existing file, for a clone the file written into.
    pub path: &'a str,
    pub pid: u32,
    /// Event time in milliseconds (any monotonic origin).
    pub time_ms: u64,
}

/// One rule that matched an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleMatch<'r> {
    pub id: &'r str,
    pub severity: Severity,
}

/// One windowed rule: its index, what it counts, and its windows.
#[derive(Debug, Clone)]
struct Windowed {
    rule: usize,
    kind: Kind,
    window_ms: u32,
    windows: Windows,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Writes { writes: u32 },
    Renames { renames: u32 },
    Deletes { writes: u32, deletes: u32 },
}

/// Holds a [`RuleSet`] plus per-rule state (the windows of the windowed templates).
#[derive(Debug, Clone)]
pub struct Engine {
    rules: RuleSet,
    /// One entry per windowed rule.
    bursts: Vec<Windowed>,
    glob_hits: Vec<usize>,
    normalized: String,
    untracked_writes: u64,
}

impl Engine {
    pub fn new(rules: RuleSet) -> Self {
        let bursts = rules
            .rules()
            .iter()
            .enumerate()
            .filter_map(|(rule, r)| {
                let (kind, window_ms) = match r.template {
                    Template::WriteBurst { writes, window_ms } => {
                        (Kind::Writes { writes }, window_ms)
                    }
                    Template::RenameBurst { renames, window_ms } => {
                        (Kind::Renames { renames }, window_ms)
                    }
                    Template::DeleteBurst {
                        writes,
                        deletes,
                        window_ms,
                    } => (Kind::Deletes { writes, deletes }, window_ms),
                    Template::PathMatch { .. } => return None,
                };
                Some(Windowed {
                    rule,
                    kind,
                    window_ms,
                    windows: Windows::default(),
                })
            })
            .collect();
        Self {
            rules,
            bursts,
            glob_hits: Vec::new(),
            normalized: String::new(),
            untracked_writes: 0,
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Events (writes, renames, deletes) that a windowed rule could not track because its
    /// table was full.
    pub fn untracked_writes(&self) -> u64 {
        self.untracked_writes
    }

    /// Evaluates one event; returns the matching rules in file order. An event with a second
    /// name (a rename's or link's new name, a clone's source) goes through
    /// [`Engine::evaluate_named`].
    pub fn evaluate(&mut self, event: &EventFacts<'_>) -> Vec<RuleMatch<'_>> {
        self.evaluate_named(event, None)
    }

    /// Evaluates one event with its second name, `target`; returns the matching rules in file
    /// order.
    pub fn evaluate_named(
        &mut self,
        event: &EventFacts<'_>,
        target: Option<&str>,
    ) -> Vec<RuleMatch<'_>> {
        let mut fired: Vec<usize> = Vec::new();
        let operation = RuleOperation::of(event.operation);

        // A rename's or link's new name is also what a `create` rule looks at: both deliver a
        // file under a new name, as a create does.
        let new_name_is_a_create = matches!(operation, RuleOperation::Rename | RuleOperation::Link);
        let names = [
            (operation, NameField::Path, Some(event.path)),
            (operation, NameField::Target, target),
            (
                RuleOperation::Create,
                NameField::Path,
                target.filter(|_| new_name_is_a_create),
            ),
        ];
        for (operation, field, name) in names {
            let Some(name) = name else { continue };
            let Some((globs, owners)) = self.rules.globs_for(operation, field) else {
                continue;
            };
            if globs.is_empty() {
                continue;
            }
            self.normalized.clear();
            self.normalized
                .extend(name.chars().map(|c| if c == '\\' { '/' } else { c }));
            let candidate = Candidate::new(self.normalized.as_str());
            globs.matches_candidate_into(&candidate, &mut self.glob_hits);
            fired.extend(
                self.glob_hits
                    .iter()
                    .filter_map(|hit| owners.get(*hit).copied()),
            );
        }

        let rename_key = match (operation, target) {
            (RuleOperation::Rename, Some(new)) => new_extension_key(event.pid, event.path, new),
            _ => None,
        };
        let now = event.time_ms;
        let pid = u64::from(event.pid);
        for burst in &mut self.bursts {
            let window_ms = burst.window_ms;
            let recorded = match (burst.kind, operation) {
                (Kind::Writes { writes }, RuleOperation::Write) => {
                    burst.windows.record(pid, now, window_ms, true, |w| {
                        w.count = w.count.saturating_add(1);
                        w.count >= writes
                    })
                }
                (Kind::Renames { renames }, RuleOperation::Rename) => {
                    let Some(key) = rename_key else { continue };
                    burst.windows.record(key, now, window_ms, true, |w| {
                        w.count = w.count.saturating_add(1);
                        w.count >= renames
                    })
                }
                (
                    Kind::Deletes { writes, deletes },
                    RuleOperation::Write | RuleOperation::Delete,
                ) => {
                    let is_write = operation == RuleOperation::Write;
                    // Writes open a window; deletes count only in one (after writes).
                    burst.windows.record(pid, now, window_ms, is_write, |w| {
                        if is_write {
                            w.count = w.count.saturating_add(1);
                        } else {
                            w.second = w.second.saturating_add(1);
                        }
                        w.count >= writes && w.second >= deletes
                    })
                }
                _ => continue,
            };
            if recorded.fired {
                fired.push(burst.rule);
            }
            self.untracked_writes = self.untracked_writes.saturating_add(recorded.lost);
        }

        fired.sort_unstable();
        fired.dedup();
        let rules = self.rules.rules();
        fired
            .into_iter()
            .filter_map(|index| rules.get(index))
            .map(|rule| RuleMatch {
                id: rule.id.as_str(),
                severity: rule.severity,
            })
            .collect()
    }
}

/// The final extension of a path's last component, without the dot: none for a name with no
/// dot, a dot only at its start (`.bashrc`) or at its end.
pub fn extension(path: &str) -> Option<&str> {
    let name = file_name(path);
    match name.rfind('.') {
        Some(0) | None => None,
        Some(dot) => Some(&name[dot + 1..]).filter(|ext| !ext.is_empty()),
    }
}

/// The last component of a path (`/` or `\` separated).
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// The `rename_burst` key of a rename from `old` to `new` by `pid`: the process and the new
/// extension (case-folded), or `None` when the rename does not give the file a new extension.
/// A temporary name given its final name (`a.txt.tmp`, `.a.txt.Xy12` or `a.txt~` renamed to
/// `a.txt`: the new name is part of the old one, what editors, downloaders and rsync do) does
/// not count either.
fn new_extension_key(pid: u32, old: &str, new: &str) -> Option<u64> {
    let new_ext = extension(new)?;
    if extension(old).is_some_and(|old_ext| old_ext.eq_ignore_ascii_case(new_ext)) {
        return None;
    }
    if file_name(old).contains(file_name(new)) {
        return None;
    }
    // A fixed-key hash: a collision merges two windows (more firing, never less).
    let mut h = std::hash::DefaultHasher::new();
    pid.hash(&mut h);
    for b in new_ext.bytes() {
        b.to_ascii_lowercase().hash(&mut h);
    }
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuleSet, compile};

    const RULES: &str = r#"
version = 7
[[rule]]
id = "office-macro-drop"
template = "path_match"
severity = "high"
[rule.fields]
operation = "create"
glob = "**/*.docm"

[[rule]]
id = "mass-write"
template = "write_burst"
severity = "critical"
[rule.fields]
writes = 3
window_ms = 1000
"#;

    fn ids(
        engine: &mut Engine,
        operation: Operation,
        path: &str,
        pid: u32,
        time_ms: u64,
    ) -> Vec<String> {
        engine
            .evaluate(&EventFacts {
                operation,
                path,
                pid,
                time_ms,
            })
            .iter()
            .map(|m| m.id.to_owned())
            .collect()
    }

    #[test]
    fn path_match_is_case_insensitive_and_accepts_backslashes() {
        let mut engine = Engine::new(compile(RULES).unwrap());
        assert_eq!(
            ids(
                &mut engine,
                Operation::Create,
                r"C:\Users\ann\Report.DOCM",
                1,
                0
            ),
            ["office-macro-drop"]
        );
        assert!(
            ids(
                &mut engine,
                Operation::Create,
                r"C:\Users\ann\Report.docx",
                1,
                0
            )
            .is_empty()
        );
        // The rule is for creates only.
        assert!(
            ids(
                &mut engine,
                Operation::Write,
                r"C:\Users\ann\Report.docm",
                1,
                0
            )
            .is_empty()
        );
    }

    #[test]
    fn write_burst_fires_once_per_window_per_process() {
        let mut engine = Engine::new(compile(RULES).unwrap());
        assert!(ids(&mut engine, Operation::Write, "a", 10, 0).is_empty());
        assert!(ids(&mut engine, Operation::Write, "a", 20, 1).is_empty()); // other process
        assert!(ids(&mut engine, Operation::Write, "a", 10, 2).is_empty());
        assert_eq!(
            ids(&mut engine, Operation::Write, "a", 10, 3),
            ["mass-write"]
        );
        assert!(ids(&mut engine, Operation::Write, "a", 10, 4).is_empty()); // already fired
        // A new window opens after window_ms.
        assert!(ids(&mut engine, Operation::Write, "a", 10, 1000).is_empty());
        assert!(ids(&mut engine, Operation::Write, "a", 10, 1001).is_empty());
        assert_eq!(
            ids(&mut engine, Operation::Write, "a", 10, 1002),
            ["mass-write"]
        );
    }

    #[test]
    fn slow_writes_never_fire() {
        let mut engine = Engine::new(compile(RULES).unwrap());
        for i in 0..100 {
            assert!(ids(&mut engine, Operation::Write, "a", 1, i * 600).is_empty());
        }
    }

    #[test]
    fn process_table_is_bounded() {
        let mut engine = Engine::new(compile(RULES).unwrap());
        for pid in 0..(MAX_TRACKED_PROCESSES as u32 + 10) {
            ids(&mut engine, Operation::Write, "a", pid, 0);
        }
        assert_eq!(engine.untracked_writes(), 10);
        // Once windows expire, new processes are tracked again.
        ids(&mut engine, Operation::Write, "a", u32::MAX, 5000);
        assert_eq!(engine.untracked_writes(), 10);
        assert!(engine.bursts[0].windows.by_key.len() <= MAX_TRACKED_PROCESSES);
    }

    /// L4 (issue 24): while the table is full a new process is tracked (the window that opened
    /// first makes room, its one write counted as untracked), and a write costs no scan of the
    /// table (was: a `retain` over 65,536 windows per write, and the new process refused).
    #[test]
    fn a_full_table_tracks_new_processes_without_scanning_it() {
        let mut engine = Engine::new(compile(RULES).unwrap());
        let full = MAX_TRACKED_PROCESSES as u32;
        for pid in 0..full {
            ids(&mut engine, Operation::Write, "a", pid, 0);
        }
        assert!(ids(&mut engine, Operation::Write, "a", full, 1).is_empty());
        assert!(ids(&mut engine, Operation::Write, "a", full, 2).is_empty());
        assert_eq!(
            ids(&mut engine, Operation::Write, "a", full, 3),
            ["mass-write"]
        );
        assert_eq!(engine.untracked_writes(), 1);

        let started = std::time::Instant::now();
        for pid in full + 1..full + 20_001 {
            ids(&mut engine, Operation::Write, "a", pid, 4);
        }
        let took = started.elapsed();
        // 20,000 scans of 65,536 windows take minutes unoptimized; the queue takes milliseconds.
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        let windows = &engine.bursts[0].windows;
        assert_eq!(windows.by_key.len(), MAX_TRACKED_PROCESSES);
        assert!(windows.opened.len() <= 2 * MAX_TRACKED_PROCESSES);
        assert_eq!(engine.untracked_writes(), 20_001);
    }

    /// Expired windows leave the table as writes go on, oldest first.
    #[test]
    fn expired_windows_are_dropped_incrementally() {
        let mut engine = Engine::new(compile(RULES).unwrap());
        for pid in 0..1000 {
            ids(&mut engine, Operation::Write, "a", pid, 0);
        }
        for i in 0..500 {
            ids(&mut engine, Operation::Write, "a", 5000, 2000 + i);
        }
        let windows = &engine.bursts[0].windows;
        assert_eq!(windows.by_key.len(), 1, "all 1000 expired windows dropped");
        assert!(windows.opened.len() <= 2);
        assert_eq!(engine.untracked_writes(), 0);
    }

    #[test]
    fn an_empty_rule_set_matches_nothing() {
        let mut engine = Engine::new(RuleSet::empty(0));
        assert!(engine.rules().is_empty());
        assert!(ids(&mut engine, Operation::Write, "a", 1, 0).is_empty());
    }

    proptest::proptest! {
        /// The combined automata report exactly the rules whose own glob matches: checks the
        /// mapping from automaton hits back to rules, per operation.
        #[test]
        fn combined_matching_agrees_with_each_glob_alone(
            specs in proptest::collection::vec((proptest::bool::ANY, "[ab*?/]{1,6}"), 1..8),
            path in "[abAB/\\\\]{0,12}",
            create in proptest::bool::ANY,
        ) {
            let mut text = String::from("version = 1\n");
            for (i, (on_create, glob)) in specs.iter().enumerate() {
                let operation = if *on_create { "create" } else { "write" };
                text.push_str(&format!(
                    "[[rule]]\nid = \"r{i}\"\ntemplate = \"path_match\"\nseverity = \"low\"\n[rule.fields]\noperation = \"{operation}\"\nglob = \"{glob}\"\n"
                ));
            }
            let mut engine = Engine::new(compile(&text).unwrap());
            let operation = if create { Operation::Create } else { Operation::Write };
            let got = ids(&mut engine, operation, &path, 1, 0);
            let normalized = path.replace('\\', "/");
            let expected: Vec<String> = specs
                .iter()
                .enumerate()
                .filter(|(_, (on_create, glob))| {
                    *on_create == create
                        && globset::GlobBuilder::new(glob)
                            .case_insensitive(true)
                            .literal_separator(true)
                            .backslash_escape(false)
                            .build()
                            .unwrap()
                            .compile_matcher()
                            .is_match(&normalized)
                })
                .map(|(i, _)| format!("r{i}"))
                .collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn pathological_glob_stays_linear() {
        // A backtracking matcher needs exponential time for this pattern against a long run of
        // `a`s that fails at the end; the automaton globset builds needs one pass. (If this were
        // super-linear the test would never finish.)
        let star_a = "*a".repeat(30);
        let rules = format!(
            "version = 1\n[[rule]]\nid = \"nasty\"\ntemplate = \"path_match\"\nseverity = \"low\"\n[rule.fields]\noperation = \"write\"\nglob = \"{star_a}*b\"\n"
        );
        let mut engine = Engine::new(compile(&rules).unwrap());
        let path = "a".repeat(4096);
        for _ in 0..100 {
            assert!(ids(&mut engine, Operation::Write, &path, 1, 0).is_empty());
        }
        assert_eq!(
            ids(&mut engine, Operation::Write, &format!("{path}b"), 1, 0),
            ["nasty"]
        );
    }
}
