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
    /// The rules version running plus one (0: none), for the fleet's health documents.
    pub active: AtomicU64,
}

impl UpdateCounters {
    pub fn active_version(&self) -> Option<u64> {
        self.active.load(Ordering::Relaxed).checked_sub(1)
    }

    #[cfg_attr(
        not(all(feature = "content", not(target_env = "msvc"))),
        allow(dead_code)
    )]
    fn set_active(&self, version: Option<u64>) {
        self.active.store(
            version.map_or(0, |v| v.saturating_add(1)),
            Ordering::Relaxed,
        );
    }
}

/// What a fleet rollout tells the checker (issue 29); mirrors the content crate's `Directive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Install nothing new (also: no rollout record yet).
    Hold,
    /// Install this release, verified through TUF, unless it or a newer one runs.
    Install(u64),
    /// If this release runs, make the last known good active.
    RollBack(u64),
}

/// The rollout's say over live content: with `--fleet`, the checker installs only what the
/// newest rollout record orders, instead of the repository's newest release.
#[derive(Debug)]
pub struct FleetGate {
    order: Mutex<Order>,
}

impl Default for FleetGate {
    fn default() -> Self {
        Self {
            order: Mutex::new(Order::Hold),
        }
    }
}

impl FleetGate {
    pub fn set(&self, order: Order) {
        *self.order.lock().unwrap_or_else(PoisonError::into_inner) = order;
    }

