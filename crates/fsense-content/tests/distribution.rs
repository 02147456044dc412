//! End-to-end tests of distribution: keys, publish, verify, update, rollback, crash safety and the
//! rollout simulator, all against real TUF repositories in temporary directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fsense_content::state::{StateDir, Step, UpdateOutcome};
use fsense_content::tuf::{self, Published};
use fsense_content::{ContentError, ErrorKind, load_active};

struct Fixture {
    dir: tempfile::TempDir,
    keys: PathBuf,
    repo: PathBuf,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let root = tuf::keygen(&keys).unwrap();
        let repo = dir.path().join("repo");
        Self {
            dir,
            keys,
            repo,
            root,
        }
    }

    fn publish_text(&self, text: &str) -> Result<Published, ContentError> {
        let path = self.dir.path().join("rules.toml");
        std::fs::write(&path, text).unwrap();
        tuf::publish(&path, &self.keys, &self.repo)
    }

    fn publish(&self, version: u64) -> Published {
        self.publish_text(&rules(version, "**/*.docm")).unwrap()
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn rules(version: u64, glob: &str) -> String {
    format!(
        r#"version = {version}
[[rule]]
id = "office-macro-drop"
template = "path_match"
severity = "high"
[rule.fields]
operation = "create"
glob = "{glob}"

[[rule]]
id = "mass-write"
template = "write_burst"
severity = "critical"
[rule.fields]
writes = 100
window_ms = 1000
"#
    )
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(
                    path.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    files
}

fn copy_tree(from: &Path, to: &Path) {
    for (relative, bytes) in tree(from) {
        let dest = to.join(relative);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
}

fn only_file_matching(dir: &Path, pattern: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(pattern))
        .collect();
    assert_eq!(found.len(), 1, "{pattern} in {}", dir.display());
    found.pop().unwrap()
}

fn assert_refused(result: Result<impl std::fmt::Debug, ContentError>, needle: &str) {
    let err = result.expect_err("must be refused");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains(needle),
        "`{err}` should mention `{needle}`"
    );
    assert!(!err.to_string().contains('\n'));
}

mod publish_and_verify {
    use super::*;

    #[test]
    fn published_content_verifies_and_versions_advance() {
        let fx = Fixture::new();
        let first = fx.publish(1);
        assert_eq!(first.rules_version, 1);
        assert_eq!(tuf::verify(&fx.repo, &fx.root).unwrap().rules.version(), 1);
        let second = fx.publish(5);
        assert!(second.metadata.timestamp > first.metadata.timestamp);
        assert!(second.metadata.targets > first.metadata.targets);
        let fetched = tuf::verify(&fx.repo, &fx.root).unwrap();
        assert_eq!((fetched.rules.version(), fetched.rules.len()), (5, 2));
        assert!(fx.keys.join("root.json").is_file());
        // Private keys never land in the repository.
        assert!(
            tree(&fx.repo)
                .keys()
                .all(|p| !p.to_string_lossy().ends_with(".pk8"))
        );
    }

    #[test]
    fn keygen_refuses_to_overwrite_keys() {
        let fx = Fixture::new();
        assert_refused(tuf::keygen(&fx.keys), "already holds keys");
    }

    #[test]
    fn invalid_content_leaves_the_repository_exactly_as_it_was() {
        let fx = Fixture::new();
        let err = fx.publish_text(&rules(1, "**/[z-a]")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(!fx.repo.exists(), "nothing is created for invalid content");
        fx.publish(1);
        let before = tree(&fx.repo);
        let err = fx
            .publish_text(&rules(2, "").replace("writes = 100", "writes = 0"))
            .unwrap_err();
        assert_eq!(
            (err.rule(), err.field(), err.exit_code()),
            (Some("office-macro-drop"), Some("glob"), 2)
        );
        assert_eq!(tree(&fx.repo), before);
        // No staging directory is left next to the repository either.
        let leftovers: Vec<_> = std::fs::read_dir(fx.dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".fsense-publish")
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_version_not_greater_than_the_published_one_is_refused() {
        let fx = Fixture::new();
        fx.publish(3);
        let before = tree(&fx.repo);
        assert_refused(
            fx.publish_text(&rules(3, "**/*.x")),
            "not greater than the published version 3",
        );
        assert_refused(fx.publish_text(&rules(2, "**/*.x")), "not greater");
        assert_eq!(tree(&fx.repo), before);
    }

    #[test]
    fn a_tampered_target_is_refused() {
        let fx = Fixture::new();
        fx.publish(1);
        let target = only_file_matching(&fx.repo.join("targets"), "rules-1.toml");
        let text = std::fs::read_to_string(&target).unwrap();
        // Same length, same validity, different meaning: only the hash can tell.
        std::fs::write(&target, text.replace("docm", "xlsm")).unwrap();
        assert_refused(tuf::verify(&fx.repo, &fx.root), "failed verification");
        let state = StateDir::open(&fx.state("sensor")).unwrap();
        assert_refused(state.update(&fx.repo, &fx.root), "failed verification");
        assert!(load_active(state.path()).is_err(), "nothing was installed");
    }

    #[test]
    fn tampered_metadata_is_refused() {
        let fx = Fixture::new();
        fx.publish(1);
        let targets = only_file_matching(&fx.repo.join("metadata"), "targets.json");
        let json = std::fs::read_to_string(&targets).unwrap();
        assert!(json.contains("\"rules_version\": 1"));
        std::fs::write(
            &targets,
            json.replace("\"rules_version\": 1", "\"rules_version\": 9"),
        )
        .unwrap();
        assert_refused(tuf::verify(&fx.repo, &fx.root), "TUF verification failed");

        let fx = Fixture::new();
        fx.publish(1);
        let timestamp = fx.repo.join("metadata").join("timestamp.json");
        let json = std::fs::read_to_string(&timestamp).unwrap();
        std::fs::write(
            &timestamp,
            json.replacen("\"version\": 1", "\"version\": 2", 1),
        )
        .unwrap();
        assert_refused(tuf::verify(&fx.repo, &fx.root), "TUF verification failed");
    }

    #[test]
    fn expired_metadata_is_refused() {
        // A freeze attack serves old, validly signed metadata; its expiry gives it away.
        let fx = Fixture::new();
        let path = fx.dir.path().join("rules.toml");
        std::fs::write(&path, rules(1, "**/*.docm")).unwrap();
        let expired = tuf::Lifetimes {
            timestamp_days: -1,
            ..tuf::Lifetimes::default()
        };
        tuf::publish_with(&path, &fx.keys, &fx.repo, &expired).unwrap();
        assert_refused(tuf::verify(&fx.repo, &fx.root), "xpired");
        let state = StateDir::open(&fx.state("sensor")).unwrap();
        assert_refused(state.update(&fx.repo, &fx.root), "xpired");
        // The publisher revives the repository with a new release and fresh expiries.
        fx.publish(2);
        assert_eq!(tuf::verify(&fx.repo, &fx.root).unwrap().rules.version(), 2);
    }

    #[test]
    fn a_wrong_root_is_refused() {
        let fx = Fixture::new();
        fx.publish(1);
        let other = Fixture::new();
        assert_refused(
            tuf::verify(&fx.repo, &other.root),
            "TUF verification failed",
        );
        let state = StateDir::open(&fx.state("sensor")).unwrap();
        assert_refused(
            state.update(&fx.repo, &other.root),
            "TUF verification failed",
        );
    }
}

mod update {
    use super::*;

    #[test]
    fn update_installs_keeps_last_known_good_and_rolls_back() {
        let fx = Fixture::new();
        fx.publish(1);
        let state = StateDir::open(&fx.state("sensor")).unwrap();
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::Installed { from: None, to: 1 }
        );
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::UpToDate { version: 1 }
        );
        fx.publish(2);
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::Installed {
                from: Some(1),
                to: 2
            }
        );
        assert_eq!(load_active(state.path()).unwrap().version(), 2);

        let back = state.rollback().unwrap();
        assert_eq!((back.from, back.to), (2, Some(1)));
        assert_eq!(load_active(state.path()).unwrap().version(), 1);
        // The rolled-back release is not installed again; a newer one is.
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::SkippedRolledBack {
                newest: 2,
                active: Some(1)
            }
        );
        fx.publish(3);
        assert_eq!(
            state.update(&fx.repo, &fx.root).unwrap(),
            UpdateOutcome::Installed {
                from: Some(1),
                to: 3
            }
        );
        // Only the active and last-known-good generations are kept.
        let generations = std::fs::read_dir(state.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("gen-")
            })
            .count();
        assert_eq!(generations, 2);
    }

    #[test]
    fn repository_rolled_back_to_older_metadata_is_refused_and_content_kept() {
        let fx = Fixture::new();
        fx.publish(1);
        let old_repo = fx.state("old-repo");
        copy_tree(&fx.repo, &old_repo);
        fx.publish(2);
        let state = StateDir::open(&fx.state("sensor")).unwrap();
        state.update(&fx.repo, &fx.root).unwrap();
        // An attacker (or a stale mirror) serves the older, validly signed repository.
        assert_refused(
            state.update(&old_repo, &fx.root),
            "previously fetched version 2",
        );
        assert_eq!(load_active(state.path()).unwrap().version(), 2);

        // Even if the TUF client's own trusted metadata is lost, the pointer's record of the
        // highest versions seen still refuses the rollback.
        for entry in std::fs::read_dir(state.path()).unwrap() {
            let tuf_dir = entry.unwrap().path().join("tuf");
            if tuf_dir.is_dir() {
                std::fs::remove_dir_all(tuf_dir).unwrap();
            }
        }
        assert_refused(state.update(&old_repo, &fx.root), "older than version");
        assert_eq!(load_active(state.path()).unwrap().version(), 2);
    }

    #[test]
    fn installed_content_is_checked_on_load() {
        let fx = Fixture::new();
        fx.publish(1);
        let state = StateDir::open(&fx.state("sensor")).unwrap();
        state.update(&fx.repo, &fx.root).unwrap();
        let installed = only_file_matching(state.path(), "gen-").join("rules.toml");
        let text = std::fs::read_to_string(&installed).unwrap();
        std::fs::write(&installed, text.replace("docm", "xlsm")).unwrap();
        assert_refused(load_active(state.path()), "sha256");
    }

    #[test]
    fn rollback_without_content_is_refused() {
        let fx = Fixture::new();
        assert_refused(
            StateDir::open(&fx.state("empty")).unwrap().rollback(),
            "no active content",
        );
    }
}

