//! `fsense content publish RULES` (one targets key) and the repository-side helpers every
//! writer shares: the repository lock, the existence check, moving staged files in.

use std::num::NonZeroU64;
use std::path::Path;

use fsense_safefs::Visibility;
use tough::editor::RepositoryEditor;
use tough::editor::signed::PathExists;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::{RoleType, Root, Target};
use tough::{ExpirationEnforcement, TargetName};

use super::common::{
    Lifetimes, MetadataVersions, ROLES, ROOT_FILE, VERSION_KEY, block_on, days_from_now, key_file,
    metadata_dir, shared_targets_key_file, target_name, targets_dir, tuf_failed,
};
use super::transport::load_with;
use super::verify::releases;
use crate::ContentError;
use crate::fsio::safefs_error;
use crate::rules::compile;

/// What `publish` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub rules_version: u64,
    pub metadata: MetadataVersions,
}

/// `fsense content publish`: validate, then add the rules as a new target and re-sign.
///
/// Invalid content, or a version not above the newest published one, leaves `repo` untouched. New
/// files are staged next to the repository and moved in with renames, `timestamp.json` last, so a
/// client reading during a publish sees the old or the new release.
pub fn publish(rules_path: &Path, keys_dir: &Path, repo: &Path) -> Result<Published, ContentError> {
    publish_with(rules_path, keys_dir, repo, &Lifetimes::default())
}

/// [`publish`] with explicit metadata lifetimes.
pub fn publish_with(
    rules_path: &Path,
    keys_dir: &Path,
    repo: &Path,
    lifetimes: &Lifetimes,
) -> Result<Published, ContentError> {
    let text = crate::read_limited(rules_path)?;
    let rules = compile(&text)?;
    let root_path = keys_dir.join(ROOT_FILE);
    let root =
        std::fs::read(&root_path).map_err(|e| ContentError::io("cannot read", &root_path, e))?;
    let mut sources: Vec<Box<dyn KeySource>> = Vec::new();
    for role in ROLES.into_iter().filter(|role| *role != RoleType::Root) {
        let path = key_file(keys_dir, role);
        if role == RoleType::Targets
            && !path.is_file()
            && shared_targets_key_file(keys_dir, 1).is_file()
        {
            return Err(shared_targets_refusal(keys_dir));
        }
        if !path.is_file() {
            return Err(ContentError::failed(format!(
                "signing key {} is missing",
                path.display()
            )));
        }
        sources.push(Box::new(LocalKeySource { path }));
    }
    let _lock = lock_repository(repo)?;
    let existing = repository_exists(repo)?;
    block_on(async {
        let (mut editor, next) = if existing {
            // Expiry is not enforced here: the publisher holds the keys and re-signs every role
            // with fresh expiries, so a repository whose timestamp lapsed can be revived.
            // Signatures, thresholds and hashes are still checked.
            let current = load_with(repo, &root, None, ExpirationEnforcement::Unsafe)
                .await
                .map_err(|e| e.context("existing repository"))?;
            if let Some((newest, _)) = releases(&current).first()
                && rules.version() <= *newest
            {
                return Err(ContentError::refused(format!(
                    "rules version {} is not greater than the published version {newest}",
                    rules.version()
                )));
            }
            let versions = MetadataVersions::of(&current);
            check_single_targets_key(&current.root().signed, keys_dir)?;
            // Sign against the newest root of the chain, not the anchor in KEYS (rotation).
            let newest_root = metadata_dir(repo).join(format!("{}.root.json", versions.root));
            let editor = RepositoryEditor::from_repo(&newest_root, current)
                .await
                .map_err(|e| tuf_failed("cannot edit the repository", &e))?;
            (editor, versions)
        } else {
            let anchor: tough::schema::Signed<Root> = serde_json::from_slice(&root)
                .map_err(|e| ContentError::failed(format!("{}: {e}", root_path.display())))?;
            check_single_targets_key(&anchor.signed, keys_dir)?;
            let editor = RepositoryEditor::new(&root_path)
                .await
                .map_err(|e| tuf_failed("cannot read root.json", &e))?;
            let versions = MetadataVersions {
                root: anchor.signed.version.get(),
                ..MetadataVersions::default()
            };
            (editor, versions)
        };
        let bump = |v: u64| NonZeroU64::new(v.saturating_add(1)).unwrap_or(NonZeroU64::MIN);

        let parent =
            std::path::absolute(repo).map_err(|e| ContentError::io("cannot resolve", repo, e))?;
        let parent = parent.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent)
            .map_err(|e| ContentError::io("cannot create", parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".fsense-publish-")
            .tempdir_in(parent)
            .map_err(|e| ContentError::io("cannot create a staging directory in", parent, e))?;
        let staged_rules = staging.path().join("rules.toml");
        // Public: the web server that serves the repository reads it.
        fsense_safefs::write_atomic(&staged_rules, text.as_bytes(), Visibility::Public)
            .map_err(safefs_error)?;

        let mut target = Target::from_path(&staged_rules)
            .await
            .map_err(|e| tuf_failed("cannot hash the rules", &e))?;
        target.custom.insert(
            VERSION_KEY.to_owned(),
            serde_json::Value::from(rules.version()),
        );
        let name = TargetName::new(target_name(rules.version()))
            .map_err(|e| tuf_failed("bad target name", &e))?;
        let tuf = |e: tough::error::Error| tuf_failed("cannot build the metadata", &e);
        editor.add_target(name.clone(), target).map_err(tuf)?;
        editor.targets_version(bump(next.targets)).map_err(tuf)?;
        editor
            .targets_expires(days_from_now(lifetimes.targets_days)?)
            .map_err(tuf)?;
        editor.snapshot_version(bump(next.snapshot));
        editor.snapshot_expires(days_from_now(lifetimes.snapshot_days)?);
        editor.timestamp_version(bump(next.timestamp));
        editor.timestamp_expires(days_from_now(lifetimes.timestamp_days)?);
        let signed = editor
            .sign(&sources)
            .await
            .map_err(|e| tuf_failed("cannot sign the metadata", &e))?;

        let staged_metadata = staging.path().join("metadata");
        let staged_targets = staging.path().join("targets");
        signed
            .write(&staged_metadata)
            .await
            .map_err(|e| tuf_failed("cannot write the metadata", &e))?;
        std::fs::create_dir_all(&staged_targets)
            .map_err(|e| ContentError::io("cannot create", &staged_targets, e))?;
        signed
            .copy_target(
                &staged_rules,
                &staged_targets,
                PathExists::Fail,
                Some(&name),
            )
            .await
            .map_err(|e| tuf_failed("cannot stage the target", &e))?;

        move_files_in(&staged_targets, &targets_dir(repo), None)?;
        move_files_in(
            &staged_metadata,
            &metadata_dir(repo),
            Some("timestamp.json"),
        )?;
        let metadata = MetadataVersions {
            root: next.root,
            timestamp: bump(next.timestamp).get(),
            snapshot: bump(next.snapshot).get(),
            targets: bump(next.targets).get(),
        };
        Ok(Published {
            rules_version: rules.version(),
            metadata,
        })
    })?
}

