//! `fsense watch` against the real kernel: every file created and written under the watched
//! directory is reported with its exact path. Runs as root only, inside a private mount
//! namespace on a fresh tmpfs (the test re-executes itself under `unshare -m`); without root it
//! says loudly that it did not run.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fsense_proto::Utf16Path;
use serde_json::Value;

const INNER: &str = "FSENSE_FANOTIFY_TEST_INNER";

#[path = "../support/mod.rs"]
mod support;
use support::{Tmpfs, is_root};

mod lag;
mod namespace;

fn in_private_namespace(test_name: &str, test: impl FnOnce()) {
    support::in_private_namespace(INNER, test_name, test);
}

/// A running `fsense watch`, ready once it has printed its first line.
struct Watcher {
    child: std::process::Child,
    stderr: BufReader<std::process::ChildStderr>,
}

impl Watcher {
    fn start(dir: &Path, out: &Path, summary: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fsense"))
            .arg("watch")
            .arg(dir)
            .arg("--output")
            .arg(out)
            .arg("--summary-json")
            .arg(summary)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(first.starts_with("fsense: watching"), "watch said: {first}");
        Self { child, stderr }
    }

    /// SIGTERM, then the exit status and the rest of stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        for line in self.stderr.by_ref().lines() {
            rest.push_str(&line.unwrap());
            rest.push('\n');
        }
        (status, rest)
    }
}

