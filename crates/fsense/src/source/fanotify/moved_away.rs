//! Events that resolved outside the watched paths only because their directory moved out after
//! they happened (review N5).
//!
//! A directory is named by handle and resolved when its event is read, so a directory moved out
//! of the watched paths between an event and its read makes that event look "outside". The move
//! itself is an event too, queued after the events it hides, but with the sensor lagging it can
//! come many reads later. So an outside event is not judged at once: its directory is held, with
//! every directory rename read after it, until the renames that could explain it have all been
//! read. Then the renames are undone on the held path, newest first; a path that lands inside the
//! watched paths was an event there, and counts as dropped (`moved_away`).
//!
//! When is that? Anything that moved the directory before the event was read was in the kernel
//! queue at that read, so it is read by the time the queue was empty once (a read that did not fill
//! the buffer) or the queue's capacity (`max_queued_events`) in events later, whichever is first.
//! Both bounds hold unless the queue overflowed, which the summary already reports as "at least".
//! The bookkeeping is bounded ([`MAX_HELD`] directories, [`MAX_RENAMES`] renames): beyond that,
//! outside events are judged early or not at all and counted in `outside_unchecked`, which makes
//! the dropped count a lower bound too.

use std::collections::HashMap;

use super::is_under;

/// Most distinct (read, directory) pairs held.
pub const MAX_HELD: usize = 1024;
/// Most directory renames remembered while anything is held.
pub const MAX_RENAMES: usize = 1024;
/// Most bytes of rename paths remembered (a path walked up past `PATH_MAX` can be long).
pub const MAX_RENAME_BYTES: usize = 16 << 20;

/// What a judgement found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// Events that happened inside the watched paths: dropped.
    pub moved_away: u64,
    /// Events judged before their window closed (a bound was hit): maybe dropped, unknown.
    pub unchecked: u64,
}

/// Outside events waiting to be judged, and the renames read since.
pub struct OutsideWindow {
    /// Kernel events a queue holds at most: after that many more, every rename that could explain
    /// an outside event has been read.
    capacity: u64,
    /// (kernel events read before the event's read, its directory) -> events.
    held: HashMap<(u64, Vec<u8>), u64>,
    /// (kernel events read before the rename's read, old path, new path), in read order.
    renames: Vec<(u64, Vec<u8>, Vec<u8>)>,
    /// Bytes of paths in `renames`.
    rename_bytes: usize,
}

