//! Live reload for a running consumer: every interval, the same `update` as
//! `fsense content update` (TUF-verified, atomic state-directory switch), and a newly compiled
//! rule set handed to the caller only when a new release was installed and loaded. A release that
//! fails to verify, install or compile is reported and the caller keeps its running rules.
//!
//! The caller swaps its engine between two events with what [`Reloader::poll`] returns, so no
//! event is evaluated against a half-loaded rule set.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ContentError;
use crate::rules::RuleSet;
use crate::state::{StateDir, UpdateOutcome};
use crate::tuf::RepoLocation;

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

/// Checks a repository every `interval` and installs newer releases into a state directory.
#[derive(Debug)]
pub struct Reloader {
    state: StateDir,
    repo: RepoLocation,
    root: PathBuf,
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
            state: StateDir::open(state_dir)?,
            repo,
            root: root.to_owned(),
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
        match self.state.update_from(&self.repo, &self.root) {
            Ok(UpdateOutcome::Installed { .. }) => match self.state.load_active() {
                Ok(rules) => Reload::New(rules),
                Err(e) => Reload::Failed(e),
            },
            Ok(UpdateOutcome::UpToDate { .. } | UpdateOutcome::SkippedRolledBack { .. }) => {
                Reload::Unchanged
            }
            Err(e) => Reload::Failed(e),
        }
    }
}
