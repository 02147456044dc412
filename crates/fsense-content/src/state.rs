//! A sensor's content state directory: atomic install, last known good, rollback.
//!
//! ```text
//! DIR/.lock               flock: held exclusively while an update commits and by rollback,
//!                         shared by loads and by an update filling its staging directory
//! DIR/state.json          the pointer: active and last-known-good generation, highest TUF
//!                         metadata versions ever trusted, releases rolled back
//! DIR/gen-N/rules.toml    installed content, exactly the verified target bytes
//! DIR/gen-N/install.json  its rules version, sha256 and TUF metadata versions
//! DIR/gen-N/tuf/          the TUF client's trusted metadata (refreshed on every update check)
//! DIR/.staging-*          an update in progress (its `.busy` file locked while it runs;
//!                         removed by the next update once that lock is gone)
//! ```
//! The network phase of an update (fetching and verifying, bounded by one deadline) runs in its
//! staging directory without the directory lock, so a slow repository never blocks a sensor
//! start or a rollback; the lock is taken only to compare with the versions already trusted and
//! commit (see `update.rs`).
//! An update builds a complete new generation in a staging directory with a unique name, syncs
//! it, renames it to `gen-N`, then replaces `state.json` through a uniquely named temporary file.
//! The rename of `state.json` is the commit point: a crash before it leaves the old content
//! active, a crash after it the new one; generations that `state.json` does not name are garbage.
//!
//! The directory is trusted only if it is ours: it (and its parent, unless sticky) must be owned
//! by this user or root and writable by no one else, or every command refuses it. `state.json`
//! may only name generations this code creates (`gen-N`), every file is opened without following
//! a symbolic link, and loading re-checks the rules against the sha256 recorded at install.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use fsense_safefs::Visibility;
use serde::{Deserialize, Serialize};

use crate::ContentError;
use crate::fsio::{fsync_dir, is_not_found, read_regular, safefs_error, sha256_hex};
use crate::rules::{MAX_RULES_FILE_BYTES, RuleSet, compile};
use crate::tuf::MetadataVersions;

pub(crate) const POINTER: &str = "state.json";
const LOCK: &str = ".lock";
pub(crate) const STAGING_PREFIX: &str = ".staging-";
/// In a staging directory: locked exclusively by the update that uses it.
pub(crate) const BUSY: &str = ".busy";
pub(crate) const RULES: &str = "rules.toml";
pub(crate) const INSTALL: &str = "install.json";
pub(crate) const TUF_DIR: &str = "tuf";
/// Largest state or trusted-metadata file read back (tough's own limits are lower).
pub(crate) const MAX_STATE_FILE_BYTES: u64 = 16 * 1024 * 1024;

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

/// `true` for the generation names this code creates: `gen-` and a decimal number without
/// leading zeros. Anything else in `state.json` was not written by us.
pub fn is_generation_name(name: &str) -> bool {
    name.strip_prefix("gen-").is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 20
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'))
            && n.parse::<u64>().is_ok()
    })
}

/// A state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub(crate) path: PathBuf,
    pub(crate) durable: bool,
}

impl StateDir {
    /// A state directory whose writes are synced to disk. Nothing is touched until a command runs.
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

    /// Refuses the directory unless this user may trust what it holds.
    pub(crate) fn check_trusted(&self) -> Result<(), ContentError> {
        fsense_safefs::check_trusted_dir(&self.path)
            .map_err(|e| safefs_error(e).context("content state directory"))
    }

    /// Creates the directory (0700) if needed, checks it, and takes the exclusive lock that every
    /// writer holds until it returns. A second writer waits here.
    pub(crate) fn lock_for_writing(&self) -> Result<File, ContentError> {
        fsense_safefs::ensure_private_dir(&self.path)
            .map_err(|e| safefs_error(e).context("content state directory"))?;
        let path = self.path.join(LOCK);
        let file = fsense_safefs::append_private(&path).map_err(safefs_error)?;
        file.lock()
            .map_err(|e| ContentError::io("cannot lock", &path, e))?;
        Ok(file)
    }

    /// Creates the directory (0700) if needed, checks it, and takes the shared lock: writers
    /// wait, other readers and updates still in their network phase do not.
    pub(crate) fn lock_shared_creating(&self) -> Result<File, ContentError> {
        fsense_safefs::ensure_private_dir(&self.path)
            .map_err(|e| safefs_error(e).context("content state directory"))?;
        let path = self.path.join(LOCK);
        let file = fsense_safefs::append_private(&path).map_err(safefs_error)?;
        file.lock_shared()
            .map_err(|e| ContentError::io("cannot lock", &path, e))?;
        Ok(file)
    }