impl OutsideWindow {
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            held: HashMap::new(),
            renames: Vec::new(),
            rename_bytes: 0,
        }
    }

    /// An event of the read that starts after `read_at` kernel events resolved outside, in
    /// directory `dir`. False when it cannot be held (the caller counts it unchecked).
    pub fn hold(&mut self, read_at: u64, dir: &[u8]) -> bool {
        if let Some(n) = self.held.get_mut(&(read_at, dir.to_vec())) {
            *n += 1;
            return true;
        }
        if self.held.len() >= MAX_HELD {
            return false;
        }
        self.held.insert((read_at, dir.to_vec()), 1);
        true
    }

    /// A directory renamed from `old` to `new`, in the read that starts after `read_at` events.
    /// Returns what had to be judged early because the rename list was full.
    pub fn dir_renamed(
        &mut self,
        read_at: u64,
        old: &[u8],
        new: &[u8],
        inside: &dyn Fn(&[u8]) -> bool,
    ) -> Judged {
        if self.held.is_empty() {
            return Judged::default();
        }
        let mut early = Judged::default();
        let bytes = old.len() + new.len();
        if self.renames.len() >= MAX_RENAMES || self.rename_bytes + bytes > MAX_RENAME_BYTES {
            // Judged now with the renames so far: what still looks outside may not be.
            let (judged, stayed_outside) = self.judge(u64::MAX, inside);
            early = judged;
            early.unchecked = stayed_outside;
        }
        self.renames.push((read_at, old.to_vec(), new.to_vec()));
        self.rename_bytes += bytes;
        early
    }

    /// After a read that started after `read_at` events and held `events`: judges what can be
    /// judged (everything when the read left the queue empty).
    pub fn end_read(
        &mut self,
        read_at: u64,
        events: u64,
        queue_empty: bool,
        inside: &dyn Fn(&[u8]) -> bool,
    ) -> Judged {
        let now = read_at + events;
        // A read that started `capacity` events before `now` has had its window.
        let cutoff = if queue_empty {
            u64::MAX
        } else {
            now.checked_sub(self.capacity).map_or(0, |c| c + 1)
        };
        self.judge(cutoff, inside).0
    }

    /// Judges the held directories of reads that started before `cutoff` events; also returns
    /// how many events stayed outside.
    fn judge(&mut self, cutoff: u64, inside: &dyn Fn(&[u8]) -> bool) -> (Judged, u64) {
        let mut judged = Judged::default();
        let mut stayed_outside = 0;
        let renames = &self.renames;
        self.held.retain(|(read_at, dir), count| {
            if *read_at >= cutoff {
                return true;
            }
            let mut path = dir.clone();
            for (rename_at, old, new) in renames.iter().rev() {
                if *rename_at > *read_at && is_under(&path, new) {
                    let mut back = old.clone();
                    back.extend_from_slice(&path[new.len()..]);
                    path = back;
                }
            }
            if inside(&path) {
                judged.moved_away += *count;
            } else {
                stayed_outside += *count;
            }
            false
        });
        let oldest = self.held.keys().map(|(at, _)| *at).min();
        match oldest {
            Some(oldest) => self.renames.retain(|(at, _, _)| *at > oldest),
            None => self.renames.clear(),
        }
        self.rename_bytes = self.renames.iter().map(|(_, o, n)| o.len() + n.len()).sum();
        (judged, stayed_outside)
    }

    /// Whether anything is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(p: &[u8]) -> bool {
        is_under(p, b"/w")
    }

    #[test]
    fn a_directory_moved_out_in_a_later_read_turns_its_events_into_drops() {
        let mut w = OutsideWindow::new(16_384);
        assert!(w.hold(0, b"/o/stage2"));
        assert!(w.hold(0, b"/o/post"));
        assert_eq!(w.end_read(0, 3000, false, &inside), Judged::default());
        w.dir_renamed(3000, b"/w/stage", b"/o/stage2", &inside);
        let j = w.end_read(3000, 10, true, &inside);
        assert_eq!(j.moved_away, 1);
        assert!(w.is_empty());
    }

    #[test]
    fn a_chain_of_moves_is_undone_newest_first() {
        let mut w = OutsideWindow::new(16_384);
        w.hold(0, b"/o/c/sub");
        w.dir_renamed(100, b"/w/a", b"/o/b", &inside);
        w.dir_renamed(200, b"/o/b", b"/o/c", &inside);
        assert_eq!(w.end_read(200, 5, true, &inside).moved_away, 1);
    }

    #[test]
    fn a_move_read_before_the_event_is_not_undone() {
        let mut w = OutsideWindow::new(16_384);
        // The move out came first: the event really happened outside.
        w.hold(100, b"/o/b");
        w.dir_renamed(100, b"/w/a", b"/o/b", &inside);
        w.dir_renamed(50, b"/w/a", b"/o/b", &inside);
        assert_eq!(w.end_read(100, 5, true, &inside).moved_away, 0);
    }

    #[test]
    fn the_window_closes_after_a_queue_of_events() {
        let mut w = OutsideWindow::new(1000);
        w.hold(0, b"/o/x");
        assert_eq!(w.end_read(0, 999, false, &inside), Judged::default());
        assert!(!w.is_empty(), "judged before a queue of events was read");
        assert_eq!(w.end_read(0, 500, false, &inside), Judged::default());
        assert!(!w.is_empty());
        w.end_read(500, 600, false, &inside);
        assert!(w.is_empty());
    }

    #[test]
    fn a_full_rename_list_judges_early_and_counts_what_stayed_outside() {
        let mut w = OutsideWindow::new(16_384);
        w.hold(0, b"/o/elsewhere");
        w.hold(0, b"/o/moved");
        for i in 0..MAX_RENAMES {
            w.dir_renamed(1, format!("/o/a{i}").as_bytes(), b"/o/b", &inside);
        }
        // The list is full: judged now; the move below comes too late for them.
        let early = w.dir_renamed(2, b"/w/moved", b"/o/moved", &inside);
        assert_eq!(
            early,
            Judged {
                moved_away: 0,
                unchecked: 2
            }
        );
        assert!(w.is_empty());
    }

    #[test]
    fn holding_is_bounded() {
        let mut w = OutsideWindow::new(16_384);
        for i in 0..MAX_HELD {
            assert!(w.hold(0, format!("/o/{i}").as_bytes()));
        }
        assert!(!w.hold(0, b"/o/one-more"));
        assert!(w.hold(0, b"/o/0"), "a held directory still counts");
    }
}
