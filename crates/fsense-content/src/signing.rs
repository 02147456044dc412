//! More than one party behind every release, and keys that can be replaced (TUF thresholds and
//! root rotation, through `tough`).
//!
//! - `stage`: the next targets metadata (the new release added), with no signatures, in
//!   `REPO/staged/` together with the release's rules file and the root it was staged against.
//! - `sign`: one targets key adds its signature to `REPO/staged/targets.json`.
//! - `publish` (no rules file): once the targets role's threshold of distinct pinned keys has
//!   signed, snapshot and timestamp are signed over it and the release moves into the repository.
//! - `rotate`: the next root version, with some or all roles moved to new keys, signed by the old
//!   and the new root keys so that a sensor holding any earlier root follows the chain.
//!
//! The staged files are signed TUF metadata (serde over `tough`'s own types); signatures are
//! made and counted by `tough` (`SignedRole`, `Root::verify_role`), never by hand.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use fsense_safefs::Visibility;
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::{
    Hashes, KeyHolder, Metafile, RoleType, Root, Signed, Snapshot, Target, Targets, Timestamp,
};
use tough::{ExpirationEnforcement, Repository, TargetName};

use crate::fsio::{read_regular, safefs_error};
pub use crate::review::StagedRelease;
use crate::review::{check_staged, published_targets};
use crate::rules::compile;
use crate::tuf::{
    self, Lifetimes, MetadataVersions, Published, ROLES, ROOT_DAYS, ROOT_FILE, VERSION_KEY,
    block_on, days_from_now, key_file, metadata_dir, releases, targets_dir, tuf_failed,
};
use crate::{ContentError, ErrorKind};

/// Directory of the staged release inside the repository.
pub const STAGED_DIR: &str = "staged";
const STAGED_TARGETS: &str = "targets.json";
const STAGED_ROOT: &str = "root.json";
const SPEC_VERSION: &str = "1.0.0";
const MAX_METADATA_BYTES: u64 = 16 * 1024 * 1024;

/// Signatures on the targets role: distinct pinned keys with a valid signature, and the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureCount {
    pub present: u64,
    pub needed: u64,
}

impl SignatureCount {
    pub fn met(&self) -> bool {
        self.present >= self.needed
    }
}

/// What `stage` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    pub rules_version: u64,
    pub signatures: SignatureCount,
}

/// What `sign` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignOutcome {
    /// `false` when this key had signed already.
    pub added: bool,
    pub signatures: SignatureCount,
    /// The release the signature covers (checked against the staged bytes).
    pub release: StagedRelease,
}

/// Counts the distinct keys pinned for the targets role in `root` whose signature on `targets`
/// verifies (`tough`'s own check, asked with an unreachable threshold so that it reports the
/// count).
pub fn count_signatures(
    root: &Root,
    targets: &Signed<Targets>,
) -> Result<SignatureCount, ContentError> {
    let needed = root
        .roles
        .get(&RoleType::Targets)
        .map(|keys| keys.threshold.get())
        .ok_or_else(|| ContentError::refused("root pins no targets keys"))?;
    let mut probe = root.clone();
    if let Some(keys) = probe.roles.get_mut(&RoleType::Targets) {
        keys.threshold = NonZeroU64::MAX;
    }
    match probe.verify_role(targets) {
        Err(tough::schema::Error::SignatureThreshold { valid, .. }) => Ok(SignatureCount {
            present: valid,
            needed,
        }),
        Err(e) => Err(ContentError::tuf(
            ErrorKind::Refused,
            "staged targets signatures",
            &e,
        )),
        Ok(()) => Ok(SignatureCount {
            present: u64::MAX,
            needed,
        }),
    }
}

/// The repository as the publisher sees it: verified through the root chain from
/// `KEYS/root.json` (expiry not enforced: the publisher re-signs with fresh expiries), its newest
/// root, and the file that root came from.
struct Current {
    repo: Option<Repository>,
    root: Signed<Root>,
    root_bytes: Vec<u8>,
}

