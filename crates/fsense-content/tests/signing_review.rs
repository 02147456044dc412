//! Issue 24, N6 and N16: what a targets key holder signs is what they reviewed.
//!
//! N6: the publishing host (snapshot and timestamp keys, runs `stage`) added a second release to
//! the staged targets metadata; two reviewers signed it unseen and it shipped. `sign` now checks
//! and shows the one release it signs, and `publish` refuses staged metadata whose other entries
//! differ from the published ones. N16: two signers at once kept only one signature.

use std::path::PathBuf;

use fsense_content::signing::{self, SignOutcome};
use fsense_content::state::StateDir;
use fsense_content::tuf::{self, TargetsKeys};
use fsense_content::{ContentError, ErrorKind, load_active};

fn rules(version: u64, glob: &str) -> String {
    format!(
        "version = {version}\n[[rule]]\nid = \"office-macro-drop\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"{glob}\"\n"
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Fixture {
    dir: tempfile::TempDir,
    keys: PathBuf,
    repo: PathBuf,
}

impl Fixture {
    /// 2-of-3 targets keys; release 1 staged, signed by keys 1 and 2, published.
    fn with_v1() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        tuf::keygen_with(
            &keys,
            TargetsKeys::Shared {
                keys: 3,
                threshold: 2,
            },
        )
        .unwrap();
        let fx = Self {
            repo: dir.path().join("repo"),
            dir,
            keys,
        };
        fx.stage(1);
        signing::sign(&fx.repo, &fx.key(1)).unwrap();
        signing::sign(&fx.repo, &fx.key(2)).unwrap();
        fx.publish().unwrap();
        fx
    }

    fn stage(&self, version: u64) {
        let path = self.dir.path().join(format!("rules-{version}.toml"));
        std::fs::write(&path, rules(version, "**/*.docm")).unwrap();
        signing::stage(&path, &self.keys, &self.repo, &tuf::Lifetimes::default()).unwrap();
    }

    fn key(&self, index: u8) -> PathBuf {
        tuf::shared_targets_key_file(&self.keys, index)
    }

    fn publish(&self) -> Result<tuf::Published, ContentError> {
        signing::publish_staged(&self.keys, &self.repo, &tuf::Lifetimes::default())
    }

    fn staged(&self, name: &str) -> PathBuf {
        self.repo.join(signing::STAGED_DIR).join(name)
    }

    /// What the review's attacker did: list one more release (`rules-9.toml`, which disables
    /// the detection) in the staged targets metadata, and put its bytes beside it.
    fn smuggle_release_9(&self) {
        let evil = rules(9, "**/*.never-matches");
        let path = self.staged("targets.json");
        let mut targets: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        targets["signed"]["targets"]["rules-9.toml"] = serde_json::json!({
            "length": evil.len(),
            "hashes": {"sha256": sha256_hex(evil.as_bytes())},
            "custom": {"rules_version": 9},
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&targets).unwrap()).unwrap();
        std::fs::write(self.staged("rules-9.toml"), evil).unwrap();
    }

    fn signature_count(&self) -> usize {
        let targets: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.staged("targets.json")).unwrap()).unwrap();
        targets["signatures"].as_array().unwrap().len()
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, ContentError>, needles: &[&str]) {
    let err = result.expect_err("must be refused");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    for needle in needles {
        assert!(
            err.to_string().contains(needle),
            "`{err}` should mention `{needle}`"
        );
    }
}

/// The review's reproduction: with the extra entry, neither signer signs, and nothing ships.
#[test]
fn sign_refuses_a_staged_release_that_adds_more_than_the_reviewed_one() {
    let fx = Fixture::with_v1();
    fx.stage(3);
    fx.smuggle_release_9();
    for key in [1, 3] {
        assert_refused(signing::sign(&fx.repo, &fx.key(key)), &["rules-9.toml"]);
    }
    assert_eq!(fx.signature_count(), 0, "nothing was signed");
    assert!(fx.publish().is_err());
    let sensor = fx.dir.path().join("sensor");
    StateDir::open(&sensor)
        .unwrap()
        .update(&fx.repo, &fx.keys.join("root.json"))
        .unwrap();
    assert_eq!(load_active(&sensor).unwrap().version(), 1);
}