/// A test that fails before `stop` must not leave the watcher running (holding the test's
/// output pipe open and its mark on the file system).
impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The exact path bytes of an output line: `file.path`, or the units when the path is not text.
fn exact_path(line: &Value) -> Vec<u8> {
    match line["unmapped"]["path_units"].as_array() {
        Some(units) => {
            let bytes: Vec<u8> = units
                .iter()
                .flat_map(|u| (u.as_u64().unwrap() as u16).to_le_bytes())
                .collect();
            let path = Utf16Path::from_le_bytes(&bytes).unwrap();
            fsense::pipeline::paths::linux_bytes_from_units(&path).expect("surrogate-escaped bytes")
        }
        None => line["file"]["path"].as_str().unwrap().as_bytes().to_vec(),
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_created_and_written_file_is_reported_with_its_exact_path() {
    in_private_namespace(
        "every_created_and_written_file_is_reported_with_its_exact_path",
        || {
            let fs_root = Tmpfs::new("256m");
            let watched = fs_root.path().join("watched");
            let elsewhere = fs_root.path().join("elsewhere");
            fs::create_dir_all(&watched).unwrap();
            fs::create_dir_all(&elsewhere).unwrap();
            let scratch = tempfile::tempdir().unwrap();
            let out = scratch.path().join("events.json");
            let summary = scratch.path().join("summary.json");
            let watcher = Watcher::start(&watched, &out, &summary, &[]);

            let mut deep = watched.join("sub");
            while deep.as_os_str().len() < 1500 {
                deep.push("a-fairly-long-directory-name-to-make-the-path-long");
            }
            fs::create_dir_all(&deep).unwrap();
            let names: Vec<&[u8]> = vec![
                b"plain.txt",
                b"with space",
                b"new\nline",
                b"-leading-dash",
                b"--",
                b"tab\there",
                b"back\\slash",
                "ünïcödé-€-日本語-🦀".as_bytes(),
                b"bad-utf8-\xff\xfe\x80",
                b" ",
            ];
            let long_name = vec![b'n'; 255];
            let mut expected: BTreeSet<Vec<u8>> = BTreeSet::new();
            let mut files: Vec<PathBuf> = names
                .iter()
                .map(|n| watched.join(OsStr::from_bytes(n)))
                .collect();
            files.push(watched.join(OsStr::from_bytes(&long_name)));
            files.push(deep.join("deep-file"));
            files.push(watched.join("sub").join(OsStr::from_bytes(&long_name)));
            for f in &files {
                fs::write(f, b"payload").unwrap();
                expected.insert(f.as_os_str().as_bytes().to_vec());
            }
            fs::write(elsewhere.join("not-watched"), b"x").unwrap();

            let (status, stderr) = watcher.stop();
            assert!(status.success(), "watch failed: {stderr}");
            assert!(
                stderr.contains(" events, "),
                "no summary on stderr: {stderr}"
            );

            let lines = read_lines(&out);
            let mut seen: BTreeMap<Vec<u8>, BTreeSet<u64>> = BTreeMap::new();
            for l in &lines {
                seen.entry(exact_path(l))
                    .or_default()
                    .insert(l["activity_id"].as_u64().unwrap());
                assert_eq!(l["class_uid"], 1001);
                assert_ne!(l["actor"]["process"]["pid"], 0);
            }
            for want in &expected {
                let acts = seen
                    .get(want)
                    .unwrap_or_else(|| panic!("no event for {:?}", String::from_utf8_lossy(want)));
                assert!(
                    acts.contains(&1),
                    "no create for {:?}",
                    String::from_utf8_lossy(want)
                );
                assert!(
                    acts.contains(&3),
                    "no write for {:?}",
                    String::from_utf8_lossy(want)
                );
            }
            let prefix = watched.as_os_str().as_bytes();
            for path in seen.keys() {
                assert!(
                    path.starts_with(prefix),
                    "event outside the watched directory: {:?}",
                    String::from_utf8_lossy(path)
                );
            }
            let s: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
            assert_eq!(s["dropped"], 0);
            assert_eq!(s["events"].as_u64().unwrap(), lines.len() as u64);
            assert!(s["source"]["outside"].as_u64().unwrap() >= 1);
        },
    );
}

#[test]
fn a_capture_of_a_watch_replays_to_the_same_events() {
    in_private_namespace("a_capture_of_a_watch_replays_to_the_same_events", || {
        let fs_root = Tmpfs::new("256m");
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("events.json");
        let capture = scratch.path().join("run.cap");
        let watcher = Watcher::start(
            fs_root.path(),
            &out,
            &scratch.path().join("s.json"),
            &[
                "--capture",
                capture.to_str().unwrap(),
                "--exclude",
                "**/*.tmp",
            ],
        );
        for i in 0..50 {
            fs::write(fs_root.path().join(format!("f{i}")), b"x").unwrap();
        }
        fs::write(fs_root.path().join("skip.tmp"), b"x").unwrap();
        let (status, _) = watcher.stop();
        assert!(status.success());
        let live = read_lines(&out);
        assert!(
            live.iter()
                .all(|l| !l["file"]["path"].as_str().unwrap().ends_with(".tmp"))
        );
        let replayed = Command::new(env!("CARGO_BIN_EXE_fsense"))
            .arg("replay")
            .arg(&capture)
            .args(["--exclude", "**/*.tmp"])
            .output()
            .unwrap();
        assert!(
            replayed.status.success(),
            "{}",
            String::from_utf8_lossy(&replayed.stderr)
        );
        let replayed: Vec<Value> = String::from_utf8(replayed.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let key = |l: &Value| (l["unmapped"]["sequence"].clone(), l["file"]["path"].clone());
        assert_eq!(
            live.iter().map(key).collect::<Vec<_>>(),
            replayed.iter().map(key).collect::<Vec<_>>()
        );
        assert!(live.len() >= 100);
    });
}

/// Write records (OCSF Update) for `file` in the complete lines written so far.
fn writes_reported(out: &Path, file: &Path) -> usize {
    let text = fs::read_to_string(out).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["activity_id"] == 3 && exact_path(l) == file.as_os_str().as_bytes())
        .count()
}

/// Waits up to 5 s for the write records of `file` to reach `n`; returns the count seen.
fn wait_for_writes(out: &Path, file: &Path, n: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let seen = writes_reported(out, file);
        if seen >= n || std::time::Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Writes to `file` in bursts, letting the watcher read between them: without quieting each
/// burst would be a new `FAN_MODIFY` and a new write record.
fn write_in_bursts(file: &mut fs::File) {
    use std::io::Write;
    for _ in 0..5 {
        for _ in 0..200 {
            file.write_all(b"more").unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(60));
    }
}

#[test]
fn a_write_session_is_reported_at_its_first_write_and_at_close_only() {
    in_private_namespace(
        "a_write_session_is_reported_at_its_first_write_and_at_close_only",
        || {
            use std::io::Write;
            let fs_root = Tmpfs::new("256m");
            let scratch = tempfile::tempdir().unwrap();
            let out = scratch.path().join("events.json");
            let summary = scratch.path().join("summary.json");
            let watcher = Watcher::start(fs_root.path(), &out, &summary, &[]);
            let path = fs_root.path().join("log.txt");

            let mut file = fs::File::create(&path).unwrap();
            file.write_all(b"first").unwrap();
            assert_eq!(
                wait_for_writes(&out, &path, 1),
                1,
                "first write not reported"
            );
            write_in_bursts(&mut file);
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert_eq!(
                writes_reported(&out, &path),
                1,
                "writes after the first reported"
            );
            drop(file);
            assert_eq!(
                wait_for_writes(&out, &path, 2),
                2,
                "close after writing not reported"
            );

            // The next session is reported from its first write again, before it closes.
            let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(b"again").unwrap();
            assert_eq!(
                wait_for_writes(&out, &path, 3),
                3,
                "second session not reported"
            );
            drop(file);
            assert_eq!(wait_for_writes(&out, &path, 4), 4);

            let (status, stderr) = watcher.stop();
            assert!(status.success(), "watch failed: {stderr}");
            let s: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
            assert_eq!(s["dropped"], 0);
            assert_eq!(s["source"]["write_sessions"]["quieted"], 2);
            assert_eq!(s["source"]["write_sessions"]["mark_errors"], 0);
        },
    );
}

#[test]
fn after_a_queue_overflow_quiet_sessions_are_reported_again_and_drops_counted() {
    in_private_namespace(
        "after_a_queue_overflow_quiet_sessions_are_reported_again_and_drops_counted",
        || {
            use std::io::Write;
            let fs_root = Tmpfs::new("256m");
            let scratch = tempfile::tempdir().unwrap();
            let out = scratch.path().join("events.json");
            let summary = scratch.path().join("summary.json");
            let watcher = Watcher::start(fs_root.path(), &out, &summary, &[]);
            let path = fs_root.path().join("open.log");
            let mut file = fs::File::create(&path).unwrap();
            file.write_all(b"first").unwrap();
            assert_eq!(wait_for_writes(&out, &path, 1), 1);

            // A stopped watcher lets the kernel queue (16,384 events) overflow; a close-write
            // lost that way must not leave a session quiet for good.
            let pid = watcher.child.id().to_string();
            let signal = |sig: &str| {
                assert!(
                    Command::new("kill")
                        .args([sig, &pid])
                        .status()
                        .unwrap()
                        .success()
                );
            };
            signal("-STOP");
            let flood = fs_root.path().join("flood");
            fs::create_dir(&flood).unwrap();
            for i in 0..17_000 {
                fs::File::create(flood.join(i.to_string())).unwrap();
            }
            signal("-CONT");
            // Writes before the watcher has read the overflow are still skipped; keep writing
            // until one is reported (or give up after 30 s: at load average 7 on 2 cores, 5 s
            // did not always cover reading the 17,000-event backlog).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while writes_reported(&out, &path) < 2 && std::time::Instant::now() < deadline {
                file.write_all(b"after the overflow").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert_eq!(writes_reported(&out, &path), 2, "quiet session not flushed");

            let (status, stderr) = watcher.stop();
            assert!(status.success(), "watch failed: {stderr}");
            let s: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
            assert!(
                s["dropped"].as_u64().unwrap() >= 1,
                "overflow not counted: {s}"
            );
            assert!(s["source"]["write_sessions"]["flushes"].as_u64().unwrap() >= 1);
        },
    );
}

#[test]
fn with_writes_close_a_write_is_reported_when_the_file_closes() {
    in_private_namespace(
        "with_writes_close_a_write_is_reported_when_the_file_closes",
        || {
            let fs_root = Tmpfs::new("256m");
            let scratch = tempfile::tempdir().unwrap();
            let out = scratch.path().join("events.json");
            let summary = scratch.path().join("summary.json");
            let watcher = Watcher::start(fs_root.path(), &out, &summary, &["--writes", "close"]);
            let path = fs_root.path().join("data.bin");

            let mut file = fs::File::create(&path).unwrap();
            write_in_bursts(&mut file);
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert_eq!(
                writes_reported(&out, &path),
                0,
                "a write reported before close"
            );
            drop(file);
            assert_eq!(
                wait_for_writes(&out, &path, 1),
                1,
                "close after writing not reported"
            );

            let (status, stderr) = watcher.stop();
            assert!(status.success(), "watch failed: {stderr}");
            let s: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
            assert_eq!(s["source"]["write_sessions"]["quieted"], 0);
        },
    );
}

#[test]
fn without_privileges_watch_says_so_in_one_line_and_exits_2() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: this test drops root privileges, so it must start as root ***\n");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_fsense"))
        .args(["watch", "/tmp"])
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("root"),
        "{stderr}"
    );
}

