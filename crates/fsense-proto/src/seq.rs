//! The consumer's view of sequence numbers: which events were lost, exactly.

use crate::batch::BatchView;

/// A run of lost sequence numbers: `first`, `first + 1`, ..., `first + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapReport {
    pub first: u64,
    pub count: u64,
}

/// Follows the sequence numbers of one driver load and reports every gap.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// The next sequence number expected (sequence numbers start at 1). Wider than a sequence
    /// number so that having seen `u64::MAX` is representable (one past it).
    next: u128,
    delivered: u64,
    lost: u64,
    out_of_order: u64,
}

/// Same as [`SeqTracker::new`]: a derived default would expect sequence number 0 first and
/// report a phantom loss of it.
impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    pub fn new() -> Self {
        Self {
            next: 1,
            delivered: 0,
            lost: 0,
            out_of_order: 0,
        }
    }

    /// Accounts for one record; returns the gap before it, if any.
    pub fn observe(&mut self, sequence: u64) -> Option<GapReport> {
        let seen = u128::from(sequence);
        if seen < self.next {
            self.out_of_order += 1;
            return None;
        }
        self.delivered += 1;
        let gap = self.gap_before(seen);
        if let Some(g) = gap {
            self.lost += g.count;
        }
        self.next = seen + 1;
        gap
    }

    /// The numbers from `next` up to (not including) `end`, if any. Only called with
    /// `end <= u64::MAX + 1`, so `next < end` puts both ends of the gap in u64.
    fn gap_before(&self, end: u128) -> Option<GapReport> {
        (end > self.next).then(|| GapReport {
            first: self.next as u64,
            count: (end - self.next) as u64,
        })
    }

    /// Accounts for every record of a batch, calling `on_gap` for each gap.
    pub fn observe_batch(&mut self, batch: &BatchView<'_>, mut on_gap: impl FnMut(GapReport)) {
        for rec in batch.records() {
            if let Some(g) = self.observe(rec.sequence) {
                on_gap(g);
            }
        }
    }

    /// Closes the account once the source says how many sequence numbers it handed out: anything
    /// after the last delivered record was lost too.
    pub fn finish(&mut self, generated: u64) -> Option<GapReport> {
        let end = u128::from(generated) + 1;
        let gap = self.gap_before(end);
        if let Some(g) = gap {
            self.lost += g.count;
            self.next = end;
        }
        gap
    }

    /// Records delivered (in order).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
    /// Sequence numbers never delivered.
    pub fn lost(&self) -> u64 {
        self.lost
    }
    /// Records that arrived with a sequence number already passed (should be zero).
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_reported_exactly() {
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(1), None);
        assert_eq!(t.observe(4), Some(GapReport { first: 2, count: 2 }));
        assert_eq!(t.observe(3), None);
        assert_eq!(t.finish(6), Some(GapReport { first: 5, count: 2 }));
        assert_eq!((t.delivered(), t.lost(), t.out_of_order()), (2, 4, 1));
    }
}
