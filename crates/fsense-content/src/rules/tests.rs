use proptest::prelude::*;

use super::*;
use crate::ErrorKind;

const EXAMPLE: &str = r#"
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
writes = 500
window_ms = 10000
"#;

/// Compiles `text`, expects a rejection and returns (rule, field, message).
fn rejection(text: &str) -> (Option<String>, Option<String>, String) {
    let err = compile(text).expect_err("content must be rejected");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    (
        err.rule().map(str::to_owned),
        err.field().map(str::to_owned),
        message,
    )
}

fn assert_rejected(text: &str, rule: &str, field: &str, needle: &str) {
    let (got_rule, got_field, message) = rejection(text);
    assert_eq!(got_rule.as_deref(), Some(rule), "{message}");
    assert_eq!(got_field.as_deref(), Some(field), "{message}");
    assert!(
        message.contains(needle),
        "`{message}` should mention `{needle}`"
    );
    assert!(
        message.contains(rule) && message.contains(field),
        "{message}"
    );
}

#[test]
fn the_issue_example_compiles() {
    let set = compile(EXAMPLE).unwrap();
    assert_eq!(set.version(), 7);
    assert_eq!(set.len(), 2);
    assert_eq!(
        set.rules()[0],
        Rule {
            id: "office-macro-drop".into(),
            severity: Severity::High,
            template: Template::PathMatch {
                operation: RuleOperation::Create,
                name: NameField::Path,
                glob: "**/*.docm".into()
            },
        }
    );
    assert_eq!(
        set.rules()[1].template,
        Template::WriteBurst {
            writes: 500,
            window_ms: 10_000
        }
    );
}

#[test]
fn a_file_with_no_rules_is_valid_and_empty() {
    let set = compile("version = 1\n").unwrap();
    assert!(set.is_empty());
}

#[test]
fn rejects_missing_field() {
    assert_rejected(
        &EXAMPLE.replace("window_ms = 10000\n", ""),
        "mass-write",
        "window_ms",
        "missing",
    );
    assert_rejected(
        &EXAMPLE.replace("glob = \"**/*.docm\"\n", ""),
        "office-macro-drop",
        "glob",
        "missing",
    );
    assert_rejected(
        &EXAMPLE.replace("severity = \"high\"\n", ""),
        "office-macro-drop",
        "severity",
        "missing",
    );
}

#[test]
fn rejects_unknown_field() {
    // The 21st-field case: content supplying a field the template does not declare.
    assert_rejected(
        &EXAMPLE.replace(
            "window_ms = 10000\n",
            "window_ms = 10000\nfield21 = \"*\"\n",
        ),
        "mass-write",
        "field21",
        "unknown field",
    );
    assert_rejected(
        &EXAMPLE.replace("severity = \"high\"\n", "severity = \"high\"\ncolour = 1\n"),
        "office-macro-drop",
        "colour",
        "unknown",
    );
}

#[test]
fn rejects_wrong_type() {
    assert_rejected(
        &EXAMPLE.replace("writes = 500", "writes = \"500\""),
        "mass-write",
        "writes",
        "expected an integer",
    );
    assert_rejected(
        &EXAMPLE.replace("glob = \"**/*.docm\"", "glob = 3"),
        "office-macro-drop",
        "glob",
        "expected a string",
    );
    assert_rejected(
        &EXAMPLE.replace("writes = 500", "writes = 5.0"),
        "mass-write",
        "writes",
        "expected an integer",
    );
}

