//! The edges of the rules compiler and the engine: every limit accepts its own value and refuses
//! the next, ids take exactly their documented characters, syntax errors point at the right line
//! and column, and `write_burst` windows behave at their boundaries (same instant, clock going
//! back, a full process table). The unit tests cover the ordinary cases; these were found
//! missing by mutation testing (`scripts/mutants.sh content`).

use fsense_content::engine::MAX_TRACKED_PROCESSES;
use fsense_content::rules::{
    MAX_GLOB_LEN, MAX_ID_LEN, MAX_RULES, MAX_RULES_FILE_BYTES, NameField, RuleOperation, Template,
};
use fsense_content::{Engine, EventFacts, Operation, Severity, compile};

fn burst_rules(writes: u32, window_ms: u32) -> String {
    format!(
        "version = 1\n[[rule]]\nid = \"burst\"\ntemplate = \"write_burst\"\nseverity = \"high\"\n\
         [rule.fields]\nwrites = {writes}\nwindow_ms = {window_ms}\n"
    )
}

fn path_rule(id: &str, glob: &str) -> String {
    format!(
        "version = 1\n[[rule]]\nid = \"{id}\"\ntemplate = \"path_match\"\nseverity = \"low\"\n\
         [rule.fields]\noperation = \"write\"\nglob = \"{glob}\"\n"
    )
}

fn fired(engine: &mut Engine, operation: Operation, pid: u32, time_ms: u64) -> Vec<String> {
    engine
        .evaluate(&EventFacts {
            operation,
            path: r"C:\data\file.bin",
            pid,
            time_ms,
        })
        .iter()
        .map(|m| m.id.to_owned())
        .collect()
}

fn write_fires(engine: &mut Engine, pid: u32, time_ms: u64) -> bool {
    !fired(engine, Operation::Write, pid, time_ms).is_empty()
}

#[test]
fn an_id_of_the_longest_length_is_accepted() {
    let longest = "i".repeat(MAX_ID_LEN);
    let set = compile(&path_rule(&longest, "*.txt")).unwrap();
    assert_eq!(set.rules()[0].id, longest);
    let err = compile(&path_rule(&format!("{longest}i"), "*.txt")).unwrap_err();
    assert_eq!(err.field(), Some("id"));
}

#[test]
fn a_set_with_a_rule_is_not_empty() {
    let set = compile(&path_rule("one", "*.txt")).unwrap();
    assert_eq!(set.len(), 1);
    assert!(!set.is_empty());
}

#[test]
fn ids_take_letters_digits_dash_and_underscore_only() {
    for id in ["a", "Z9", "under_score", "da-sh", "_-_", "0"] {
        assert!(compile(&path_rule(id, "*.txt")).is_ok(), "{id}");
    }
    for id in ["a.b", "a b", "a/b", "é", "a+b", "a\\\\b"] {
        let err = compile(&path_rule(id, "*.txt")).unwrap_err();
        assert_eq!(err.field(), Some("id"), "{id}");
        assert!(err.to_string().contains("not allowed"), "{err}");
    }
}

#[test]
fn a_glob_of_the_longest_length_is_accepted() {
    let longest = "g".repeat(MAX_GLOB_LEN);
    let set = compile(&path_rule("r", &longest)).unwrap();
    assert_eq!(
        set.rules()[0].template,
        Template::PathMatch {
            operation: RuleOperation::Write,
            name: NameField::Path,
            glob: longest.clone()
        }
    );
    assert!(compile(&path_rule("r", &format!("{longest}g"))).is_err());
}

#[test]
fn a_file_of_exactly_the_size_limit_is_accepted() {
    let rules = path_rule("r", "*.txt");
    let mut text = rules.clone();
    text.push('#');
    text.push_str(&"x".repeat(MAX_RULES_FILE_BYTES - rules.len() - 2));
    text.push('\n');
    assert_eq!(text.len(), MAX_RULES_FILE_BYTES);
    assert_eq!(compile(&text).unwrap().len(), 1);
    text.push('\n');
    let err = compile(&text).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

/// `count` minimal rules as one inline array (10,000 fit in the file size limit).
fn many_rules(count: usize) -> String {
    let mut text = String::from("version = 1\nrule = [\n");
    for i in 0..count {
        text.push_str(&format!(
            "{{id=\"r{i}\",template=\"write_burst\",severity=\"info\",fields={{writes=1,window_ms=1}}}},\n"
        ));
    }
    text.push_str("]\n");
    text
}

#[test]
fn the_largest_rule_count_is_accepted() {
    let text = many_rules(MAX_RULES);
    assert!(text.len() <= MAX_RULES_FILE_BYTES);
    assert_eq!(compile(&text).unwrap().len(), MAX_RULES);
    let err = compile(&many_rules(MAX_RULES + 1)).unwrap_err();
    assert_eq!(err.field(), Some("rule"));
    assert!(err.to_string().contains("10001 rules"), "{err}");
}

#[test]
fn syntax_errors_name_the_line_and_column() {
    // The error is the `=` with no value, on line 3 (after 4 characters of indentation).
    let err = compile("version = 1\n\n    x = \n").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("invalid TOML at line 3, column "),
        "{message}"
    );
    // On the first line the column counts from the start of the text.
    let err = compile("version = = 1\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid TOML at line 1, column 11"),
        "{err}"
    );
    let err = compile("\nversion = = 1\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid TOML at line 2, column 11"),
        "{err}"
    );
}

