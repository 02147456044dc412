//! What every part of the TUF code shares: file and role names, metadata lifetimes, the I/O
//! runtime `tough` runs on, and the versions a client trusted.

use std::path::{Path, PathBuf};

use tough::Repository;
use tough::schema::RoleType;

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

/// Most targets keys one root may pin.
pub const MAX_TARGETS_KEYS: u8 = 16;

/// The file of the `index`-th (1-based) of several targets keys.
pub fn shared_targets_key_file(keys_dir: &Path, index: u8) -> PathBuf {
    keys_dir.join(format!("targets-{index}.key"))
}

pub(crate) fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

pub(crate) fn targets_dir(repo: &Path) -> PathBuf {
    repo.join("targets")
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