/// A watch of directory `w` on a fresh tmpfs (which also holds `o`, a directory outside it),
/// with its output and summary in a scratch directory.
struct WatchRun {
    fs_root: Tmpfs,
    _scratch: tempfile::TempDir,
    out: PathBuf,
    summary: PathBuf,
    watcher: Watcher,
}

impl WatchRun {
    fn start(extra: &[&str]) -> Self {
        let fs_root = Tmpfs::new("256m");
        fs::create_dir(fs_root.path().join("w")).unwrap();
        fs::create_dir(fs_root.path().join("o")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("events.json");
        let summary = scratch.path().join("summary.json");
        let watcher = Watcher::start(&fs_root.path().join("w"), &out, &summary, extra);
        Self {
            fs_root,
            _scratch: scratch,
            out,
            summary,
            watcher,
        }
    }

    fn watched(&self) -> PathBuf {
        self.fs_root.path().join("w")
    }

    fn outside(&self) -> PathBuf {
        self.fs_root.path().join("o")
    }

    /// Stops the watcher; its output lines and the summary.
    fn stop(self) -> (Vec<Value>, Value) {
        let (status, stderr) = self.watcher.stop();
        assert!(status.success(), "watch failed: {stderr}");
        let summary = serde_json::from_str(&fs::read_to_string(&self.summary).unwrap()).unwrap();
        (read_lines(&self.out), summary)
    }
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

const DOCM_RULE: &[u8] = b"version = 1\n[[rule]]\nid = \"office-macro-drop\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"**/*.docm\"\n";

fn matched_rules(line: &Value) -> Vec<String> {
    line["unmapped"]["rules"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn files_that_arrive_by_rename_are_reported_with_both_names_and_match_create_rules() {
    in_private_namespace(
        "files_that_arrive_by_rename_are_reported_with_both_names_and_match_create_rules",
        || {
            let rules = tempfile::NamedTempFile::new().unwrap();
            fs::write(rules.path(), DOCM_RULE).unwrap();
            let run = WatchRun::start(&["--rules", rules.path().to_str().unwrap()]);
            let w = run.watched();
            let o = run.outside();
            // Save to a temporary name, then rename (browsers, editors).
            fs::write(w.join("download.docm.part"), b"b").unwrap();
            fs::rename(w.join("download.docm.part"), w.join("download.docm")).unwrap();
            // Prepared elsewhere on the same file system, then moved in.
            fs::write(o.join("prepared.docm"), b"c").unwrap();
            fs::rename(o.join("prepared.docm"), w.join("prepared.docm")).unwrap();
            let (lines, summary) = run.stop();

            let renames: Vec<&Value> = lines.iter().filter(|l| l["activity_id"] == 5).collect();
            let find = |new: &Path| {
                renames
                    .iter()
                    .find(|l| {
                        l["file_result"]["path"].as_str().map(str::as_bytes) == Some(&bytes(new))
                    })
                    .unwrap_or_else(|| panic!("no rename to {}: {lines:?}", new.display()))
            };
            let saved = find(&w.join("download.docm"));
            assert_eq!(saved["activity_name"], "Rename");
            assert_eq!(
                saved["file"]["path"].as_str().unwrap().as_bytes(),
                bytes(&w.join("download.docm.part"))
            );
            assert_eq!(matched_rules(saved), ["office-macro-drop"]);
            let moved_in = find(&w.join("prepared.docm"));
            assert_eq!(
                moved_in["file"]["path"].as_str().unwrap().as_bytes(),
                bytes(&o.join("prepared.docm"))
            );
            assert_eq!(matched_rules(moved_in), ["office-macro-drop"]);
            assert_eq!(summary["dropped"], 0);
        },
    );
}

#[test]
fn a_directory_moved_away_before_its_events_are_read_does_not_hide_them() {
    in_private_namespace(
        "a_directory_moved_away_before_its_events_are_read_does_not_hide_them",
        || {
            let run = WatchRun::start(&[]);
            let w = run.watched();
            let o = run.outside();
            // All within the watcher's coalescing pause: by the time it reads the create, the
            // directory is outside the watched tree.
            fs::create_dir(w.join("stage")).unwrap();
            fs::write(w.join("stage").join("renamed_evil.docm"), b"x").unwrap();
            fs::rename(w.join("stage"), o.join("stage")).unwrap();
            let (lines, summary) = run.stop();
            let want = bytes(&w.join("stage").join("renamed_evil.docm"));
            let reported = lines
                .iter()
                .any(|l| exact_path(l) == want && l["activity_id"] == 1);
            // Reported where it happened, or at least counted as dropped: never only "outside".
            assert!(
                reported || summary["dropped"].as_u64().unwrap() >= 1,
                "the create in the moved directory vanished: {summary} {lines:?}"
            );
            assert!(
                lines
                    .iter()
                    .all(|l| !exact_path(l).starts_with(&bytes(&o)) || l["activity_id"] == 5)
            );
        },
    );
}

/// Events in a directory removed before they are read (`rm -r`) cannot be named by opening the
/// directory any more: they are named through the directory's removal in the same read (which
/// carries its handle), and only what still cannot be named counts as dropped, never silently.
#[test]
fn events_in_a_directory_removed_before_the_read_are_named_through_its_removal() {
    in_private_namespace(
        "events_in_a_directory_removed_before_the_read_are_named_through_its_removal",
        || {
            let run = WatchRun::start(&[]);
            let w = run.watched();
            fs::create_dir_all(w.join("gone").join("deeper")).unwrap();
            fs::write(w.join("gone").join("f"), b"x").unwrap();
            fs::write(w.join("gone").join("deeper").join("g"), b"x").unwrap();
            fs::remove_dir_all(w.join("gone")).unwrap();
            let (lines, summary) = run.stop();
            let source = &summary["source"];
            assert!(
                source["named_by_removal"].as_u64().unwrap() >= 1,
                "{summary}"
            );
            let unresolved = source["unresolved"].as_u64().unwrap();
            assert!(
                summary["dropped"].as_u64().unwrap() >= unresolved,
                "{summary}"
            );
            for (file, depth) in [
                (w.join("gone").join("f"), 1),
                (w.join("gone").join("deeper").join("g"), 2),
            ] {
                let want = bytes(&file);
                let acts: Vec<u64> = lines
                    .iter()
                    .filter(|l| exact_path(l) == want)
                    .map(|l| l["activity_id"].as_u64().unwrap())
                    .collect();
                // Named and in order: created, written, deleted; or, past the nesting the
                // rounds cover (never here), dropped.
                assert_eq!(acts, [1, 3, 4], "depth {depth}: {summary}");
            }
            assert_eq!(unresolved, 0, "{summary}");
        },
    );
}

#[test]
fn a_path_too_long_for_the_kernel_to_name_is_still_reported() {
    in_private_namespace(
        "a_path_too_long_for_the_kernel_to_name_is_still_reported",
        || {
            let run = WatchRun::start(&[]);
            let mut expected = bytes(&run.watched());
            // 20 nested 250-byte names: more than PATH_MAX, so created relative to the cwd.
            let cwd = std::env::current_dir().unwrap();
            std::env::set_current_dir(run.watched()).unwrap();
            for i in 0..20 {
                let name = format!("{i:02}{}", "d".repeat(248));
                fs::create_dir(&name).unwrap();
                std::env::set_current_dir(&name).unwrap();
                expected.push(b'/');
                expected.extend_from_slice(name.as_bytes());
            }
            fs::write("deep_evil.docm", b"x").unwrap();
            std::env::set_current_dir(cwd).unwrap();
            expected.extend_from_slice(b"/deep_evil.docm");
            assert!(expected.len() > 4096);
            let (lines, summary) = run.stop();
            assert!(
                lines
                    .iter()
                    .any(|l| exact_path(l) == expected && l["activity_id"] == 1),
                "the deep file was not reported: {summary}"
            );
            assert!(summary["source"]["long_paths"].as_u64().unwrap() >= 1);
            assert_eq!(summary["source"]["unresolved"], 0);
            assert_eq!(summary["dropped"], 0);
        },
    );
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn short_lived_processes_are_identified_or_marked_exited_and_no_pidfd_leaks() {
    in_private_namespace(
        "short_lived_processes_are_identified_or_marked_exited_and_no_pidfd_leaks",
        || {
            let run = WatchRun::start(&[]);
            let w = run.watched();
            let pid = run.watcher.child.id();
            // Let the watcher settle, then count its descriptors.
            fs::write(w.join("warm-up"), b"x").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let fds_before = open_fds(pid);
            for i in 0..20 {
                let ok = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "echo x > '{}'",
                        w.join(format!("short{i}")).display()
                    ))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok);
            }
            for i in 0..2000 {
                fs::write(w.join(format!("many{i}")), b"x").unwrap();
            }
            // A descriptor held for a moment while the watcher still works through the backlog
            // (a pidfd being read, a file opened to check its link count) is not a leak: wait
            // for the count to settle back, for up to 10 s; a leaked one never does.
            let mut fds_after = open_fds(pid);
            for _ in 0..100 {
                if fds_after == fds_before {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                fds_after = open_fds(pid);
            }
            let (lines, summary) = run.stop();
            assert_eq!(fds_after, fds_before, "descriptors leaked: {summary}");
            let shorts: Vec<&Value> = lines
                .iter()
                .filter(|l| {
                    l["file"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("short"))
                })
                .collect();
            assert!(shorts.len() >= 20);
            for l in &shorts {
                let exited = l["unmapped"]["flag_names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "process_exited");
                let known = l["actor"]["process"].get("created_time").is_some();
                assert!(exited != known, "neither known nor marked exited: {l}");
            }
            // The test process itself is alive throughout: always identified.
            let own = lines.iter().find(|l| l["file"]["name"] == "many0").unwrap();
            assert!(
                own["actor"]["process"].get("created_time").is_some(),
                "{own}"
            );
            assert_eq!(own["actor"]["process"]["pid"], std::process::id());
        },
    );
}