async fn current(repo: &Path, keys_dir: &Path) -> Result<Current, ContentError> {
    let anchor_path = keys_dir.join(ROOT_FILE);
    let anchor = std::fs::read(&anchor_path)
        .map_err(|e| ContentError::io("cannot read", &anchor_path, e))?;
    if tuf::repository_exists(repo)? {
        let loaded = tuf::load_with(repo, &anchor, None, ExpirationEnforcement::Unsafe)
            .await
            .map_err(|e| e.context("existing repository"))?;
        let root = loaded.root().clone();
        let path = metadata_dir(repo).join(format!("{}.root.json", root.signed.version));
        let root_bytes = if root.signed.version.get() == 1 && !path.exists() {
            anchor
        } else {
            read_regular(&path, MAX_METADATA_BYTES)?
        };
        Ok(Current {
            repo: Some(loaded),
            root,
            root_bytes,
        })
    } else {
        let root = parse_root(&anchor, &anchor_path)?;
        Ok(Current {
            repo: None,
            root,
            root_bytes: anchor,
        })
    }
}

fn parse_root(bytes: &[u8], path: &Path) -> Result<Signed<Root>, ContentError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ContentError::failed(format!("{}: {e}", path.display())))
}

fn pretty(value: &impl serde::Serialize) -> Result<Vec<u8>, ContentError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ContentError::failed(format!("cannot serialize metadata: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), ContentError> {
    fsense_safefs::write_atomic(path, bytes, Visibility::Public).map_err(safefs_error)
}

/// The staged directory, targets metadata and root. Read with the repository lock held, so that a
/// concurrent `sign` cannot write between this read and the caller's write (N16).
fn staged_files(repo: &Path) -> Result<(PathBuf, Signed<Targets>, Signed<Root>), ContentError> {
    let dir = repo.join(STAGED_DIR);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Err(ContentError::failed(format!(
            "nothing is staged in {} (run `fsense content stage`)",
            repo.display()
        )));
    }
    let targets_path = dir.join(STAGED_TARGETS);
    let targets = serde_json::from_slice(&read_regular(&targets_path, MAX_METADATA_BYTES)?)
        .map_err(|e| ContentError::refused(format!("{}: {e}", targets_path.display())))?;
    let root_path = dir.join(STAGED_ROOT);
    let root = parse_root(&read_regular(&root_path, MAX_METADATA_BYTES)?, &root_path)?;
    Ok((dir, targets, root))
}

