//! What a targets key holder reviews and signs (issue 24, N6): a staged targets metadata may differ
//! from the published one by exactly one new release, and the staged rules file beside it must
//! hold that release's bytes. `sign` and `publish` both check it, so neither the publishing host
//! (which stages) nor anyone who can write the staged directory can add, change or drop another
//! entry under the reviewers' signatures.

use std::collections::HashMap;
use std::path::Path;

use tough::schema::Targets;
use tough::{ExpirationEnforcement, TargetName};

use crate::ContentError;
use crate::fsio::{read_regular, sha256_hex};
use crate::rules::{MAX_RULES_FILE_BYTES, compile};
use crate::tuf::{self, VERSION_KEY, block_on};

/// The one release a staged targets metadata adds to the published one: what its signers review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedRelease {
    /// Its target name, `rules-<version>.toml`.
    pub name: String,
    pub version: u64,
    /// The sha256 of `REPO/staged/<name>`, in lower-case hex (equal to the signed one).
    pub sha256: String,
    pub length: u64,
}

/// The published targets metadata, verified through TUF from the root the release was staged
/// against, `anchor` (expiry not enforced: a signer may sign after the timestamp lapsed); `None` before
/// the first release.
pub(crate) fn published_targets(
    repo: &Path,
    anchor: &[u8],
) -> Result<Option<Targets>, ContentError> {
    if !tuf::repository_exists(repo)? {
        return Ok(None);
    }
    let loaded = block_on(tuf::load_with(
        repo,
        anchor,
        None,
        ExpirationEnforcement::Unsafe,
    ))?
    .map_err(|e| e.context("published repository"))?;
    Ok(Some(loaded.targets().signed.clone()))
}

