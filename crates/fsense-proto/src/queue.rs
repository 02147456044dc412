//! The bounded event queue the driver fills from its I/O callbacks and drains from its worker.
//!
//! Storage is one byte ring handed in at construction (the driver allocates it from non-paged pool
//! at load) holding records already in wire format, so draining into a batch is a copy. Enqueue
//! is O(record length) with no allocation; the capacity (records and bytes) never changes.
//! Sequence numbers are assigned here, under the caller's lock, to every event offered, kept or
//! dropped: they are gap-free at the source, so the consumer sees exactly which events were lost.
//!
//! The queue does no locking: the driver wraps it in a spin lock. Its state is plain data on
//! purpose (no atomics): the lock's acquire and release order every access, on ARM64 as on x64
//! (the driver's `SpinLock` and docs/ordering.md argue it; Miri checks it in the driver's
//! tests/ordering.rs).

use crate::batch::BatchWriter;
use crate::record::{EventRecord, RECORD_HEADER_LEN};

/// What happened to an event offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored. `was_empty`: the queue held nothing before (the worker may be asleep).
    Queued { sequence: u64, was_empty: bool },
    /// Not stored: the queue was full. The sequence number is spent and counted as dropped.
    Dropped { sequence: u64 },
}

/// A byte ring of encoded records with a record-count cap. See the module docs.
#[derive(Debug)]
pub struct EventQueue<'s> {
    storage: &'s mut [u8],
    /// Offset of the oldest record.
    read: usize,
    /// Offset where the next record goes.
    write: usize,
    /// When the ring has wrapped: the end of the data at the top. The data is then
    /// `[read, wrap_end)` followed by `[0, write)`; otherwise it is `[read, write)`.
    wrap_end: Option<usize>,
    len: u32,
    max_records: u32,
    next_sequence: u64,
    dropped_unreported: u64,
    dropped_total: u64,
    withheld_total: u64,
    high_water: u32,
}

impl<'s> EventQueue<'s> {
    /// A queue over `storage` holding at most `max_records` records. Sequence numbers start at 1.
    pub fn new(storage: &'s mut [u8], max_records: u32) -> Self {
        Self {
            storage,
            read: 0,
            write: 0,
            wrap_end: None,
            len: 0,
            max_records,
            next_sequence: 1,
            dropped_unreported: 0,
            dropped_total: 0,
            withheld_total: 0,
            high_water: 0,
        }
    }

    /// Records currently held.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The record-count cap.
    pub fn max_records(&self) -> u32 {
        self.max_records
    }

    /// Most records ever held at once.
    pub fn high_water(&self) -> u32 {
        self.high_water
    }

    /// Sequence numbers handed out so far (kept and dropped).
    pub fn generated(&self) -> u64 {
        self.next_sequence.wrapping_sub(1)
    }

    /// Events dropped because the queue was full, since load.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Records removed unsent because the consumer's protocol cannot carry their operation
    /// ([`EventQueue::drain_for_protocol`]), since load. Not part of [`EventQueue::dropped_total`].
    pub fn withheld_total(&self) -> u64 {
        self.withheld_total
    }

    /// Takes the count of drops not yet reported in a batch header (records withheld from an
    /// older consumer included: their sequence numbers are spent, and the consumer must see the
    /// gap explained).
    pub fn take_unreported_drops(&mut self) -> u64 {
        core::mem::take(&mut self.dropped_unreported)
    }

    /// Offers one event. Assigns its sequence number; stores it if there is room.
    pub fn push(&mut self, record: &EventRecord<'_>) -> PushOutcome {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let was_empty = self.len == 0;
        let needed = record.encoded_len();
        let stored = if self.len < self.max_records {
            self.reserve(needed).and_then(|at| {
                let dst = self.storage.get_mut(at..at + needed)?;
                record.encode_with_sequence(sequence, dst).ok()
            })
        } else {
            None
        };
        match stored {
            Some(_) => {
                self.len += 1;
                self.high_water = self.high_water.max(self.len);
                PushOutcome::Queued {
                    sequence,
                    was_empty,
                }
            }
            None => {
                self.dropped_unreported = self.dropped_unreported.saturating_add(1);
                self.dropped_total = self.dropped_total.saturating_add(1);
                PushOutcome::Dropped { sequence }
            }
        }
    }

