//! The second security review's fanotify findings (N4, N5, N12, N13), each reproduced as the
//! reviewer did it, scaled down: a lagging sensor, a full kernel queue, deep crowded directories
//! and directories moved in and out of the watched tree.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{DOCM_RULE, WatchRun, bytes, exact_path, in_private_namespace, matched_rules};

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn create_files(dir: &Path, n: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        fs::File::create(dir.join(format!("f{i}"))).unwrap();
    }
}

/// N12: a stopped sensor lets the kernel queue overflow. The summary must not read as an exact
/// count: stderr says "at least N" and how many times the queue overflowed, the JSON says the
/// count is a lower bound.
#[test]
fn a_queue_overflow_is_reported_as_a_lower_bound() {
    in_private_namespace("lag::a_queue_overflow_is_reported_as_a_lower_bound", || {
        let run = WatchRun::start(&[]);
        let pid = run.watcher.child.id();
        signal(pid, "-STOP");
        create_files(&run.watched().join("flood"), 20_000);
        signal(pid, "-CONT");
        let (status, stderr) = run.watcher.stop();
        assert!(status.success(), "{stderr}");
        let s: Value = serde_json::from_str(&fs::read_to_string(&run.summary).unwrap()).unwrap();
        let overflows = s["source"]["overflows"].as_u64().unwrap();
        eprintln!(
            "N12: 20000 creates; {} reported, dropped {} (lower bound: {}), overflows {overflows}",
            s["reported"], s["dropped"], s["dropped_is_lower_bound"]
        );
        assert!(overflows >= 1, "{s}");
        assert_eq!(s["dropped_is_lower_bound"], true, "{s}");
        let line = stderr
            .lines()
            .find(|l| l.contains(" events, "))
            .unwrap_or_else(|| panic!("no summary line: {stderr}"));
        let want = format!("at least {} dropped", s["dropped"]);
        assert!(line.contains(&want), "{line}");
        assert!(
            line.contains(&format!("queue overflowed {overflows} time")),
            "{line}"
        );
    });
}

/// N5: with the sensor lagging, a file created in a watched directory that is then moved out
/// (here twice, to hide the first move) must be reported at its original path or counted as
/// dropped, never only as outside; the stderr summary says how many events were outside.
#[test]
fn a_file_in_a_directory_moved_out_while_the_sensor_lags_is_not_only_outside() {
    in_private_namespace(
        "lag::a_file_in_a_directory_moved_out_while_the_sensor_lags_is_not_only_outside",
        || {
            let run = WatchRun::start(&[]);
            let (w, o) = (run.watched(), run.outside());
            let pid = run.watcher.child.id();
            signal(pid, "-STOP");
            fs::create_dir(w.join("stage")).unwrap();
            fs::write(w.join("stage").join("evil.docm"), b"x").unwrap();
            // More events than one read holds (256 KiB), so the move comes in a later read.
            create_files(&o.join("post"), 8_000);
            fs::rename(w.join("stage"), o.join("stage2")).unwrap();
            fs::rename(o.join("stage2"), o.join("stage3")).unwrap();
            signal(pid, "-CONT");
            let (status, stderr) = run.watcher.stop();
            assert!(status.success(), "{stderr}");
            let s: Value =
                serde_json::from_str(&fs::read_to_string(&run.summary).unwrap()).unwrap();
            let lines: Vec<Value> = fs::read_to_string(&run.out)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let want = bytes(&w.join("stage").join("evil.docm"));
            let reported = lines.iter().any(|l| exact_path(l) == want);
            eprintln!(
                "N5: evil.docm reported: {reported}; moved_away {}, outside {}, dropped {}",
                s["source"]["moved_away"], s["source"]["outside"], s["dropped"]
            );
            assert_eq!(s["source"]["overflows"], 0, "{s}");
            assert!(
                reported || s["source"]["moved_away"].as_u64().unwrap() >= 1,
                "the create in the moved directory counted only as outside: {s}"
            );
            assert!(reported || s["dropped"].as_u64().unwrap() >= 1, "{s}");
            let outside = s["source"]["outside"].as_u64().unwrap();
            assert!(
                stderr.contains(&format!("{outside} outside the watched paths")),
                "{stderr}"
            );
        },
    );
}