/// Crash safety: an update is killed after each of its steps; the state directory must always
/// hold the old or the new content, loadable, and the next update must succeed.
mod crash {
    use super::*;

    const STEP_ENV: &str = "FSENSE_TEST_CRASH_AT_STEP";

    /// Runs in a child process: one update that aborts the process after step N.
    #[test]
    #[ignore = "helper process for crash_at_every_update_step"]
    fn child() {
        let Ok(step) = std::env::var(STEP_ENV) else {
            return;
        };
        let crash_after: usize = step.parse().unwrap();
        let repo = PathBuf::from(std::env::var("FSENSE_TEST_REPO").unwrap());
        let root = PathBuf::from(std::env::var("FSENSE_TEST_ROOT").unwrap());
        let state =
            StateDir::open(Path::new(&std::env::var("FSENSE_TEST_STATE").unwrap())).unwrap();
        let mut seen = 0;
        state
            .update_to(&repo, &root, None, &mut |_step: Step| {
                seen += 1;
                if seen == crash_after {
                    std::process::abort();
                }
            })
            .unwrap();
    }

    #[test]
    fn crash_at_every_update_step() {
        const STEPS: usize = 8;
        let fx = Fixture::new();
        fx.publish(1);
        let template = fx.state("template");
        StateDir::open(&template)
            .unwrap()
            .update(&fx.repo, &fx.root)
            .unwrap();
        fx.publish(2);
        let mut versions_after_crash = Vec::new();
        for crash_after in 1..=STEPS + 1 {
            let state_path = fx.state(&format!("sensor-{crash_after}"));
            copy_tree(&template, &state_path);
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "crash::child",
                    "--ignored",
                    "--quiet",
                    "--test-threads=1",
                ])
                .env(STEP_ENV, crash_after.to_string())
                .env("FSENSE_TEST_REPO", &fx.repo)
                .env("FSENSE_TEST_ROOT", &fx.root)
                .env("FSENSE_TEST_STATE", &state_path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert_eq!(
                status.success(),
                crash_after > STEPS,
                "step {crash_after}: {status}"
            );

            let active = load_active(&state_path)
                .unwrap_or_else(|e| panic!("broken after step {crash_after}: {e}"));
            versions_after_crash.push(active.version());
            // Recovery: the next update completes (or finds it already done).
            let state = StateDir::open(&state_path).unwrap();
            state.update(&fx.repo, &fx.root).unwrap();
            assert_eq!(load_active(&state_path).unwrap().version(), 2);
            // The last known good survived as well.
            assert_eq!(state.rollback().unwrap().to, Some(1), "step {crash_after}");
        }
        // Old content until the pointer rename (step 7), new content from then on.
        assert_eq!(versions_after_crash, [1, 1, 1, 1, 1, 1, 2, 2, 2]);
    }
}

