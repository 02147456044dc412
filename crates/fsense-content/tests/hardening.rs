//! Issue 18, content side: the content commands run as root, on state directories and
//! repositories other users may have touched, from schedulers that overlap. Each test here
//! reproduces a finding of the consumer security review (M1, M2, L1, L2, L5-L8).
#![cfg(unix)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use fsense_content::state::{StateDir, UpdateOutcome};
use fsense_content::tuf;
use fsense_content::{ContentError, ErrorKind, load_active};

const NOBODY: u32 = 65534;

struct Fixture {
    dir: tempfile::TempDir,
    keys: PathBuf,
    repo: PathBuf,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        Self::in_dir(tempfile::tempdir().unwrap(), "")
    }

    /// Keys and repository below `dir/sub` (which may need percent-encoding in a URL).
    fn in_dir(dir: tempfile::TempDir, sub: &str) -> Self {
        let base = dir.path().join(sub);
        let keys = base.join("keys");
        let root = tuf::keygen(&keys).unwrap();
        let repo = base.join("repo");
        Self {
            dir,
            keys,
            repo,
            root,
        }
    }

    fn publish(&self, version: u64) -> Result<tuf::Published, ContentError> {
        let path = self.dir.path().join(format!("rules-{version}.toml"));
        std::fs::write(&path, rules(version)).unwrap();
        tuf::publish(&path, &self.keys, &self.repo)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn rules(version: u64) -> String {
    format!(
        "version = {version}\n[[rule]]\nid = \"office-macro-drop\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"**/*.docm\"\n"
    )
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, ContentError>, needle: &str) {
    let err = result.expect_err("must be refused");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(
        err.to_string().contains(needle),
        "`{err}` should mention `{needle}`"
    );
    assert!(!err.to_string().chars().any(char::is_control), "{err:?}");
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A fixture with v1 installed in `state` and v2 published.
fn installed_v1_with_v2_published() -> (Fixture, StateDir) {
    let fx = Fixture::new();
    fx.publish(1).unwrap();
    let state = StateDir::open(&fx.path("state")).unwrap();
    state.update(&fx.repo, &fx.root).unwrap();
    fx.publish(2).unwrap();
    (fx, state)
}

mod state_dir_trust {
    use super::*;

    #[test]
    fn a_state_dir_writable_by_others_is_refused_by_every_command() {
        let (fx, state) = installed_v1_with_v2_published();
        chmod(state.path(), 0o777);
        assert_refused(state.update(&fx.repo, &fx.root), "writable by other users");
        assert_refused(state.rollback(), "writable by other users");
        assert_refused(load_active(state.path()), "writable by other users");
        chmod(state.path(), 0o700);
        assert_eq!(load_active(state.path()).unwrap().version(), 1);
    }

    #[test]
    fn a_state_dir_or_parent_owned_by_another_user_is_refused() {
        if !is_root() {
            eprintln!("skipped: needs root to hand a directory to another user");
            return;
        }
        let (fx, state) = installed_v1_with_v2_published();
        chown(state.path(), NOBODY);
        assert_refused(state.update(&fx.repo, &fx.root), "belongs to another user");
        assert_refused(load_active(state.path()), "belongs to another user");
        chown(state.path(), 0);

        // The review's scenario: a parent another user owns lets them swap the whole directory.
        let parent = fx.path("shared");
        std::fs::create_dir(&parent).unwrap();
        chown(&parent, NOBODY);
        let state = StateDir::open(&parent.join("state")).unwrap();
        assert_refused(state.update(&fx.repo, &fx.root), "uid 65534");
        assert_refused(load_active(state.path()), "uid 65534");
    }

    #[test]
    fn a_new_state_dir_is_private() {
        let (_fx, state) = installed_v1_with_v2_published();
        let mode = std::fs::metadata(state.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let pointer = std::fs::metadata(state.path().join("state.json")).unwrap();
        assert_eq!(pointer.mode() & 0o777, 0o600);
    }

    #[test]
    fn the_pointer_can_only_name_generations_fsense_creates() {
        let (_fx, state) = installed_v1_with_v2_published();
        // The review's L2 reproduction: a look-alike generation with an empty rule set.
        let evil = state.path().join("evil");
        std::fs::create_dir(&evil).unwrap();
        std::fs::write(evil.join("rules.toml"), "version = 1\n").unwrap();
        let pointer_path = state.path().join("state.json");
        let pointer = std::fs::read_to_string(&pointer_path).unwrap();
        for name in ["evil", "../state/gen-1", "gen-01", "gen-1/../evil", "gen-"] {
            let forged = pointer.replace("\"gen-1\"", &serde_json::to_string(name).unwrap());
            std::fs::write(&pointer_path, forged).unwrap();
            assert_refused(load_active(state.path()), "not a generation fsense creates");
        }
    }

    #[test]
    fn installed_rules_are_read_without_following_links() {
        let (fx, state) = installed_v1_with_v2_published();
        let installed = state.path().join("gen-1").join("rules.toml");
        let elsewhere = fx.path("elsewhere.toml");
        std::fs::rename(&installed, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &installed).unwrap();
        assert_refused(load_active(state.path()), "symbolic link");
    }

    #[test]
    fn a_missing_active_generation_falls_back_to_last_known_good() {
        let (fx, state) = installed_v1_with_v2_published();
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::Installed {
                from: Some(1),
                to: 2
            }
        );
        std::fs::remove_dir_all(state.path().join("gen-2")).unwrap();
        assert_eq!(load_active(state.path()).unwrap().version(), 1);
        assert_eq!(state.active_version().unwrap(), Some(1));
        // The next update repairs the directory from the last known good.
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::Installed {
                from: Some(1),
                to: 2
            }
        );
        assert_eq!(load_active(state.path()).unwrap().version(), 2);
    }

    /// L5: a check that installs nothing still persists the newer metadata it trusted.
    #[test]
    fn trusted_metadata_is_kept_after_a_refresh_that_installs_nothing() {
        let (fx, state) = installed_v1_with_v2_published();
        state.update(&fx.repo, &fx.root).unwrap();
        state.rollback().unwrap();
        fx.publish(3).unwrap();
        // v3 is newest; roll it back too, so that the next check skips it.
        state.update(&fx.repo, &fx.root).unwrap();
        let back = state.rollback().unwrap();
        assert_eq!((back.from, back.to), (3, Some(1)));
        let trusted_timestamp = |dir: &Path| -> u64 {
            let gen_dir = dir.join("gen-1").join("tuf").join("timestamp.json");
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(gen_dir).unwrap()).unwrap();
            json["signed"]["version"].as_u64().unwrap()
        };
        assert_eq!(trusted_timestamp(state.path()), 1, "as of the v1 install");
        assert!(matches!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::SkippedRolledBack { newest: 3, .. }
        ));
        assert_eq!(trusted_timestamp(state.path()), 3);
        let pointer = state.pointer().unwrap();
        assert_eq!(pointer.seen.timestamp, 3);
    }
}

/// M1: update and rollback running at the same time on one state directory.
mod concurrency {
    use super::*;

    const ROLE_ENV: &str = "FSENSE_TEST_CONCURRENT_ROLE";

    /// Runs in a child process: one `update` or `rollback`, printing its outcome.
    #[test]
    #[ignore = "helper process for parallel_updates_and_rollbacks_never_break_the_state"]
    fn child() {
        let Ok(role) = std::env::var(ROLE_ENV) else {
            return;
        };
        let state =
            StateDir::open(Path::new(&std::env::var("FSENSE_TEST_STATE").unwrap())).unwrap();
        let outcome = match role.as_str() {
            "update" => state
                .update(
                    Path::new(&std::env::var("FSENSE_TEST_REPO").unwrap()),
                    Path::new(&std::env::var("FSENSE_TEST_ROOT").unwrap()),
                )
                .map(|o| format!("{o:?}")),
            _ => state.rollback().map(|o| format!("{o:?}")),
        };
        match outcome {
            Ok(outcome) => println!("OUTCOME {outcome}"),
            Err(e) => println!("ERROR {e}"),
        }
    }

    fn spawn(role: &str, fx: &Fixture, state: &Path) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "concurrency::child",
                "--ignored",
                "--nocapture",
                "--quiet",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, role)
            .env("FSENSE_TEST_REPO", &fx.repo)
            .env("FSENSE_TEST_ROOT", &fx.root)
            .env("FSENSE_TEST_STATE", state)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    fn outcome(child: std::process::Child) -> String {
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("OUTCOME") || l.starts_with("ERROR"))
            .unwrap_or("no outcome")
            .to_owned()
    }

    #[test]
    fn parallel_updates_and_rollbacks_never_break_the_state() {
        const PAIRS: usize = 20;
        let (fx, base) = installed_v1_with_v2_published();
        for pair in 0..PAIRS {
            let state_path = fx.path(&format!("pair-{pair}"));
            copy_tree(base.path(), &state_path);
            // Every fourth pair races an update against a rollback.
            let second = if pair % 4 == 3 { "rollback" } else { "update" };
            let (a, b) = (
                spawn("update", &fx, &state_path),
                spawn(second, &fx, &state_path),
            );
            let (a, b) = (outcome(a), outcome(b));
            if second == "update" {
                let installs = [&a, &b].iter().filter(|o| o.contains("Installed")).count();
                assert_eq!(installs, 1, "pair {pair}: {a} / {b}");
                assert!(
                    !a.starts_with("ERROR") && !b.starts_with("ERROR"),
                    "{a} / {b}"
                );
            }
            let state = StateDir::open(&state_path).unwrap();
            let pointer = state.pointer().unwrap();
            for generation in [&pointer.active, &pointer.last_known_good]
                .into_iter()
                .flatten()
            {
                assert!(
                    state_path.join(generation).is_dir(),
                    "pair {pair}: {generation} is gone ({a} / {b})"
                );
            }
            load_active(&state_path)
                .unwrap_or_else(|e| panic!("pair {pair} broke the state: {e} ({a} / {b})"));
            assert!(
                state.update(&fx.repo, &fx.root).is_ok(),
                "pair {pair}: the next update fails"
            );
            let leftovers: Vec<_> = std::fs::read_dir(&state_path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("staging") || n.ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "pair {pair}: {leftovers:?}");
        }
    }

    #[test]
    fn parallel_publishes_leave_a_consistent_repository() {
        let fx = Fixture::new();
        fx.publish(1).unwrap();
        for round in 0..4u64 {
            let (low, high) = (2 + round * 2, 3 + round * 2);
            let results: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = [low, high]
                    .into_iter()
                    .map(|version| {
                        let fx = &fx;
                        scope.spawn(move || fx.publish(version))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for result in &results {
                if let Err(e) = result {
                    assert!(e.to_string().contains("not greater"), "round {round}: {e}");
                }
            }
            let verified = tuf::verify(&fx.repo, &fx.root)
                .unwrap_or_else(|e| panic!("round {round}: repository broken: {e}"));
            assert_eq!(verified.rules.version(), high, "round {round}");
        }
    }
}

/// M2: files the content commands create never follow a planted link.
mod created_files {
    use super::*;

    #[test]
    fn keygen_refuses_a_planted_link_and_keeps_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        chmod(&keys, 0o700);
        let outside = dir.path().join("newfile_by_root");
        std::os::unix::fs::symlink(&outside, keys.join("root.json")).unwrap();
        assert_refused(tuf::keygen(&keys), "already holds keys");
        assert!(!outside.exists(), "nothing is created through the link");

        let fresh = dir.path().join("fresh");
        tuf::keygen(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        for entry in std::fs::read_dir(&fresh).unwrap() {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().mode() & 0o777;
            let name = entry.file_name().to_string_lossy().into_owned();
            let expected = if name == "root.json" { 0o644 } else { 0o600 };
            assert_eq!(mode, expected, "{name}");
        }
    }

    #[test]
    fn keygen_refuses_a_directory_writable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        chmod(&keys, 0o777);
        assert_refused(tuf::keygen(&keys), "writable by other users");
    }

    #[test]
    fn rollout_summary_replaces_a_planted_link_instead_of_following_it() {
        use clap::Parser;
        use fsense_content::cli::{ContentCommand, run};
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            command: ContentCommand,
        }
        let fx = Fixture::new();
        fx.publish(1).unwrap();
        fx.publish(2).unwrap();
        let victim = fx.path("victim");
        std::fs::write(&victim, "root's file\n").unwrap();
        chmod(&victim, 0o600);
        let summary = fx.path("rollout.json");
        std::os::unix::fs::symlink(&victim, &summary).unwrap();
        let args = [
            "fsense-content",
            "rollout",
            "--fleet",
            "4",
            "--repo",
            fx.repo.to_str().unwrap(),
            "--root",
            fx.root.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ];
        assert_eq!(
            run(Cli::try_parse_from(args).unwrap().command),
            std::process::ExitCode::SUCCESS
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
        let written = std::fs::symlink_metadata(&summary).unwrap();
        assert!(written.is_file());
        assert_eq!(written.mode() & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(&summary)
                .unwrap()
                .contains("hosts_exposed")
        );
    }
}

/// L6, L7, L8, L1: hostile or damaged repositories.
mod repositories {
    use super::*;

    /// Runs `f` on another thread and fails (instead of hanging) if it takes over 30 s.
    fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("hung on a repository file")
    }

    #[test]
    fn a_fifo_in_the_repository_is_refused_not_waited_on() {
        let fx = Fixture::new();
        fx.publish(1).unwrap();
        let timestamp = fx.repo.join("metadata").join("timestamp.json");
        std::fs::remove_file(&timestamp).unwrap();
        let status = Command::new("mkfifo").arg(&timestamp).status().unwrap();
        assert!(status.success());
        let (repo, root, state) = (fx.repo.clone(), fx.root.clone(), fx.path("state"));
        let (verified, updated) = within_30s(move || {
            (
                tuf::verify(&repo, &root).map(|f| f.rules.version()),
                StateDir::open(&state).unwrap().update(&repo, &root),
            )
        });
        assert_refused(verified, "not a regular file");
        assert_refused(updated, "not a regular file");
    }

    #[test]
    fn a_symlink_in_the_repository_is_refused() {
        let fx = Fixture::new();
        fx.publish(1).unwrap();
        let timestamp = fx.repo.join("metadata").join("timestamp.json");
        let elsewhere = fx.path("timestamp-elsewhere.json");
        std::fs::rename(&timestamp, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &timestamp).unwrap();
        assert_refused(tuf::verify(&fx.repo, &fx.root), "symbolic link");
    }

    #[test]
    fn publish_refuses_a_repository_that_lost_its_timestamp() {
        let fx = Fixture::new();
        fx.publish(1).unwrap();
        fx.publish(2).unwrap();
        std::fs::remove_file(fx.repo.join("metadata").join("timestamp.json")).unwrap();
        let before: Vec<_> = std::fs::read_dir(fx.repo.join("metadata"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_refused(fx.publish(3), "no timestamp.json");
        let after: Vec<_> = std::fs::read_dir(fx.repo.join("metadata"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn repository_paths_with_spaces_and_non_ascii_work() {
        let fx = Fixture::in_dir(tempfile::tempdir().unwrap(), "sp ace/dépôt ü%20");
        fx.publish(1).unwrap();
        fx.publish(2).unwrap();
        assert_eq!(tuf::verify(&fx.repo, &fx.root).unwrap().rules.version(), 2);
        let state = StateDir::open(&fx.path("sp ace/état")).unwrap();
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::Installed { from: None, to: 2 }
        );
        assert_eq!(load_active(state.path()).unwrap().version(), 2);
    }

    #[test]
    fn control_characters_from_the_repository_never_reach_the_error_line() {
        let fx = Fixture::new();
        fx.publish(1).unwrap();
        let metadata = fx.repo.join("metadata");
        let mut root: serde_json::Value =
            serde_json::from_slice(&std::fs::read(metadata.join("1.root.json")).unwrap()).unwrap();
        let roles = root["signed"]["roles"].as_object_mut().unwrap();
        let timestamp = roles.remove("timestamp").unwrap();
        roles.insert(
            "\u{1b}]0;PWNED\u{7}\u{1b}[2K\r\u{1b}[1;32minstalled rules version 999\u{1b}[0m\n\u{9b}8m\u{202e}".to_owned(),
            timestamp,
        );
        root["signed"]["version"] = serde_json::json!(2);
        std::fs::write(
            metadata.join("2.root.json"),
            serde_json::to_vec(&root).unwrap(),
        )
        .unwrap();
        let err = tuf::verify(&fx.repo, &fx.root).unwrap_err();
        let line = err.to_string();
        assert!(line.contains("\\u{1b}]0;PWNED"), "{line}");
        assert!(
            !line
                .chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{line:?}"
        );
    }
}