/// N13: a directory prepared outside and moved in brings its files without a per-file event;
/// they are listed and reported as moved in, and create rules see them.
#[test]
fn files_of_a_directory_moved_in_are_reported_and_match_create_rules() {
    in_private_namespace(
        "lag::files_of_a_directory_moved_in_are_reported_and_match_create_rules",
        || {
            let rules = tempfile::NamedTempFile::new().unwrap();
            fs::write(rules.path(), DOCM_RULE).unwrap();
            let run = WatchRun::start(&["--rules", rules.path().to_str().unwrap()]);
            let (w, o) = (run.watched(), run.outside());
            fs::create_dir_all(o.join("pkg").join("sub")).unwrap();
            fs::write(o.join("pkg").join("evil_in_dir.docm"), b"x").unwrap();
            fs::write(o.join("pkg").join("sub").join("deeper.docm"), b"x").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            fs::rename(o.join("pkg"), w.join("pkg")).unwrap();
            let (lines, summary) = run.stop();
            for (new, old) in [
                (
                    w.join("pkg/evil_in_dir.docm"),
                    o.join("pkg/evil_in_dir.docm"),
                ),
                (w.join("pkg/sub/deeper.docm"), o.join("pkg/sub/deeper.docm")),
            ] {
                let line = lines
                    .iter()
                    .find(|l| {
                        l["file_result"]["path"].as_str().map(str::as_bytes) == Some(&bytes(&new))
                    })
                    .unwrap_or_else(|| panic!("{} not reported: {lines:?}", new.display()));
                assert_eq!(line["activity_name"], "Rename", "{line}");
                assert_eq!(
                    line["file"]["path"].as_str().unwrap().as_bytes(),
                    bytes(&old)
                );
                assert_eq!(matched_rules(line), ["office-macro-drop"]);
            }
            assert_eq!(summary["source"]["moved_in_listed"], 3, "{summary}");
            assert_eq!(summary["source"]["moved_in_not_listed"], 0, "{summary}");
        },
    );
}

/// N4: a directory whose path is longer than PATH_MAX is named by walking up to the watched
/// root. With crowded levels, scanning every level for every event made each event cost
/// milliseconds of sensor CPU (the reviewer's 40 levels x 2,000 siblings: ~28 ms). Scaled down
/// here (18 levels x 1,000 siblings, 150 leaves): the sensor's CPU for one file created in each
/// leaf stays small, and every one of them is reported. Measured (debug build, 2 loaded CPUs):
/// 12.5 ms per event before the bound, 1.8 ms after; the same tree without siblings costs about
/// the same 1.8 ms (the rest is handling 4,500-byte paths in a debug build, not the walk).
#[test]
fn deep_crowded_directories_cost_little_cpu_per_event() {
    in_private_namespace(
        "lag::deep_crowded_directories_cost_little_cpu_per_event",
        || {
            const LEVELS: usize = 18;
            const SIBLINGS: usize = 1_000;
            const LEAVES: usize = 150;
            let run = WatchRun::start(&[]);
            // Built outside the watched tree (its creation is not what is measured), then moved in.
            let cwd = std::env::current_dir().unwrap();
            fs::create_dir(run.outside().join("tree")).unwrap();
            std::env::set_current_dir(run.outside().join("tree")).unwrap();
            for i in 0..LEVELS {
                for j in 0..SIBLINGS {
                    fs::File::create(format!("s{j}")).unwrap();
                }
                let name = format!("{i:02}{}", "d".repeat(248));
                fs::create_dir(&name).unwrap();
                std::env::set_current_dir(&name).unwrap();
            }
            for j in 0..LEAVES {
                fs::create_dir(format!("leaf{j}")).unwrap();
            }
            fs::rename(run.outside().join("tree"), run.watched().join("tree")).unwrap();
            let pid = run.watcher.child.id();
            // Let the sensor finish the move in before measuring.
            let mut last = cpu_ticks(pid);
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                let now = cpu_ticks(pid);
                if now == last {
                    break;
                }
                last = now;
            }
            let before = cpu_ticks(pid);
            // Relative to the deepest level: the absolute path is longer than PATH_MAX.
            for j in 0..LEAVES {
                fs::write(format!("leaf{j}/x.docm"), b"x").unwrap();
            }
            std::env::set_current_dir(cwd).unwrap();
            let mut after = cpu_ticks(pid);
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                let now = cpu_ticks(pid);
                if now == after {
                    break;
                }
                after = now;
            }
            let (lines, summary) = run.stop();
            let hz = 100.0; // USER_HZ
            let ms_per_event = (after - before) as f64 * 1000.0 / hz / LEAVES as f64;
            eprintln!(
                "N4: {} ticks for {LEAVES} deep events = {ms_per_event:.3} ms of sensor CPU per event",
                after - before
            );
            let deep_reported = lines
                .iter()
                .filter(|l| l["activity_id"] == 1 && exact_path(l).ends_with(b"/x.docm"))
                .count();
            assert_eq!(deep_reported, LEAVES, "{summary}");
            assert_eq!(summary["source"]["unresolved"], 0, "{summary}");
            assert_eq!(summary["source"]["walks_abandoned"], 0, "{summary}");
            // Before the bound: 12.5 ms per event here (debug build), growing with siblings.
            assert!(
                ms_per_event < 5.0,
                "{ms_per_event:.3} ms of sensor CPU per deep event"
            );
        },
    );
}