/// `fsense content stage`: validates the rules and stages the next release, unsigned.
pub fn stage(
    rules_path: &Path,
    keys_dir: &Path,
    repo: &Path,
    lifetimes: &Lifetimes,
) -> Result<Staged, ContentError> {
    let text = crate::read_limited(rules_path)?;
    let rules = compile(&text)?;
    let _lock = tuf::lock_repository(repo)?;
    block_on(async {
        let current = current(repo, keys_dir).await?;
        let (mut targets, next_version) = match &current.repo {
            Some(loaded) => {
                if let Some((newest, _)) = releases(loaded).first()
                    && rules.version() <= *newest
                {
                    return Err(ContentError::refused(format!(
                        "rules version {} is not greater than the published version {newest}",
                        rules.version()
                    )));
                }
                let targets = loaded.targets().signed.clone();
                let next = targets.version.get().saturating_add(1);
                (targets, next)
            }
            None => (
                Targets::new(
                    SPEC_VERSION.to_owned(),
                    NonZeroU64::MIN,
                    days_from_now(lifetimes.targets_days)?,
                ),
                1,
            ),
        };
        targets.version = NonZeroU64::new(next_version).unwrap_or(NonZeroU64::MIN);
        targets.expires = days_from_now(lifetimes.targets_days)?;

        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(repo)
            .map_err(|e| ContentError::io("cannot create a staging directory in", repo, e))?;
        let name = tuf::target_name(rules.version());
        let rules_file = staging.path().join(&name);
        write_public(&rules_file, text.as_bytes())?;
        let mut target = Target::from_path(&rules_file)
            .await
            .map_err(|e| tuf_failed("cannot hash the rules", &e))?;
        target.custom.insert(
            VERSION_KEY.to_owned(),
            serde_json::Value::from(rules.version()),
        );
        let target_name = TargetName::new(name).map_err(|e| tuf_failed("bad target name", &e))?;
        targets.targets.insert(target_name, target);
        let unsigned = Signed {
            signed: targets,
            signatures: Vec::new(),
        };
        write_public(&staging.path().join(STAGED_TARGETS), &pretty(&unsigned)?)?;
        write_public(&staging.path().join(STAGED_ROOT), &current.root_bytes)?;

        let staged = repo.join(STAGED_DIR);
        if std::fs::symlink_metadata(&staged).is_ok() {
            std::fs::remove_dir_all(&staged)
                .map_err(|e| ContentError::io("cannot replace", &staged, e))?;
        }
        std::fs::rename(staging.path(), &staged)
            .map_err(|e| ContentError::io("cannot move into place", &staged, e))?;
        let _ = staging.keep();
        crate::fsio::fsync_dir(repo)?;
        Ok(Staged {
            rules_version: rules.version(),
            signatures: count_signatures(&current.root.signed, &unsigned)?,
        })
    })?
}

/// `fsense content sign`: adds the signature of the targets key in `key_path` to the staged
/// release. Signing twice with one key adds nothing.
///
/// Only a staged targets metadata that is the published one plus exactly one new release is
/// signed, and only if `REPO/staged/rules-<V>.toml` (what the signer reviews) holds that
/// release's bytes; the returned [`SignOutcome::release`] says which release that is.
pub fn sign(repo: &Path, key_path: &Path) -> Result<SignOutcome, ContentError> {
    sign_expecting(repo, key_path, None)
}

/// [`sign`], refusing unless the staged release's sha256 is `expect_sha256` (hex, any case):
/// the hash of the file the signer reviewed.
pub fn sign_expecting(
    repo: &Path,
    key_path: &Path,
    expect_sha256: Option<&str>,
) -> Result<SignOutcome, ContentError> {
    let _lock = tuf::lock_repository(repo)?;
    let (dir, mut targets, root) = staged_files(repo)?;
    let anchor = read_regular(&dir.join(STAGED_ROOT), MAX_METADATA_BYTES)?;
    let published = published_targets(repo, &anchor)?;
    let (release, _) = check_staged(&targets.signed, published.as_ref(), &dir)?;
    if let Some(expected) = expect_sha256
        && !expected.trim().eq_ignore_ascii_case(&release.sha256)
    {
        return Err(ContentError::refused(format!(
            "the staged release {} has sha256 {}, not the expected {:?}; nothing signed",
            release.name,
            release.sha256,
            expected.trim()
        )));
    }
    // Sign with a copy of the root whose targets threshold is 1: `tough` then accepts one key.
    let mut one_key = root.signed.clone();
    if let Some(keys) = one_key.roles.get_mut(&RoleType::Targets) {
        keys.threshold = NonZeroU64::MIN;
    }
    let source: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource {
        path: key_path.to_owned(),
    })];
    let signed = block_on(SignedRole::new(
        targets.signed.clone(),
        &KeyHolder::Root(one_key),
        &source,
        &SystemRandom::new(),
    ))?
    .map_err(|e| match e {
        tough::error::Error::SigningKeysNotFound { .. }
        | tough::error::Error::KeysNotFoundInRoot { .. } => ContentError::refused(format!(
            "{} is not one of the targets keys root v{} pins",
            key_path.display(),
            root.signed.version
        )),
        other => tuf_failed(&format!("cannot sign with {}", key_path.display()), &other),
    })?;
    let signature = signed
        .signed()
        .signatures
        .first()
        .cloned()
        .ok_or_else(|| ContentError::failed("tough made no signature"))?;
    let added = !targets
        .signatures
        .iter()
        .any(|existing| existing.keyid == signature.keyid);
    if added {
        targets.signatures.push(signature);
        write_public(&dir.join(STAGED_TARGETS), &pretty(&targets)?)?;
    }
    Ok(SignOutcome {
        added,
        signatures: count_signatures(&root.signed, &targets)?,
        release,
    })
}

