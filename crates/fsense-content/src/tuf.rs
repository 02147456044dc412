//! Content distribution through a TUF repository, with `tough` on both sides.
//!
//! Layout (a directory here; the same tree behind an HTTP server in a fleet):
//! ```text
//! KEYS/root.json               signed root metadata: the trust anchor sensors ship with
//! KEYS/{root,targets,snapshot,timestamp}.pk8   Ed25519 private keys (PKCS#8 DER), mode 0600
//! REPO/metadata/N.root.json    root metadata, by version
//! REPO/metadata/N.targets.json targets (consistent snapshots: versioned names)
//! REPO/metadata/N.snapshot.json
//! REPO/metadata/timestamp.json the only file overwritten by a release, written last
//! REPO/targets/<sha256>.rules-<V>.toml   each release's rules file, content-addressed
//! ```
//! Each release is a target `rules-<V>.toml` whose custom metadata carries `rules_version = V`;
//! older releases stay listed so that a fleet can compare with, or return to, the previous one.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use tough::editor::RepositoryEditor;
use tough::editor::signed::{PathExists, SignedRole};
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Target};
use tough::{
    ExpirationEnforcement, IntoVec, Repository, RepositoryLoader, SafeUrlPath, TargetName,
    Transport, TransportError, TransportErrorKind, TransportStream,
};
use url::Url;

use crate::rules::{MAX_RULES_FILE_BYTES, RuleSet, compile};
use crate::{ContentError, ErrorKind};

/// Name of the trust anchor in a keys directory.
pub const ROOT_FILE: &str = "root.json";
/// Custom target metadata key holding the rules version.
pub const VERSION_KEY: &str = "rules_version";
/// The top-level roles, each with its own key (threshold 1).
const ROLES: [RoleType; 4] = [
    RoleType::Root,
    RoleType::Targets,
    RoleType::Snapshot,
    RoleType::Timestamp,
];

/// Lifetime of the root metadata `keygen` signs; root changes rarely.
const ROOT_DAYS: i64 = 365;

/// How long the metadata a release signs stays valid, in days. A short timestamp lifetime bounds
/// how long a freeze attack (serving stale but validly signed metadata) can go unnoticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    pub targets_days: i64,
    pub snapshot_days: i64,
    pub timestamp_days: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            targets_days: 90,
            snapshot_days: 30,
            timestamp_days: 7,
        }
    }
}

fn key_file(keys_dir: &Path, role: RoleType) -> PathBuf {
    keys_dir.join(format!("{role}.pk8"))
}

/// Target name of release `version`.
pub fn target_name(version: u64) -> String {
    format!("rules-{version}.toml")
}

/// Runs `tough`'s async API to completion on this thread's runtime. The runtime is created once
/// per thread: building one per call costs a blocking-thread pool each time, which dominated the
/// fleet simulation.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, ContentError> {
    thread_local! {
        static RUNTIME: std::cell::OnceCell<tokio::runtime::Runtime> = const { std::cell::OnceCell::new() };
    }
    RUNTIME.with(|cell| {
        if cell.get().is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| ContentError::failed(format!("cannot start the I/O runtime: {e}")))?;
            let _ = cell.set(runtime);
        }
        match cell.get() {
            Some(runtime) => Ok(runtime.block_on(future)),
            None => Err(ContentError::failed("no I/O runtime")),
        }
    })
}

fn days_from_now(days: i64) -> Result<jiff::Timestamp, ContentError> {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(days * 24))
        .map_err(|e| ContentError::failed(format!("expiry out of range: {e}")))
}

fn tuf_failed(context: &str, err: &dyn std::error::Error) -> ContentError {
    ContentError::tuf(ErrorKind::Failed, context, err)
}

/// `fsense content keygen`: one Ed25519 key per top-level role and the signed `root.json`.
pub fn keygen(out_dir: &Path) -> Result<PathBuf, ContentError> {
    let root_path = out_dir.join(ROOT_FILE);
    if root_path.exists() || ROLES.iter().any(|role| key_file(out_dir, *role).exists()) {
        return Err(ContentError::refused(format!(
            "{} already holds keys; refusing to overwrite them",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| ContentError::io("cannot create", out_dir, e))?;
    let rng = SystemRandom::new();
    let mut keys = HashMap::new();
    let mut roles = HashMap::new();
    let mut sources: Vec<Box<dyn KeySource>> = Vec::new();
    for role in ROLES {
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
        let path = key_file(out_dir, role);
        write_private(&path, pkcs8.as_ref())?;
        sources.push(Box::new(LocalKeySource { path }));
        roles.insert(
            role,
            RoleKeys {
                keyids: vec![key_id.clone()],
                threshold: NonZeroU64::MIN,
                _extra: HashMap::new(),
            },
        );
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
    std::fs::write(&root_path, signed.buffer())
        .map_err(|e| ContentError::io("cannot write", &root_path, e))?;
    Ok(root_path)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ContentError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| ContentError::io("cannot create", path, e))?;
    file.write_all(bytes)
        .map_err(|e| ContentError::io("cannot write", path, e))
}

fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

fn targets_dir(repo: &Path) -> PathBuf {
    repo.join("targets")
}

fn dir_url(dir: &Path) -> Result<Url, ContentError> {
    let absolute =
        std::path::absolute(dir).map_err(|e| ContentError::io("cannot resolve", dir, e))?;
    Url::from_directory_path(&absolute).map_err(|()| {
        ContentError::failed(format!("{} cannot be a file:// URL", absolute.display()))
    })
}

/// Largest file the transport reads; `tough` applies its own, lower limits per role on top.
const MAX_FETCH_BYTES: u64 = 16 * 1024 * 1024;

/// A `file://` transport that reads each file with one blocking read. `tough`'s own file transport
/// goes through tokio's blocking pool chunk by chunk; on a loaded machine those thread hand-offs
/// made a 1000-host simulation take a minute. Verification is unchanged: `tough` checks what
/// this returns exactly as it checks what comes over HTTP.
#[derive(Debug, Clone, Copy)]
struct LocalFiles;

#[tough::async_trait]
impl Transport for LocalFiles {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        use std::io::Read;
        if url.scheme() != "file" {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let path = url.safe_url_filepath();
        let read = std::fs::File::open(&path).and_then(|file| {
            let mut bytes = Vec::new();
            file.take(MAX_FETCH_BYTES + 1)
                .read_to_end(&mut bytes)
                .map(|_| bytes)
        });
        let bytes = match read {
            Ok(bytes) if bytes.len() as u64 > MAX_FETCH_BYTES => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url,
                    format!("over {MAX_FETCH_BYTES} bytes"),
                ));
            }
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::FileNotFound,
                    url,
                    e,
                ));
            }
            Err(e) => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url,
                    e,
                ));
            }
        };
        Ok(Box::pin(futures::stream::iter(std::iter::once(Ok(
            tough::Bytes::from(bytes),
        )))))
    }
}

