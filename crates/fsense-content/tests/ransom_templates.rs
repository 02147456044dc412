//! The two templates for what ransomware leaves behind, and rules on the new operations: each
//! fires on the pattern and stays quiet on the ordinary activity that looks most like it
//! (editors' and downloaders' temporary names, rsync, log rotation, `rm -r`, a build).

use fsense_content::engine::extension;
use fsense_content::{Engine, EventFacts, Operation, compile};

const RULES: &str = r#"
version = 1
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
writes = 20
deletes = 20
window_ms = 10000

[[rule]]
id = "locked-extension"
template = "path_match"
severity = "high"
[rule.fields]
operation = "rename"
name = "target"
glob = "**/*.locked"

[[rule]]
id = "docm-drop"
template = "path_match"
severity = "high"
[rule.fields]
operation = "create"
glob = "**/*.docm"

[[rule]]
id = "delete-backup"
template = "path_match"
severity = "medium"
[rule.fields]
operation = "delete"
glob = "**/*.bak"

[[rule]]
id = "link-to-sam"
template = "path_match"
severity = "high"
[rule.fields]
operation = "link"
name = "path"
glob = "**/config/SAM"

[[rule]]
id = "clone-from-shadow"
template = "path_match"
severity = "high"
[rule.fields]
operation = "clone"
name = "target"
glob = "**/HarddiskVolumeShadowCopy*/**"
"#;

struct Run {
    engine: Engine,
    fired: Vec<(u64, String)>,
}

impl Run {
    fn new() -> Self {
        Self {
            engine: Engine::new(compile(RULES).unwrap()),
            fired: Vec::new(),
        }
    }

    fn event(&mut self, operation: Operation, path: &str, target: Option<&str>, pid: u32, t: u64) {
        let facts = EventFacts {
            operation,
            path,
            pid,
            time_ms: t,
        };
        for m in self.engine.evaluate_named(&facts, target) {
            self.fired.push((t, m.id.to_owned()));
        }
    }

    fn ids(&self) -> Vec<&str> {
        self.fired.iter().map(|(_, id)| id.as_str()).collect()
    }
}

#[test]
fn many_renames_to_one_new_extension_by_one_process_fire_once() {
    let mut run = Run::new();
    for i in 0..50u64 {
        let ext = ["docx", "xlsx", "pdf", "jpg"][i as usize % 4];
        let old = format!(r"C:\Users\ann\Documents\file{i}.{ext}");
        let new = format!("{old}.crypt");
        run.event(Operation::Rename, &old, Some(&new), 666, i * 100);
    }
    assert_eq!(run.ids(), ["mass-rename"]);
    // The twentieth rename within the window is the one that fired.
    assert_eq!(run.fired[0].0, 19 * 100);

    // Replacing the extension (random names kept) fires too.
    let mut run = Run::new();
    for i in 0..20u64 {
        run.event(
            Operation::Rename,
            &format!("/home/ann/{i}.odt"),
            Some(&format!("/home/ann/{i}.x7k")),
            7,
            i,
        );
    }
    assert_eq!(run.ids(), ["mass-rename"]);
}

#[test]
fn renames_spread_over_processes_or_time_or_extensions_stay_quiet() {
    let mut run = Run::new();
    // 19 per process, two processes.
    for i in 0..38u64 {
        let pid = 100 + (i % 2) as u32;
        run.event(
            Operation::Rename,
            &format!("/d/{i}.doc"),
            Some(&format!("/d/{i}.doc.enc")),
            pid,
            i,
        );
    }
    // Slow: one every 600 ms never has 20 in a 10 s window.
    for i in 0..100u64 {
        run.event(
            Operation::Rename,
            &format!("/d/s{i}.doc"),
            Some(&format!("/d/s{i}.doc.enc")),
            200,
            i * 600,
        );
    }
    // Log rotation: every rename gives a new extension, never the same one twice.
    for i in (1..40u64).rev() {
        run.event(
            Operation::Rename,
            &format!("/var/log/app.log.{i}"),
            Some(&format!("/var/log/app.log.{}", i + 1)),
            300,
            1000 + i,
        );
    }
    assert!(run.fired.is_empty(), "{:?}", run.fired);
}

#[test]
fn temporary_names_given_their_final_names_stay_quiet() {
    let mut run = Run::new();
    for i in 0..200u64 {
        let name = format!("/home/ann/src/file{i}.txt");
        // rsync, editors (`.name.XXXXXX`, `name~`, `name.tmp`), browsers (`.part`).
        let temps = [
            format!("/home/ann/src/.file{i}.txt.Gh3k2a"),
            format!("{name}~"),
            format!("{name}.tmp"),
            format!("{name}.part"),
        ];
        for (k, temp) in temps.iter().enumerate() {
            run.event(Operation::Rename, temp, Some(&name), 400 + k as u32, i * 10);
        }
        // Renames that keep the extension.
        run.event(
            Operation::Rename,
            &format!("/home/ann/a{i}.jpg"),
            Some(&format!("/home/ann/b{i}.JPG")),
            500,
            i * 10,
        );
    }
    assert!(run.fired.is_empty(), "{:?}", run.fired);
}

#[test]
fn a_burst_of_deletes_after_writes_fires_once() {
    let mut run = Run::new();
    for i in 0..40u64 {
        let original = format!(r"C:\Users\ann\Documents\f{i}.docx");
        run.event(
            Operation::Write,
            &format!("{original}.enc"),
            None,
            666,
            i * 50,
        );
        run.event(Operation::Delete, &original, None, 666, i * 50 + 1);
    }
    assert_eq!(run.ids(), ["write-then-delete"]);
    // 20 writes and the 20th delete.
    assert_eq!(run.fired[0].0, 19 * 50 + 1);
}

