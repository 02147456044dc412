//! Process enrichment: image name and user of the process behind an event.
//!
//! A pid alone does not name a process: pids are reused. Records carry the process creation
//! time too, and the cache is keyed by (pid, creation time). A live lookup only answers when the
//! process that has the pid *now* was created at exactly the record's time, so a reused pid is
//! reported as unknown rather than as the wrong program.

use std::collections::HashMap;
use std::sync::Arc;

/// What we know about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Image file name (`word.exe`, `bash`).
    pub name: String,
    /// Account name (`DOMAIN\user`, `root`).
    pub user: Option<String>,
    /// Account id (SID string on Windows, numeric uid on Linux).
    pub uid: Option<String>,
}

/// Looks a process up on this machine.
pub trait ProcessLookup: Send {
    /// The process with this pid, if it exists and was created at `create_time` (FILETIME ticks).
    fn lookup(&mut self, pid: u32, create_time: u64) -> Option<ProcessInfo>;
}

/// No lookups: for events that did not happen on this machine (simulator, replays).
pub struct Offline;

impl ProcessLookup for Offline {
    fn lookup(&mut self, _pid: u32, _create_time: u64) -> Option<ProcessInfo> {
        None
    }
}

/// The lookup for processes on this machine.
pub fn live() -> Box<dyn ProcessLookup> {
    #[cfg(target_os = "linux")]
    {
        Box::new(crate::procfs::ProcLookup::new())
    }
    #[cfg(windows)]
    {
        Box::new(crate::ffi::windows::WinProcessLookup)
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
}

impl ProcessCache {
    pub fn new(lookup: Box<dyn ProcessLookup>, capacity: usize) -> Self {
        Self {
            lookup,
            entries: HashMap::new(),
            capacity: capacity.max(1),
            hits: 0,
            misses: 0,
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
        let found = self.lookup.lookup(pid, create_time).map(Arc::new);
        self.entries.insert((pid, create_time), found.clone());
        found
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn misses(&self) -> u64 {
        self.misses
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
}
