//! A sensor's content state directory: atomic install, last known good, rollback.
//!
//! ```text
//! DIR/state.json          the pointer: active and last-known-good generation, highest TUF
//!                         metadata versions ever trusted, releases rolled back
//! DIR/gen-N/rules.toml    installed content, exactly the verified target bytes
//! DIR/gen-N/install.json  its rules version, sha256 and TUF metadata versions
//! DIR/gen-N/tuf/          the TUF client's trusted metadata as of this install
//! DIR/.staging-*          an update in progress (removed by the next update)
//! ```
//! An update builds a complete new generation in a staging directory, syncs it, renames it to
//! `gen-N`, then replaces `state.json` by writing `state.json.tmp`, syncing and renaming it. The
//! rename of `state.json` is the commit point: a crash before it leaves the old content active, a
//! crash after it the new one; generations that `state.json` does not name are garbage.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rules::{RuleSet, compile};
use crate::tuf::{self, MetadataVersions};
use crate::{ContentError, ErrorKind};

const POINTER: &str = "state.json";
const POINTER_TMP: &str = "state.json.tmp";
const STAGING_PREFIX: &str = ".staging-";
const RULES: &str = "rules.toml";
const INSTALL: &str = "install.json";
const TUF_DIR: &str = "tuf";

/// The commit pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    pub active: Option<String>,
    pub last_known_good: Option<String>,
    /// Highest TUF metadata versions ever trusted here: older metadata is refused.
    pub seen: MetadataVersions,
    /// Rules versions that were rolled back: `update` does not install them again.
    pub rolled_back: Vec<u64>,
}

/// What a generation holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    pub rules_version: u64,
    pub sha256: String,
    pub metadata: MetadataVersions,
}

/// The steps of an update, reported to an observer after each one (tests crash at each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    StagingCreated,
    TrustedMetadataCopied,
    RepositoryVerified,
    ContentStaged,
    GenerationRenamed,
    PointerStaged,
    PointerRenamed,
    OldGenerationsRemoved,
}

/// Result of `update`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    Installed {
        from: Option<u64>,
        to: u64,
    },
    UpToDate {
        version: u64,
    },
    /// The newest release was rolled back here before; the active content stays.
    SkippedRolledBack {
        newest: u64,
        active: Option<u64>,
    },
}

/// Result of `rollback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolledBack {
    pub from: u64,
    /// `None` when the rolled-back content was the first ever installed: nothing is active now.
    pub to: Option<u64>,
}

/// A state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
    durable: bool,
}

impl StateDir {
    /// Opens (or creates) a state directory whose writes are synced to disk.
    pub fn open(path: &Path) -> Result<Self, ContentError> {
        Ok(Self {
            path: path.to_owned(),
            durable: true,
        })
    }