    /// A shared lock, so that no writer removes a generation while it is read; `None` when no
    /// writer ever ran here (there is nothing to race with).
    fn lock_for_reading(&self) -> Result<Option<File>, ContentError> {
        let path = self.path.join(LOCK);
        let file = match fsense_safefs::open_regular(&path) {
            Ok(file) => file,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(safefs_error(e)),
        };
        file.lock_shared()
            .map_err(|e| ContentError::io("cannot lock", &path, e))?;
        Ok(Some(file))
    }

    /// The pointer, or the empty pointer if nothing was ever installed. Generation names are
    /// checked: `state.json` can only name what this code creates.
    pub fn pointer(&self) -> Result<Pointer, ContentError> {
        let path = self.path.join(POINTER);
        let bytes = match fsense_safefs::open_regular(&path) {
            Err(e) if is_not_found(&e) => return Ok(Pointer::default()),
            Err(e) => return Err(safefs_error(e)),
            Ok(_) => read_regular(&path, MAX_STATE_FILE_BYTES)?,
        };
        let pointer: Pointer = serde_json::from_slice(&bytes)
            .map_err(|e| ContentError::failed(format!("{} is damaged: {e}", path.display())))?;
        for (role, name) in [
            ("active", &pointer.active),
            ("last known good", &pointer.last_known_good),
        ] {
            if let Some(name) = name
                && !is_generation_name(name)
            {
                return Err(ContentError::refused(format!(
                    "{} names `{name}` as the {role} content, which is not a generation fsense creates (gen-N)",
                    path.display()
                )));
            }
        }
        Ok(pointer)
    }

