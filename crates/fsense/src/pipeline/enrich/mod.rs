//! Process enrichment: image name and user of the process behind an event.
//!
//! A pid alone does not name a process: pids are reused. Records carry the process creation
//! time too, and the cache is keyed by (pid, creation time). A live lookup only answers when the
//! process that has the pid *now* was created at exactly the record's time, so a reused pid is
//! reported as unknown rather than as the wrong program.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};

pub mod lookup;
#[cfg(target_os = "linux")]
pub mod procfs;

pub use lookup::{Answer, Offline, ProcessInfo, ProcessLookup};

/// The lookup for processes on this machine.
pub fn live() -> Box<dyn ProcessLookup> {
    #[cfg(target_os = "linux")]
    {
        Box::new(crate::pipeline::enrich::procfs::ProcLookup::new())
    }
    #[cfg(windows)]
    {
        // Account lookups can take seconds on a domain-joined machine: never on the receive path.
        Box::new(Background::new(
            || Box::new(crate::ffi::windows::WinProcessLookup),
            BACKGROUND_WORKERS,
        ))
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        Box::new(Offline)
    }
}

/// Cache of lookups by (pid, creation time), negative answers included.
pub struct ProcessCache {
    lookup: Box<dyn ProcessLookup>,
    entries: HashMap<(u32, u64), Option<Arc<ProcessInfo>>>,
    capacity: usize,
    hits: u64,
    misses: u64,
    pending: u64,
}

impl ProcessCache {
    pub fn new(lookup: Box<dyn ProcessLookup>, capacity: usize) -> Self {
        Self {
            lookup,
            entries: HashMap::new(),
            capacity: capacity.max(1),
            hits: 0,
            misses: 0,
            pending: 0,
        }
    }

    /// The process behind an event. A creation time of 0 means "unknown": never looked up.
    pub fn get(&mut self, pid: u32, create_time: u64) -> Option<Arc<ProcessInfo>> {
        if create_time == 0 {
            return None;
        }
        if let Some(hit) = self.entries.get(&(pid, create_time)) {
            self.hits += 1;
            return hit.clone();
        }
        self.misses += 1;
        if self.entries.len() >= self.capacity {
            // Bounded memory: start over rather than track recency; misses are cheap enough.
            self.entries.clear();
        }
        let found = match self.lookup.answer(pid, create_time) {
            Answer::Known(found) => found.map(Arc::new),
            Answer::Pending => {
                self.pending += 1;
                return None;
            }
        };
        self.entries.insert((pid, create_time), found.clone());
        found
    }

    /// Events that went out without their process because its lookup was still running.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn misses(&self) -> u64 {
        self.misses
    }
}

/// Lookup threads behind [`Background`] by default.
pub const BACKGROUND_WORKERS: usize = 4;
/// Lookups queued or running at most; more wait for a later event of their process.
const BACKGROUND_QUEUE: usize = 256;
/// Answers kept until the cache asks for them again, at most.
const BACKGROUND_ANSWERS: usize = 4096;

type Key = (u32, u64);

#[derive(Default)]
struct BackgroundState {
    /// Asked and not answered yet.
    asked: HashSet<Key>,
    /// Answered, not yet taken by the cache.
    answered: HashMap<Key, Option<ProcessInfo>>,
}

fn lock(m: &Mutex<BackgroundState>) -> MutexGuard<'_, BackgroundState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a slow lookup on its own threads so that asking never waits: the first event of a
/// process goes out without its name while the lookup runs, later ones have it. The queue and
/// the answers kept are bounded; a lookup that does not fit is asked again by a later event.
pub struct Background {
    state: Arc<Mutex<BackgroundState>>,
    requests: SyncSender<Key>,
}