/// `publish` checks on its own: a release forced past the signers (here with the host's
/// threshold-ignoring publish) that lists an entry besides the staged release is refused.
#[test]
fn publish_refuses_staged_targets_whose_other_entries_differ_from_the_published_ones() {
    let fx = Fixture::with_v1();
    fx.stage(3);
    fx.smuggle_release_9();
    let before = std::fs::read(fx.repo.join("metadata/timestamp.json")).unwrap();
    assert_refused(
        signing::publish_staged_ignoring_threshold(&fx.keys, &fx.repo),
        &["rules-9.toml"],
    );
    assert_eq!(
        std::fs::read(fx.repo.join("metadata/timestamp.json")).unwrap(),
        before,
        "repository unchanged"
    );

    // A published entry changed in the staged metadata (its hash swapped) is refused too.
    fx.stage(3);
    let path = fx.staged("targets.json");
    let mut targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    targets["signed"]["targets"]["rules-1.toml"]["hashes"]["sha256"] =
        serde_json::Value::from(sha256_hex(b"other bytes"));
    std::fs::write(&path, serde_json::to_vec(&targets).unwrap()).unwrap();
    assert_refused(signing::sign(&fx.repo, &fx.key(1)), &["rules-1.toml"]);
    assert_refused(
        signing::publish_staged_ignoring_threshold(&fx.keys, &fx.repo),
        &["rules-1.toml"],
    );
}

/// `sign` says what it signs: the release's version, sha256 and length, the staged bytes'.
#[test]
fn sign_shows_the_release_it_signs_and_checks_the_staged_bytes() {
    let fx = Fixture::with_v1();
    fx.stage(3);
    let text = rules(3, "**/*.docm");
    let SignOutcome { release, added, .. } = signing::sign(&fx.repo, &fx.key(1)).unwrap();
    assert!(added);
    assert_eq!(release.version, 3);
    assert_eq!(release.name, "rules-3.toml");
    assert_eq!(release.sha256, sha256_hex(text.as_bytes()));
    assert_eq!(release.length, text.len() as u64);

    // What the signers read is not what the metadata lists: refused.
    std::fs::write(fx.staged("rules-3.toml"), rules(3, "**/*.nothing")).unwrap();
    assert_refused(
        signing::sign(&fx.repo, &fx.key(3)),
        &["rules-3.toml", "does not match"],
    );
    assert_eq!(fx.signature_count(), 1);
}

/// `--expect-sha256`: a signer who computed the hash of what they reviewed signs only that.
#[test]
fn sign_with_an_expected_hash_signs_only_that_release() {
    let fx = Fixture::with_v1();
    fx.stage(3);
    let wanted = sha256_hex(rules(3, "**/*.docm").as_bytes());
    assert_refused(
        signing::sign_expecting(&fx.repo, &fx.key(1), Some(&sha256_hex(b"x"))),
        &["sha256", &wanted],
    );
    assert_eq!(fx.signature_count(), 0);
    let signed =
        signing::sign_expecting(&fx.repo, &fx.key(1), Some(&wanted.to_uppercase())).unwrap();
    assert!(signed.added);
}

/// N16: two signers at the same moment both keep their signature (was: 20/20 lost one).
#[test]
fn concurrent_signers_keep_every_signature() {
    let fx = Fixture::with_v1();
    for version in 2..=6 {
        fx.stage(version);
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            for key in [1, 3] {
                let (fx, barrier) = (&fx, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    signing::sign(&fx.repo, &fx.key(key)).unwrap();
                });
            }
        });
        assert_eq!(fx.signature_count(), 2, "release {version}");
        fx.publish().unwrap();
    }
}