    /// Like [`StateDir::open`] but without fsync: for the fleet simulator's throw-away hosts.
    pub fn open_volatile(path: &Path) -> Result<Self, ContentError> {
        Ok(Self {
            path: path.to_owned(),
            durable: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pointer, or the empty pointer if nothing was ever installed.
    pub fn pointer(&self) -> Result<Pointer, ContentError> {
        let path = self.path.join(POINTER);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ContentError::failed(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pointer::default()),
            Err(e) => Err(ContentError::io("cannot read", &path, e)),
        }
    }

    fn install_of(&self, generation: &str) -> Result<Install, ContentError> {
        let path = self.path.join(generation).join(INSTALL);
        let bytes = std::fs::read(&path).map_err(|e| ContentError::io("cannot read", &path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ContentError::failed(format!("{} is damaged: {e}", path.display())))
    }

    /// Rules version of the active content, if any.
    pub fn active_version(&self) -> Result<Option<u64>, ContentError> {
        match self.pointer()?.active {
            Some(generation) => Ok(Some(self.install_of(&generation)?.rules_version)),
            None => Ok(None),
        }
    }

    /// Loads the active content: checks its hash against the install record and compiles it again.
    pub fn load_active(&self) -> Result<RuleSet, ContentError> {
        let generation = self.pointer()?.active.ok_or_else(|| {
            ContentError::failed(format!(
                "no content installed in {} (run `fsense content update`)",
                self.path.display()
            ))
        })?;
        let install = self.install_of(&generation)?;
        let rules_path = self.path.join(&generation).join(RULES);
        let text = crate::read_limited(&rules_path)?;
        if sha256_hex(text.as_bytes()) != install.sha256 {
            return Err(ContentError::refused(format!(
                "{} does not match its recorded sha256",
                rules_path.display()
            )));
        }
        let rules = compile(&text)?;
        if rules.version() != install.rules_version {
            return Err(ContentError::refused(format!(
                "{} is not the installed version",
                rules_path.display()
            )));
        }
        Ok(rules)
    }

    /// `fsense content update`: install the newest release of `repo`.
    pub fn update(&self, repo: &Path, root: &Path) -> Result<UpdateOutcome, ContentError> {
        self.update_to(repo, root, None, &mut |_| {})
    }

    /// Installs release `version` (the newest when `None`), reporting each step to `observer`.
    pub fn update_to(
        &self,
        repo: &Path,
        root_path: &Path,
        version: Option<u64>,
        observer: &mut dyn FnMut(Step),
    ) -> Result<UpdateOutcome, ContentError> {
        let trusted_root =
            std::fs::read(root_path).map_err(|e| ContentError::io("cannot read", root_path, e))?;
        std::fs::create_dir_all(&self.path)
            .map_err(|e| ContentError::io("cannot create", &self.path, e))?;
        self.remove_leftovers()?;
        let pointer = self.pointer()?;
        let active = match &pointer.active {
            Some(generation) => Some((generation.clone(), self.install_of(generation)?)),
            None => None,
        };
        let active_version = active.as_ref().map(|(_, install)| install.rules_version);

        let staging = self
            .path
            .join(format!("{STAGING_PREFIX}{}", std::process::id()));
        std::fs::create_dir(&staging)
            .map_err(|e| ContentError::io("cannot create", &staging, e))?;
        observer(Step::StagingCreated);
        let datastore = staging.join(TUF_DIR);
        std::fs::create_dir(&datastore)
            .map_err(|e| ContentError::io("cannot create", &datastore, e))?;
        if let Some((generation, _)) = &active {
            copy_dir_files(&self.path.join(generation).join(TUF_DIR), &datastore)?;
        }
        observer(Step::TrustedMetadataCopied);

        let fetched = tuf::block_on(async {
            let repository = tuf::load_repository(repo, &trusted_root, Some(&datastore)).await?;
            let versions = MetadataVersions::of(&repository);
            if let Some((role, new, old)) = versions.older_role_than(&pointer.seen) {
                return Err(ContentError::refused(format!(
                    "repository {role} metadata version {new} is older than version {old} already trusted (rollback attack?)"
                )));
            }
            let newest = tuf::releases(&repository).first().map(|(v, _)| *v);
            if version.is_none()
                && let Some(newest) = newest
            {
                if pointer.rolled_back.contains(&newest) {
                    return Ok(Err(UpdateOutcome::SkippedRolledBack {
                        newest,
                        active: active_version,
                    }));
                }
                if active_version.is_some_and(|active| newest <= active) {
                    return Ok(Err(UpdateOutcome::UpToDate {
                        version: active_version.unwrap_or(newest),
                    }));
                }
            }
            tuf::fetch_release(&repository, version).await.map(Ok)
        })?;
        let fetched = match fetched {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(outcome)) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Ok(outcome);
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(match err.kind() {
                    ErrorKind::Invalid => err
                        .with_kind(ErrorKind::Refused)
                        .context("refusing invalid content"),
                    _ => err,
                });
            }
        };
        observer(Step::RepositoryVerified);
        if version.is_none()
            && active_version.is_some_and(|active| fetched.rules.version() <= active)
        {
            let _ = std::fs::remove_dir_all(&staging);
            return Ok(UpdateOutcome::UpToDate {
                version: active_version.unwrap_or_default(),
            });
        }

        let install = Install {
            rules_version: fetched.rules.version(),
            sha256: sha256_hex(fetched.text.as_bytes()),
            metadata: fetched.metadata,
        };
        self.write_file(&staging.join(RULES), fetched.text.as_bytes())?;
        self.write_file(&staging.join(INSTALL), &to_json(&install)?)?;
        if self.durable {
            for entry in std::fs::read_dir(&datastore)
                .map_err(|e| ContentError::io("cannot list", &datastore, e))?
            {
                fsync_file(
                    &entry
                        .map_err(|e| ContentError::io("cannot list", &datastore, e))?
                        .path(),
                )?;
            }
            fsync_dir(&datastore)?;
            fsync_dir(&staging)?;
        }
        observer(Step::ContentStaged);

        let generation = format!("gen-{}", self.highest_generation()? + 1);
        let target = self.path.join(&generation);
        std::fs::rename(&staging, &target)
            .map_err(|e| ContentError::io("cannot move into place", &target, e))?;
        self.sync_dir(&self.path)?;
        observer(Step::GenerationRenamed);

        let new_pointer = Pointer {
            active: Some(generation),
            last_known_good: pointer.active.clone(),
            seen: pointer.seen.max_each(&fetched.metadata),
            rolled_back: pointer.rolled_back.clone(),
        };
        self.commit(&new_pointer, observer)?;
        self.remove_unreferenced(&new_pointer)?;
        observer(Step::OldGenerationsRemoved);
        Ok(UpdateOutcome::Installed {
            from: active_version,
            to: install.rules_version,
        })
    }

    /// `fsense content rollback`: make the last known good content active again.
    pub fn rollback(&self) -> Result<RolledBack, ContentError> {
        let pointer = self.pointer()?;
        let Some(active) = pointer.active.clone() else {
            return Err(ContentError::refused(format!(
                "{} has no active content to roll back",
                self.path.display()
            )));
        };
        let previous = pointer.last_known_good.clone();
        let from = self.install_of(&active)?.rules_version;
        let to = match &previous {
            Some(generation) => Some(self.install_of(generation)?.rules_version),
            None => None,
        };
        let mut rolled_back = pointer.rolled_back.clone();
        if !rolled_back.contains(&from) {
            rolled_back.push(from);
        }
        let new_pointer = Pointer {
            active: previous,
            last_known_good: None,
            seen: pointer.seen,
            rolled_back,
        };
        self.commit(&new_pointer, &mut |_| {})?;
        self.remove_unreferenced(&new_pointer)?;
        Ok(RolledBack { from, to })
    }

    /// Replaces `state.json` atomically: write a temporary file, sync it, rename it, sync the dir.
    fn commit(
        &self,
        pointer: &Pointer,
        observer: &mut dyn FnMut(Step),
    ) -> Result<(), ContentError> {
        let tmp = self.path.join(POINTER_TMP);
        self.write_file(&tmp, &to_json(pointer)?)?;
        observer(Step::PointerStaged);
        let path = self.path.join(POINTER);
        std::fs::rename(&tmp, &path).map_err(|e| ContentError::io("cannot replace", &path, e))?;
        self.sync_dir(&self.path)?;
        observer(Step::PointerRenamed);
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), ContentError> {
        std::fs::write(path, bytes).map_err(|e| ContentError::io("cannot write", path, e))?;
        if self.durable {
            fsync_file(path)?;
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> Result<(), ContentError> {
        if self.durable {
            fsync_dir(path)
        } else {
            Ok(())
        }
    }

    fn generations(&self) -> Result<Vec<(u64, String)>, ContentError> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| ContentError::io("cannot list", &self.path, e))?;
        Ok(entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter_map(|name| Some((name.strip_prefix("gen-")?.parse().ok()?, name)))
            .collect())
    }

    fn highest_generation(&self) -> Result<u64, ContentError> {
        Ok(self
            .generations()?
            .into_iter()
            .map(|(n, _)| n)
            .max()
            .unwrap_or(0))
    }

    fn remove_leftovers(&self) -> Result<(), ContentError> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| ContentError::io("cannot list", &self.path, e))?;
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    fn remove_unreferenced(&self, pointer: &Pointer) -> Result<(), ContentError> {
        for (_, name) in self.generations()? {
            if Some(&name) != pointer.active.as_ref()
                && Some(&name) != pointer.last_known_good.as_ref()
            {
                let _ = std::fs::remove_dir_all(self.path.join(name));
            }
        }
        Ok(())
    }
}