/// Signing keys of `role` in `keys_dir` (the one-key layout: `{role}.pk8`).
fn role_key(keys_dir: &Path, role: RoleType) -> Result<Box<dyn KeySource>, ContentError> {
    let path = key_file(keys_dir, role);
    if !path.is_file() {
        return Err(ContentError::failed(format!(
            "signing key {} is missing",
            path.display()
        )));
    }
    Ok(Box::new(LocalKeySource { path }))
}

/// `fsense content publish` without a rules file: publishes the staged release once its targets
/// signatures meet the threshold of the repository's current root. Below it the repository is
/// not touched.
pub fn publish_staged(
    keys_dir: &Path,
    repo: &Path,
    lifetimes: &Lifetimes,
) -> Result<Published, ContentError> {
    publish_staged_checked(keys_dir, repo, lifetimes, true)
}

/// [`publish_staged`] without the threshold check: what an attacker holding the snapshot and
/// timestamp keys (the publishing host) can do. Tests use it to show that sensors refuse such a
/// release on their own.
#[doc(hidden)]
pub fn publish_staged_ignoring_threshold(
    keys_dir: &Path,
    repo: &Path,
) -> Result<Published, ContentError> {
    publish_staged_checked(keys_dir, repo, &Lifetimes::default(), false)
}