    /// Finds room for `n` contiguous bytes and advances `write` past them. Nothing changes on
    /// failure.
    fn reserve(&mut self, n: usize) -> Option<usize> {
        if self.len == 0 {
            self.read = 0;
            self.write = 0;
            self.wrap_end = None;
        }
        match self.wrap_end {
            None => {
                if self.storage.len().saturating_sub(self.write) >= n {
                    let at = self.write;
                    self.write += n;
                    Some(at)
                } else if n <= self.read {
                    self.wrap_end = Some(self.write);
                    self.write = n;
                    Some(0)
                } else {
                    None
                }
            }
            Some(_) => {
                if self.read.saturating_sub(self.write) >= n {
                    let at = self.write;
                    self.write += n;
                    Some(at)
                } else {
                    None
                }
            }
        }
    }

    /// The oldest record's bytes and sequence number, without removing it.
    fn front(&self) -> Option<(usize, usize, u64)> {
        if self.len == 0 {
            return None;
        }
        let at = self.read;
        let header = self.storage.get(at..at + RECORD_HEADER_LEN)?;
        let len = u32::from_le_bytes(header.get(0..4)?.try_into().ok()?) as usize;
        let sequence = u64::from_le_bytes(header.get(8..16)?.try_into().ok()?);
        Some((at, len, sequence))
    }

    fn pop_front(&mut self, len: usize) {
        self.read += len;
        self.len -= 1;
        if self.wrap_end == Some(self.read) {
            self.read = 0;
            self.wrap_end = None;
        }
        if self.len == 0 {
            self.read = 0;
            self.write = 0;
            self.wrap_end = None;
        }
    }

    /// Moves the oldest records into `batch` while they fit; returns how many moved. A record
    /// too large for an empty batch is dropped (counted) rather than left to block the queue.
    pub fn drain_into(&mut self, batch: &mut BatchWriter<'_>) -> u32 {
        self.drain_into_at_most(batch, u32::MAX)
    }

    /// Like [`EventQueue::drain_into`], moving at most `max_records` records (a sender that wants
    /// small batches, or one message per event, sets this).
    pub fn drain_into_at_most(&mut self, batch: &mut BatchWriter<'_>, max_records: u32) -> u32 {
        self.drain_for_protocol(batch, max_records, crate::PROTOCOL_VERSION)
    }

    /// Like [`EventQueue::drain_into_at_most`] for a consumer of `protocol`: a record whose
    /// operation needs a later protocol ([`crate::Operation::since_protocol`]) is removed unsent
    /// and counted in [`EventQueue::withheld_total`] and in the next batch's drops. (Records
    /// queued while no consumer was connected, then an older consumer connected.) Each record
    /// is looked at once: the loop is bounded by the records held.
    pub fn drain_for_protocol(
        &mut self,
        batch: &mut BatchWriter<'_>,
        max_records: u32,
        protocol: u16,
    ) -> u32 {
        let mut moved = 0;
        while moved < max_records {
            let Some((at, len, sequence)) = self.front() else {
                break;
            };
            let Some(bytes) = self.storage.get(at..at + len) else {
                break;
            };
            if !carried_by(bytes, protocol) {
                self.withheld_total = self.withheld_total.saturating_add(1);
                self.dropped_unreported = self.dropped_unreported.saturating_add(1);
                self.pop_front(len);
                continue;
            }
            match batch.push_encoded(sequence, bytes) {
                Ok(()) => moved += 1,
                Err(_) if batch.is_empty() => {
                    self.dropped_unreported = self.dropped_unreported.saturating_add(1);
                    self.dropped_total = self.dropped_total.saturating_add(1);
                }
                Err(_) => break,
            }
            self.pop_front(len);
        }
        moved
    }
}

