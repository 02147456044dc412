//! Files `fsense` creates while running as root (review finding M2): an output path is never
//! followed through a planted symbolic link, another user's file is never truncated, and event
//! logs, captures and summaries are private (0600). Also: names are escaped in every JSON output
//! (finding L9) and in error lines (L1), and writes a full `write_burst` table could not track
//! are counted in the summary (L4).
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fsense::source::capture::{CaptureWriter, SourceKind};
use fsense::source::synth::{self, SynthEvent};
use fsense_proto::Operation;

const NOBODY: u32 = 65534;

fn fsense(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsense"))
        .args(args)
        .output()
        .unwrap()
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn capture_of(paths: &[&str], dir: &Path) -> PathBuf {
    let events: Vec<_> = paths
        .iter()
        .map(|p| SynthEvent::new(Operation::Create, p))
        .collect();
    let mut w = CaptureWriter::new(Vec::new(), SourceKind::Simulator, 1).unwrap();
    for (i, b) in synth::batches(&events, 1, 4, &[]).iter().enumerate() {
        w.write_message(b, i as u64 + 2).unwrap();
    }
    let path = dir.join("in.cap");
    fs::write(&path, w.finish(99).unwrap()).unwrap();
    path
}

/// A scratch directory with a directory `udir` that another user (nobody) owns when we are root,
/// as in the review's reproduction, and a root-owned 0600 victim file outside it.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("udir")).unwrap();
        if is_root() {
            std::os::unix::fs::chown(dir.path().join("udir"), Some(NOBODY), Some(NOBODY)).unwrap();
        }
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn udir(&self, name: &str) -> PathBuf {
        self.dir.path().join("udir").join(name)
    }
    /// A victim with known bytes, and a symbolic link to it planted at `udir/link` (owned by
    /// nobody when we are root, as if nobody had planted it).
    fn plant(&self, victim: &str, link: &str) -> (PathBuf, PathBuf) {
        let victim = self.path(victim);
        fs::write(&victim, b"root's secret\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let link = self.udir(link);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        if is_root() {
            std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        (victim, link)
    }
}

fn assert_refused_in_one_line(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(err.starts_with("error: refusing "), "{what}: {err}");
    assert!(err.contains("symbolic link"), "{what}: {err}");
}

fn assert_intact(victim: &Path) {
    assert_eq!(fs::read(victim).unwrap(), b"root's secret\n");
    assert_eq!(mode(victim), 0o600);
}

#[test]
fn streams_through_a_planted_symlink_are_refused_and_the_target_is_untouched() {
    let scene = Scene::new();
    let cap = capture_of(&["/w/a", "/w/b"], scene.dir.path());
    let cap = cap.to_str().unwrap();

    let (victim, link) = scene.plant("victim_out", "events.json");
    let o = fsense(&["replay", cap, "--output", link.to_str().unwrap()]);
    assert_refused_in_one_line(&o, "replay --output");
    assert_intact(&victim);

    let (victim, link) = scene.plant("victim_cap", "run.cap");
    let o = fsense(&[
        "simulate",
        "--events",
        "5",
        "--quiet",
        "--capture",
        link.to_str().unwrap(),
    ]);
    assert_refused_in_one_line(&o, "simulate --capture");
    assert_intact(&victim);

    // A dangling link would create a file wherever it points.
    let dangling = scene.udir("new.json");
    let target = scene.path("created_by_root");
    std::os::unix::fs::symlink(&target, &dangling).unwrap();
    let o = fsense(&["replay", cap, "--output", dangling.to_str().unwrap()]);
    assert_refused_in_one_line(&o, "replay --output (dangling)");
    assert!(!target.exists());
}

#[test]
fn a_summary_replaces_a_planted_symlink_instead_of_writing_through_it() {
    let scene = Scene::new();
    let cap = capture_of(&["/w/a"], scene.dir.path());
    let out = scene.path("events.json");
    for (cmd, victim_name) in [("replay", "victim_sum"), ("simulate", "victim_sim")] {
        let (victim, link) = scene.plant(victim_name, &format!("{cmd}.summary.json"));
        let mut args = vec![cmd];
        if cmd == "replay" {
            args.push(cap.to_str().unwrap());
        } else {
            args.extend(["--events", "5", "--quiet"]);
        }
        args.extend(["--output", out.to_str().unwrap()]);
        args.extend(["--summary-json", link.to_str().unwrap()]);
        let o = fsense(&args);
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_intact(&victim);
        let meta = fs::symlink_metadata(&link).unwrap();
        assert!(meta.is_file(), "{cmd}: the link was not replaced");
        assert_eq!(mode(&link), 0o600, "{cmd}");
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&link).unwrap()).unwrap();
        assert!(v.is_object());
    }
}

