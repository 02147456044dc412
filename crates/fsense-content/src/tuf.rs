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
    ExpirationEnforcement, IntoVec, Repository, RepositoryLoader, TargetName, Transport,
    TransportError, TransportErrorKind, TransportStream,
};
use url::Url;

use fsense_safefs::{SafeFsError, Visibility};

use crate::rules::{MAX_RULES_FILE_BYTES, RuleSet, compile};
use crate::state::safefs_error;
use crate::{ContentError, ErrorKind};

/// Name of the trust anchor in a keys directory.
pub const ROOT_FILE: &str = "root.json";
/// Custom target metadata key holding the rules version.
pub const VERSION_KEY: &str = "rules_version";
/// The top-level roles, each with its own key (threshold 1).
pub(crate) const ROLES: [RoleType; 4] = [
    RoleType::Root,
    RoleType::Targets,
    RoleType::Snapshot,
    RoleType::Timestamp,
];

/// Lifetime of the root metadata `keygen` signs; root changes rarely.
pub(crate) const ROOT_DAYS: i64 = 365;

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

pub(crate) fn key_file(keys_dir: &Path, role: RoleType) -> PathBuf {
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
                .enable_io()
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

pub(crate) fn days_from_now(days: i64) -> Result<jiff::Timestamp, ContentError> {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(days * 24))
        .map_err(|e| ContentError::failed(format!("expiry out of range: {e}")))
}

pub(crate) fn tuf_failed(context: &str, err: &dyn std::error::Error) -> ContentError {
    ContentError::tuf(ErrorKind::Failed, context, err)
}

/// How many targets keys `keygen` makes, and how many of them must sign each release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetsKeys {
    /// One key, `targets.pk8`, threshold 1 (`publish RULES` signs alone).
    Single,
    /// `targets-1.key` ... `targets-N.key`, any `threshold` of which must sign (`stage`, `sign`,
    /// `publish`). `1 <= threshold <= keys <= 16`.
    Shared { keys: u8, threshold: u8 },
}

/// Most targets keys one root may pin.
pub const MAX_TARGETS_KEYS: u8 = 16;

/// The file of the `index`-th (1-based) of several targets keys.
pub fn shared_targets_key_file(keys_dir: &Path, index: u8) -> PathBuf {
    keys_dir.join(format!("targets-{index}.key"))
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

pub(crate) fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

pub(crate) fn targets_dir(repo: &Path) -> PathBuf {
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
///
/// The URLs tough asks for are joined onto our own base URLs; they are mapped back to paths with
/// `to_file_path` (so `sp ace` and non-ASCII directory names work) and must stay below one of the
/// bases. Each file is opened without following a final symbolic link and must be a regular file:
/// a FIFO or device in the repository is refused, never waited on.
#[derive(Debug, Clone)]
struct LocalFiles {
    bases: Vec<PathBuf>,
}

impl LocalFiles {
    fn path_of(&self, url: &Url) -> Option<PathBuf> {
        if url.scheme() != "file" {
            return None;
        }
        let path = url.to_file_path().ok()?;
        let inside = self.bases.iter().any(|base| {
            path.strip_prefix(base).is_ok_and(|rest| {
                rest.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
        });
        inside.then_some(path)
    }
}

#[tough::async_trait]
impl Transport for LocalFiles {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        use std::io::Read;
        let Some(path) = self.path_of(&url) else {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        };
        let read = match fsense_safefs::open_regular(&path) {
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(MAX_FETCH_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map(|_| bytes)
            }
            Err(SafeFsError::Io { source, .. }) => Err(source),
            Err(refused) => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url,
                    refused.to_string(),
                ));
            }
        };
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

/// Where a repository is: a local directory, or (fleet) an `http://` / `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoLocation {
    Dir(PathBuf),
    Http {
        /// The repository's base URL (holding `metadata/` and `targets/`).
        base: Url,
        settings: crate::http::HttpSettings,
    },
}

impl RepoLocation {
    /// Parses a `--repo` argument: an `http(s)://` URL, or else a directory.
    pub fn parse(arg: &std::ffi::OsStr, settings: &crate::http::HttpSettings) -> Self {
        match arg.to_str() {
            Some(text) if crate::http::is_http_url(text) => {
                let with_slash = if text.ends_with('/') {
                    text.to_owned()
                } else {
                    format!("{text}/")
                };
                match Url::parse(&with_slash) {
                    Ok(base) => Self::Http {
                        base,
                        settings: settings.clone(),
                    },
                    Err(_) => Self::Dir(PathBuf::from(arg)),
                }
            }
            _ => Self::Dir(PathBuf::from(arg)),
        }
    }
}

impl std::fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(path) => write!(f, "{}", path.display()),
            Self::Http { base, .. } => write!(f, "{base}"),
        }
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

pub(crate) async fn load_with(
    repo: &Path,
    trusted_root: &[u8],
    datastore: Option<&Path>,
    expiry: ExpirationEnforcement,
) -> Result<Repository, ContentError> {
    load_at(
        &RepoLocation::Dir(repo.to_owned()),
        trusted_root,
        datastore,
        expiry,
    )
    .await
}

/// [`load_repository`] for any repository location.
pub(crate) async fn load_repository_at(
    repo: &RepoLocation,
    trusted_root: &[u8],
    datastore: Option<&Path>,
) -> Result<Repository, ContentError> {
    load_at(repo, trusted_root, datastore, ExpirationEnforcement::Safe).await
}

async fn load_at(
    repo: &RepoLocation,
    trusted_root: &[u8],
    datastore: Option<&Path>,
    expiry: ExpirationEnforcement,
) -> Result<Repository, ContentError> {
    let mut loader = match repo {
        RepoLocation::Dir(dir) => {
            let (metadata, targets) = (metadata_dir(dir), targets_dir(dir));
            let bases = [&metadata, &targets]
                .into_iter()
                .map(|d| {
                    std::path::absolute(d).map_err(|e| ContentError::io("cannot resolve", d, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            RepositoryLoader::new(&trusted_root, dir_url(&metadata)?, dir_url(&targets)?)
                .transport(LocalFiles { bases })
        }
        RepoLocation::Http { base, settings } => {
            let join = |path: &str| {
                base.join(path)
                    .map_err(|e| ContentError::failed(format!("{base} cannot hold {path}: {e}")))
            };
            RepositoryLoader::new(&trusted_root, join("metadata/")?, join("targets/")?)
                .transport(crate::http::HttpFiles::new(settings)?)
        }
    }
    .expiration_enforcement(expiry);
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
        crate::state::fsync_file(&source)?;
        std::fs::rename(&source, &dest)
            .map_err(|e| ContentError::io("cannot move into place", &dest, e))?;
    }
    crate::state::fsync_dir(to)
}