impl Background {
    /// `workers` threads, each with its own lookup from `make`.
    pub fn new(make: impl Fn() -> Box<dyn ProcessLookup>, workers: usize) -> Self {
        let (requests, queue) = sync_channel::<Key>(BACKGROUND_QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let state = Arc::new(Mutex::new(BackgroundState::default()));
        for _ in 0..workers.max(1) {
            let (queue, state, mut lookup) = (queue.clone(), state.clone(), make());
            std::thread::spawn(move || serve(&queue, &state, lookup.as_mut()));
        }
        Self { state, requests }
    }
}

/// A lookup thread: answers requests until the [`Background`] is dropped.
fn serve(
    queue: &Mutex<Receiver<Key>>,
    state: &Mutex<BackgroundState>,
    lookup: &mut dyn ProcessLookup,
) {
    loop {
        let next = queue.lock().map(|q| q.recv());
        let Ok(Ok((pid, create_time))) = next else {
            return;
        };
        let found = lookup.lookup(pid, create_time);
        let mut s = lock(state);
        s.asked.remove(&(pid, create_time));
        if s.answered.len() < BACKGROUND_ANSWERS {
            s.answered.insert((pid, create_time), found);
        }
    }
}

impl ProcessLookup for Background {
    fn lookup(&mut self, pid: u32, create_time: u64) -> Option<ProcessInfo> {
        match self.answer(pid, create_time) {
            Answer::Known(found) => found,
            Answer::Pending => None,
        }
    }

    fn answer(&mut self, pid: u32, create_time: u64) -> Answer {
        let key = (pid, create_time);
        let mut s = lock(&self.state);
        if let Some(found) = s.answered.remove(&key) {
            return Answer::Known(found);
        }
        if !s.asked.contains(&key) {
            match self.requests.try_send(key) {
                Ok(()) => {
                    s.asked.insert(key);
                }
                Err(TrySendError::Full(_)) => {}
                // No lookup thread left: nothing will ever be known.
                Err(TrySendError::Disconnected(_)) => return Answer::Known(None),
            }
        }
        Answer::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine where pid 10 was first "old" (created at 1), then reused by "new" (created at 2).
    struct Reused {
        calls: u32,
    }

    impl ProcessLookup for Reused {
        fn lookup(&mut self, pid: u32, create_time: u64) -> Option<ProcessInfo> {
            self.calls += 1;
            let name = match (pid, create_time) {
                (10, 1) => "old",
                (10, 2) => "new",
                _ => return None,
            };
            Some(ProcessInfo {
                name: name.into(),
                user: None,
                uid: None,
            })
        }
    }

    #[test]
    fn a_reused_pid_is_never_the_old_process() {
        let mut cache = ProcessCache::new(Box::new(Reused { calls: 0 }), 16);
        assert_eq!(cache.get(10, 1).unwrap().name, "old");
        assert_eq!(cache.get(10, 2).unwrap().name, "new");
        assert_eq!(cache.get(10, 1).unwrap().name, "old");
        assert_eq!(cache.get(10, 3), None);
        assert_eq!(cache.get(10, 0), None);
        assert_eq!((cache.hits(), cache.misses()), (1, 3));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = ProcessCache::new(Box::new(Reused { calls: 0 }), 2);
        for t in 1..100 {
            cache.get(11, t);
        }
        assert!(cache.entries.len() <= 2);
    }

    /// A lookup that takes `delay` per call.
    struct Slow(std::time::Duration);

    impl ProcessLookup for Slow {
        fn lookup(&mut self, pid: u32, _create_time: u64) -> Option<ProcessInfo> {
            std::thread::sleep(self.0);
            Some(ProcessInfo {
                name: format!("p{pid}"),
                user: None,
                uid: None,
            })
        }
    }

    #[test]
    fn a_slow_lookup_never_makes_the_cache_wait_and_its_answer_arrives_later() {
        let delay = std::time::Duration::from_secs(2);
        let background = Background::new(move || Box::new(Slow(delay)), 2);
        let mut cache = ProcessCache::new(Box::new(background), 16);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(cache.get(5, 1), None);
        }
        assert!(started.elapsed() < delay, "the cache waited for the lookup");
        assert_eq!(cache.pending(), 100);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            if let Some(found) = cache.get(5, 1) {
                break found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the answer never arrived"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(found.name, "p5");
        // Cached from now on.
        let misses = cache.misses();
        assert_eq!(cache.get(5, 1).unwrap().name, "p5");
        assert_eq!(cache.misses(), misses);
    }
}