#[test]
fn templates_have_their_file_names() {
    let set = compile(&format!(
        "{}{}",
        path_rule("p", "*.txt"),
        burst_rules(2, 10).replace("version = 1\n", "")
    ))
    .unwrap();
    let names: Vec<&str> = set.rules().iter().map(|r| r.template.name()).collect();
    assert_eq!(names, ["path_match", "write_burst"]);
    assert_eq!(set.rules()[1].severity, Severity::High);
}

#[test]
fn writes_at_the_same_instant_count_towards_one_window() {
    let mut engine = Engine::new(compile(&burst_rules(3, 1000)).unwrap());
    assert!(!write_fires(&mut engine, 7, 500));
    assert!(!write_fires(&mut engine, 7, 500));
    assert!(write_fires(&mut engine, 7, 500));
}

#[test]
fn a_clock_going_back_opens_a_new_window() {
    let mut engine = Engine::new(compile(&burst_rules(2, 1000)).unwrap());
    assert!(!write_fires(&mut engine, 7, 5000));
    // Earlier than the window's start: a new window opens at 4000, counting from one.
    assert!(!write_fires(&mut engine, 7, 4000));
    assert!(write_fires(&mut engine, 7, 4001));
    // The last write before the window closes still counts; the one at window_ms does not.
    let mut engine = Engine::new(compile(&burst_rules(2, 1000)).unwrap());
    assert!(!write_fires(&mut engine, 8, 0));
    assert!(write_fires(&mut engine, 8, 999));
    let mut engine = Engine::new(compile(&burst_rules(2, 1000)).unwrap());
    assert!(!write_fires(&mut engine, 9, 0));
    assert!(!write_fires(&mut engine, 9, 1000));
}

#[test]
fn only_writes_count_towards_a_burst() {
    let mut engine = Engine::new(compile(&burst_rules(2, 1000)).unwrap());
    assert!(fired(&mut engine, Operation::Create, 7, 1).is_empty());
    assert!(fired(&mut engine, Operation::Create, 7, 2).is_empty());
    assert!(!write_fires(&mut engine, 7, 3), "creates did not count");
    assert!(write_fires(&mut engine, 7, 4));
}

#[test]
fn a_full_process_table_still_tracks_the_processes_it_holds_and_new_ones() {
    let mut engine = Engine::new(compile(&burst_rules(2, 1000)).unwrap());
    let full = MAX_TRACKED_PROCESSES as u32;
    for pid in 0..full {
        assert!(!write_fires(&mut engine, pid, 10));
    }
    assert_eq!(
        engine.untracked_writes(),
        0,
        "exactly full is still tracked"
    );
    // A process already in the table keeps being counted while the table is full.
    assert!(write_fires(&mut engine, 5, 20));
    assert_eq!(engine.untracked_writes(), 0);
    // A new one is tracked at once: the window that opened first (pid 0, one write) makes
    // room, and its write is counted as untracked.
    assert!(!write_fires(&mut engine, full, 20));
    assert!(write_fires(&mut engine, full, 21));
    assert_eq!(engine.untracked_writes(), 1);
    // Pid 0 comes back with a fresh window.
    assert!(!write_fires(&mut engine, 0, 22));
    assert!(write_fires(&mut engine, 0, 23));
    assert_eq!(engine.untracked_writes(), 2, "pid 1 made room for it");
}

#[test]
fn every_matching_rule_is_reported_once_in_file_order() {
    let text = "version = 1\n\
        [[rule]]\nid = \"b-any\"\ntemplate = \"path_match\"\nseverity = \"low\"\n\
        [rule.fields]\noperation = \"write\"\nglob = \"**\"\n\
        [[rule]]\nid = \"a-bin\"\ntemplate = \"path_match\"\nseverity = \"medium\"\n\
        [rule.fields]\noperation = \"write\"\nglob = \"**/*.bin\"\n\
        [[rule]]\nid = \"c-burst\"\ntemplate = \"write_burst\"\nseverity = \"high\"\n\
        [rule.fields]\nwrites = 1\nwindow_ms = 10\n\
        [[rule]]\nid = \"d-create\"\ntemplate = \"path_match\"\nseverity = \"low\"\n\
        [rule.fields]\noperation = \"create\"\nglob = \"**\"\n";
    let mut engine = Engine::new(compile(text).unwrap());
    assert_eq!(
        fired(&mut engine, Operation::Write, 1, 0),
        ["b-any", "a-bin", "c-burst"]
    );
    let matches = engine.evaluate(&EventFacts {
        operation: Operation::Create,
        path: "/x/y.txt",
        pid: 1,
        time_ms: 0,
    });
    assert_eq!(matches.len(), 1);
    assert_eq!(
        (matches[0].id, matches[0].severity),
        ("d-create", Severity::Low)
    );
}
