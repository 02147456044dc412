//! CI builds the package with `scripts/package.sh` directly, not through cargo-make (installing it
//! takes minutes). This keeps `Makefile.toml`, which users run, pointing at the same flow: if a
//! task stops calling the script or the checker's package test, this fails instead of nobody
//! noticing.

use std::path::Path;

use toml::Value;

fn makefile() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Makefile.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn task<'a>(makefile: &'a Value, name: &str) -> &'a Value {
    makefile
        .get("tasks")
        .and_then(|tasks| tasks.get(name))
        .unwrap_or_else(|| panic!("Makefile.toml has no [tasks.{name}]"))
}

fn command_line(task: &Value) -> Vec<String> {
    let command = task
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let args = task
        .get("args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    std::iter::once(command.to_owned())
        .chain(args.iter().filter_map(|a| a.as_str().map(str::to_owned)))
        .collect()
}

#[test]
fn cargo_make_package_runs_the_script_ci_runs() {
    let makefile = makefile();
    assert_eq!(
        command_line(task(&makefile, "package")),
        ["bash", "scripts/package.sh"]
    );
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/package.sh")
            .is_file(),
        "scripts/package.sh is missing"
    );
}

#[test]
fn cargo_make_package_check_runs_the_checkers_package_test() {
    let makefile = makefile();
    let check = task(&makefile, "package-check");
    let depends: Vec<_> = check
        .get("dependencies")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(depends, ["package"]);
    let line = command_line(check);
    assert_eq!(line[..2], ["cargo", "test"]);
    for part in ["fsense-pkgcheck", "package", "--ignored"] {
        assert!(
            line.iter().any(|a| a == part),
            "package-check: {line:?} lacks {part}"
        );
    }
}
