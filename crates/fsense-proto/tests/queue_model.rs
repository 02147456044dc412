//! The event queue against a model, and the sequence tracker against the set of lost numbers.
//!
//! The model is a `VecDeque` of `(offset, len, sequence)` with the same caps as the queue: at most
//! `max_records` records, each stored contiguously in `storage_len` bytes, appended after the
//! newest record or, when that does not fit and the ring is not already wrapped, at offset 0
//! in front of the oldest. Its placement is recomputed from the deque alone, so it shares no state
//! machine with the queue's `read`/`write`/`wrap_end` pointers.

mod common;

use std::collections::{BTreeSet, VecDeque};

use common::{OwnedRecord, config, le_bytes};
use fsense_proto::batch::BATCH_HEADER_LEN;
use fsense_proto::{
    BatchView, BatchWriter, EventQueue, GapReport, MAX_BATCH_BYTES, Operation, PushOutcome,
    RecordFlags, SeqTracker,
};
use proptest::collection::vec;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Offer an event with these path and volume lengths, in units.
    Push {
        create: bool,
        path_units: usize,
        volume_units: usize,
    },
    /// Drain into a fresh batch buffer of this many bytes.
    Drain { buffer: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 0usize..120, 0usize..12).prop_map(|(create, path_units, volume_units)| {
            Op::Push { create, path_units, volume_units }
        }),
        1 => prop_oneof![
            3 => BATCH_HEADER_LEN..1200usize,
            1 => Just(MAX_BATCH_BYTES),
        ].prop_map(|buffer| Op::Drain { buffer }),
    ]
}

/// The event offered as the `n`th push; its content encodes `n` so a delivered record can be
/// matched to the event it came from.
fn event(n: u64, create: bool, path_units: usize, volume_units: usize) -> OwnedRecord {
    let path: Vec<u16> = (0..path_units)
        .map(|i| (n as u16) ^ (i as u16 * 31))
        .collect();
    OwnedRecord {
        sequence: 0, // assigned by the queue
        timestamp: n * 10,
        operation: if create {
            Operation::Create
        } else {
            Operation::Write
        },
        flags: RecordFlags::from_bits_truncate(n as u16),
        pid: n as u32,
        tid: !(n as u32),
        process_create_time: n << 20,
        status: 0xC000_0000 | n as u32,
        information: n * 3,
        create_disposition: u32::from(create),
        create_options: if create { n as u32 } else { 0 },
        desired_access: if create { 0x12_0089 } else { 0 },
        share_access: if create { 7 } else { 0 },
        write_offset: if create { 0 } else { n * 4096 },
        write_length: if create { 0 } else { 512 },
        path: le_bytes(&path),
        volume: le_bytes(&vec![0x43; volume_units]),
        target: Vec::new(),
    }
}

#[derive(Debug, Default)]
struct Model {
    storage_len: usize,
    max_records: usize,
    /// (offset, encoded length, sequence, index of the event offered)
    held: VecDeque<(usize, usize, u64, usize)>,
    next_sequence: u64,
    dropped: u64,
    high_water: usize,
}

impl Model {
    fn new(storage_len: usize, max_records: usize) -> Self {
        Self {
            storage_len,
            max_records,
            next_sequence: 1,
            ..Self::default()
        }
    }

    /// Where a record of `len` bytes goes, if anywhere.
    fn place(&self, len: usize) -> Option<usize> {
        if self.held.len() >= self.max_records {
            return None;
        }
        let (Some(&(oldest, ..)), Some(&(newest, newest_len, ..))) =
            (self.held.front(), self.held.back())
        else {
            return (len <= self.storage_len).then_some(0);
        };
        let end = newest + newest_len;
        if newest < oldest {
            // Wrapped: the free space is between the newest record's end and the oldest.
            (end + len <= oldest).then_some(end)
        } else if end + len <= self.storage_len {
            Some(end)
        } else {
            (len <= oldest).then_some(0)
        }
    }

    fn push(&mut self, len: usize, index: usize) -> PushOutcome {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let was_empty = self.held.is_empty();
        match self.place(len) {
            Some(at) => {
                self.held.push_back((at, len, sequence, index));
                self.high_water = self.high_water.max(self.held.len());
                PushOutcome::Queued {
                    sequence,
                    was_empty,
                }
            }
            None => {
                self.dropped += 1;
                PushOutcome::Dropped { sequence }
            }
        }
    }

    /// Moves records into a batch of `room` bytes; returns (sequence, event index) of each moved.
    fn drain(&mut self, mut room: usize) -> Vec<(u64, usize)> {
        let mut moved = Vec::new();
        while let Some(&(_, len, sequence, index)) = self.held.front() {
            if len <= room {
                room -= len;
                moved.push((sequence, index));
            } else if moved.is_empty() {
                self.dropped += 1;
            } else {
                break;
            }
            self.held.pop_front();
        }
        moved
    }
}