#[test]
fn rejects_value_out_of_range() {
    for (value, needle) in [
        ("0", "0 is out of range"),
        ("1000001", "out of range 1..=1000000"),
        ("-1", "-1 is out of range"),
        ("4294967296", "out of range"),
    ] {
        assert_rejected(
            &EXAMPLE.replace("writes = 500", &format!("writes = {value}")),
            "mass-write",
            "writes",
            needle,
        );
    }
    assert_rejected(
        &EXAMPLE.replace("window_ms = 10000", "window_ms = 3600001"),
        "mass-write",
        "window_ms",
        "out of range",
    );
    assert_rejected(
        &EXAMPLE.replace("operation = \"create\"", "operation = \"chmod\""),
        "office-macro-drop",
        "operation",
        "the sensor reports create, write, delete, rename, link, clone",
    );
    assert_rejected(
        &EXAMPLE.replace("severity = \"high\"", "severity = \"severe\""),
        "office-macro-drop",
        "severity",
        "not one of",
    );
}

#[test]
fn rejects_unknown_template() {
    assert_rejected(
        &EXAMPLE.replace("template = \"write_burst\"", "template = \"write_bursts\""),
        "mass-write",
        "template",
        "unknown template `write_bursts`",
    );
}

#[test]
fn rejects_invalid_glob() {
    assert_rejected(
        &EXAMPLE.replace("**/*.docm", "**/[z-a].docm"),
        "office-macro-drop",
        "glob",
        "invalid glob",
    );
    assert_rejected(
        &EXAMPLE.replace("**/*.docm", "**/{a,b"),
        "office-macro-drop",
        "glob",
        "invalid glob",
    );
    assert_rejected(
        &EXAMPLE.replace("\"**/*.docm\"", "\"\""),
        "office-macro-drop",
        "glob",
        "empty glob",
    );
    let long = "a".repeat(MAX_GLOB_LEN + 1);
    assert_rejected(
        &EXAMPLE.replace("**/*.docm", &long),
        "office-macro-drop",
        "glob",
        "limit is 1024",
    );
}

#[test]
fn rejects_duplicate_id() {
    let text = EXAMPLE.replace("id = \"mass-write\"", "id = \"office-macro-drop\"");
    assert_rejected(&text, "office-macro-drop", "id", "duplicate");
}

#[test]
fn rejects_bad_ids_naming_the_rule_position() {
    assert_rejected(
        &EXAMPLE.replace("id = \"mass-write\"", "id = \"mass write\""),
        "#2",
        "id",
        "not allowed",
    );
    assert_rejected(
        &EXAMPLE.replace("id = \"mass-write\"", "id = \"\""),
        "#2",
        "id",
        "1..=64",
    );
    let long = "x".repeat(65);
    assert_rejected(
        &EXAMPLE.replace("id = \"mass-write\"", &format!("id = \"{long}\"")),
        "#2",
        "id",
        "1..=64",
    );
    assert_rejected(
        &EXAMPLE.replace("id = \"mass-write\"\n", ""),
        "#2",
        "id",
        "missing",
    );
}

#[test]
fn rejects_file_over_size_limit() {
    let padding = format!("# {}\n", "x".repeat(MAX_RULES_FILE_BYTES));
    let (rule, field, message) = rejection(&format!("{EXAMPLE}{padding}"));
    assert_eq!((rule, field), (None, None));
    assert!(message.contains("limit is 1048576"), "{message}");
}

#[test]
fn rejects_file_level_problems() {
    let (_, field, _) = rejection("[[rule]]\n");
    assert_eq!(field.as_deref(), Some("version"));
    let (_, field, message) = rejection("version = 0\n");
    assert_eq!(field.as_deref(), Some("version"), "{message}");
    let (_, field, _) = rejection("version = 1\nextra = true\n");
    assert_eq!(field.as_deref(), Some("extra"));
    let (_, _, message) = rejection("version = 1\n[[rule]\n");
    assert!(message.starts_with("invalid TOML at line 2"), "{message}");
    let (rule, _, _) = rejection("version = 1\nrule = [1]\n");
    assert_eq!(rule.as_deref(), Some("#1"));
}

