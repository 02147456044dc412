//! Live content for a running consumer: [`Follower`] follows a repository into a state directory
//! and hands over each new, compiled rule set. It is the one call a consumer needs: the update
//! (TUF-verified, atomic state-directory switch, see [`crate::update`]), loading and compiling
//! what was installed, and putting the state directory back when that fails, all happen here.
//!
//! A release that fails to verify, install or compile is reported and the caller keeps its
//! running rules. The caller swaps its engine between two events with what [`Follower::check`]
//! returns, so no event is evaluated against a half-loaded rule set. [`Follower::stopper`] gives
//! a handle that ends a check in progress within about 50 ms (a consumer stopping while a slow
//! repository is being fetched).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ContentError;
pub use crate::fleet::protocol::Directive;
use crate::http::HttpSettings;
use crate::rules::RuleSet;
use crate::state::{StateDir, UpdateOutcome};
use crate::tuf::RepoLocation;
use crate::update::Stop;

/// What one check did.
#[derive(Debug)]
pub enum Reload {
    /// Not time to check yet.
    NotDue,
    /// Checked; nothing new (or the newest release was rolled back here).
    Unchanged,
    /// A newer release was installed and compiled: swap to it.
    New(RuleSet),
    /// The check failed; the running rules stay.
    Failed(ContentError),
}

/// What a consumer starts with.
#[derive(Debug)]
pub struct Started {
    /// The active content after the first check (`None`: nothing installed yet).
    pub rules: Option<RuleSet>,
    /// Why the first check installed nothing new, if it failed (the active content, if any,
    /// still starts).
    pub failure: Option<ContentError>,
}

/// Follows a repository (a directory or an `http(s)://` URL) into a state directory.
#[derive(Debug)]
pub struct Follower {
    state: StateDir,
    repo: RepoLocation,
    root: PathBuf,
    stop: Stop,
}

impl Follower {
    /// `repo` as given on a command line (`--content-repo`); `http` holds the timeouts, the
    /// whole-update deadline and the private CA (`--content-ca-file`) for web repositories.
    pub fn new(state_dir: &Path, repo: &OsStr, root: &Path, http: &HttpSettings) -> Self {
        Self::at(state_dir, RepoLocation::parse(repo, http), root)
    }

    /// [`Follower::new`] for a parsed location.
    pub fn at(state_dir: &Path, repo: RepoLocation, root: &Path) -> Self {
        Self {
            state: StateDir {
                path: state_dir.to_owned(),
                durable: true,
            },
            repo,
            root: root.to_owned(),
            stop: Stop::new(),
        }
    }

    pub fn repo(&self) -> &RepoLocation {
        &self.repo
    }

    /// A handle that stops this follower: a check in progress ends at once with
    /// [`Reload::Failed`], later ones do nothing.
    pub fn stopper(&self) -> Stop {
        self.stop.clone()
    }

    /// The content active in the state directory now, without looking at the repository
    /// (`None`: nothing installed, or no state directory yet).
    pub fn active(&self) -> Result<Option<RuleSet>, ContentError> {
        if std::fs::symlink_metadata(self.state.path())
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(None);
        }
        match self.state.active_version()? {
            Some(_) => Ok(Some(self.state.load_active()?)),
            None => Ok(None),
        }
    }

    /// Installs the newest release if there is one, then loads the active content. An error
    /// only when active content exists but does not load.
    pub fn start(&self) -> Result<Started, ContentError> {
        let failure = self.update().err();
        let rules = match self.state.active_version()? {
            Some(_) => Some(self.state.load_active()?),
            None => None,
        };
        Ok(Started { rules, failure })
    }

    /// One check: a newer release installed and loaded is [`Reload::New`]. One that installs but
    /// does not load is rolled back, so that a restart does not start with content this process
    /// refused.
    pub fn check(&self) -> Reload {
        if self.stop.is_stopped() {
            return Reload::Unchanged;
        }
        let installed = match self.update() {
            Ok(UpdateOutcome::Installed { to, .. }) => to,
            Ok(UpdateOutcome::UpToDate { .. } | UpdateOutcome::SkippedRolledBack { .. }) => {
                return Reload::Unchanged;
            }
            Err(e) => return Reload::Failed(e),
        };
        self.load_installed(installed)
    }

    /// One check under a fleet rollout's [`Directive`] (issue 29): install nothing new
    /// ([`Directive::Hold`]), install exactly the admitted release, still verified through TUF
    /// ([`Directive::Install`]), or make the last known good active if the halted release runs
    /// here ([`Directive::RollBack`]). The repository is not read unless a release is to be
    /// installed.
    pub fn follow(&self, directive: Directive) -> Reload {
        if self.stop.is_stopped() {
            return Reload::Unchanged;
        }
        let active = match self.active_version() {
            Ok(active) => active,
            Err(e) => return Reload::Failed(e),
        };
        match directive {
            Directive::Hold => Reload::Unchanged,
            Directive::Install(release) if active.is_some_and(|a| a >= release) => {
                Reload::Unchanged
            }
            Directive::Install(release) => {
                match self.state.update_stoppable(
                    &self.repo,
                    &self.root,
                    Some(release),
                    &self.stop,
                    &mut |_| {},
                ) {
                    Ok(_) => self.load_installed(release),
                    Err(e) => Reload::Failed(e),
                }
            }
            Directive::RollBack(release) if active == Some(release) => {
                match self.state.rollback() {
                    Ok(done) if done.to.is_some() => match self.state.load_active() {
                        Ok(rules) => Reload::New(rules),
                        Err(e) => Reload::Failed(e),
                    },
                    Ok(_) => Reload::Failed(ContentError::failed(format!(
                        "rolled back release {release}, but no earlier content was installed here"
                    ))),
                    Err(e) => Reload::Failed(e),
                }
            }
            Directive::RollBack(_) => Reload::Unchanged,
        }
    }

    fn active_version(&self) -> Result<Option<u64>, ContentError> {
        if std::fs::symlink_metadata(self.state.path())
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(None);
        }
        self.state.active_version()
    }

    fn load_installed(&self, installed: u64) -> Reload {
        match self.state.load_active() {
            Ok(rules) => Reload::New(rules),
            Err(e) => {
                let _ = self.state.rollback();
                Reload::Failed(e.context(&format!("release {installed} does not load")))
            }
        }
    }

    fn update(&self) -> Result<UpdateOutcome, ContentError> {
        self.state
            .update_stoppable(&self.repo, &self.root, None, &self.stop, &mut |_| {})
    }
}

/// A [`Follower`] checked every `interval` by a caller that polls.
#[derive(Debug)]
pub struct Reloader {
    follower: Follower,
    interval: Duration,
    next_check: Option<Instant>,
}

impl Reloader {
    /// The first [`Reloader::poll`] checks at once.
    pub fn new(
        state_dir: &Path,
        repo: RepoLocation,
        root: &Path,
        interval: Duration,
    ) -> Result<Self, ContentError> {
        Ok(Self {
            follower: Follower::at(state_dir, repo, root),
            interval,
            next_check: None,
        })
    }

    /// Checks if the interval has passed since the last check (measured from `now`).
    pub fn poll(&mut self, now: Instant) -> Reload {
        if self.next_check.is_some_and(|next| now < next) {
            return Reload::NotDue;
        }
        self.next_check = Some(now + self.interval);
        self.follower.check()
    }
}
