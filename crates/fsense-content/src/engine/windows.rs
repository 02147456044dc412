//! Per-key time windows, bounded, for the windowed templates (`write_burst` keyed by process,
//! `rename_burst` by process and new extension, `delete_burst` by process).
//!
//! A window opens at a key's first counted event and lasts `window_ms`. The table holds at most
//! [`MAX_TRACKED_PROCESSES`] windows: a new key always gets one, the window that opened first
//! making room. Expired windows are dropped a few at a time, oldest first, never by a scan.

use std::collections::{HashMap, VecDeque};

/// Most windows one rule keeps (one per process, or per process and extension). When the
/// table is full, the window that opened first is dropped (its events so far are counted in
/// `Engine::untracked_writes` unless it had fired).
pub const MAX_TRACKED_PROCESSES: usize = 65_536;

/// One key's current window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub start_ms: u64,
    /// The events the template counts first (writes, renames).
    pub count: u32,
    /// A second count (`delete_burst`'s deletes).
    pub second: u32,
    pub fired: bool,
}

/// What counting one event did.
pub(crate) struct Recorded {
    /// This event reached the threshold (once per window).
    pub fired: bool,
    /// Events dropped uncounted to make room for this key (a window that had not fired).
    pub lost: u64,
}

/// Entries examined per event to drop expired windows (more than the one an event can add, so
/// the queue drains).
const SWEEP_PER_EVENT: usize = 2;

/// The windows of one rule, with the order in which they opened.
#[derive(Debug, Clone, Default)]
pub(crate) struct Windows {
    pub by_key: HashMap<u64, Window>,
    /// `(key, start_ms)` for every window opened, oldest first. An entry whose key has no window
    /// with that start any more is stale and skipped; each entry is popped at most once.
    pub opened: VecDeque<(u64, u64)>,
}

impl Windows {
    /// Counts one event at `now` into `key`'s window. Without a current window, one is opened
    /// when `open` is true, and otherwise nothing is counted. `count` updates the window and
    /// says whether its thresholds are now met; the window fires once.
    pub fn record(
        &mut self,
        key: u64,
        now: u64,
        window_ms: u32,
        open: bool,
        count: impl FnOnce(&mut Window) -> bool,
    ) -> Recorded {
        let expired = |w: &Window| now.saturating_sub(w.start_ms) >= u64::from(window_ms);
        self.sweep(SWEEP_PER_EVENT, &expired);
        let current = self
            .by_key
            .get(&key)
            .is_some_and(|w| !expired(w) && now >= w.start_ms);
        if !current && !open {
            return Recorded {
                fired: false,
                lost: 0,
            };
        }
        let mut lost = 0;
        if !self.by_key.contains_key(&key) && self.by_key.len() >= MAX_TRACKED_PROCESSES {
            lost = self.evict_oldest();
        }
        let window = self.by_key.entry(key).or_insert(Window {
            start_ms: now,
            count: 0,
            second: 0,
            fired: false,
        });
        if !current {
            *window = Window {
                start_ms: now,
                count: 0,
                second: 0,
                fired: false,
            };
            self.opened.push_back((key, now));
            if self.opened.len() > 2 * MAX_TRACKED_PROCESSES {
                self.compact();
            }
        }
        let Some(window) = self.by_key.get_mut(&key) else {
            return Recorded { fired: false, lost };
        };
        let met = count(window);
        let fired = !window.fired && met;
        window.fired |= fired;
        Recorded { fired, lost }
    }

    /// Whether `(key, start)` is the window `key` has now.
    fn is_current(&self, key: u64, start: u64) -> bool {
        self.by_key.get(&key).is_some_and(|w| w.start_ms == start)
    }

    /// Drops expired windows from the oldest end, examining at most `budget` entries.
    fn sweep(&mut self, budget: usize, expired: &dyn Fn(&Window) -> bool) {
        for _ in 0..budget {
            let Some(&(key, start)) = self.opened.front() else {
                return;
            };
            if self.is_current(key, start) {
                if !self.by_key.get(&key).is_some_and(expired) {
                    return;
                }
                self.by_key.remove(&key);
            }
            self.opened.pop_front();
        }
    }

    /// Drops the window that opened first; returns its uncounted events (0 if it had fired).
    fn evict_oldest(&mut self) -> u64 {
        while let Some((key, start)) = self.opened.pop_front() {
            if self.is_current(key, start) {
                return self.by_key.remove(&key).map_or(0, |w| {
                    if w.fired {
                        0
                    } else {
                        u64::from(w.count) + u64::from(w.second)
                    }
                });
            }
        }
        0
    }

    /// Removes stale entries (rare: once per `MAX_TRACKED_PROCESSES` openings at most).
    fn compact(&mut self) {
        let by_key = &self.by_key;
        self.opened
            .retain(|&(key, start)| by_key.get(&key).is_some_and(|w| w.start_ms == start));
    }
}