fn publish_staged_checked(
    keys_dir: &Path,
    repo: &Path,
    lifetimes: &Lifetimes,
    enforce_threshold: bool,
) -> Result<Published, ContentError> {
    let sources = vec![
        role_key(keys_dir, RoleType::Snapshot)?,
        role_key(keys_dir, RoleType::Timestamp)?,
    ];
    let _lock = tuf::lock_repository(repo)?;
    let (staged_dir, targets, staged_root) = staged_files(repo)?;
    block_on(async {
        let current = current(repo, keys_dir).await?;
        if staged_root.signed != current.root.signed {
            return Err(ContentError::refused(format!(
                "the release was staged against root v{} but the repository is at root v{}; stage it again",
                staged_root.signed.version, current.root.signed.version
            )));
        }
        let count = count_signatures(&current.root.signed, &targets)?;
        if enforce_threshold && !count.met() {
            return Err(ContentError::refused(format!(
                "targets role has {} of the {} signatures its threshold needs; repository not changed (add signatures with `fsense content sign`)",
                count.present, count.needed
            )));
        }
        let published = current
            .repo
            .as_ref()
            .map(MetadataVersions::of)
            .unwrap_or_default();
        if targets.signed.version.get() <= published.targets {
            return Err(ContentError::refused(format!(
                "the staged targets metadata v{} is not newer than the published v{}; stage it again",
                targets.signed.version, published.targets
            )));
        }
        // Exactly the published entries plus the one release the signers reviewed, whose
        // staged bytes are the signed ones (the sensors check the bytes again anyway).
        let published_targets = current.repo.as_ref().map(|loaded| &loaded.targets().signed);
        let (release, rules_bytes) = check_staged(&targets.signed, published_targets, &staged_dir)?;
        let (rules_version, digest) = (release.version, release.sha256.clone());

        let holder = KeyHolder::Root(current.root.signed.clone());
        let targets_bytes = pretty(&targets)?;
        let targets_meta = Metafile {
            length: Some(targets_bytes.len() as u64),
            hashes: Some(Hashes {
                sha256: sha256(&targets_bytes).into(),
                _extra: HashMap::new(),
            }),
            version: targets.signed.version,
            _extra: HashMap::new(),
        };
        let (snapshot, timestamp) = sign_snapshot_and_timestamp(
            &holder,
            targets_meta,
            &published,
            lifetimes,
            &sources,
            &sources,
        )
        .await?;

        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(repo)
            .map_err(|e| ContentError::io("cannot create a staging directory in", repo, e))?;
        let (new_metadata, new_targets) = (
            staging.path().join("metadata"),
            staging.path().join("targets"),
        );
        for dir in [&new_metadata, &new_targets] {
            std::fs::create_dir(dir).map_err(|e| ContentError::io("cannot create", dir, e))?;
        }
        write_public(
            &new_targets.join(format!("{digest}.{}", release.name)),
            &rules_bytes,
        )?;
        if current.repo.is_none() {
            write_public(
                &new_metadata.join(format!("{}.root.json", current.root.signed.version)),
                &current.root_bytes,
            )?;
        }
        write_public(
            &new_metadata.join(format!("{}.targets.json", targets.signed.version)),
            &targets_bytes,
        )?;
        write_public(
            &new_metadata.join(format!(
                "{}.snapshot.json",
                snapshot.signed().signed.version
            )),
            snapshot.buffer(),
        )?;
        write_public(&new_metadata.join("timestamp.json"), timestamp.buffer())?;
        tuf::move_files_in(&new_targets, &targets_dir(repo), None)?;
        tuf::move_files_in(&new_metadata, &metadata_dir(repo), Some("timestamp.json"))?;
        std::fs::remove_dir_all(&staged_dir)
            .map_err(|e| ContentError::io("cannot remove", &staged_dir, e))?;
        Ok(Published {
            rules_version,
            metadata: MetadataVersions {
                root: current.root.signed.version.get(),
                timestamp: timestamp.signed().signed.version.get(),
                snapshot: snapshot.signed().signed.version.get(),
                targets: targets.signed.version.get(),
            },
        })
    })?
}

/// Signs the next snapshot (listing `targets_meta`) and the next timestamp (listing that snapshot).
async fn sign_snapshot_and_timestamp(
    holder: &KeyHolder,
    targets_meta: Metafile,
    published: &MetadataVersions,
    lifetimes: &Lifetimes,
    snapshot_keys: &[Box<dyn KeySource>],
    timestamp_keys: &[Box<dyn KeySource>],
) -> Result<(SignedRole<Snapshot>, SignedRole<Timestamp>), ContentError> {
    let rng = SystemRandom::new();
    let mut snapshot = Snapshot::new(
        SPEC_VERSION.to_owned(),
        bump(published.snapshot),
        days_from_now(lifetimes.snapshot_days)?,
    );
    snapshot
        .meta
        .insert("targets.json".to_owned(), targets_meta);
    let snapshot = SignedRole::new(snapshot, holder, snapshot_keys, &rng)
        .await
        .map_err(|e| tuf_failed("cannot sign the snapshot", &e))?;
    let mut timestamp = Timestamp::new(
        SPEC_VERSION.to_owned(),
        bump(published.timestamp),
        days_from_now(lifetimes.timestamp_days)?,
    );
    timestamp.meta.insert(
        "snapshot.json".to_owned(),
        Metafile {
            length: Some(*snapshot.length()),
            hashes: Some(Hashes {
                sha256: snapshot.sha256().to_vec().into(),
                _extra: HashMap::new(),
            }),
            version: snapshot.signed().signed.version,
            _extra: HashMap::new(),
        },
    );
    let timestamp = SignedRole::new(timestamp, holder, timestamp_keys, &rng)
        .await
        .map_err(|e| tuf_failed("cannot sign the timestamp", &e))?;
    Ok((snapshot, timestamp))
}

