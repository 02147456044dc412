//! `fsense content update` and the live checker's update: fetch and verify a release through
//! TUF into a staging directory of the state directory, then install it atomically.
//!
//! The phases and the locks they hold (issue 24, N9: a slow repository held the exclusive lock
//! for minutes, blocking sensor starts and `rollback`):
//!
//! 1. **Prepare** (shared lock, a few file operations): create the staging directory, lock its
//!    `.busy` file so no other writer removes it, copy the active generation's trusted TUF
//!    metadata into it.
//! 2. **Fetch** (no lock): load and verify the repository (the TUF client writes only into the
//!    staging directory) and fetch the release. One deadline bounds the whole phase
//!    ([`crate::http::HttpSettings::deadline`]), and a [`Stop`] ends it at once.
//! 3. **Commit** (exclusive lock): read the pointer again, refuse metadata older than what is
//!    trusted now (`seen`), decide against the content active now, and install.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fsense_safefs::Visibility;

use crate::fsio::{fsync_dir, fsync_file, read_regular, safefs_error, sha256_hex};
use crate::state::{
    BUSY, INSTALL, Install, MAX_STATE_FILE_BYTES, Pointer, RULES, STAGING_PREFIX, StateDir, Step,
    TUF_DIR, UpdateOutcome, to_json,
};
use crate::tuf::{self, Fetched, MetadataVersions, RepoLocation};
use crate::{ContentError, ErrorKind};

/// Asks an update in progress to end: its network phase returns within about 50 ms with an
/// error, and nothing is installed. Clones share one flag.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How often a running fetch looks at its [`Stop`].
const STOP_POLL: Duration = Duration::from_millis(50);

/// What the network phase found.
struct Checked {
    versions: MetadataVersions,
    newest: Option<u64>,
    /// The release, when the pointer read before the fetch said it was needed.
    fetched: Option<Fetched>,
}

impl StateDir {
    /// `fsense content update`: install the newest release of `repo` (a directory).
    pub fn update(&self, repo: &Path, root: &Path) -> Result<UpdateOutcome, ContentError> {
        self.update_to(repo, root, None, &mut |_| {})
    }

    /// `fsense content update` from a directory or an `http(s)://` URL.
    pub fn update_from(
        &self,
        repo: &RepoLocation,
        root: &Path,
    ) -> Result<UpdateOutcome, ContentError> {
        self.update_from_to(repo, root, None, &mut |_| {})
    }

    /// Installs release `version` (the newest when `None`), reporting each step to `observer`.
    pub fn update_to(
        &self,
        repo: &Path,
        root_path: &Path,
        version: Option<u64>,
        observer: &mut dyn FnMut(Step),
    ) -> Result<UpdateOutcome, ContentError> {
        self.update_from_to(
            &RepoLocation::Dir(repo.to_owned()),
            root_path,
            version,
            observer,
        )
    }

    /// [`StateDir::update_to`] for any repository location. The directory's exclusive lock is
    /// held only to commit, never across the network (see the module documentation).
    pub fn update_from_to(
        &self,
        repo: &RepoLocation,
        root_path: &Path,
        version: Option<u64>,
        observer: &mut dyn FnMut(Step),
    ) -> Result<UpdateOutcome, ContentError> {
        self.update_stoppable(repo, root_path, version, &Stop::new(), observer)
    }

    /// [`StateDir::update_from_to`] that `stop` can end while it fetches.
    pub fn update_stoppable(
        &self,
        repo: &RepoLocation,
        root_path: &Path,
        version: Option<u64>,
        stop: &Stop,
        observer: &mut dyn FnMut(Step),
    ) -> Result<UpdateOutcome, ContentError> {
        let trusted_root = read_regular(root_path, MAX_STATE_FILE_BYTES)?;

        // 1. Prepare, under the shared lock.
        let shared = self.lock_shared_creating()?;
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&self.path)
            .map_err(|e| ContentError::io("cannot create a staging directory in", &self.path, e))?;
        let busy_path = staging.path().join(BUSY);
        let busy = fsense_safefs::create_new_private(&busy_path).map_err(safefs_error)?;
        busy.lock()
            .map_err(|e| ContentError::io("cannot lock", &busy_path, e))?;
        observer(Step::StagingCreated);
        let datastore = staging.path().join(TUF_DIR);
        std::fs::create_dir(&datastore)
            .map_err(|e| ContentError::io("cannot create", &datastore, e))?;
        let before = self.pointer()?;
        let active_before = self.resolve_active(&before)?;
        if let Some((generation, _)) = &active_before {
            copy_dir_files(&self.path.join(generation).join(TUF_DIR), &datastore)?;
        }
        drop(shared);
        observer(Step::TrustedMetadataCopied);

