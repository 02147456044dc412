//! Live content: while a sensor runs, a background checker installs newer releases into the
//! state directory and hands their compiled rules to the pipeline, which swaps them in between
//! two events.
//!
//! The checker does everything slow (fetch, TUF verification, the atomic state-directory
//! switch, loading and compiling the installed content) on its own thread. Only a complete,
//! compiled rule set crosses to the pipeline, through a [`Handoff`]: the pipeline pays one
//! atomic load per event, and takes the lock only on the event after a new set was published.
//! An event is therefore evaluated entirely against one rule set, old or new, never a mix. A
//! release that fails to verify or compile is refused: the running rules stay, and stderr says
//! so in one line (once per distinct failure, not at every check).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A one-slot mailbox: the newest value published wins, and the reader learns of it through a
/// generation counter it can poll with one atomic load.
pub struct Handoff<T> {
    generation: AtomicU64,
    pending: Mutex<Option<T>>,
}

impl<T> Handoff<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            generation: AtomicU64::new(0),
            pending: Mutex::new(None),
        })
    }

    /// Makes `value` the one the reader takes next (replacing one it has not taken yet).
    pub fn publish(&self, value: T) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        // Release: a reader that sees the new generation also sees the value stored above.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The reader's end.
    pub fn reader(self: &Arc<Self>) -> HandoffReader<T> {
        HandoffReader {
            shared: self.clone(),
            seen: 0,
        }
    }
}

/// The reading end of a [`Handoff`].
pub struct HandoffReader<T> {
    shared: Arc<Handoff<T>>,
    seen: u64,
}

impl<T> HandoffReader<T> {
    /// The value published since the last call, if any. One atomic load when there is none.
    #[inline]
    pub fn take_new(&mut self) -> Option<T> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.seen {
            return None;
        }
        self.seen = generation;
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// What the checker has done, for the summary JSON and the health reply.
#[derive(Debug, Default)]
pub struct UpdateCounters {
    /// Releases installed and handed to the pipeline.
    pub installed: AtomicU64,
    /// Checks that ended in a refusal or an error (the running rules stayed).
    pub failures: AtomicU64,
}

/// Where live content comes from (`--content-repo`, `--content-root`, `--state-dir`,
/// `--update-interval-s`).
#[derive(Debug, Clone)]
pub struct LiveContentConfig {
    /// A repository directory, or an `http://` / `https://` URL.
    pub repo: String,
    /// The trusted root metadata.
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub interval: Duration,
}

/// The pipeline's end of live content: new rule sets and the checker's counters.
pub struct LiveRules {
    pub rules: HandoffReader<crate::pipeline::content::Rules>,
    pub counters: Arc<UpdateCounters>,
    /// Stops the checker when the pipeline goes away.
    _checker: Checker,
}

/// The background checker; dropping it stops the thread and waits for a check in progress.
#[cfg_attr(
    not(all(feature = "content", not(target_env = "msvc"))),
    allow(dead_code)
)]
struct Checker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread's wait with `Disconnected`.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The counters as summary fields: `content_updates`, `content_update_failures`.
pub fn counter_values(counters: &UpdateCounters) -> (u64, u64) {
    (
        counters.installed.load(Ordering::Relaxed),
        counters.failures.load(Ordering::Relaxed),
    )
}

#[cfg(all(feature = "content", not(target_env = "msvc")))]
mod checker {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{self, RecvTimeoutError};

    use fsense_content::state::{StateDir, UpdateOutcome};

    use super::{Checker, Handoff, LiveContentConfig, LiveRules, UpdateCounters};
    use crate::pipeline::content::Rules;