/// Checks that `staged` is `published` (none before the first release) plus exactly one new
/// release, newer than every published one, whose bytes `staged_dir` holds; only the targets
/// version and expiry may differ otherwise. Returns that release and its bytes.
pub(crate) fn check_staged(
    staged: &Targets,
    published: Option<&Targets>,
    staged_dir: &Path,
) -> Result<(StagedRelease, Vec<u8>), ContentError> {
    let empty = HashMap::new();
    let published_entries = published.map_or(&empty, |p| &p.targets);
    let added: Vec<&TargetName> = staged
        .targets
        .keys()
        .filter(|name| !published_entries.contains_key(*name))
        .collect();
    let mut differing: Vec<String> = published_entries
        .iter()
        .filter(|(name, target)| staged.targets.get(*name) != Some(*target))
        .map(|(name, _)| format!("{:?}", name.raw()))
        .collect();
    differing.sort();
    if !differing.is_empty() {
        return Err(ContentError::refused(format!(
            "the staged targets metadata changes or drops the published {}; only one new release may be added (stage it again)",
            differing.join(", ")
        )));
    }
    let name = match added.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(ContentError::refused(
                "the staged release lists no new rules",
            ));
        }
        more => {
            let mut names: Vec<String> = more.iter().map(|n| format!("{:?}", n.raw())).collect();
            names.sort();
            return Err(ContentError::refused(format!(
                "the staged targets metadata adds {} releases ({}); exactly one may be signed (stage it again)",
                names.len(),
                names.join(", ")
            )));
        }
    };
    let mut rest = staged.clone();
    let target = rest
        .targets
        .remove(&name)
        .ok_or_else(|| ContentError::refused("the staged release lists no new rules"))?;
    match published {
        Some(published) => {
            rest.version = published.version;
            rest.expires = published.expires;
            if rest != *published {
                return Err(ContentError::refused(
                    "the staged targets metadata differs from the published one in more than the new release (delegations or other fields); stage it again",
                ));
            }
        }
        None => {
            let empty_delegations = rest
                .delegations
                .as_ref()
                .is_none_or(|d| *d == tough::schema::Delegations::new());
            if !empty_delegations || !rest._extra.is_empty() {
                return Err(ContentError::refused(
                    "the staged targets metadata holds more than the new release; stage it again",
                ));
            }
        }
    }
    let version = target
        .custom
        .get(VERSION_KEY)
        .and_then(serde_json::Value::as_u64)
        .filter(|version| name.raw() == tuf::target_name(*version))
        .ok_or_else(|| {
            ContentError::refused(format!(
                "the staged target {:?} is not a rules release (rules-<V>.toml with {VERSION_KEY} = V)",
                name.raw()
            ))
        })?;
    let newest_published = published_entries
        .values()
        .filter_map(|t| t.custom.get(VERSION_KEY)?.as_u64())
        .max();
    if let Some(newest) = newest_published.filter(|newest| version <= *newest) {
        return Err(ContentError::refused(format!(
            "rules version {version} is not greater than the published version {newest}"
        )));
    }
    let path = staged_dir.join(name.raw());
    let bytes = read_regular(&path, MAX_RULES_FILE_BYTES as u64)?;
    let sha256 = sha256_hex(&bytes);
    if sha256 != hex(target.hashes.sha256.as_ref()) || bytes.len() as u64 != target.length {
        return Err(ContentError::refused(format!(
            "{} does not match the staged targets metadata (sha256 {sha256}, {} bytes)",
            path.display(),
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ContentError::refused(format!("{} is not UTF-8", path.display())))?;
    let rules = compile(text).map_err(|e| e.context(&path.display().to_string()))?;
    if rules.version() != version {
        return Err(ContentError::refused(format!(
            "{} holds rules version {}, not {version}",
            path.display(),
            rules.version()
        )));
    }
    Ok((
        StagedRelease {
            name: name.raw().to_owned(),
            version,
            sha256,
            length: target.length,
        },
        bytes,
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::num::NonZeroU64;

    use proptest::prelude::*;
    use tough::schema::{Hashes, Target};

    use super::*;

    fn text(version: u64) -> String {
        format!(
            "version = {version}\n[[rule]]\nid = \"r\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"**/*.docm\"\n"
        )
    }

    fn target(version: u64) -> (TargetName, Target) {
        let bytes = text(version).into_bytes();
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let mut custom = HashMap::new();
        custom.insert(VERSION_KEY.to_owned(), serde_json::Value::from(version));
        (
            TargetName::new(tuf::target_name(version)).unwrap(),
            Target {
                length: bytes.len() as u64,
                hashes: Hashes {
                    sha256: sha256.as_ref().to_vec().into(),
                    _extra: HashMap::new(),
                },
                custom,
                _extra: HashMap::new(),
            },
        )
    }

    fn targets(versions: impl IntoIterator<Item = u64>, version: u64) -> Targets {
        let mut t = Targets::new(
            "1.0.0".to_owned(),
            NonZeroU64::new(version).unwrap(),
            jiff::Timestamp::now(),
        );
        t.targets = versions.into_iter().map(target).collect();
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Signed exactly when the staged metadata is the published one plus one newer release
        /// whose staged file holds its bytes: any other addition, change or removal is refused.
        #[test]
        fn only_the_published_entries_plus_one_newer_release_are_signed(
            published in proptest::collection::btree_set(1u64..40, 0..5),
            added in proptest::collection::btree_set(1u64..50, 0..3),
            changed in any::<bool>(),
            dropped in any::<bool>(),
            file_ok in any::<bool>(),
        ) {
            let added: BTreeSet<u64> = added.difference(&published).copied().collect();
            let dir = tempfile::tempdir().unwrap();
            for version in &added {
                let bytes = if file_ok { text(*version) } else { text(*version).replace("docm", "xlsm") };
                std::fs::write(dir.path().join(tuf::target_name(*version)), bytes).unwrap();
            }
            let old = (!published.is_empty()).then(|| targets(published.iter().copied(), 3));
            let mut staged = targets(published.iter().chain(&added).copied(), 4);
            let changed = changed && !published.is_empty();
            let dropped = dropped && published.len() > 1;
            if changed && let Some((_, t)) = staged.targets.iter_mut().find(|(n, _)| {
                published.iter().any(|v| n.raw() == tuf::target_name(*v))
            }) {
                t.length += 1;
            }
            if dropped {
                let first = tuf::target_name(*published.iter().next().unwrap());
                staged.targets.retain(|n, _| n.raw() != first);
            }
            let newer = added.iter().next().is_some_and(|v| published.iter().all(|p| v > p));
            let expected = added.len() == 1 && !changed && !dropped && file_ok && newer;
            let result = check_staged(&staged, old.as_ref(), dir.path());
            prop_assert_eq!(result.is_ok(), expected, "{:?}", result.err());
            if let Ok((release, bytes)) = result {
                prop_assert_eq!(Some(&release.version), added.iter().next());
                prop_assert_eq!(bytes, text(release.version).into_bytes());
            }
        }
    }
}