        // 2. Fetch and verify, without any lock.
        let active_version_before = active_before.as_ref().map(|(_, i)| i.rules_version);
        let deadline = match repo {
            RepoLocation::Http { settings, .. } => Some(settings.deadline),
            RepoLocation::Dir(_) => None,
        };
        let checked = tuf::block_on(bounded(
            async {
                let repository =
                    tuf::load_repository_at(repo, &trusted_root, Some(&datastore)).await?;
                let versions = MetadataVersions::of(&repository);
                if let Some(refusal) = older_than_seen(&versions, &before) {
                    return Err(refusal);
                }
                let newest = tuf::releases(&repository).first().map(|(v, _)| *v);
                let wanted = version.is_some()
                    || newest.is_some_and(|newest| {
                        !before.rolled_back.contains(&newest)
                            && active_version_before.is_none_or(|active| newest > active)
                    })
                    || newest.is_none();
                let fetched = if wanted {
                    Some(tuf::fetch_release(&repository, version).await?)
                } else {
                    None
                };
                Ok(Checked {
                    versions,
                    newest,
                    fetched,
                })
            },
            deadline,
            stop,
            repo,
        ))?;
        let checked = match checked.and_then(|inner| inner) {
            Ok(checked) => checked,
            Err(err) => {
                return Err(match err.kind() {
                    ErrorKind::Invalid => err
                        .with_kind(ErrorKind::Refused)
                        .context("refusing invalid content"),
                    _ => err,
                });
            }
        };
        observer(Step::RepositoryVerified);

        // 3. Compare with what is trusted now, and commit, under the exclusive lock.
        let _lock = self.lock_for_writing()?;
        self.remove_leftovers()?;
        let pointer = self.pointer()?;
        if let Some(refusal) = older_than_seen(&checked.versions, &pointer) {
            return Err(refusal);
        }
        let active = self.resolve_active(&pointer)?;
        let active_version = active.as_ref().map(|(_, install)| install.rules_version);
        if version.is_none()
            && let Some(newest) = checked.newest
        {
            if pointer.rolled_back.contains(&newest) {
                self.persist_refresh(&pointer, active.as_ref(), &datastore, &checked.versions)?;
                return Ok(UpdateOutcome::SkippedRolledBack {
                    newest,
                    active: active_version,
                });
            }
            if let Some(active_version) = active_version.filter(|active| newest <= *active) {
                self.persist_refresh(&pointer, active.as_ref(), &datastore, &checked.versions)?;
                return Ok(UpdateOutcome::UpToDate {
                    version: active_version,
                });
            }
        }
        let Some(fetched) = checked.fetched else {
            return Err(ContentError::failed(format!(
                "{} changed while this update was fetching; the next update installs the release",
                self.path.display()
            )));
        };
        if version.is_none()
            && let Some(active_version) =
                active_version.filter(|active| fetched.rules.version() <= *active)
        {
            self.persist_refresh(&pointer, active.as_ref(), &datastore, &fetched.metadata)?;
            return Ok(UpdateOutcome::UpToDate {
                version: active_version,
            });
        }