/// `publish RULES` signs the targets role with one key; a root that wants more is refused.
fn check_single_targets_key(root: &Root, keys_dir: &Path) -> Result<(), ContentError> {
    match root.roles.get(&RoleType::Targets) {
        Some(keys) if keys.threshold.get() > 1 => Err(shared_targets_refusal(keys_dir)),
        _ => Ok(()),
    }
}

fn shared_targets_refusal(keys_dir: &Path) -> ContentError {
    ContentError::refused(format!(
        "the targets role of {} needs more than one signature: run `fsense content stage`, then `sign` once per key holder, then `publish` without RULES",
        keys_dir.display()
    ))
}

/// Takes the repository's exclusive lock (`REPO/.lock`), creating the directory if needed: a second
/// publisher waits until the first one is done.
pub(crate) fn lock_repository(repo: &Path) -> Result<std::fs::File, ContentError> {
    std::fs::create_dir_all(repo).map_err(|e| ContentError::io("cannot create", repo, e))?;
    let path = repo.join(".lock");
    let file = fsense_safefs::append_private(&path).map_err(safefs_error)?;
    file.lock()
        .map_err(|e| ContentError::io("cannot lock", &path, e))?;
    Ok(file)
}

/// Whether `repo` already holds a repository. One that holds signed metadata but lost its
/// `timestamp.json` is refused: starting it over at version 1 would make every sensor refuse it
/// as a rollback.
pub(crate) fn repository_exists(repo: &Path) -> Result<bool, ContentError> {
    let metadata = metadata_dir(repo);
    if std::fs::symlink_metadata(metadata.join("timestamp.json")).is_ok() {
        return Ok(true);
    }
    let signed = match std::fs::read_dir(&metadata) {
        Ok(entries) => entries.flatten().any(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            [".root.json", ".targets.json", ".snapshot.json"]
                .iter()
                .any(|suffix| name.ends_with(suffix))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(ContentError::io("cannot list", &metadata, e)),
    };
    if signed {
        return Err(ContentError::refused(format!(
            "{} holds signed metadata but no timestamp.json; refusing to start the repository over at version 1 (restore timestamp.json)",
            metadata.display()
        )));
    }
    Ok(false)
}

/// Renames every file of `from` into `to` (created if needed), `last` after all others, then
/// syncs `to`.
pub(crate) fn move_files_in(
    from: &Path,
    to: &Path,
    last: Option<&str>,
) -> Result<(), ContentError> {
    std::fs::create_dir_all(to).map_err(|e| ContentError::io("cannot create", to, e))?;
    let mut names: Vec<_> = std::fs::read_dir(from)
        .map_err(|e| ContentError::io("cannot list", from, e))?
        .filter_map(|entry| entry.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by_key(|name| Some(name.to_str()) == Some(last));
    for name in names {
        let (source, dest) = (from.join(&name), to.join(&name));
        crate::fsio::fsync_file(&source)?;
        std::fs::rename(&source, &dest)
            .map_err(|e| ContentError::io("cannot move into place", &dest, e))?;
    }
    crate::fsio::fsync_dir(to)
}