    pub fn get(&self) -> Order {
        *self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pipeline's counters the fleet's health documents report, cumulative since start.
#[derive(Debug, Default)]
pub struct FleetHealth {
    pub events: AtomicU64,
    pub matches: AtomicU64,
    pub eval_ns: AtomicU64,
    pub eval_errors: AtomicU64,
    pub drops: AtomicU64,
}

impl FleetHealth {
    /// One event the rules evaluated in `eval_ns`; `dropped`: events lost so far.
    #[inline]
    pub fn observe(&self, eval_ns: u64, matched: bool, dropped: u64) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.eval_ns.fetch_add(eval_ns, Ordering::Relaxed);
        if matched {
            self.matches.fetch_add(1, Ordering::Relaxed);
        }
        self.drops.fetch_max(dropped, Ordering::Relaxed);
    }
}

/// Where live content comes from (`--content-repo`, `--content-root`, `--content-ca-file`,
/// `--state-dir`, `--update-interval-s`).
#[derive(Debug, Clone)]
pub struct LiveContentConfig {
    /// A repository directory, or an `http://` / `https://` URL.
    pub repo: String,
    /// The trusted root metadata.
    pub root: PathBuf,
    /// PEM certificates of a private CA for an `https://` repository.
    pub ca_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub interval: Duration,
    /// `--fleet`: install only what the rollout orders.
    pub gate: Option<Arc<FleetGate>>,
}

/// The pipeline's end of live content: new rule sets and the checker's counters.
pub struct LiveRules {
    pub rules: HandoffReader<crate::pipeline::content::Rules>,
    pub counters: Arc<UpdateCounters>,
    /// What the pipeline reports for the fleet's health documents.
    pub health: Arc<FleetHealth>,
    /// Stops the checker when the pipeline goes away.
    _checker: Checker,
    /// The fleet agent (`--fleet`), stopped with the checker.
    _agent: Option<Box<dyn Send>>,
}

impl LiveRules {
    /// Keeps `agent` running as long as these live rules.
    pub fn attach_agent(&mut self, agent: Box<dyn Send>) {
        self._agent = Some(agent);
    }
}

/// The background checker; dropping it stops the thread, ending a check in progress at once
/// (a slow repository no longer holds `watch` up when it stops).
#[cfg_attr(
    not(all(feature = "content", not(target_env = "msvc"))),
    allow(dead_code)
)]
struct Checker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    /// Ends the content crate's fetch in progress.
    cancel: Box<dyn Fn() + Send>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        (self.cancel)();
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
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::sync::{Arc, Condvar, Mutex, PoisonError};
    use std::time::Duration;

    use fsense_content::http::HttpSettings;
    use fsense_content::reload::{Directive, Follower, Reload};

    use super::{
        Checker, FleetGate, FleetHealth, Handoff, LiveContentConfig, LiveRules, Order,
        UpdateCounters,
    };
    use crate::pipeline::content::Rules;

    /// How long start-up waits for the first check (so that a sensor starts with the newest
    /// release); a slower repository is followed in the background and the sensor starts with
    /// the content already active.
    const FIRST_CHECK_WAIT: Duration = Duration::from_secs(10);
    /// How often a fleet-gated checker looks at the rollout's order.
    const GATE_POLL: Duration = Duration::from_millis(100);

    /// The check a fleet-gated checker makes now: the order when it changed, or again after
    /// `interval` when the last attempt failed; `NotDue` otherwise.
    fn gated_check(
        follower: &Follower,
        gate: &FleetGate,
        last: &mut Option<(Order, bool, std::time::Instant)>,
        interval: Duration,
    ) -> Reload {
        let order = gate.get();
        let due = match last {
            None => true,
            Some((applied, failed, at)) => {
                *applied != order || (*failed && at.elapsed() >= interval)
            }
        };
        if !due {
            return Reload::NotDue;
        }
        let reload = follower.follow(match order {
            Order::Hold => Directive::Hold,
            Order::Install(v) => Directive::Install(v),
            Order::RollBack(v) => Directive::RollBack(v),
        });
        *last = Some((
            order,
            matches!(reload, Reload::Failed(_)),
            std::time::Instant::now(),
        ));
        reload
    }

    /// The first check's result, handed from the checker to `start` if it is still waiting.
    enum First {
        Pending,
        Done(Option<Box<Rules>>),
        Abandoned,
    }

    type FirstSlot = Arc<(Mutex<First>, Condvar)>;

    /// Gives `rules` to a `start` still waiting; returns them when it no longer waits (they are
    /// then handed over live).
    fn offer_first(slot: &FirstSlot, rules: Option<Rules>) -> Option<Rules> {
        let (lock, woken) = &**slot;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*state, First::Pending) {
            *state = First::Done(rules.map(Box::new));
            woken.notify_all();
            None
        } else {
            rules
        }
    }

    /// Loads the active content, starts the checker, whose first check (at once) installs the
    /// newest release, and waits for that check up to [`FIRST_CHECK_WAIT`]. Returns the rules to
    /// start with (`None`: nothing is installed yet; the first release that installs is picked
    /// up live). Everything about the repository and the state directory is the content crate's
    /// [`Follower`]; no network wait here is longer than the first-check wait.
    pub fn start(config: LiveContentConfig) -> Result<(Option<Rules>, LiveRules), String> {
        let http = HttpSettings {
            ca_file: config.ca_file.clone(),
            ..HttpSettings::default()
        };
        let follower = Follower::new(&config.state_dir, config.repo.as_ref(), &config.root, &http);
        let active = follower
            .active()
            .map_err(|e| format!("content in {}: {e}", config.state_dir.display()))?
            .map(Rules::from_set);
        let counters = Arc::new(UpdateCounters::default());
        counters.set_active(active.as_ref().map(Rules::version));
        let handoff = Handoff::new();
        let first: FirstSlot = Arc::new((Mutex::new(First::Pending), Condvar::new()));
        let (stop, stopped) = mpsc::channel::<()>();
        let cancel = follower.stopper();
        let stopping = follower.stopper();
        let thread = {
            let (handoff, counters, first) = (handoff.clone(), counters.clone(), first.clone());
            let mut running = active.as_ref().map(Rules::version);
            let mut first = Some(first);
            let mut last_failure = None;
            let gate = config.gate.clone();
            let mut gated_last = None;
            let wait = if gate.is_some() {
                GATE_POLL.min(config.interval)
            } else {
                config.interval
            };
            std::thread::Builder::new()
                .name("fsense-content".into())
                .spawn(move || {
                    loop {
                        let reload = match &gate {
                            Some(gate) => {
                                gated_check(&follower, gate, &mut gated_last, config.interval)
                            }
                            None => follower.check(),
                        };
                        let new = match reload {
                            Reload::New(set) => Some(Rules::from_set(set)),
                            Reload::Unchanged | Reload::NotDue => None,
                            // Ended by the stop: not a failure of the repository.
                            Reload::Failed(_) if stopping.is_stopped() => None,
                            Reload::Failed(e) => {
                                counters.failures.fetch_add(1, Ordering::Relaxed);
                                report_failure(&mut last_failure, &e.to_string(), running);
                                None
                            }
                        };
                        let version = new.as_ref().map(Rules::version);
                        let new = match first.take() {
                            Some(slot) => offer_first(&slot, new),
                            None => new,
                        };
                        // (`None` with a version: `start` took them as the rules to start with.)
                        if let Some(rules) = new {
                            eprintln!(
                                "fsense: content version {} active (was {})",
                                rules.version(),
                                version_text(running)
                            );
                            handoff.publish(rules);
                            counters.installed.fetch_add(1, Ordering::Relaxed);
                        }
                        if version.is_some() {
                            running = version;
                            counters.set_active(running);
                            last_failure = None;
                        }
                        if !matches!(stopped.recv_timeout(wait), Err(RecvTimeoutError::Timeout)) {
                            break;
                        }
                    }
                })
                .map_err(|e| format!("cannot start the content checker: {e}"))?
        };
        let checker = Checker {
            stop: Some(stop),
            cancel: Box::new(move || cancel.stop()),
            thread: Some(thread),
        };
        let fresh = {
            let (lock, woken) = &*first;
            let state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let (mut state, _) = woken
                .wait_timeout_while(state, FIRST_CHECK_WAIT, |s| matches!(s, First::Pending))
                .unwrap_or_else(PoisonError::into_inner);
            match std::mem::replace(&mut *state, First::Abandoned) {
                First::Done(rules) => rules.map(|rules| *rules),
                First::Pending | First::Abandoned => None,
            }
        };
        let rules = fresh.or(active);
        counters.set_active(rules.as_ref().map(Rules::version));
        match &rules {
            Some(rules) => eprintln!(
                "fsense: content version {} active; following {} every {} s",
                rules.version(),
                config.repo,
                config.interval.as_secs()
            ),
            None => eprintln!(
                "fsense: no content installed in {} yet; running without rules until a release installs",
                config.state_dir.display()
            ),
        }
        Ok((
            rules,
            LiveRules {
                rules: handoff.reader(),
                counters,
                health: Arc::new(FleetHealth::default()),
                _checker: checker,
                _agent: None,
            },
        ))
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

    /// A repository that accepts connections and never answers once `hang` is set (before,
    /// it closes them at once). Returns its URL.
    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    fn unanswering_repository(hang: Arc<std::sync::atomic::AtomicBool>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                if hang.load(Ordering::Relaxed) {
                    held.push(stream); // never answered
                } // else dropped: the check fails at once
            }
        });
        format!("http://127.0.0.1:{port}/")
    }

    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    fn config(repo: String, dir: &std::path::Path) -> LiveContentConfig {
        LiveContentConfig {
            repo,
            root: fsense_content::tuf::keygen(&dir.join("keys")).unwrap(),
            ca_file: None,
            state_dir: dir.join("state"),
            interval: Duration::from_millis(100),
            gate: None,
        }
    }

    /// Issue 24, N9: `watch` took 87 s to stop while a check waited on a slow repository (the
    /// checker thread was joined mid-fetch). Dropping the live content must return at once.
    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    #[test]
    fn stopping_does_not_wait_for_a_check_against_a_slow_repository() {
        use std::sync::atomic::AtomicBool;
        use std::time::Instant;

        let hang = Arc::new(AtomicBool::new(false));
        let dir = tempfile::tempdir().unwrap();
        let (rules, live) =
            start(config(unanswering_repository(hang.clone()), dir.path())).unwrap();
        assert!(rules.is_none());
        hang.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1000));
        let stopping = Instant::now();
        drop(live);
        let took = stopping.elapsed();
        eprintln!("N9: live content stopped {took:?} after the stop");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    /// N9: a sensor start waits for a repository that never answers only up to the first-check
    /// wait (was: the update's whole deadline, minutes), and then stops at once.
    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    #[test]
    fn a_repository_that_never_answers_delays_the_start_by_the_first_check_wait_at_most() {
        use std::sync::atomic::AtomicBool;
        use std::time::Instant;

        let dir = tempfile::tempdir().unwrap();
        let repo = unanswering_repository(Arc::new(AtomicBool::new(true)));
        let starting = Instant::now();
        let (rules, live) = start(config(repo, dir.path())).unwrap();
        let took = starting.elapsed();
        assert!(rules.is_none());
        assert!(took < Duration::from_secs(12), "{took:?}");
        let stopping = Instant::now();
        drop(live);
        assert!(stopping.elapsed() < Duration::from_secs(2));
        eprintln!("N9: start took {took:?} against a repository that never answers");
    }

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