mod rollout {
    use super::*;
    use fsense_content::rollout::{SimulationConfig, Summary, simulate};

    fn config(fleet: u32, seed: u64, fault_rate: f64) -> SimulationConfig {
        SimulationConfig {
            fleet,
            rings: vec![1, 10, 50, 100],
            seed,
            fault_rate,
            events_per_host: 1000,
        }
    }

    fn deterministic_part(summary: &Summary) -> serde_json::Value {
        let mut value = serde_json::to_value(summary).unwrap();
        for ring in value["rings"].as_array_mut().unwrap() {
            ring["health"]["mean_eval_ns"] = serde_json::Value::Null;
        }
        value
    }

    #[test]
    fn a_healthy_release_reaches_the_whole_fleet() {
        let fx = Fixture::new();
        fx.publish(1);
        fx.publish_text(&rules(2, "**/*.xlsm")).unwrap();
        let summary = simulate(&fx.repo, &fx.root, &config(120, 7, 0.0)).unwrap();
        assert_eq!(summary.halted_at_ring, None, "{summary:#?}");
        assert!(!summary.rolled_back);
        assert_eq!(
            (
                summary.hosts_exposed,
                summary.final_version,
                summary.previous_version
            ),
            (120, Some(2), Some(1))
        );
        assert_eq!(
            summary
                .rings
                .iter()
                .map(|r| r.hosts_total)
                .collect::<Vec<_>>(),
            [2, 12, 60, 120]
        );
        assert!(
            summary
                .rings
                .iter()
                .all(|r| r.passed && r.health.matches_new > 0)
        );
    }