/// Runs `ops` against the queue and the model side by side; checks every observable.
fn run(storage_len: usize, max_records: u32, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut storage = vec![0u8; storage_len];
    let mut queue = EventQueue::new(&mut storage, max_records);
    let mut model = Model::new(storage_len, max_records as usize);
    let mut offered: Vec<OwnedRecord> = Vec::new();
    let mut delivered: Vec<u64> = Vec::new();
    let mut dropped_reported = 0u64;
    let mut tracker = SeqTracker::new();
    let mut gaps: Vec<GapReport> = Vec::new();
    let mut batch_buf = vec![0u8; MAX_BATCH_BYTES];

    let mut drain = |queue: &mut EventQueue<'_>,
                     model: &mut Model,
                     offered: &[OwnedRecord],
                     buffer: usize|
     -> Result<(), TestCaseError> {
        let buf = &mut batch_buf[..buffer];
        let mut batch = BatchWriter::new(buf).unwrap();
        let moved = queue.drain_into(&mut batch);
        let len = batch.finish(queue.take_unreported_drops()).unwrap();
        let expected = model.drain(buffer.min(MAX_BATCH_BYTES) - BATCH_HEADER_LEN);
        prop_assert_eq!(moved as usize, expected.len());
        let view = BatchView::parse(&batch_buf[..len]).unwrap();
        dropped_reported += view.header().dropped_before;
        let got: Vec<_> = view.records().collect();
        prop_assert_eq!(got.len(), expected.len());
        for (rec, &(sequence, index)) in got.iter().zip(&expected) {
            let mut want = offered[index].expected();
            want.sequence = sequence;
            prop_assert_eq!(rec, &want);
            delivered.push(sequence);
        }
        tracker.observe_batch(&view, |g| gaps.push(g));
        Ok(())
    };

    for op in ops {
        match *op {
            Op::Push {
                create,
                path_units,
                volume_units,
            } => {
                let index = offered.len();
                offered.push(event(index as u64, create, path_units, volume_units));
                let rec = offered[index].view();
                let got = queue.push(&rec);
                let want = model.push(rec.encoded_len(), index);
                prop_assert_eq!(got, want, "push #{} of {} bytes", index, rec.encoded_len());
            }
            Op::Drain { buffer } => drain(&mut queue, &mut model, &offered, buffer)?,
        }
        prop_assert_eq!(queue.len() as usize, model.held.len());
        // The cap the driver reports in its health is the one it was built with, and holds.
        prop_assert_eq!(queue.max_records(), max_records);
        prop_assert!(queue.len() <= queue.max_records());
        prop_assert_eq!(queue.is_empty(), model.held.is_empty());
        prop_assert_eq!(queue.high_water() as usize, model.high_water);
        prop_assert_eq!(queue.dropped_total(), model.dropped);
        prop_assert_eq!(queue.generated(), offered.len() as u64);
    }
    // Drain what is left; every record fits an empty maximal batch.
    while !queue.is_empty() {
        drain(&mut queue, &mut model, &offered, MAX_BATCH_BYTES)?;
    }
    drain(&mut queue, &mut model, &offered, MAX_BATCH_BYTES)?;

    let generated = queue.generated();
    // Sequence numbers are gap-free at the source: 1..=generated, each delivered or dropped.
    prop_assert_eq!(generated, delivered.len() as u64 + queue.dropped_total());
    prop_assert_eq!(dropped_reported, queue.dropped_total());
    prop_assert!(delivered.windows(2).all(|w| w[0] < w[1]), "order kept");
    prop_assert!(delivered.iter().all(|&s| (1..=generated).contains(&s)));
    // The consumer can tell exactly which ones were lost.
    if let Some(g) = tracker.finish(generated) {
        gaps.push(g);
    }
    let lost: BTreeSet<u64> = gaps
        .iter()
        .flat_map(|g| g.first..g.first + g.count)
        .collect();
    let delivered_set: BTreeSet<u64> = delivered.iter().copied().collect();
    let all: BTreeSet<u64> = (1..=generated).collect();
    prop_assert_eq!(&lost, &all.difference(&delivered_set).copied().collect());
    prop_assert_eq!(tracker.lost(), queue.dropped_total());
    prop_assert_eq!(tracker.delivered(), delivered.len() as u64);
    prop_assert_eq!(tracker.out_of_order(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn queue_matches_the_model(
        storage_len in prop_oneof![0usize..100, 100usize..3000],
        max_records in prop_oneof![0u32..4, 4u32..64, Just(u32::MAX)],
        ops in vec(op(), 0..200),
    ) {
        run(storage_len, max_records, &ops)?;
    }

    /// Tight storage and many small drains: the ring wraps on almost every push.
    #[test]
    fn queue_matches_the_model_under_wrap_pressure(
        storage_len in 200usize..700,
        ops in vec(
            prop_oneof![
                3 => (any::<bool>(), 0usize..40).prop_map(|(create, path_units)| Op::Push {
                    create,
                    path_units,
                    volume_units: 0,
                }),
                1 => (BATCH_HEADER_LEN + 88..BATCH_HEADER_LEN + 300)
                    .prop_map(|buffer| Op::Drain { buffer }),
            ],
            0..300,
        ),
    ) {
        run(storage_len, 1000, &ops)?;
    }

    /// The tracker reports exactly the numbers that never arrived, however they were lost.
    #[test]
    fn seq_tracker_reports_exactly_the_missing_numbers(
        kept in vec(any::<bool>(), 0..300),
        replays in vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let generated = kept.len() as u64;
        let delivered: Vec<u64> = (1..=generated).filter(|&s| kept[s as usize - 1]).collect();
        let mut tracker = SeqTracker::new();
        let mut lost = Vec::new();
        for (i, &s) in delivered.iter().enumerate() {
            if let Some(g) = tracker.observe(s) {
                lost.extend(g.first..g.first + g.count);
                prop_assert!(g.count > 0);
            }
            // Replaying an old number is counted, never reported as a gap or a delivery.
            if let Some(r) = replays.get(i) {
                prop_assert_eq!(tracker.observe(delivered[r.index(i + 1)]), None);
            }
        }
        if let Some(g) = tracker.finish(generated) {
            lost.extend(g.first..g.first + g.count);
        }
        let expected: Vec<u64> = (1..=generated).filter(|&s| !kept[s as usize - 1]).collect();
        prop_assert_eq!(&lost, &expected);
        prop_assert_eq!(tracker.lost(), expected.len() as u64);
        prop_assert_eq!(tracker.delivered(), delivered.len() as u64);
        prop_assert_eq!(tracker.out_of_order() as usize, replays.len().min(delivered.len()));
        // finish is idempotent.
        prop_assert_eq!(tracker.finish(generated), None);
    }
}

#[test]
fn seq_tracker_at_the_top_of_the_range() {
    let mut t = SeqTracker::new();
    assert_eq!(
        t.observe(u64::MAX),
        Some(GapReport {
            first: 1,
            count: u64::MAX - 1
        })
    );
    // u64::MAX has been seen: seeing it again is a replay, not a second delivery.
    assert_eq!(t.observe(u64::MAX), None);
    assert_eq!((t.delivered(), t.out_of_order()), (1, 1));
    assert_eq!(t.finish(u64::MAX), None);
    assert_eq!(t.lost(), u64::MAX - 1);
}

#[test]
fn zero_capacity_queue_drops_everything_and_counts_it() {
    let mut q = EventQueue::new(&mut [], 10);
    let rec = event(0, true, 3, 0);
    for s in 1..=5 {
        assert_eq!(q.push(&rec.view()), PushOutcome::Dropped { sequence: s });
    }
    assert_eq!((q.generated(), q.dropped_total(), q.len()), (5, 5, 0));
}

#[test]
fn seq_tracker_default_is_new() {
    // Sequence numbers start at 1: a fresh tracker must not report 0 as lost.
    let mut t = SeqTracker::default();
    assert_eq!(t.observe(1), None);
    assert_eq!(t.finish(1), None);
    assert_eq!((t.delivered(), t.lost()), (1, 0));
}

/// `dropped_before` counts drops when they happen, not by sequence range: here the batch's last
/// record is 1 and the drop it reports is number 3.
#[test]
fn dropped_before_can_count_numbers_above_the_last_record() {
    let mut storage = vec![0u8; 4096];
    let mut q = EventQueue::new(&mut storage, 2);
    let rec = event(0, false, 4, 0);
    let len = rec.view().encoded_len();
    assert!(matches!(
        q.push(&rec.view()),
        PushOutcome::Queued { sequence: 1, .. }
    ));
    assert!(matches!(
        q.push(&rec.view()),
        PushOutcome::Queued { sequence: 2, .. }
    ));
    assert_eq!(q.push(&rec.view()), PushOutcome::Dropped { sequence: 3 });
    let mut buf = vec![0u8; BATCH_HEADER_LEN + len];
    let mut w = BatchWriter::new(&mut buf).unwrap();
    assert_eq!(q.drain_into(&mut w), 1);
    let n = w.finish(q.take_unreported_drops()).unwrap();
    let view = BatchView::parse(&buf[..n]).unwrap();
    assert_eq!(view.last_sequence(), Some(1));
    assert_eq!(view.header().dropped_before, 1);
}