fn rule_strategy() -> impl Strategy<Value = (String, Template, Severity)> {
    let severity = prop_oneof![
        Just(Severity::Info),
        Just(Severity::Low),
        Just(Severity::Medium),
        Just(Severity::High),
        Just(Severity::Critical)
    ];
    let template = prop_oneof![
        (
            proptest::sample::select(RuleOperation::ALL.to_vec()),
            any::<bool>(),
            "[a-z]{1,8}"
        )
            .prop_map(|(operation, on_target, ext)| Template::PathMatch {
                operation,
                name: if on_target && operation.has_target() {
                    NameField::Target
                } else {
                    NameField::Path
                },
                glob: format!("**/*.{ext}"),
            }),
        (WRITES_RANGE, WINDOW_MS_RANGE)
            .prop_map(|(writes, window_ms)| Template::WriteBurst { writes, window_ms }),
        (COUNT_RANGE, WINDOW_MS_RANGE)
            .prop_map(|(renames, window_ms)| Template::RenameBurst { renames, window_ms }),
        (DELETE_BURST_WRITES_RANGE, COUNT_RANGE, WINDOW_MS_RANGE).prop_map(
            |(writes, deletes, window_ms)| Template::DeleteBurst {
                writes,
                deletes,
                window_ms
            }
        ),
    ];
    ("[A-Za-z0-9_-]{1,64}", template, severity)
}

fn render(version: u64, rules: &[(String, Template, Severity)]) -> String {
    let mut text = format!("version = {version}\n");
    for (id, template, severity) in rules {
        text.push_str(&format!(
            "[[rule]]\nid = \"{id}\"\ntemplate = \"{}\"\nseverity = \"{}\"\n[rule.fields]\n",
            template.name(),
            severity.as_str()
        ));
        match template {
            Template::PathMatch {
                operation,
                name,
                glob,
            } => {
                text.push_str(&format!(
                    "operation = \"{}\"\nglob = \"{glob}\"\n",
                    operation.as_str()
                ));
                if operation.has_target() {
                    text.push_str(&format!("name = \"{}\"\n", name.as_str()));
                }
            }
            Template::WriteBurst { writes, window_ms } => {
                text.push_str(&format!("writes = {writes}\nwindow_ms = {window_ms}\n"))
            }
            Template::RenameBurst { renames, window_ms } => {
                text.push_str(&format!("renames = {renames}\nwindow_ms = {window_ms}\n"))
            }
            Template::DeleteBurst {
                writes,
                deletes,
                window_ms,
            } => text.push_str(&format!(
                "writes = {writes}\ndeletes = {deletes}\nwindow_ms = {window_ms}\n"
            )),
        }
    }
    text
}

const RANSOM: &str = r#"
version = 3
[[rule]]
id = "new-extension"
template = "path_match"
severity = "medium"
[rule.fields]
operation = "rename"
name = "target"
glob = "**/*.locked"

[[rule]]
id = "mass-rename"
template = "rename_burst"
severity = "critical"
[rule.fields]
renames = 20
window_ms = 10000

[[rule]]
id = "write-then-delete"
template = "delete_burst"
severity = "critical"
[rule.fields]
writes = 10
deletes = 10
window_ms = 10000
"#;

#[test]
fn the_new_operations_and_templates_compile() {
    let set = compile(RANSOM).unwrap();
    assert_eq!(
        set.rules()[0].template,
        Template::PathMatch {
            operation: RuleOperation::Rename,
            name: NameField::Target,
            glob: "**/*.locked".into()
        }
    );
    assert_eq!(
        set.rules()[1].template,
        Template::RenameBurst {
            renames: 20,
            window_ms: 10_000
        }
    );
    assert_eq!(
        set.rules()[2].template,
        Template::DeleteBurst {
            writes: 10,
            deletes: 10,
            window_ms: 10_000
        }
    );
    for op in ["delete", "create", "write"] {
        let text = EXAMPLE.replace("operation = \"create\"", &format!("operation = \"{op}\""));
        assert!(compile(&text).is_ok(), "{op}");
    }
    for op in ["link", "clone", "rename"] {
        let text = EXAMPLE.replace(
            "operation = \"create\"",
            &format!("operation = \"{op}\"\nname = \"path\""),
        );
        assert!(compile(&text).is_ok(), "{op}");
        // Two names: which one the glob is for must be said.
        let text = EXAMPLE.replace("operation = \"create\"", &format!("operation = \"{op}\""));
        assert_rejected(&text, "office-macro-drop", "name", "missing");
    }
}

