//! `fsense content keygen`: the role keys and the signed root that sensors trust.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use fsense_safefs::Visibility;
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root};

use super::common::{
    MAX_TARGETS_KEYS, ROLES, ROOT_DAYS, ROOT_FILE, block_on, days_from_now, key_file,
    shared_targets_key_file, tuf_failed,
};
use crate::ContentError;
use crate::fsio::safefs_error;

/// How many targets keys `keygen` makes, and how many of them must sign each release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetsKeys {
    /// One key, `targets.pk8`, threshold 1 (`publish RULES` signs alone).
    Single,
    /// `targets-1.key` ... `targets-N.key`, any `threshold` of which must sign (`stage`, `sign`,
    /// `publish`). `1 <= threshold <= keys <= 16`.
    Shared { keys: u8, threshold: u8 },
}

/// `fsense content keygen`: one Ed25519 key per top-level role and the signed `root.json`.
pub fn keygen(out_dir: &Path) -> Result<PathBuf, ContentError> {
    keygen_with(out_dir, TargetsKeys::Single)
}

/// [`keygen`] with `targets` keys for the targets role.
pub fn keygen_with(out_dir: &Path, targets: TargetsKeys) -> Result<PathBuf, ContentError> {
    if let TargetsKeys::Shared { keys, threshold } = targets
        && !(1 <= threshold && threshold <= keys && keys <= MAX_TARGETS_KEYS)
    {
        return Err(ContentError::refused(format!(
            "--targets-threshold {threshold} of --targets-keys {keys}: need 1 <= K <= N <= {MAX_TARGETS_KEYS}"
        )));
    }
    // (role, key file, threshold of the role)
    let slots: Vec<(RoleType, PathBuf, u8)> = ROLES
        .into_iter()
        .flat_map(|role| match (role, targets) {
            (RoleType::Targets, TargetsKeys::Shared { keys, threshold }) => (1..=keys)
                .map(|i| (role, shared_targets_key_file(out_dir, i), threshold))
                .collect::<Vec<_>>(),
            _ => vec![(role, key_file(out_dir, role), 1)],
        })
        .collect();
    let root_path = out_dir.join(ROOT_FILE);
    // `symlink_metadata`: a dangling symbolic link planted in the directory counts as present.
    let present = |path: &Path| std::fs::symlink_metadata(path).is_ok();
    if present(&root_path)
        || ROLES.iter().any(|role| present(&key_file(out_dir, *role)))
        || slots.iter().any(|(_, path, _)| present(path))
    {
        return Err(ContentError::refused(format!(
            "{} already holds keys; refusing to overwrite them",
            out_dir.display()
        )));
    }
    // Private keys go into a directory only this user can enter.
    fsense_safefs::ensure_private_dir(out_dir)
        .map_err(|e| safefs_error(e).context("keys directory"))?;
    let rng = SystemRandom::new();
    let mut keys = HashMap::new();
    let mut roles: HashMap<RoleType, RoleKeys> = HashMap::new();
    let mut sources: Vec<Box<dyn KeySource>> = Vec::new();
    for (role, path, threshold) in slots {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| ContentError::failed(format!("cannot generate a key: {e}")))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| ContentError::failed(format!("generated key does not load: {e}")))?;
        let key = Key::Ed25519 {
            keyval: Ed25519Key {
                public: pair.public_key().as_ref().to_vec().into(),
                _extra: HashMap::new(),
            },
            scheme: Ed25519Scheme::Ed25519,
            _extra: HashMap::new(),
        };
        let key_id: Decoded<Hex> = key
            .key_id()
            .map_err(|e| tuf_failed("cannot compute a key id", &e))?;
        write_private(&path, pkcs8.as_ref())?;
        if role == RoleType::Root {
            sources.push(Box::new(LocalKeySource { path }));
        }
        roles
            .entry(role)
            .or_insert_with(|| RoleKeys {
                keyids: Vec::new(),
                threshold: NonZeroU64::new(u64::from(threshold)).unwrap_or(NonZeroU64::MIN),
                _extra: HashMap::new(),
            })
            .keyids
            .push(key_id.clone());
        keys.insert(key_id, key);
    }
    let root = Root {
        spec_version: "1.0.0".to_owned(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: days_from_now(ROOT_DAYS)?,
        keys,
        roles,
        _extra: HashMap::new(),
    };
    let signed = block_on(SignedRole::new(
        root.clone(),
        &KeyHolder::Root(root),
        &sources,
        &rng,
    ))?
    .map_err(|e| tuf_failed("cannot sign root.json", &e))?;
    // Public: root.json is the trust anchor every sensor is given.
    fsense_safefs::write_atomic(&root_path, signed.buffer(), Visibility::Public)
        .map_err(safefs_error)?;
    Ok(root_path)
}

/// Writes a private key to a file that must not exist yet (never through a planted link).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ContentError> {
    use std::io::Write;
    let mut file = fsense_safefs::create_new_private(path).map_err(safefs_error)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ContentError::io("cannot write", path, e))
}