    pub(crate) fn install_of(&self, generation: &str) -> Result<Install, ContentError> {
        let dir = self.path.join(generation);
        fsense_safefs::check_trusted_dir(&dir)
            .map_err(|e| safefs_error(e).context("content generation"))?;
        let path = dir.join(INSTALL);
        let bytes = read_regular(&path, MAX_STATE_FILE_BYTES)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ContentError::failed(format!("{} is damaged: {e}", path.display())))
    }

    /// The generation to treat as active: the pointer's active one, or, when that directory is
    /// gone, the last known good one. `None` when neither exists.
    pub(crate) fn resolve_active(
        &self,
        pointer: &Pointer,
    ) -> Result<Option<(String, Install)>, ContentError> {
        for generation in [&pointer.active, &pointer.last_known_good]
            .into_iter()
            .flatten()
        {
            match std::fs::symlink_metadata(self.path.join(generation)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                _ => return Ok(Some((generation.clone(), self.install_of(generation)?))),
            }
        }
        Ok(None)
    }

    /// Rules version of the active content, if any.
    pub fn active_version(&self) -> Result<Option<u64>, ContentError> {
        self.check_trusted()?;
        let _lock = self.lock_for_reading()?;
        let pointer = self.pointer()?;
        Ok(self
            .resolve_active(&pointer)?
            .map(|(_, install)| install.rules_version))
    }

    /// Loads the active content (or the last known good one if the active generation is gone):
    /// checks its hash against the install record and compiles it again.
    pub fn load_active(&self) -> Result<RuleSet, ContentError> {
        self.check_trusted()?;
        let _lock = self.lock_for_reading()?;
        let pointer = self.pointer()?;
        let Some((generation, install)) = self.resolve_active(&pointer)? else {
            return Err(ContentError::failed(match pointer.active {
                Some(active) => format!(
                    "the active content {active} in {} is missing and no last known good is left (run `fsense content update`)",
                    self.path.display()
                ),
                None => format!(
                    "no content installed in {} (run `fsense content update`)",
                    self.path.display()
                ),
            }));
        };
        let rules_path = self.path.join(&generation).join(RULES);
        let bytes = read_regular(&rules_path, MAX_RULES_FILE_BYTES as u64)?;
        if sha256_hex(&bytes) != install.sha256 {
            return Err(ContentError::refused(format!(
                "{} does not match its recorded sha256",
                rules_path.display()
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| ContentError::refused(format!("{} is not UTF-8", rules_path.display())))?;
        let rules = compile(&text)?;
        if rules.version() != install.rules_version {
            return Err(ContentError::refused(format!(
                "{} is not the installed version",
                rules_path.display()
            )));
        }
        Ok(rules)
    }

    /// `fsense content rollback`: make the last known good content active again.
    pub fn rollback(&self) -> Result<RolledBack, ContentError> {
        if let Err(e) = std::fs::symlink_metadata(&self.path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Err(ContentError::refused(format!(
                "{} has no active content to roll back",
                self.path.display()
            )));
        }
        self.check_trusted()?;
        let _lock = self.lock_for_writing()?;
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

    /// Replaces `state.json` atomically through a private temporary file with a unique name.
    pub(crate) fn commit(
        &self,
        pointer: &Pointer,
        observer: &mut dyn FnMut(Step),
    ) -> Result<(), ContentError> {
        let path = self.path.join(POINTER);
        let (tmp, mut file) =
            fsense_safefs::create_temp_beside(&path, Visibility::Private).map_err(safefs_error)?;
        let written = file.write_all(&to_json(pointer)?).and_then(|()| {
            if self.durable {
                file.sync_all()
            } else {
                Ok(())
            }
        });
        drop(file);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(ContentError::io("cannot write", &tmp, e));
        }
        observer(Step::PointerStaged);
        if self.durable {
            fsense_safefs::rename_into_place(&tmp, &path).map_err(safefs_error)?;
        } else if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(ContentError::io("cannot replace", &path, e));
        }
        observer(Step::PointerRenamed);
        Ok(())
    }

    /// Writes a new private file (it must not exist) and syncs it.
    pub(crate) fn write_new(&self, path: &Path, bytes: &[u8]) -> Result<(), ContentError> {
        let mut file = fsense_safefs::create_new_private(path).map_err(safefs_error)?;
        file.write_all(bytes)
            .and_then(|()| {
                if self.durable {
                    file.sync_all()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| ContentError::io("cannot write", path, e))
    }

    pub(crate) fn sync_dir(&self, path: &Path) -> Result<(), ContentError> {
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
            .filter(|name| is_generation_name(name))
            .filter_map(|name| Some((name.strip_prefix("gen-")?.parse().ok()?, name)))
            .collect())
    }

    pub(crate) fn highest_generation(&self) -> Result<u64, ContentError> {
        Ok(self
            .generations()?
            .into_iter()
            .map(|(n, _)| n)
            .max()
            .unwrap_or(0))
    }

    /// Removes what crashed writers left: staging directories and pointer temporaries. Only
    /// called with the exclusive lock held; a staging directory whose `BUSY` file an update
    /// still holds locked (it is fetching, without the directory lock) is left alone.
    pub(crate) fn remove_leftovers(&self) -> Result<(), ContentError> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| ContentError::io("cannot list", &self.path, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) {
                // An update still fetching holds its staging directory's `BUSY` lock.
                if let Ok(busy) = fsense_safefs::open_regular(&entry.path().join(BUSY))
                    && let Err(std::fs::TryLockError::WouldBlock) = busy.try_lock()
                {
                    continue;
                }
                let _ = std::fs::remove_dir_all(entry.path());
            } else if name.starts_with(&format!(".{POINTER}.")) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    pub(crate) fn remove_unreferenced(&self, pointer: &Pointer) -> Result<(), ContentError> {
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

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ContentError> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| ContentError::failed(format!("cannot serialize state: {e}")))
}

#[cfg(test)]
mod tests {
    use super::is_generation_name;
    use proptest::prelude::*;

    #[test]
    fn generation_names() {
        for good in ["gen-0", "gen-1", "gen-42", "gen-18446744073709551615"] {
            assert!(is_generation_name(good), "{good}");
        }
        for bad in [
            "gen-",
            "gen-01",
            "gen-1/..",
            "../gen-1",
            "gen-1 ",
            "gen--1",
            "gen-+1",
            "evil",
            "gen-18446744073709551616",
            "GEN-1",
            "gen-١",
        ] {
            assert!(!is_generation_name(bad), "{bad}");
        }
    }

    proptest! {
        /// Exactly the names `update` creates (`gen-{u64}`) are accepted.
        #[test]
        fn only_names_update_creates_are_accepted(n in any::<u64>(), text in "\\PC{0,24}") {
            let created = format!("gen-{n}");
            prop_assert!(is_generation_name(&created));
            let accepted = is_generation_name(&text);
            let canonical = text
                .strip_prefix("gen-")
                .and_then(|digits| digits.parse::<u64>().ok())
                .is_some_and(|n| format!("gen-{n}") == text);
            prop_assert_eq!(accepted, canonical, "{:?}", text);
        }
    }
}
