//! The driver's event queue driven by fuzz input: pushes of records of any size and drains into
//! batch buffers of any size, in any order. Checks that every drained batch is valid, records come
//! out unchanged and in order, sequence numbers are gap-free at the source, and every one of them
//! is either delivered or counted as dropped (and reported so in batch headers).
#![no_main]
use std::collections::BTreeMap;

use fsense_proto::batch::BATCH_HEADER_LEN;
use fsense_proto::{
    BatchView, BatchWriter, EventQueue, EventRecord, MAX_BATCH_BYTES, PushOutcome, RecordFlags,
    SeqTracker, Utf16Path,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Path units are taken from this pool, so records can be long without long inputs.
const POOL_UNITS: usize = 4096;

struct Run {
    /// Encoded bytes of every record the queue accepted, by sequence number, until delivered.
    pending: BTreeMap<u64, Vec<u8>>,
    delivered: Vec<u64>,
    dropped_reported: u64,
    tracker: SeqTracker,
    lost: u64,
    batch_buf: Vec<u8>,
}

impl Run {
    fn drain(&mut self, queue: &mut EventQueue<'_>, buffer: usize) {
        let mut w = BatchWriter::new(&mut self.batch_buf[..buffer]).expect("room for a header");
        let dropped_before = queue.dropped_total();
        let moved = queue.drain_into(&mut w);
        // Records too large for an empty batch are dropped, oldest first, before any moves.
        for _ in dropped_before..queue.dropped_total() {
            let (_, bytes) = self
                .pending
                .pop_first()
                .expect("a dropped record was queued");
            assert!(bytes.len() > buffer.min(MAX_BATCH_BYTES) - BATCH_HEADER_LEN);
        }
        let len = w
            .finish(queue.take_unreported_drops())
            .expect("header fits");
        let view = BatchView::parse(&self.batch_buf[..len]).expect("drained batch is valid");
        assert_eq!(view.header().record_count, moved);
        self.dropped_reported += view.header().dropped_before;
        let mut at = BATCH_HEADER_LEN;
        for record in view.records() {
            let bytes = &self.batch_buf[at..at + record.encoded_len()];
            at += record.encoded_len();
            let (sequence, expected) = self.pending.pop_first().expect("delivered was queued");
            assert_eq!(record.sequence, sequence, "not the oldest queued record");
            assert_eq!(bytes, &expected[..], "record changed in the queue");
            if let Some(&last) = self.delivered.last() {
                assert!(record.sequence > last, "order lost");
            }
            self.delivered.push(record.sequence);
        }
        self.tracker.observe_batch(&view, |g| self.lost += g.count);
    }
}

fn record<'a>(u: &mut Unstructured<'_>, pool: &'a [u8]) -> Result<EventRecord<'a>> {
    let path_units = u.int_in_range(0..=POOL_UNITS)?;
    let volume_units = u.int_in_range(0..=64)?;
    let path = Utf16Path::from_le_bytes(&pool[..2 * path_units]).expect("valid");
    let volume = Utf16Path::from_le_bytes(&pool[..2 * volume_units]).expect("valid");
    let mut r = if u.arbitrary()? {
        EventRecord::create(path, volume)
    } else {
        EventRecord::write(path, volume)
    };
    // Every field, applicable or not: the encoder must zero what does not apply.
    r.sequence = u.arbitrary()?;
    r.timestamp = u.arbitrary()?;
    r.flags = RecordFlags::from_bits_truncate(u.arbitrary()?);
    r.pid = u.arbitrary()?;
    r.tid = u.arbitrary()?;
    r.status = u.arbitrary()?;
    r.information = u.arbitrary()?;
    r.create_disposition = u.arbitrary()?;
    r.create_options = u.arbitrary()?;
    r.write_offset = u.arbitrary()?;
    r.write_length = u.arbitrary()?;
    Ok(r)
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let storage_len = u.int_in_range(0..=64 * 1024)?;
    let max_records = u.int_in_range(0..=256)?;
    let mut pool = vec![0u8; 2 * POOL_UNITS];
    u.fill_buffer(&mut pool[..128])?;
    let mut storage = vec![0u8; storage_len];
    let mut queue = EventQueue::new(&mut storage, max_records);
    let mut run = Run {
        pending: BTreeMap::new(),
        delivered: Vec::new(),
        dropped_reported: 0,
        tracker: SeqTracker::new(),
        lost: 0,
        batch_buf: vec![0u8; MAX_BATCH_BYTES],
    };
    let mut dropped_at_push = 0u64;
    while !u.is_empty() {
        if u.ratio(3, 4)? {
            let r = record(&mut u, &pool)?;
            let expected_sequence = queue.generated() + 1;
            let was_empty = queue.is_empty();
            match queue.push(&r) {
                PushOutcome::Queued {
                    sequence,
                    was_empty: reported_empty,
                } => {
                    assert_eq!(sequence, expected_sequence);
                    assert_eq!(reported_empty, was_empty);
                    let mut bytes = vec![0u8; r.encoded_len()];
                    r.encode_with_sequence(sequence, &mut bytes)
                        .expect("exact size");
                    assert!(run.pending.insert(sequence, bytes).is_none());
                }
                PushOutcome::Dropped { sequence } => {
                    assert_eq!(sequence, expected_sequence);
                    dropped_at_push += 1;
                    // Only full queues drop: by count, or by bytes (a record never fits a
                    // ring smaller than itself).
                    assert!(
                        queue.len() == queue.max_records()
                            || !queue.is_empty()
                            || r.encoded_len() > storage_len
                    );
                }
            }
            assert!(queue.len() <= queue.max_records());
            assert_eq!(queue.len() as usize, run.pending.len());
        } else {
            let buffer = u.int_in_range(BATCH_HEADER_LEN..=MAX_BATCH_BYTES)?;
            run.drain(&mut queue, buffer);
            assert_eq!(queue.len() as usize, run.pending.len());
        }
    }
    while !queue.is_empty() {
        run.drain(&mut queue, MAX_BATCH_BYTES);
    }
    run.drain(&mut queue, MAX_BATCH_BYTES);
    assert!(run.pending.is_empty(), "queued records vanished");
    let generated = queue.generated();
    assert!(queue.dropped_total() >= dropped_at_push);
    assert_eq!(
        generated,
        run.delivered.len() as u64 + queue.dropped_total()
    );
    assert_eq!(run.dropped_reported, queue.dropped_total());
    if let Some(g) = run.tracker.finish(generated) {
        run.lost += g.count;
    }
    assert_eq!(run.lost, queue.dropped_total());
    assert_eq!(run.tracker.lost(), queue.dropped_total());
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
