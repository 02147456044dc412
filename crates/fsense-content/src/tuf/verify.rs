//! Reading a release back through TUF: which releases the targets metadata lists, fetching one
//! and compiling it again.

use std::path::Path;

use tough::{IntoVec, Repository, TargetName};

use super::common::{MetadataVersions, VERSION_KEY, block_on};
use super::transport::{RepoLocation, load_repository_at};
use crate::rules::{MAX_RULES_FILE_BYTES, RuleSet, compile};
use crate::{ContentError, ErrorKind};

/// Rules version of every release the targets metadata lists, highest first.
pub(crate) fn releases(repo: &Repository) -> Vec<(u64, TargetName)> {
    let mut found: Vec<(u64, TargetName)> = repo
        .targets()
        .signed
        .targets
        .iter()
        .filter_map(|(name, target)| {
            let version = target.custom.get(VERSION_KEY)?.as_u64()?;
            Some((version, name.clone()))
        })
        .collect();
    found.sort_by_key(|release| std::cmp::Reverse(release.0));
    found
}

/// A release fetched through TUF and compiled again.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub text: String,
    pub rules: RuleSet,
    pub metadata: MetadataVersions,
}

/// Fetches release `version` (the newest when `None`) and validates it with [`compile`]. The
/// content's own `version` must equal the one its signed metadata announces.
pub(crate) async fn fetch_release(
    repo: &Repository,
    version: Option<u64>,
) -> Result<Fetched, ContentError> {
    let releases = releases(repo);
    let (announced, name) = match version {
        None => releases.first(),
        Some(wanted) => releases.iter().find(|(v, _)| *v == wanted),
    }
    .cloned()
    .ok_or_else(|| ContentError::refused("the repository lists no such rules release"))?;
    let length = repo
        .targets()
        .signed
        .targets
        .get(&name)
        .map_or(0, |t| t.length);
    if length > MAX_RULES_FILE_BYTES as u64 {
        return Err(ContentError::invalid(
            None,
            None,
            format!("target {} is {length} bytes, over the limit", name.raw()),
        ));
    }
    let stream = repo
        .read_target(&name)
        .await
        .map_err(|e| ContentError::tuf(ErrorKind::Refused, "cannot read target", &e))?
        .ok_or_else(|| ContentError::refused(format!("target {} is missing", name.raw())))?;
    // tough checks length and sha256 while streaming; an error means the bytes are not the signed ones.
    let bytes = stream.into_vec().await.map_err(|e| {
        ContentError::tuf(
            ErrorKind::Refused,
            &format!("target {} failed verification", name.raw()),
            &e,
        )
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ContentError::invalid(None, None, "target is not UTF-8"))?;
    let rules = compile(&text).map_err(|e| e.with_kind(ErrorKind::Invalid))?;
    if rules.version() != announced {
        return Err(ContentError::refused(format!(
            "target {} announces version {announced} but holds version {}",
            name.raw(),
            rules.version()
        )));
    }
    Ok(Fetched {
        text,
        rules,
        metadata: MetadataVersions::of(repo),
    })
}

/// `fsense content verify`: fetch the newest release through TUF and validate it again.
pub fn verify(repo: &Path, root_path: &Path) -> Result<Fetched, ContentError> {
    verify_at(&RepoLocation::Dir(repo.to_owned()), root_path)
}

/// [`verify`] for any repository location (a directory or an `http(s)://` URL).
pub fn verify_at(repo: &RepoLocation, root_path: &Path) -> Result<Fetched, ContentError> {
    let root =
        std::fs::read(root_path).map_err(|e| ContentError::io("cannot read", root_path, e))?;
    block_on(async {
        let repository = load_repository_at(repo, &root, None).await?;
        fetch_release(&repository, None).await
    })?
}