#[test]
fn deletes_alone_or_by_another_process_or_few_stay_quiet() {
    let mut run = Run::new();
    // `rm -r` of a build tree: deletes only.
    for i in 0..1000u64 {
        run.event(Operation::Delete, &format!("/b/target/{i}.o"), None, 10, i);
    }
    // Writes by one process, deletes by another.
    for i in 0..100u64 {
        run.event(
            Operation::Write,
            &format!("/b/out/{i}.o"),
            None,
            11,
            2000 + i,
        );
        run.event(
            Operation::Delete,
            &format!("/b/tmp/{i}"),
            None,
            12,
            2000 + i,
        );
    }
    // A build: many writes, a few temporary files deleted.
    for i in 0..500u64 {
        run.event(
            Operation::Write,
            &format!("/b/obj/{i}.o"),
            None,
            13,
            3000 + i,
        );
        if i % 50 == 0 {
            run.event(
                Operation::Delete,
                &format!("/b/obj/{i}.tmp"),
                None,
                13,
                3000 + i,
            );
        }
    }
    // Deletes first, then writes (a cleanup, then a build): the deletes came before any write.
    for i in 0..30u64 {
        run.event(Operation::Delete, &format!("/e/old{i}"), None, 15, 5000 + i);
    }
    for i in 0..30u64 {
        run.event(Operation::Write, &format!("/e/new{i}"), None, 15, 5100 + i);
    }
    // Deletes long after the writes: the window has closed.
    for i in 0..30u64 {
        run.event(Operation::Write, &format!("/c/{i}"), None, 14, 10_000 + i);
    }
    for i in 0..30u64 {
        run.event(Operation::Delete, &format!("/c/{i}"), None, 14, 30_000 + i);
    }
    assert!(run.fired.is_empty(), "{:?}", run.fired);
}

#[test]
fn path_match_rules_on_the_new_operations_match_the_right_name() {
    let mut run = Run::new();
    run.event(
        Operation::Rename,
        r"C:\d\a.docx",
        Some(r"C:\d\a.docx.LOCKED"),
        1,
        0,
    );
    assert_eq!(run.ids(), ["locked-extension"]);
    // The old name is not the target.
    let mut run = Run::new();
    run.event(Operation::Rename, "/d/a.locked", Some("/d/a.txt"), 1, 0);
    assert!(run.fired.is_empty());
    // A create rule matches the new name a rename or a link delivers, never the old one.
    let mut run = Run::new();
    run.event(
        Operation::Rename,
        "/d/invoice.pdf.part",
        Some("/d/invoice.docm"),
        1,
        0,
    );
    run.event(Operation::Link, "/d/x.docx", Some("/d/y.docm"), 1, 1);
    run.event(Operation::Rename, "/d/old.docm", Some("/d/new.txt"), 1, 2);
    assert_eq!(run.ids(), ["docm-drop", "docm-drop"]);
    // Deletes, links (the existing file) and clones (the source).
    let mut run = Run::new();
    run.event(Operation::Delete, "/srv/db.BAK", None, 1, 0);
    run.event(Operation::Write, "/srv/db.bak", None, 1, 1);
    run.event(
        Operation::Link,
        r"C:\Windows\System32\config\SAM",
        Some(r"C:\Users\Public\s"),
        1,
        2,
    );
    run.event(
        Operation::Clone,
        r"C:\Users\Public\copy",
        Some(r"\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy1\Windows\System32\config\SAM"),
        1,
        3,
    );
    assert_eq!(
        run.ids(),
        ["delete-backup", "link-to-sam", "clone-from-shadow"]
    );
}

#[test]
fn extensions_are_the_last_dot_of_the_last_component() {
    assert_eq!(extension("/a/b.tar.gz"), Some("gz"));
    assert_eq!(extension(r"C:\a.b\c"), None);
    assert_eq!(extension("/a/.bashrc"), None);
    assert_eq!(extension("/a/b."), None);
    assert_eq!(extension("x.Y"), Some("Y"));
}

proptest::proptest! {
    /// Whatever the order of events, a `rename_burst` fires at most once per window per process
    /// and extension, and never for a process with fewer renames than its threshold.
    #[test]
    fn rename_burst_never_fires_below_its_threshold(
        events in proptest::collection::vec((0u32..4, 0u64..30_000, 0usize..3), 0..200),
    ) {
        let mut run = Run::new();
        let mut per_pid = std::collections::HashMap::new();
        let mut events = events;
        events.sort_by_key(|e| e.1);
        for (pid, t, ext) in events {
            let new_ext = ["locked", "enc", "x"][ext];
            run.event(
                Operation::Rename,
                &format!("/d/{t}.doc"),
                Some(&format!("/d/{t}.doc.{new_ext}")),
                pid,
                t,
            );
            *per_pid.entry((pid, ext)).or_insert(0u32) += 1;
        }
        let fired = run.fired.iter().filter(|(_, id)| id == "mass-rename").count();
        // Each firing takes 20 renames of its own window.
        let possible: u32 = per_pid.values().map(|n| n / 20).sum();
        proptest::prop_assert!(fired as u32 <= possible);
        if per_pid.values().all(|&n| n < 20) {
            proptest::prop_assert_eq!(fired, 0);
        }
    }
}
