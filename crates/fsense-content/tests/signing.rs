//! Issue 16: k-of-n targets signatures (stage, sign, publish) and key rotation, checked the way
//! sensors check them (`verify` and `update` through TUF).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fsense_content::signing::{self, SignatureCount};
use fsense_content::state::{StateDir, UpdateOutcome};
use fsense_content::tuf::{self, TargetsKeys};
use fsense_content::{ContentError, ErrorKind, load_active};
use proptest::prelude::*;

fn rules(version: u64) -> String {
    format!(
        "version = {version}\n[[rule]]\nid = \"office-macro-drop\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"**/*.docm\"\n"
    )
}

struct Fixture {
    dir: tempfile::TempDir,
    keys: PathBuf,
    repo: PathBuf,
}

impl Fixture {
    fn new(targets: TargetsKeys) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        tuf::keygen_with(&keys, targets).unwrap();
        let repo = dir.path().join("repo");
        Self { dir, keys, repo }
    }

    fn rules_file(&self, version: u64) -> PathBuf {
        let path = self.dir.path().join(format!("rules-{version}.toml"));
        std::fs::write(&path, rules(version)).unwrap();
        path
    }

    fn stage(&self, version: u64) -> signing::Staged {
        signing::stage(
            &self.rules_file(version),
            &self.keys,
            &self.repo,
            &tuf::Lifetimes::default(),
        )
        .unwrap()
    }

    fn key(&self, index: u8) -> PathBuf {
        tuf::shared_targets_key_file(&self.keys, index)
    }

    fn publish_staged(&self) -> Result<tuf::Published, ContentError> {
        signing::publish_staged(&self.keys, &self.repo, &tuf::Lifetimes::default())
    }

    fn root(&self) -> PathBuf {
        self.keys.join("root.json")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Every published file (metadata and targets) with its bytes.
fn published(repo: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["metadata", "targets"] {
        let Ok(entries) = std::fs::read_dir(repo.join(sub)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, ContentError>, needles: &[&str]) {
    let err = result.expect_err("must be refused");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert_eq!(err.exit_code(), 2);
    for needle in needles {
        assert!(
            err.to_string().contains(needle),
            "`{err}` should mention `{needle}`"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

mod threshold {
    use super::*;

    #[test]
    fn keygen_writes_n_private_targets_keys_and_checks_k() {
        let fx = Fixture::new(TargetsKeys::Shared {
            keys: 3,
            threshold: 2,
        });
        for i in 1..=3 {
            assert!(fx.key(i).is_file());
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                assert_eq!(std::fs::metadata(fx.key(i)).unwrap().mode() & 0o777, 0o600);
            }
        }
        assert!(!fx.key(4).exists());
        assert!(!fx.keys.join("targets.pk8").exists());
        let root: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fx.root()).unwrap()).unwrap();
        let targets = &root["signed"]["roles"]["targets"];
        assert_eq!(targets["threshold"], 2);
        assert_eq!(targets["keyids"].as_array().unwrap().len(), 3);

        for (keys, threshold) in [(2, 3), (17, 1), (3, 0)] {
            let dir = tempfile::tempdir().unwrap();
            assert_refused(
                tuf::keygen_with(
                    &dir.path().join("k"),
                    TargetsKeys::Shared { keys, threshold },
                ),
                &["1 <= K <= N <= 16"],
            );
        }
    }

    #[test]
    fn two_of_three_one_signature_is_refused_two_install() {
        let fx = Fixture::new(TargetsKeys::Shared {
            keys: 3,
            threshold: 2,
        });
        let staged = fx.stage(1);
        assert_eq!(
            staged.signatures,
            SignatureCount {
                present: 0,
                needed: 2
            }
        );
        let first = signing::sign(&fx.repo, &fx.key(1)).unwrap();
        assert!(first.added);
        assert_eq!(first.signatures.present, 1);
        let again = signing::sign(&fx.repo, &fx.key(1)).unwrap();
        assert!(!again.added, "signing twice with one key adds nothing");
        assert_eq!(again.signatures.present, 1);

        let before = published(&fx.repo);
        assert_refused(fx.publish_staged(), &["targets", "1 of the 2"]);
        assert_eq!(published(&fx.repo), before, "repository untouched");
        // `publish RULES` cannot sign alone for a k-of-n root.
        assert_refused(
            tuf::publish(&fx.rules_file(1), &fx.keys, &fx.repo),
            &["more than one signature"],
        );

        let second = signing::sign(&fx.repo, &fx.key(3)).unwrap();
        assert_eq!(
            second.signatures,
            SignatureCount {
                present: 2,
                needed: 2
            }
        );
        let done = fx.publish_staged().unwrap();
        assert_eq!(done.rules_version, 1);
        assert!(!fx.repo.join("staged").exists());
        assert_eq!(
            tuf::verify(&fx.repo, &fx.root()).unwrap().rules.version(),
            1
        );
        let state = StateDir::open(&fx.path("sensor")).unwrap();
        assert_eq!(
            state.update(&fx.repo, &fx.root()).unwrap(),
            UpdateOutcome::Installed { from: None, to: 1 }
        );

        // The next release goes through the same gate.
        fx.stage(2);
        signing::sign(&fx.repo, &fx.key(2)).unwrap();
        assert_refused(fx.publish_staged(), &["1 of the 2"]);
        signing::sign(&fx.repo, &fx.key(1)).unwrap();
        fx.publish_staged().unwrap();
        assert_eq!(
            state.update(&fx.repo, &fx.root()).unwrap(),
            UpdateOutcome::Installed {
                from: Some(1),
                to: 2
            }
        );
    }

    #[test]
    fn one_signature_forced_into_the_repository_is_refused_by_sensors() {
        let fx = Fixture::new(TargetsKeys::Shared {
            keys: 3,
            threshold: 2,
        });
        fx.stage(1);
        signing::sign(&fx.repo, &fx.key(1)).unwrap();
        signing::sign(&fx.repo, &fx.key(2)).unwrap();
        fx.publish_staged().unwrap();
        let state = StateDir::open(&fx.path("sensor")).unwrap();
        state.update(&fx.repo, &fx.root()).unwrap();

        fx.stage(2);
        signing::sign(&fx.repo, &fx.key(2)).unwrap();
        signing::publish_staged_ignoring_threshold(&fx.keys, &fx.repo).unwrap();
        let needles = ["role targets", "threshold of 2", "1 valid"];
        assert_refused(tuf::verify(&fx.repo, &fx.root()), &needles);
        assert_refused(state.update(&fx.repo, &fx.root()), &needles);
        assert_eq!(load_active(state.path()).unwrap().version(), 1);
    }

    #[test]
    fn a_key_that_is_not_pinned_cannot_sign() {
        let fx = Fixture::new(TargetsKeys::Shared {
            keys: 2,
            threshold: 2,
        });
        let other = Fixture::new(TargetsKeys::Shared {
            keys: 2,
            threshold: 1,
        });
        fx.stage(1);
        assert_refused(
            signing::sign(&fx.repo, &other.key(1)),
            &["not one of the targets keys"],
        );
        assert_refused(
            signing::sign(&fx.repo, &fx.keys.join("snapshot.pk8")),
            &["not one of the targets keys"],
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        /// Installs iff at least K distinct pinned keys signed (signers may repeat).
        #[test]
        fn installs_iff_k_distinct_pinned_keys_signed(
            (n, k, signers) in (1u8..=4).prop_flat_map(|n| (Just(n), 1..=n, proptest::collection::vec(1..=n, 0..6)))
        ) {
            let fx = Fixture::new(TargetsKeys::Shared { keys: n, threshold: k });
            fx.stage(1);
            for signer in &signers {
                signing::sign(&fx.repo, &fx.key(*signer)).unwrap();
            }
            let distinct = signers.iter().collect::<std::collections::BTreeSet<_>>().len();
            let should_install = distinct >= usize::from(k);
            let published = fx.publish_staged();
            prop_assert_eq!(published.is_ok(), should_install, "{:?}", published);
            if !should_install {
                // What a compromised publishing host could still push: sensors refuse it.
                signing::publish_staged_ignoring_threshold(&fx.keys, &fx.repo).unwrap();
            }
            let state = StateDir::open(&fx.path("sensor")).unwrap();
            let updated = state.update(&fx.repo, &fx.root());
            prop_assert_eq!(updated.is_ok(), should_install, "{:?}", updated);
            prop_assert_eq!(tuf::verify(&fx.repo, &fx.root()).is_ok(), should_install);
        }
    }
}

mod rotation {
    use super::*;

    fn keygen(fx: &Fixture, name: &str) -> PathBuf {
        let dir = fx.path(name);
        tuf::keygen(&dir).unwrap();
        dir
    }

    fn publish_single(fx: &Fixture, keys: &Path, version: u64) {
        tuf::publish(&fx.rules_file(version), keys, &fx.repo).unwrap();
    }

    #[test]
    fn sensors_follow_the_root_chain_and_removed_keys_are_refused() {
        let fx = Fixture::new(TargetsKeys::Single);
        publish_single(&fx, &fx.keys, 1);
        let sensor = StateDir::open(&fx.path("sensor")).unwrap();
        sensor.update(&fx.repo, &fx.root()).unwrap();
        let before_rotation = fx.path("repo-before-rotation");
        copy_dir(&fx.repo, &before_rotation);

        // v2: the targets role moves to B's key.
        let b = keygen(&fx, "keys-b");
        assert_eq!(
            signing::rotate(&fx.keys, &b, &fx.repo, Some(tough_role("targets"))).unwrap(),
            2
        );
        // The published release was re-signed with B's targets key: sensors stay up to date.
        assert_eq!(
            sensor.update(&fx.repo, &fx.root()).unwrap(),
            UpdateOutcome::UpToDate { version: 1 }
        );
        // The old targets key can no longer publish...
        assert!(tuf::publish(&fx.rules_file(2), &fx.keys, &fx.repo).is_err());
        // ...the new one can (snapshot and timestamp keys are still those of KEYS).
        fx.stage(2);
        signing::sign(&fx.repo, &b.join("targets.pk8")).unwrap();
        fx.publish_staged().unwrap();
        assert_eq!(
            sensor.update(&fx.repo, &fx.root()).unwrap(),
            UpdateOutcome::Installed {
                from: Some(1),
                to: 2
            }
        );
        assert_eq!(sensor.pointer().unwrap().seen.root, 2);

        // A removed targets key signs a newer release (made in a copy of the old repository,
        // where it was still valid) and the files are forced into the repository.
        for version in [10, 11, 12] {
            tuf::publish(&fx.rules_file(version), &fx.keys, &before_rotation).unwrap();
        }
        let forged = fx.path("forged");
        copy_dir(&fx.repo, &forged);
        for name in ["4.targets.json", "4.snapshot.json", "timestamp.json"] {
            std::fs::copy(
                before_rotation.join("metadata").join(name),
                forged.join("metadata").join(name),
            )
            .unwrap();
        }
        for entry in std::fs::read_dir(before_rotation.join("targets")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), forged.join("targets").join(entry.file_name())).unwrap();
        }
        let needles = ["role targets", "threshold of 1", "0 valid"];
        assert_refused(tuf::verify(&forged, &fx.root()), &needles);
        assert_refused(sensor.update(&forged, &fx.root()), &needles);
        let fresh = StateDir::open(&fx.path("fresh-sensor")).unwrap();
        assert_refused(fresh.update(&forged, &fx.root()), &needles);
        assert_eq!(load_active(sensor.path()).unwrap().version(), 2);

        // v3: every role moves to C; C's directory then holds the new root and publishes.
        let c = keygen(&fx, "keys-c");
        assert_eq!(signing::rotate(&fx.keys, &c, &fx.repo, None).unwrap(), 3);
        publish_single(&fx, &c, 3);
        assert_eq!(
            sensor.update(&fx.repo, &fx.root()).unwrap(),
            UpdateOutcome::Installed {
                from: Some(2),
                to: 3
            }
        );
        // A sensor that only ever held root v1 walks v2 and v3.
        let late = StateDir::open(&fx.path("late-sensor")).unwrap();
        assert_eq!(
            late.update(&fx.repo, &fx.root()).unwrap(),
            UpdateOutcome::Installed { from: None, to: 3 }
        );
        assert_eq!(
            tuf::verify(&fx.repo, &fx.root()).unwrap().rules.version(),
            3
        );
        // The old keys no longer publish.
        assert!(tuf::publish(&fx.rules_file(4), &fx.keys, &fx.repo).is_err());
    }

    #[test]
    fn a_root_signed_only_by_the_new_keys_is_refused() {
        let fx = Fixture::new(TargetsKeys::Single);
        publish_single(&fx, &fx.keys, 1);
        let sensor = StateDir::open(&fx.path("sensor")).unwrap();
        sensor.update(&fx.repo, &fx.root()).unwrap();
        let b = keygen(&fx, "keys-b");
        // The publisher's own check: the current root's anchor with a root key it does not pin.
        let impostor = fx.path("impostor");
        std::fs::create_dir(&impostor).unwrap();
        std::fs::copy(fx.root(), impostor.join("root.json")).unwrap();
        std::fs::copy(b.join("root.pk8"), impostor.join("root.pk8")).unwrap();
        let before = published(&fx.repo);
        assert_refused(
            signing::rotate(&impostor, &b, &fx.repo, None),
            &["not signed by the current root keys"],
        );
        assert_eq!(published(&fx.repo), before);

        signing::rotate(&fx.keys, &b, &fx.repo, None).unwrap();
        // Drop the old root key's signature from v2: only the new keys stand behind it.
        let path = fx.repo.join("metadata").join("2.root.json");
        let mut root: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fx.root()).unwrap()).unwrap();
        let old_root_key = old["signed"]["roles"]["root"]["keyids"][0].clone();
        let signatures = root["signatures"].as_array_mut().unwrap();
        assert_eq!(signatures.len(), 2);
        signatures.retain(|s| s["keyid"] != old_root_key);
        std::fs::write(&path, serde_json::to_vec_pretty(&root).unwrap()).unwrap();
        let needles = ["role root", "threshold of 1", "0 valid"];
        assert_refused(tuf::verify(&fx.repo, &fx.root()), &needles);
        assert_refused(sensor.update(&fx.repo, &fx.root()), &needles);
        assert_eq!(load_active(sensor.path()).unwrap().version(), 1);
    }

    #[test]
    fn rotating_the_root_key_alone_keeps_content_installable() {
        let fx = Fixture::new(TargetsKeys::Single);
        publish_single(&fx, &fx.keys, 1);
        let b = keygen(&fx, "keys-b");
        signing::rotate(&fx.keys, &b, &fx.repo, Some(tough_role("root"))).unwrap();
        let sensor = StateDir::open(&fx.path("sensor")).unwrap();
        assert_eq!(
            sensor.update(&fx.repo, &fx.root()).unwrap(),
            UpdateOutcome::Installed { from: None, to: 1 }
        );
        assert_eq!(sensor.pointer().unwrap().seen.root, 2);
        publish_single(&fx, &fx.keys, 2);
        assert_eq!(
            tuf::verify(&fx.repo, &fx.root()).unwrap().rules.version(),
            2
        );
    }

    fn tough_role(name: &str) -> tough::schema::RoleType {
        serde_json::from_value(serde_json::Value::from(name)).unwrap()
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
    fn two_person_release_commands_and_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        std::fs::write(path("v1.toml"), rules(1)).unwrap();
        let (keys, repo) = (path("keys"), path("repo"));
        assert_eq!(
            exit(&[
                "keygen",
                "--out-dir",
                &keys,
                "--targets-keys",
                "3",
                "--targets-threshold",
                "2"
            ]),
            ExitCode::SUCCESS
        );
        assert!(
            Cli::try_parse_from([
                "x",
                "keygen",
                "--out-dir",
                &path("k2"),
                "--targets-keys",
                "17",
                "--targets-threshold",
                "2"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "x",
                "keygen",
                "--out-dir",
                &path("k3"),
                "--targets-keys",
                "2"
            ])
            .is_err(),
            "N without K"
        );
        assert_eq!(
            exit(&["stage", &path("v1.toml"), "--repo", &repo, "--keys", &keys]),
            ExitCode::SUCCESS
        );
        let key1 = format!("{keys}/targets-1.key");
        assert_eq!(
            exit(&[
                "sign",
                "--repo",
                &repo,
                "--key",
                &key1,
                "--expect-sha256",
                "0000"
            ]),
            ExitCode::from(2),
            "not the reviewed bytes"
        );
        assert_eq!(
            exit(&["sign", "--repo", &repo, "--key", &key1]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&["publish", "--repo", &repo, "--keys", &keys]),
            ExitCode::from(2)
        );
        assert_eq!(
            exit(&[
                "sign",
                "--repo",
                &repo,
                "--key",
                &format!("{keys}/targets-2.key")
            ]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&["publish", "--repo", &repo, "--keys", &keys]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&[
                "verify",
                "--repo",
                &repo,
                "--root",
                &format!("{keys}/root.json")
            ]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&["keygen", "--out-dir", &path("new")]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&[
                "rotate",
                "--repo",
                &repo,
                "--keys",
                &keys,
                "--new-keys",
                &path("new"),
                "--role",
                "timestamp"
            ]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exit(&["sign", "--repo", &repo, "--key", &key1]),
            ExitCode::from(1),
            "nothing staged"
        );
    }
}