#[test]
fn a_rule_on_an_operation_the_sensor_cannot_see_is_refused() {
    for op in ["read", "chmod", "open", "execute", "Create", ""] {
        let text = EXAMPLE.replace("operation = \"create\"", &format!("operation = \"{op}\""));
        assert_rejected(&text, "office-macro-drop", "operation", "could never fire");
    }
    let text = EXAMPLE.replace("operation = \"create\"", "operation = \"read\"");
    assert_rejected(
        &text,
        "office-macro-drop",
        "operation",
        "reads are not reported",
    );
}

#[test]
fn a_target_name_only_exists_for_renames_links_and_clones() {
    for op in ["create", "write", "delete"] {
        let text = RANSOM.replace("operation = \"rename\"", &format!("operation = \"{op}\""));
        assert_rejected(&text, "new-extension", "name", "has one name and no target");
    }
    let text = RANSOM.replace("name = \"target\"", "name = \"new\"");
    assert_rejected(&text, "new-extension", "name", "not one of path, target");
    let text = RANSOM.replace("name = \"target\"", "name = \"path\"");
    assert!(compile(&text).is_ok());
}

#[test]
fn the_new_templates_check_their_fields() {
    assert_rejected(
        &RANSOM.replace("renames = 20", "renames = 0"),
        "mass-rename",
        "renames",
        "out of range",
    );
    assert_rejected(
        &RANSOM.replace("writes = 10\n", "writes = 0\n"),
        "write-then-delete",
        "writes",
        "out of range",
    );
    assert_rejected(
        &RANSOM.replace("deletes = 10\n", ""),
        "write-then-delete",
        "deletes",
        "missing",
    );
    assert_rejected(
        &RANSOM.replace("renames = 20\n", "renames = 20\nglob = \"*\"\n"),
        "mass-rename",
        "glob",
        "unknown field",
    );
}

proptest! {
    #[test]
    fn compile_never_panics_on_arbitrary_text(text in ".{0,400}") {
        let _ = compile(&text);
    }

    #[test]
    fn compile_never_panics_on_mutated_valid_content(cut in 0..EXAMPLE.len(), insert in ".{0,12}") {
        let mut text = EXAMPLE.to_owned();
        let cut = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(cut, &insert);
        if let Err(err) = compile(&text) {
            prop_assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn valid_content_compiles_to_exactly_what_was_written(
        version in 1..=i64::MAX as u64,
        rules in proptest::collection::vec(rule_strategy(), 0..12),
    ) {
        let mut seen = HashSet::new();
        let rules: Vec<_> = rules.into_iter().filter(|(id, _, _)| seen.insert(id.clone())).collect();
        let set = compile(&render(version, &rules)).unwrap();
        prop_assert_eq!(set.version(), version);
        prop_assert_eq!(set.len(), rules.len());
        for (compiled, (id, template, severity)) in set.rules().iter().zip(&rules) {
            prop_assert_eq!(&compiled.id, id);
            prop_assert_eq!(&compiled.template, template);
            prop_assert_eq!(compiled.severity, *severity);
        }
    }

    #[test]
    fn out_of_range_writes_are_always_rejected(writes in prop_oneof![i64::MIN..=0, 1_000_001..=i64::MAX]) {
        let text = EXAMPLE.replace("writes = 500", &format!("writes = {writes}"));
        let err = compile(&text).unwrap_err();
        prop_assert_eq!(err.rule(), Some("mass-write"));
        prop_assert_eq!(err.field(), Some("writes"));
    }
}