    #[test]
    fn faulty_releases_stop_at_the_first_ring_and_roll_back() {
        let fx = Fixture::new();
        fx.publish(1);
        fx.publish(2);
        for seed in 0..4 {
            let summary = simulate(&fx.repo, &fx.root, &config(300, seed, 0.01)).unwrap();
            assert_eq!(summary.halted_at_ring, Some(1), "{summary:#?}");
            assert_eq!(summary.hosts_exposed, summary.first_ring_hosts);
            assert_eq!(summary.first_ring_hosts, 3);
            assert!(summary.rolled_back);
            assert_eq!(summary.hosts_rolled_back, 3);
            assert_eq!(summary.final_version, Some(1));
        }
    }

    #[test]
    fn content_that_matches_everything_is_caught_by_the_match_rate_gate() {
        let fx = Fixture::new();
        fx.publish(1);
        let everything = rules(2, "**").replace("operation = \"create\"", "operation = \"write\"");
        fx.publish_text(&everything).unwrap();
        let summary = simulate(&fx.repo, &fx.root, &config(100, 1, 0.0)).unwrap();
        assert_eq!(summary.halted_at_ring, Some(1));
        assert!(
            summary
                .halt_reason
                .as_deref()
                .unwrap()
                .contains("match rate"),
            "{summary:#?}"
        );
        assert_eq!((summary.hosts_exposed, summary.final_version), (1, Some(1)));
    }