/// Loads and verifies a repository through TUF: signatures and thresholds, expiries, hashes and
/// lengths, and (against what `datastore` remembers, if given) rollback of metadata versions.
pub(crate) async fn load_repository(
    repo: &Path,
    trusted_root: &[u8],
    datastore: Option<&Path>,
) -> Result<Repository, ContentError> {
    load_with(repo, trusted_root, datastore, ExpirationEnforcement::Safe).await
}

async fn load_with(
    repo: &Path,
    trusted_root: &[u8],
    datastore: Option<&Path>,
    expiry: ExpirationEnforcement,
) -> Result<Repository, ContentError> {
    let mut loader = RepositoryLoader::new(
        &trusted_root,
        dir_url(&metadata_dir(repo))?,
        dir_url(&targets_dir(repo))?,
    )
    .expiration_enforcement(expiry)
    .transport(LocalFiles);
    if let Some(datastore) = datastore {
        loader = loader.datastore(datastore);
    }
    loader
        .load()
        .await
        .map_err(|e| ContentError::tuf(ErrorKind::Refused, "TUF verification failed", &e))
}

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

/// Versions of the four top-level metadata files a client trusted.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct MetadataVersions {
    pub root: u64,
    pub timestamp: u64,
    pub snapshot: u64,
    pub targets: u64,
}

impl MetadataVersions {
    pub(crate) fn of(repo: &Repository) -> Self {
        Self {
            root: repo.root().signed.version.get(),
            timestamp: repo.timestamp().signed.version.get(),
            snapshot: repo.snapshot().signed.version.get(),
            targets: repo.targets().signed.version.get(),
        }
    }

    /// The first role whose version here is lower than in `seen`.
    pub fn older_role_than(&self, seen: &Self) -> Option<(&'static str, u64, u64)> {
        [
            ("root", self.root, seen.root),
            ("timestamp", self.timestamp, seen.timestamp),
            ("snapshot", self.snapshot, seen.snapshot),
            ("targets", self.targets, seen.targets),
        ]
        .into_iter()
        .find(|(_, new, old)| new < old)
    }
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
    let root =
        std::fs::read(root_path).map_err(|e| ContentError::io("cannot read", root_path, e))?;
    block_on(async {
        let repository = load_repository(repo, &root, None).await?;
        fetch_release(&repository, None).await
    })?
}

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
        if !path.is_file() {
            return Err(ContentError::failed(format!(
                "signing key {} is missing",
                path.display()
            )));
        }
        sources.push(Box::new(LocalKeySource { path }));
    }
    block_on(async {
        let existing = metadata_dir(repo).join("timestamp.json").exists();
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
            let editor = RepositoryEditor::from_repo(&root_path, current)
                .await
                .map_err(|e| tuf_failed("cannot edit the repository", &e))?;
            (editor, versions)
        } else {
            let editor = RepositoryEditor::new(&root_path)
                .await
                .map_err(|e| tuf_failed("cannot read root.json", &e))?;
            (editor, MetadataVersions::default())
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
        std::fs::write(&staged_rules, &text)
            .map_err(|e| ContentError::io("cannot write", &staged_rules, e))?;

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
        let trusted_root: tough::schema::Signed<Root> = serde_json::from_slice(&root)
            .map_err(|e| ContentError::failed(format!("root.json: {e}")))?;
        let metadata = MetadataVersions {
            root: trusted_root.signed.version.get(),
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

/// Renames every file of `from` into `to` (created if needed), `last` after all others, then
/// syncs `to`.
fn move_files_in(from: &Path, to: &Path, last: Option<&str>) -> Result<(), ContentError> {
    std::fs::create_dir_all(to).map_err(|e| ContentError::io("cannot create", to, e))?;
    let mut names: Vec<_> = std::fs::read_dir(from)
        .map_err(|e| ContentError::io("cannot list", from, e))?
        .filter_map(|entry| entry.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by_key(|name| Some(name.to_str()) == Some(last));
    for name in names {
        let (source, dest) = (from.join(&name), to.join(&name));
        crate::state::fsync_file(&source)?;
        std::fs::rename(&source, &dest)
            .map_err(|e| ContentError::io("cannot move into place", &dest, e))?;
    }
    crate::state::fsync_dir(to)
}
