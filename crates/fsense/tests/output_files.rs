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

/// A scratch directory with a directory `udir` every user may write into, sticky like `/tmp`
/// (where another user can plant names but not replace ours), a directory `ndir` that another
/// user (nobody) owns when we are root, as in the review's reproductions, and root-owned 0600
/// victim files outside them.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("udir")).unwrap();
        fs::set_permissions(dir.path().join("udir"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir(dir.path().join("ndir")).unwrap();
        if is_root() {
            std::os::unix::fs::chown(dir.path().join("ndir"), Some(NOBODY), Some(NOBODY)).unwrap();
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
    // In a sticky directory the kernel may refuse first (fs.protected_symlinks,
    // fs.protected_regular): still one line naming the path, nothing written.
    assert!(
        err.starts_with("error: refusing ") && err.contains("symbolic link")
            || err.starts_with("error: cannot open ") && err.contains("Permission denied"),
        "{what}: {err}"
    );
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

/// N10 (the review's reproduction): `udir/logs` is a link another user planted to a root-only
/// directory. An output through it must be refused at start, in one line naming the link, and the
/// root-only files left as they were; so must an output in a directory another user owns or can
/// write to, even for a summary written only at the end.
#[test]
fn an_output_through_a_directory_another_user_controls_is_refused_at_start() {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED an_output_through_a_directory_another_user_controls: needs root ***\n"
        );
        return;
    }
    let scene = Scene::new();
    let cap = capture_of(&["/w/a"], scene.dir.path());
    let rootonly = scene.path("rootonly");
    fs::create_dir(&rootonly).unwrap();
    fs::set_permissions(&rootonly, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = rootonly.join("events.json");
    fs::write(&victim, b"root's secret\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let logs = scene.path("ndir").join("logs");
    std::os::unix::fs::symlink(&rootonly, &logs).unwrap();
    std::os::unix::fs::lchown(&logs, Some(NOBODY), Some(NOBODY)).unwrap();

    let o = fsense(&[
        "replay",
        cap.to_str().unwrap(),
        "--output",
        logs.join("events.json").to_str().unwrap(),
        "--summary-json",
        logs.join("summary.json").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: refusing "), "{err}");
    assert!(err.contains(scene.path("ndir").to_str().unwrap()), "{err}");
    assert_intact(&victim);
    assert!(!rootonly.join("summary.json").exists());

    // Only the summary is misplaced: refused before the run, nothing written.
    let out = scene.path("events.json");
    let open = scene.path("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    for summary in [logs.join("summary.json"), open.join("summary.json")] {
        let o = fsense(&[
            "simulate",
            "--events",
            "5",
            "--output",
            out.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: refusing "), "{err}");
        assert!(!out.exists(), "the run went ahead: {err}");
        assert!(!summary.exists());
    }
    assert!(!rootonly.join("summary.json").exists());
}

/// Issue 24, N10 (the review's reproduction): `nobody` owns `udir` and links `udir/logs` to a
/// root-only directory; `--output`/`--summary-json` under `udir/logs/` are refused in one line
/// naming the directory, and the root-only files are untouched.
#[test]
fn outputs_under_another_users_directory_or_link_are_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to plant as another user");
        return;
    }
    let scene = Scene::new();
    let cap = capture_of(&["/w/a"], scene.dir.path());
    let foreign = scene.path("foreign");
    fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(NOBODY), Some(NOBODY)).unwrap();
    let root_only = scene.path("rootonly");
    fs::create_dir(&root_only).unwrap();
    fs::set_permissions(&root_only, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(root_only.join("events.json"), b"root's secret\n").unwrap();
    fs::set_permissions(
        root_only.join("events.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    for planted in [foreign.join("logs"), scene.udir("logs")] {
        std::os::unix::fs::symlink(&root_only, &planted).unwrap();
        std::os::unix::fs::lchown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
        for flag in ["--output", "--summary-json"] {
            let target = planted.join(if flag == "--output" {
                "events.json"
            } else {
                "summary.json"
            });
            let o = fsense(&[
                "replay",
                cap.to_str().unwrap(),
                flag,
                target.to_str().unwrap(),
            ]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{flag} {}: {err}",
                planted.display()
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("another user (uid 65534)"), "{err}");
        }
    }
    assert_intact(&root_only.join("events.json"));
    assert!(!root_only.join("summary.json").exists());
}