    #[test]
    fn a_first_release_that_fails_rolls_back_to_no_content() {
        let fx = Fixture::new();
        fx.publish(1);
        let summary = simulate(&fx.repo, &fx.root, &config(50, 3, 0.05)).unwrap();
        assert_eq!(
            (
                summary.halted_at_ring,
                summary.previous_version,
                summary.final_version
            ),
            (Some(1), None, None)
        );
        assert_eq!(summary.hosts_exposed, 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_rollout() {
        let fx = Fixture::new();
        fx.publish(1);
        fx.publish(2);
        let a = simulate(&fx.repo, &fx.root, &config(60, 11, 0.001)).unwrap();
        let b = simulate(&fx.repo, &fx.root, &config(60, 11, 0.001)).unwrap();
        assert_eq!(deterministic_part(&a), deterministic_part(&b));
        let c = simulate(&fx.repo, &fx.root, &config(60, 12, 0.001)).unwrap();
        assert_ne!(
            deterministic_part(&a)["rings"],
            deterministic_part(&c)["rings"]
        );
    }
}

mod cli {
    use super::*;
    use clap::Parser;
    use fsense_content::cli::{ContentCommand, run};
    use std::process::ExitCode;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ContentCommand,
    }

    fn exit(args: &[&str]) -> ExitCode {
        let mut argv = vec!["fsense-content"];
        argv.extend_from_slice(args);
        run(Cli::try_parse_from(argv).unwrap().command)
    }

    #[test]
    fn commands_and_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let (keys, repo, root, state) = (
            path("keys"),
            path("repo"),
            path("keys/root.json"),
            path("state"),
        );
        std::fs::write(path("good.toml"), rules(1, "**/*.docm")).unwrap();
        std::fs::write(
            path("bad.toml"),
            rules(2, "**/*.docm").replace("window_ms", "window"),
        )
        .unwrap();
        std::fs::write(path("v2.toml"), rules(2, "**/*.js")).unwrap();
        let summary = path("summary.json");

        assert_eq!(exit(&["keygen", "--out-dir", &keys]), ExitCode::SUCCESS);
        assert_eq!(
            exit(&[
                "publish",
                &path("good.toml"),
                "--keys",
                &keys,
                "--repo",
                &repo
            ]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&[
                "publish",
                &path("bad.toml"),
                "--keys",
                &keys,
                "--repo",
                &repo
            ]),
            ExitCode::from(2)
        );
        assert_eq!(
            exit(&[
                "publish",
                &path("good.toml"),
                "--keys",
                &keys,
                "--repo",
                &repo
            ]),
            ExitCode::from(2)
        );
        assert_eq!(
            exit(&["verify", "--repo", &repo, "--root", &root]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&[
                "update",
                "--repo",
                &repo,
                "--root",
                &root,
                "--state-dir",
                &state
            ]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&[
                "publish",
                &path("v2.toml"),
                "--keys",
                &keys,
                "--repo",
                &repo
            ]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&[
                "update",
                "--repo",
                &repo,
                "--root",
                &root,
                "--state-dir",
                &state
            ]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&["rollback", "--state-dir", &state]),
            ExitCode::SUCCESS
        );
        assert_eq!(load_active(Path::new(&state)).unwrap().version(), 1);
        assert_eq!(
            exit(&["verify", "--repo", &path("nowhere"), "--root", &root]),
            ExitCode::from(2)
        );
        assert_eq!(
            exit(&["verify", "--repo", &repo, "--root", &path("missing.json")]),
            ExitCode::from(1)
        );
        let rollout = [
            "rollout",
            "--fleet",
            "100",
            "--rings",
            "1,10,50,100",
            "--repo",
            &repo,
            "--root",
            &root,
            "--seed",
            "5",
            "--inject-fault",
            "0.02",
            "--summary-json",
            &summary,
        ];
        assert_eq!(exit(&rollout), ExitCode::SUCCESS);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        assert_eq!(json["hosts_exposed"], 1);
        assert_eq!(json["halted_at_ring"], 1);
        assert_eq!(json["rolled_back"], true);
        assert_eq!(json["final_version"], 1);
    }
}

/// The live-reload checker: new rules only when a newer release verified, installed and compiled.
mod reload {
    use super::*;
    use fsense_content::reload::{Reload, Reloader};
    use fsense_content::tuf::RepoLocation;
    use std::time::{Duration, Instant};

    #[test]
    fn hands_over_new_rules_only_when_they_verified_and_compiled() {
        let fx = Fixture::new();
        fx.publish(1);
        let hour = Duration::from_secs(3600);
        let mut reloader = Reloader::new(
            &fx.state("sensor"),
            RepoLocation::Dir(fx.repo.clone()),
            &fx.root,
            hour,
        )
        .unwrap();
        let start = Instant::now();
        assert!(matches!(reloader.poll(start), Reload::New(rules) if rules.version() == 1));
        assert!(matches!(
            reloader.poll(start + Duration::from_secs(1)),
            Reload::NotDue
        ));
        assert!(matches!(reloader.poll(start + hour), Reload::Unchanged));
        fx.publish(2);
        assert!(
            matches!(reloader.poll(start + 2 * hour), Reload::New(rules) if rules.version() == 2)
        );
        // A tampered release is refused; the caller keeps running version 2.
        fx.publish(3);
        let target = only_file_matching(&fx.repo.join("targets"), "rules-3.toml");
        let text = std::fs::read_to_string(&target).unwrap();
        std::fs::write(&target, text.replace("docm", "xlsm")).unwrap();
        match reloader.poll(start + 3 * hour) {
            Reload::Failed(e) => assert!(e.to_string().contains("failed verification"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(load_active(&fx.state("sensor")).unwrap().version(), 2);
    }
}