        let install = Install {
            rules_version: fetched.rules.version(),
            sha256: sha256_hex(fetched.text.as_bytes()),
            metadata: fetched.metadata,
        };
        self.write_new(&staging.path().join(RULES), fetched.text.as_bytes())?;
        self.write_new(&staging.path().join(INSTALL), &to_json(&install)?)?;
        // The exclusive lock keeps every other writer out from here on.
        drop(busy);
        let _ = std::fs::remove_file(&busy_path);
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
            fsync_dir(staging.path())?;
        }
        observer(Step::ContentStaged);

        let next = self.highest_generation()?.checked_add(1).ok_or_else(|| {
            ContentError::failed(format!(
                "{} has no generation number left",
                self.path.display()
            ))
        })?;
        let generation = format!("gen-{next}");
        let target = self.path.join(&generation);
        let staging = staging.keep();
        if let Err(e) = std::fs::rename(&staging, &target) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(ContentError::io("cannot move into place", &target, e));
        }
        self.sync_dir(&self.path)?;
        observer(Step::GenerationRenamed);

        let new_pointer = Pointer {
            active: Some(generation),
            last_known_good: active.map(|(generation, _)| generation),
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

    /// After a successful check that installs nothing, keeps what TUF now trusts (TUF 5.4.5,
    /// 5.5.7): the refreshed client metadata replaces the active generation's copy, file by
    /// file and atomically, and the pointer's record of the highest versions is raised.
    fn persist_refresh(
        &self,
        pointer: &Pointer,
        active: Option<&(String, Install)>,
        datastore: &Path,
        versions: &MetadataVersions,
    ) -> Result<(), ContentError> {
        if let Some((generation, _)) = active {
            let trusted = self.path.join(generation).join(TUF_DIR);
            std::fs::create_dir_all(&trusted)
                .map_err(|e| ContentError::io("cannot create", &trusted, e))?;
            for entry in std::fs::read_dir(datastore)
                .map_err(|e| ContentError::io("cannot list", datastore, e))?
            {
                let entry = entry.map_err(|e| ContentError::io("cannot list", datastore, e))?;
                let bytes = read_regular(&entry.path(), MAX_STATE_FILE_BYTES)?;
                let dest = trusted.join(entry.file_name());
                if read_regular(&dest, MAX_STATE_FILE_BYTES).is_ok_and(|old| old == bytes) {
                    continue;
                }
                fsense_safefs::write_atomic(&dest, &bytes, Visibility::Private)
                    .map_err(safefs_error)?;
            }
        }
        let seen = pointer.seen.max_each(versions);
        if seen != pointer.seen {
            let new_pointer = Pointer {
                seen,
                ..pointer.clone()
            };
            self.commit(&new_pointer, &mut |_| {})?;
        }
        Ok(())
    }
}

/// The refusal when `versions` is older than what `pointer` records as trusted.
fn older_than_seen(versions: &MetadataVersions, pointer: &Pointer) -> Option<ContentError> {
    versions
        .older_role_than(&pointer.seen)
        .map(|(role, new, old)| {
            ContentError::refused(format!(
                "repository {role} metadata version {new} is older than version {old} already trusted (rollback attack?)"
            ))
        })
}

/// Runs `work` until it ends, `deadline` passes, or `stop` is set; the last two are errors that
/// name `repo`.
async fn bounded<T>(
    work: impl std::future::Future<Output = T>,
    deadline: Option<Duration>,
    stop: &Stop,
    repo: &RepoLocation,
) -> Result<T, ContentError> {
    use futures::future::{Either, select};
    let stopped = async {
        while !stop.is_stopped() {
            tokio::time::sleep(STOP_POLL).await;
        }
    };
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep(deadline).await,
            None => std::future::pending().await,
        }
    };
    let (work, stopped, expired) = (
        std::pin::pin!(work),
        std::pin::pin!(stopped),
        std::pin::pin!(expired),
    );
    let interrupt = select(stopped, expired);
    match select(work, interrupt).await {
        Either::Left((done, _)) => Ok(done),
        Either::Right((Either::Left(_), _)) => {
            Err(ContentError::failed(format!("update from {repo} stopped")))
        }
        Either::Right((Either::Right(_), _)) => Err(ContentError::failed(format!(
            "update from {repo} timed out: not done within the {} s deadline",
            deadline.unwrap_or_default().as_secs_f64()
        ))),
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

/// Copies the regular files of `from` (none if it does not exist) into the new directory `to`;
/// anything else there (a link, a FIFO) is refused.
fn copy_dir_files(from: &Path, to: &Path) -> Result<(), ContentError> {
    use std::io::Write;
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ContentError::io("cannot list", from, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ContentError::io("cannot list", from, e))?;
        let bytes = read_regular(&entry.path(), MAX_STATE_FILE_BYTES)?;
        let dest = to.join(entry.file_name());
        fsense_safefs::create_new_private(&dest)
            .map_err(safefs_error)?
            .write_all(&bytes)
            .map_err(|e| ContentError::io("cannot write", &dest, e))?;
    }
    Ok(())
}