/// Whether a consumer of `protocol` can receive the encoded record `bytes` (its operation byte is
/// at offset 5; the queue only holds records this build encoded).
fn carried_by(bytes: &[u8], protocol: u16) -> bool {
    bytes
        .get(5)
        .and_then(|&op| crate::Operation::ALL.get(usize::from(op).wrapping_sub(1)))
        .is_none_or(|op| op.since_protocol() <= protocol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchView;
    use crate::record::Utf16Path;

    fn rec(path: &[u8]) -> EventRecord<'_> {
        EventRecord::write(Utf16Path::from_le_bytes(path).unwrap(), Utf16Path::EMPTY)
    }

    #[test]
    fn full_queue_drops_and_spends_the_sequence_number() {
        let mut storage = [0u8; 1024];
        let mut q = EventQueue::new(&mut storage, 2);
        assert!(matches!(
            q.push(&rec(b"a\0")),
            PushOutcome::Queued {
                sequence: 1,
                was_empty: true
            }
        ));
        assert!(matches!(
            q.push(&rec(b"b\0")),
            PushOutcome::Queued {
                sequence: 2,
                was_empty: false
            }
        ));
        assert_eq!(q.push(&rec(b"c\0")), PushOutcome::Dropped { sequence: 3 });
        assert_eq!(
            (q.generated(), q.dropped_total(), q.high_water()),
            (3, 1, 2)
        );
        assert_eq!(q.take_unreported_drops(), 1);
        assert_eq!(q.take_unreported_drops(), 0);
    }

    #[test]
    fn drain_at_most_leaves_the_rest_in_order() {
        let mut storage = [0u8; 1024];
        let mut q = EventQueue::new(&mut storage, 8);
        for _ in 0..3 {
            let _ = q.push(&rec(b"p\0"));
        }
        let mut out = [0u8; 1024];
        let mut batch = BatchWriter::new(&mut out).unwrap();
        assert_eq!(q.drain_into_at_most(&mut batch, 1), 1);
        assert_eq!(batch.last_sequence(), Some(1));
        let mut out2 = [0u8; 1024];
        let mut rest = BatchWriter::new(&mut out2).unwrap();
        assert_eq!(q.drain_into(&mut rest), 2);
        assert_eq!(rest.last_sequence(), Some(3));
    }

    /// Issue 27: records queued before an older consumer connected leave unsent, counted as
    /// withheld and explained in the batch's drops; the old operations still go.
    #[test]
    fn an_older_consumer_gets_no_new_operation_and_learns_of_the_gap() {
        let mut storage = [0u8; 1024];
        let mut q = EventQueue::new(&mut storage, 8);
        let path = Utf16Path::from_le_bytes(b"p\0").unwrap();
        let ops = [
            crate::Operation::Write,
            crate::Operation::Rename,
            crate::Operation::Delete,
            crate::Operation::Create,
        ];
        for op in ops {
            let _ = q.push(&EventRecord::blank(op, path, Utf16Path::EMPTY));
        }
        let mut out = [0u8; 1024];
        let mut batch = BatchWriter::new(&mut out).unwrap();
        assert_eq!(q.drain_for_protocol(&mut batch, u32::MAX, 3), 2);
        let dropped = q.take_unreported_drops();
        let len = batch.finish(dropped).unwrap();
        let view = BatchView::parse(&out[..len]).unwrap();
        let mut seqs = view.records().map(|r| (r.sequence, r.operation));
        assert_eq!(seqs.next(), Some((1, crate::Operation::Write)));
        assert_eq!(seqs.next(), Some((4, crate::Operation::Create)));
        assert_eq!(seqs.next(), None);
        drop(seqs);
        assert_eq!((dropped, q.withheld_total(), q.dropped_total()), (2, 2, 0));
        // A current consumer gets everything.
        for op in ops {
            let _ = q.push(&EventRecord::blank(op, path, Utf16Path::EMPTY));
        }
        let mut out2 = [0u8; 1024];
        let mut batch = BatchWriter::new(&mut out2).unwrap();
        assert_eq!(q.drain_into(&mut batch), 4);
        assert_eq!(q.withheld_total(), 2);
    }

    #[test]
    fn ring_wraps_and_keeps_order() {
        let mut storage = [0u8; 3 * 100];
        let mut q = EventQueue::new(&mut storage, 100);
        let mut out = [0u8; 4096];
        let mut expected = 1;
        for round in 0..50u64 {
            let path = [b'x', 0, b'y', 0, b'z', 0];
            for _ in 0..(round % 3 + 1) {
                let _ = q.push(&rec(&path));
            }
            let mut batch = BatchWriter::new(&mut out).unwrap();
            q.drain_into(&mut batch);
            let len = batch.finish(0).unwrap();
            for r in BatchView::parse(&out[..len]).unwrap().records() {
                assert_eq!(r.sequence, expected);
                expected += 1;
            }
        }
        assert_eq!(
            q.dropped_total(),
            expected - 1 - q.generated() + q.dropped_total()
        );
    }
}
