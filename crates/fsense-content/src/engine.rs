//! Runs a compiled [`RuleSet`] over events.
//!
//! Per event the cost is one glob-automaton pass over the path (linear in its length) plus one
//! O(1) window update per `write_burst` rule. State is bounded: each `write_burst` rule tracks at
//! most [`MAX_TRACKED_PROCESSES`] processes.

use std::collections::HashMap;

use fsense_proto::Operation;
use globset::Candidate;

use crate::Severity;
use crate::rules::{RuleSet, Template};

/// Most processes one `write_burst` rule keeps a window for; beyond that, expired windows are
/// dropped and, if still full, new processes are not tracked until room frees up.
pub const MAX_TRACKED_PROCESSES: usize = 65_536;

/// What the engine looks at in one event.
#[derive(Clone, Copy, Debug)]
pub struct EventFacts<'a> {
    pub operation: Operation,
    /// The file path as the sensor reports it (`\` or `/` separators).
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

/// A process's current `write_burst` window: it opens at the first write and lasts `window_ms`.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: u64,
    writes: u32,
    fired: bool,
}

#[derive(Debug, Clone)]
struct Burst {
    rule: usize,
    writes: u32,
    window_ms: u32,
    windows: HashMap<u32, Window>,
}

/// Holds a [`RuleSet`] plus per-rule state (the `write_burst` windows).
#[derive(Debug, Clone)]
pub struct Engine {
    rules: RuleSet,
    /// One entry per `write_burst` rule: its index, threshold, window and per-process windows.
    bursts: Vec<Burst>,
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
            .filter_map(|(rule, r)| match r.template {
                Template::WriteBurst { writes, window_ms } => Some(Burst {
                    rule,
                    writes,
                    window_ms,
                    windows: HashMap::new(),
                }),
                Template::PathMatch { .. } => None,
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

    /// Writes that no `write_burst` rule could track because its process table was full.
    pub fn untracked_writes(&self) -> u64 {
        self.untracked_writes
    }

    /// Evaluates one event; returns the matching rules in file order.
    pub fn evaluate(&mut self, event: &EventFacts<'_>) -> Vec<RuleMatch<'_>> {
        let mut fired: Vec<usize> = Vec::new();

        let (globs, owners) = self.rules.globs_for(event.operation);
        if !globs.is_empty() {
            self.normalized.clear();
            self.normalized
                .extend(event.path.chars().map(|c| if c == '\\' { '/' } else { c }));
            let candidate = Candidate::new(self.normalized.as_str());
            globs.matches_candidate_into(&candidate, &mut self.glob_hits);
            fired.extend(
                self.glob_hits
                    .iter()
                    .filter_map(|hit| owners.get(*hit).copied()),
            );
        }

        if event.operation == Operation::Write {
            for burst in &mut self.bursts {
                match record_write(&mut burst.windows, event, burst.writes, burst.window_ms) {
                    Some(true) => fired.push(burst.rule),
                    Some(false) => {}
                    None => self.untracked_writes += 1,
                }
            }
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

/// Counts one write into the process's window. `Some(true)` when this write reaches the
/// threshold (once per window), `None` when the process cannot be tracked.
fn record_write(
    table: &mut HashMap<u32, Window>,
    event: &EventFacts<'_>,
    writes: u32,
    window_ms: u32,
) -> Option<bool> {
    let expired = |w: &Window| event.time_ms.saturating_sub(w.start_ms) >= u64::from(window_ms);
    if !table.contains_key(&event.pid) && table.len() >= MAX_TRACKED_PROCESSES {
        table.retain(|_, w| !expired(w));
        if table.len() >= MAX_TRACKED_PROCESSES {
            return None;
        }
    }
    let window = table.entry(event.pid).or_insert(Window {
        start_ms: event.time_ms,
        writes: 0,
        fired: false,
    });
    if expired(window) || event.time_ms < window.start_ms {
        *window = Window {
            start_ms: event.time_ms,
            writes: 0,
            fired: false,
        };
    }
    window.writes = window.writes.saturating_add(1);
    if !window.fired && window.writes >= writes {
        window.fired = true;
        return Some(true);
    }
    Some(false)
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
        assert!(engine.bursts[0].windows.len() <= MAX_TRACKED_PROCESSES);
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
