//! Live content reload: `fsense watch --content-repo` picks up a release published while it
//! runs, and the next file event is matched by the new rules; a release that fails verification
//! is refused and the running rules keep matching. Runs as root in a private mount namespace
//! on a fresh tmpfs, like `fanotify_watch.rs`; without root it says loudly that it did not run.
#![cfg(target_os = "linux")]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

const INNER: &str = "FSENSE_LIVE_RELOAD_TEST_INNER";
const WAIT: Duration = Duration::from_secs(20);

mod support;
use support::Tmpfs;

fn in_private_namespace(test_name: &str, test: impl FnOnce()) {
    support::in_private_namespace(INNER, test_name, test);
}

fn fsense(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fsense"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsense {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rules(version: u64, rule_id: &str) -> String {
    format!(
        "version = {version}\n\n[[rule]]\nid = \"{rule_id}\"\ntemplate = \"path_match\"\n\
         severity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"**/*.probe\"\n"
    )
}

/// Publishes a release into a copy of `repo` (`tamper` may change the copy), then moves the
/// copy's files into `repo`, targets first and `timestamp.json` last, each by rename: the
/// watcher's checker never sees a half-made release.
fn release(
    work: &Path,
    keys: &Path,
    repo: &Path,
    version: u64,
    rule_id: &str,
    tamper: impl FnOnce(&Path),
) {
    let next = work.join(format!("repo-{version}"));
    copy_tree(repo, &next);
    publish(work, keys, &next, version, rule_id);
    tamper(&next);
    for sub in ["targets", "metadata"] {
        fs::create_dir_all(repo.join(sub)).unwrap();
        let mut files: Vec<_> = fs::read_dir(next.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort_by_key(|name| name == "timestamp.json");
        for name in files {
            fs::rename(next.join(sub).join(&name), repo.join(sub).join(&name)).unwrap();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Publishes `rules` as a release of `repo`.
fn publish(work: &Path, keys: &Path, repo: &Path, version: u64, rule_id: &str) {
    let file = work.join(format!("rules-{version}.toml"));
    fs::write(&file, rules(version, rule_id)).unwrap();
    let out = fsense(&[
        "content",
        "publish",
        file.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ]);
    assert!(
        out.contains(&format!("published rules version {version}")),
        "{out}"
    );
}

/// Waits for a stderr line containing `needle`; returns it.
fn wait_for_line(lines: &Receiver<String>, needle: &str) -> String {
    let end = Instant::now() + WAIT;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("watch never said {needle:?}");
}

/// Creates `dir/name` and returns the rule ids of its create event once it is in `out`.
fn rules_matching_new_file(dir: &Path, name: &str, out: &Path) -> Vec<String> {
    let path = dir.join(name);
    fs::write(&path, b"x").unwrap();
    let want = path.to_str().unwrap();
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        let text = fs::read_to_string(out).unwrap_or_default();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["file"]["path"] == want && v["activity_id"] == 1 {
                return v["unmapped"]["rules"]
                    .as_array()
                    .map(|rules| {
                        rules
                            .iter()
                            .map(|r| r["id"].as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no create event for {want}");
}

#[test]
fn a_release_published_while_watching_changes_the_matching_rule_and_a_bad_one_is_refused() {
    in_private_namespace(
        "a_release_published_while_watching_changes_the_matching_rule_and_a_bad_one_is_refused",
        || {
            let fs_root = Tmpfs::new("64m");
            let watched = fs_root.path().join("watched");
            fs::create_dir(&watched).unwrap();
            let work = tempfile::tempdir().unwrap();
            let (keys, repo, state) = (
                work.path().join("keys"),
                work.path().join("repo"),
                work.path().join("state"),
            );
            let (out, summary) = (work.path().join("events.json"), work.path().join("s.json"));
            fsense(&["content", "keygen", "--out-dir", keys.to_str().unwrap()]);
            publish(work.path(), &keys, &repo, 1, "first-release");

            let mut child = Command::new(env!("CARGO_BIN_EXE_fsense"))
                .arg("watch")
                .arg(&watched)
                .arg("--output")
                .arg(&out)
                .arg("--summary-json")
                .arg(&summary)
                .arg("--content-repo")
                .arg(&repo)
                .arg("--content-root")
                .arg(keys.join("root.json"))
                .arg("--state-dir")
                .arg(&state)
                .args(["--update-interval-s", "1"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = BufReader::new(child.stderr.take().unwrap());
            let (tx, lines) = mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    eprintln!("[watch] {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            wait_for_line(&lines, "content version 1 active");
            wait_for_line(&lines, "fsense: watching");
            assert_eq!(
                rules_matching_new_file(&watched, "a.probe", &out),
                ["first-release"]
            );

            release(work.path(), &keys, &repo, 2, "second-release", |_| {});
            wait_for_line(&lines, "content version 2 active (was 1)");
            assert_eq!(
                rules_matching_new_file(&watched, "b.probe", &out),
                ["second-release"]
            );

            // Release 3 is signed, but its rules file is replaced after signing: TUF refuses it.
            release(work.path(), &keys, &repo, 3, "third-release", |next| {
                let target = fs::read_dir(next.join("targets"))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.to_str().unwrap().ends_with(".rules-3.toml"))
                    .expect("release 3's target file");
                // Same length, different bytes: the hash check, not the size limit, refuses it.
                fs::write(&target, rules(3, "tampered-rule")).unwrap();
            });
            let refused = wait_for_line(&lines, "content update refused");
            assert!(refused.ends_with("keeping rules version 2"), "{refused}");
            assert_eq!(
                rules_matching_new_file(&watched, "c.probe", &out),
                ["second-release"]
            );

            let pid = child.id().to_string();
            assert!(
                Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            let status = child.wait().unwrap();
            assert!(status.success());
            drop(lines);
            reader.join().unwrap();
            let s: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
            assert_eq!(s["content_version"], 2);
            assert_eq!(s["content_updates"], 1);
            assert!(s["content_update_failures"].as_u64().unwrap() >= 1);
        },
    );
}

/// `simulate` takes the same options: it installs the repository's newest release at start and
/// reports the version it ran with (no root needed).
#[test]
fn simulate_follows_a_repository_and_reports_its_content_version() {
    let work = tempfile::tempdir().unwrap();
    let (keys, repo, state) = (
        work.path().join("keys"),
        work.path().join("repo"),
        work.path().join("state"),
    );
    fsense(&["content", "keygen", "--out-dir", keys.to_str().unwrap()]);
    publish(work.path(), &keys, &repo, 4, "simulated-release");
    let summary = work.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fsense"))
        .args([
            "simulate",
            "--rate",
            "0",
            "--events",
            "300",
            "--threads",
            "2",
            "--quiet",
        ])
        .arg("--content-repo")
        .arg(&repo)
        .arg("--content-root")
        .arg(keys.join("root.json"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("content version 4 active"), "{stderr}");
    let s: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["content_version"], 4);
    assert_eq!(s["pipeline"]["content_version"], 4);
    assert_eq!(s["pipeline"]["content_update_failures"], 0);
}

/// Issue 24, N15: `--content-ca-file` reaches the live checker (as `content update --ca-file`
/// does): a CA file that cannot be read is what the first check reports.
#[test]
fn the_content_ca_file_reaches_live_reload() {
    let work = tempfile::tempdir().unwrap();
    let keys = work.path().join("keys");
    fsense(&["content", "keygen", "--out-dir", keys.to_str().unwrap()]);
    let missing_ca = work.path().join("no-such-ca.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_fsense"))
        .args(["simulate", "--events", "10", "--threads", "1", "--quiet"])
        .args(["--content-repo", "https://127.0.0.1:9/repo/"])
        .arg("--content-root")
        .arg(keys.join("root.json"))
        .arg("--content-ca-file")
        .arg(&missing_ca)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("content update refused") && stderr.contains("no-such-ca.pem"),
        "{stderr}"
    );
}