    /// Installs the newest release once (so the sensor starts with it), loads the active
    /// content, and starts the checker. Returns the rules to start with (`None`: nothing is
    /// installed yet; the first release that installs is picked up live).
    pub fn start(config: LiveContentConfig) -> Result<(Option<Rules>, LiveRules), String> {
        let state = StateDir::open(&config.state_dir)
            .map_err(|e| format!("state directory {}: {e}", config.state_dir.display()))?;
        let counters = Arc::new(UpdateCounters::default());
        let mut last_failure = None;
        if let Err(e) = install_newest(&state, &config) {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            let active = state.active_version().ok().flatten();
            report_failure(&mut last_failure, &e, active);
        }
        let rules = match state.active_version() {
            Ok(Some(_)) => {
                let rules = Rules::from_state_dir(&config.state_dir)?;
                eprintln!(
                    "fsense: content version {} active; following {} every {} s",
                    rules.version(),
                    config.repo,
                    config.interval.as_secs()
                );
                Some(rules)
            }
            Ok(None) => {
                eprintln!(
                    "fsense: no content installed in {} yet; running without rules until a release installs",
                    config.state_dir.display()
                );
                None
            }
            Err(e) => return Err(format!("content in {}: {e}", config.state_dir.display())),
        };
        let handoff = Handoff::new();
        let (stop, stopped) = mpsc::channel::<()>();
        let mut running = rules.as_ref().map(Rules::version);
        let thread = {
            let (handoff, counters) = (handoff.clone(), counters.clone());
            std::thread::Builder::new()
                .name("fsense-content".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(config.interval)
                    {
                        check(
                            &state,
                            &config,
                            &handoff,
                            &counters,
                            &mut running,
                            &mut last_failure,
                        );
                    }
                })
                .map_err(|e| format!("cannot start the content checker: {e}"))?
        };
        Ok((
            rules,
            LiveRules {
                rules: handoff.reader(),
                counters,
                _checker: Checker {
                    stop: Some(stop),
                    thread: Some(thread),
                },
            },
        ))
    }

    /// One check: install a newer release if there is one, load it, hand it over.
    fn check(
        state: &StateDir,
        config: &LiveContentConfig,
        handoff: &Handoff<Rules>,
        counters: &UpdateCounters,
        running: &mut Option<u64>,
        last_failure: &mut Option<String>,
    ) {
        let installed = match install_newest(state, config) {
            Ok(UpdateOutcome::Installed { to, .. }) => to,
            Ok(_) => return,
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                report_failure(last_failure, &e, *running);
                return;
            }
        };
        match Rules::from_state_dir(&config.state_dir) {
            Ok(rules) => {
                eprintln!(
                    "fsense: content version {} active (was {})",
                    rules.version(),
                    version_text(*running)
                );
                *running = Some(rules.version());
                *last_failure = None;
                handoff.publish(rules);
                counters.installed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Installed but not loadable: put the state directory back on what runs, so a
                // restart does not start with content this process refused.
                let _ = state.rollback();
                counters.failures.fetch_add(1, Ordering::Relaxed);
                report_failure(
                    last_failure,
                    &format!("release {installed} does not load: {e}"),
                    *running,
                );
            }
        }
    }

    /// The one place that knows how a repository location is fetched from.
    fn install_newest(
        state: &StateDir,
        config: &LiveContentConfig,
    ) -> Result<UpdateOutcome, String> {
        // A directory or an http(s):// URL, with the content crate's bounded timeouts and retries.
        let repo = fsense_content::tuf::RepoLocation::parse(
            std::ffi::OsStr::new(&config.repo),
            &fsense_content::http::HttpSettings::default(),
        );
        state
            .update_from(&repo, &config.root)
            .map_err(|e| e.to_string())
    }

    fn report_failure(last: &mut Option<String>, message: &str, running: Option<u64>) {
        if last.as_deref() != Some(message) {
            eprintln!(
                "fsense: content update refused: {}; keeping rules version {}",
                message.replace(['\n', '\r'], " "),
                version_text(running)
            );
            *last = Some(message.to_owned());
        }
    }

    fn version_text(v: Option<u64>) -> String {
        v.map_or_else(|| "none".to_owned(), |v| v.to_string())
    }
}

/// Starts live content (see [`checker::start`]); builds without content support refuse.
pub fn start(
    config: LiveContentConfig,
) -> Result<(Option<crate::pipeline::content::Rules>, LiveRules), String> {
    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    {
        checker::start(config)
    }
    #[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
    {
        Err(format!(
            "cannot follow {}: this build has no content support",
            config.repo
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sees_each_publication_once_and_only_the_newest() {
        let handoff = Handoff::new();
        let mut reader = handoff.reader();
        assert_eq!(reader.take_new(), None);
        handoff.publish(1);
        assert_eq!(reader.take_new(), Some(1));
        assert_eq!(reader.take_new(), None);
        handoff.publish(2);
        handoff.publish(3);
        assert_eq!(reader.take_new(), Some(3));
        assert_eq!(reader.take_new(), None);
    }

    #[test]
    fn a_value_published_from_another_thread_arrives_whole() {
        let handoff = Handoff::new();
        let mut reader = handoff.reader();
        let writer = handoff.clone();
        std::thread::spawn(move || {
            for i in 1..=100u64 {
                writer.publish(vec![i; 64]);
            }
        })
        .join()
        .unwrap();
        let got = reader.take_new().unwrap();
        assert_eq!(got, vec![100; 64]);
    }
}