fn bump(version: u64) -> NonZeroU64 {
    NonZeroU64::new(version.saturating_add(1)).unwrap_or(NonZeroU64::MIN)
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// Every targets key file in a keys directory (`targets.pk8`, `targets-N.key`).
fn targets_keys(keys_dir: &Path) -> Vec<Box<dyn KeySource>> {
    std::iter::once(key_file(keys_dir, RoleType::Targets))
        .chain((1..=tuf::MAX_TARGETS_KEYS).map(|i| tuf::shared_targets_key_file(keys_dir, i)))
        .filter(|path| path.is_file())
        .map(|path| Box::new(LocalKeySource { path }) as Box<dyn KeySource>)
        .collect()
}

/// `fsense content rotate`: writes the next root version into the repository, with `role` (every
/// role when `None`) moved to the keys `new_keys_dir/root.json` pins, signed by the current root's
/// keys and by the new root keys (TUF 5.3.4, 5.3.5), so that a sensor holding any earlier root
/// follows the chain.
///
/// The published release stays installable: when the targets role moves, its current metadata is
/// re-signed with the new targets keys (all of which `keygen` left in `new_keys_dir`), and when
/// targets, snapshot or timestamp move, snapshot and timestamp are re-signed; `timestamp.json`
/// is replaced last. `new_keys_dir/root.json` is then replaced by the new root, so that the new
/// keys directory works as `--keys` from then on. Returns the new root version.
pub fn rotate(
    keys_dir: &Path,
    new_keys_dir: &Path,
    repo: &Path,
    role: Option<RoleType>,
) -> Result<u64, ContentError> {
    let new_root_path = new_keys_dir.join(ROOT_FILE);
    let new_definition = parse_root(
        &read_regular(&new_root_path, MAX_METADATA_BYTES)?,
        &new_root_path,
    )?;
    let moved: Vec<RoleType> = match role {
        Some(role) => vec![role],
        None => ROLES.to_vec(),
    };
    let keys_of = |role: RoleType| -> Result<Vec<Box<dyn KeySource>>, ContentError> {
        let dir = if moved.contains(&role) {
            new_keys_dir
        } else {
            keys_dir
        };
        Ok(vec![role_key(dir, role)?])
    };
    let old_root_keys = vec![role_key(keys_dir, RoleType::Root)?];
    let new_root_keys = keys_of(RoleType::Root)?;
    let resign_targets = moved.contains(&RoleType::Targets);
    let resign_snapshot = moved.iter().any(|r| *r != RoleType::Root);
    let (snapshot_keys, timestamp_keys) = if resign_snapshot {
        (keys_of(RoleType::Snapshot)?, keys_of(RoleType::Timestamp)?)
    } else {
        (Vec::new(), Vec::new())
    };
    if !tuf::repository_exists(repo)? {
        return Err(ContentError::failed(format!(
            "{} holds no repository to rotate (publish a release first)",
            repo.display()
        )));
    }
    let _lock = tuf::lock_repository(repo)?;
    block_on(async {
        let current = current(repo, keys_dir).await?;
        let loaded = current
            .repo
            .as_ref()
            .ok_or_else(|| ContentError::failed("no repository to rotate"))?;
        let old = current.root.signed.clone();
        let mut next = old.clone();
        for role in &moved {
            let keys = new_definition
                .signed
                .roles
                .get(role)
                .cloned()
                .ok_or_else(|| {
                    ContentError::failed(format!("{} pins no {role} keys", new_root_path.display()))
                })?;
            for keyid in &keys.keyids {
                if let Some(key) = new_definition.signed.keys.get(keyid) {
                    next.keys.insert(keyid.clone(), key.clone());
                }
            }
            next.roles.insert(*role, keys);
        }
        let pinned: Vec<_> = next
            .roles
            .values()
            .flat_map(|keys| keys.keyids.iter().cloned())
            .collect();
        next.keys.retain(|keyid, _| pinned.contains(keyid));
        next.version = bump(old.version.get());
        next.expires = days_from_now(ROOT_DAYS)?;

        let rng = SystemRandom::new();
        let by_new = SignedRole::new(
            next.clone(),
            &KeyHolder::Root(next.clone()),
            &new_root_keys,
            &rng,
        )
        .await
        .map_err(|e| tuf_failed("cannot sign the new root with the new root keys", &e))?;
        let by_old = SignedRole::new(
            next.clone(),
            &KeyHolder::Root(old.clone()),
            &old_root_keys,
            &rng,
        )
        .await
        .map_err(|e| match e {
            tough::error::Error::KeysNotFoundInRoot { .. } => ContentError::refused(format!(
                "the new root is not signed by the current root keys: {} is not a root key of root v{}",
                key_file(keys_dir, RoleType::Root).display(),
                old.version
            )),
            other => tuf_failed("cannot sign the new root with the current root keys", &other),
        })?;
        let signed = by_new
            .add_old_signatures(by_old.signed().signatures.clone())
            .map_err(|e| tuf_failed("cannot combine the root signatures", &e))?;
        // What a sensor checks: the thresholds of the old and of the new root.
        for (which, root) in [("current", &old), ("new", &next)] {
            root.verify_role(signed.signed()).map_err(|e| {
                ContentError::tuf(
                    ErrorKind::Refused,
                    &format!("the new root is not signed by the {which} root keys"),
                    &e,
                )
            })?;
        }
        let version = next.version.get();

        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(repo)
            .map_err(|e| ContentError::io("cannot create a staging directory in", repo, e))?;
        write_public(
            &staging.path().join(format!("{version}.root.json")),
            signed.buffer(),
        )?;
        if resign_snapshot {
            let published = MetadataVersions::of(loaded);
            let holder = KeyHolder::Root(next.clone());
            let targets_meta = if resign_targets {
                let mut targets = loaded.targets().signed.clone();
                targets.version = bump(published.targets);
                targets.expires = days_from_now(Lifetimes::default().targets_days)?;
                let targets = SignedRole::new(targets, &holder, &targets_keys(new_keys_dir), &rng)
                    .await
                    .map_err(|e| {
                        tuf_failed(
                            &format!(
                                "cannot re-sign the published targets with the targets keys of {}",
                                new_keys_dir.display()
                            ),
                            &e,
                        )
                    })?;
                write_public(
                    &staging
                        .path()
                        .join(format!("{}.targets.json", targets.signed().signed.version)),
                    targets.buffer(),
                )?;
                Metafile {
                    length: Some(*targets.length()),
                    hashes: Some(Hashes {
                        sha256: targets.sha256().to_vec().into(),
                        _extra: HashMap::new(),
                    }),
                    version: targets.signed().signed.version,
                    _extra: HashMap::new(),
                }
            } else {
                loaded
                    .snapshot()
                    .signed
                    .meta
                    .get("targets.json")
                    .cloned()
                    .ok_or_else(|| ContentError::refused("the snapshot lists no targets.json"))?
            };
            let (snapshot, timestamp) = sign_snapshot_and_timestamp(
                &holder,
                targets_meta,
                &published,
                &Lifetimes::default(),
                &snapshot_keys,
                &timestamp_keys,
            )
            .await?;
            write_public(
                &staging.path().join(format!(
                    "{}.snapshot.json",
                    snapshot.signed().signed.version
                )),
                snapshot.buffer(),
            )?;
            write_public(&staging.path().join("timestamp.json"), timestamp.buffer())?;
        }
        tuf::move_files_in(staging.path(), &metadata_dir(repo), Some("timestamp.json"))?;
        write_public(&new_root_path, signed.buffer())?;
        Ok(version)
    })?
}
