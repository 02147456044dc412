//! Runs a compiled [`RuleSet`] over events.
//!
//! Per event the cost is one glob-automaton pass over the path (linear in its length) plus one
//! O(1) window update per `write_burst` rule (amortized: expired windows are dropped a few at a
//! time, oldest first, never by a scan of the table). State is bounded: each `write_burst` rule
//! tracks at most [`MAX_TRACKED_PROCESSES`] processes.

use std::collections::{HashMap, VecDeque};

use fsense_proto::Operation;
use globset::Candidate;

use crate::Severity;
use crate::rules::{RuleSet, Template};

/// Most processes one `write_burst` rule keeps a window for. A new process always gets a window:
/// when the table is full, the window that opened first is dropped (its writes so far are
/// counted in [`Engine::untracked_writes`] unless it had fired).
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
    windows: Windows,
}

/// The per-process windows of one `write_burst` rule, with the order in which they opened.
#[derive(Debug, Clone, Default)]
struct Windows {
    by_pid: HashMap<u32, Window>,
    /// `(pid, start_ms)` for every window opened, oldest first. An entry whose pid has no window
    /// with that start any more is stale and skipped; each entry is popped at most once.
    opened: VecDeque<(u32, u64)>,
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
                    windows: Windows::default(),
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
                let recorded = burst.windows.record(event, burst.writes, burst.window_ms);
                if recorded.fired {
                    fired.push(burst.rule);
                }
                self.untracked_writes = self.untracked_writes.saturating_add(recorded.lost);
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

/// What counting one write did.
struct Recorded {
    /// This write reached the threshold (once per window).
    fired: bool,
    /// Writes dropped uncounted to make room for this process (a window that had not fired).
    lost: u64,
}

/// Entries examined per write to drop expired windows (more than the one a write can add, so
/// the queue drains).
const SWEEP_PER_WRITE: usize = 2;

impl Windows {
    /// Counts one write into the process's window, opening one if needed.
    fn record(&mut self, event: &EventFacts<'_>, writes: u32, window_ms: u32) -> Recorded {
        let now = event.time_ms;
        let expired = |w: &Window| now.saturating_sub(w.start_ms) >= u64::from(window_ms);
        self.sweep(SWEEP_PER_WRITE, &expired);
        let mut lost = 0;
        if !self.by_pid.contains_key(&event.pid) && self.by_pid.len() >= MAX_TRACKED_PROCESSES {
            lost = self.evict_oldest();
        }
        let fresh = Window {
            start_ms: now,
            writes: 0,
            fired: false,
        };
        let mut opened = false;
        let window = self.by_pid.entry(event.pid).or_insert_with(|| {
            opened = true;
            fresh
        });
        if !opened && (expired(window) || now < window.start_ms) {
            *window = fresh;
            opened = true;
        }
        window.writes = window.writes.saturating_add(1);
        let fired = !window.fired && window.writes >= writes;
        window.fired |= fired;
        if opened {
            self.opened.push_back((event.pid, now));
            if self.opened.len() > 2 * MAX_TRACKED_PROCESSES {
                self.compact();
            }
        }
        Recorded { fired, lost }
    }

    /// Whether `(pid, start)` is the window `pid` has now.
    fn is_current(&self, pid: u32, start: u64) -> bool {
        self.by_pid.get(&pid).is_some_and(|w| w.start_ms == start)
    }

    /// Drops expired windows from the oldest end, examining at most `budget` entries.
    fn sweep(&mut self, budget: usize, expired: &dyn Fn(&Window) -> bool) {
        for _ in 0..budget {
            let Some(&(pid, start)) = self.opened.front() else {
                return;
            };
            if self.is_current(pid, start) {
                if !self.by_pid.get(&pid).is_some_and(expired) {
                    return;
                }
                self.by_pid.remove(&pid);
            }
            self.opened.pop_front();
        }
    }

    /// Drops the window that opened first; returns its uncounted writes (0 if it had fired).
    fn evict_oldest(&mut self) -> u64 {
        while let Some((pid, start)) = self.opened.pop_front() {
            if self.is_current(pid, start) {
                return self
                    .by_pid
                    .remove(&pid)
                    .map_or(0, |w| if w.fired { 0 } else { u64::from(w.writes) });
            }
        }
        0
    }

    /// Removes stale entries (rare: once per `MAX_TRACKED_PROCESSES` openings at most).
    fn compact(&mut self) {
        let by_pid = &self.by_pid;
        self.opened
            .retain(|&(pid, start)| by_pid.get(&pid).is_some_and(|w| w.start_ms == start));
    }
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
        assert!(engine.bursts[0].windows.by_pid.len() <= MAX_TRACKED_PROCESSES);
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
        assert_eq!(windows.by_pid.len(), MAX_TRACKED_PROCESSES);
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
        assert_eq!(windows.by_pid.len(), 1, "all 1000 expired windows dropped");
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