#[test]
fn event_logs_captures_and_summaries_are_private() {
    let scene = Scene::new();
    let cap = scene.path("run.cap");
    let out = scene.path("events.json");
    let summary = scene.path("summary.json");
    let o = fsense(&[
        "simulate",
        "--events",
        "20",
        "--capture",
        cap.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for p in [&cap, &out, &summary] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    // An existing file of ours that others could read is made private too.
    fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
    let o = fsense(&[
        "replay",
        cap.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn another_users_file_is_refused_not_truncated() {
    if !is_root() {
        eprintln!("\n*** SKIPPED another_users_file_is_refused_not_truncated: needs root ***\n");
        return;
    }
    let scene = Scene::new();
    let cap = capture_of(&["/w/a"], scene.dir.path());
    let theirs = scene.udir("events.json");
    fs::write(&theirs, b"nobody's data\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let o = fsense(&[
        "replay",
        cap.to_str().unwrap(),
        "--output",
        theirs.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("belongs to another user"), "{err}");
    assert_eq!(fs::read(&theirs).unwrap(), b"nobody's data\n");
}

#[test]
fn hostile_names_are_escaped_in_replay_and_decode_output() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture_of(
        &["/w/c1\u{9b}31mX", "/w/bidi\u{202e}cod.exe", "/w/del\u{7f}"],
        dir.path(),
    );
    for cmd in ["replay", "decode"] {
        let o = fsense(&[cmd, cap.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.contains("c1\\u009b31mX"), "{cmd}: {text}");
        assert!(text.contains("bidi\\u202ecod.exe"), "{cmd}: {text}");
        assert!(text.contains("del\\u007f"), "{cmd}: {text}");
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{cmd}: raw control or bidi character in {text:?}"
        );
    }
}

#[test]
fn error_lines_escape_control_characters_from_names() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("x\u{1b}]0;PWNED\u{7}\u{9b}2K\u{202e}y.cap");
    let o = fsense(&["decode", hostile.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        !err.trim_end()
            .chars()
            .any(|c| c.is_control() || c == '\u{202e}'),
        "{err:?}"
    );
    assert!(
        err.contains("\\u{1b}]0;PWNED\\u{7}\\u{9b}2K\\u{202e}y.cap"),
        "{err}"
    );
}

#[test]
fn writes_a_full_write_burst_table_could_not_track_are_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    fs::write(
        &rules,
        b"version = 1\n[[rule]]\nid = \"mass-write\"\ntemplate = \"write_burst\"\nseverity = \"high\"\n[rule.fields]\nwrites = 1000\nwindow_ms = 60000\n",
    )
    .unwrap();
    // One write from each of 65,536 + 7 processes within one window: the table holds 65,536.
    let events: Vec<_> = (0..65_543u32)
        .map(|pid| {
            let mut e = SynthEvent::new(Operation::Write, "/w/f");
            e.pid = pid + 10;
            e
        })
        .collect();
    let mut w = CaptureWriter::new(Vec::new(), SourceKind::Simulator, 1).unwrap();
    for (i, b) in synth::batches(&events, 1, 2000, &[]).iter().enumerate() {
        w.write_message(b, i as u64 + 2).unwrap();
    }
    let cap = dir.path().join("burst.cap");
    fs::write(&cap, w.finish(99).unwrap()).unwrap();
    let summary = dir.path().join("s.json");
    let o = fsense(&[
        "replay",
        cap.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--output",
        dir.path().join("out.json").to_str().unwrap(),
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["untracked_writes"], 7, "{s}");
}