impl MetadataVersions {
    fn max_each(&self, other: &Self) -> Self {
        Self {
            root: self.root.max(other.root),
            timestamp: self.timestamp.max(other.timestamp),
            snapshot: self.snapshot.max(other.snapshot),
            targets: self.targets.max(other.targets),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ContentError> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| ContentError::failed(format!("cannot serialize state: {e}")))
}

fn copy_dir_files(from: &Path, to: &Path) -> Result<(), ContentError> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ContentError::io("cannot list", from, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ContentError::io("cannot list", from, e))?;
        let dest = to.join(entry.file_name());
        std::fs::copy(entry.path(), &dest)
            .map_err(|e| ContentError::io("cannot copy to", &dest, e))?;
    }
    Ok(())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn fsync_file(path: &Path) -> Result<(), ContentError> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| ContentError::io("cannot sync", path, e))
}

/// Syncs a directory so that renames in it are durable (a no-op where directories cannot be
/// opened, e.g. Windows, whose rename is journaled by NTFS).
pub(crate) fn fsync_dir(path: &Path) -> Result<(), ContentError> {
    match std::fs::File::open(path) {
        Ok(dir) => match dir.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if cfg!(windows) => {
                let _ = e;
                Ok(())
            }
            Err(e) => Err(ContentError::io("cannot sync", path, e)),
        },
        Err(_) if cfg!(windows) => Ok(()),
        Err(e) => Err(ContentError::io("cannot open", path, e)),
    }
}
