//! Shared strategies and helpers for the property tests. Each test binary uses a subset.
#![allow(dead_code)]

use fsense_proto::batch::BATCH_HEADER_LEN;
use fsense_proto::{
    BatchView, BatchWriter, EventRecord, MAX_BATCH_BYTES, MAX_PATH_UNITS, Message, Operation,
    RecordFlags, Utf16Path,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Proptest settings: `cases` normally; a handful under Miri, which runs ~1000x slower and has no
/// file system for the regression files. `PROPTEST_CASES`, when set, replaces `cases` (proptest
/// honours it only for its default config): `scripts/mutants.sh` lowers it, because every test
/// runs once per mutant.
pub fn config(cases: u32) -> Config {
    if cfg!(miri) {
        Config {
            cases: 2,
            failure_persistence: None,
            ..Config::default()
        }
    } else {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases);
        Config::with_cases(cases)
    }
}

/// Little-endian bytes of UTF-16 units.
pub fn le_bytes(units: &[u16]) -> Vec<u8> {
    units.iter().flat_map(|u| u.to_le_bytes()).collect()
}

/// One UTF-16 unit, biased towards what breaks naive path handling.
pub fn unit() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => any::<u16>(),
        3 => 0x20u16..0x7f,
        // Surrogates: generated independently, so pairs are sometimes well-formed and often not.
        2 => 0xD800u16..=0xDFFF,
        1 => Just(0u16),
        1 => prop::sample::select(vec![
            0x5C, 0x2F, 0x3A, 0x2E, 0x20, 0x7F, 0xFEFF, 0xFFFE, 0xFFFF, 0x202E, 0x200B,
        ]),
    ]
}

/// Path units: empty, short with odd units, or at (or one below) the 32,767-unit limit. Under
/// Miri the long ones are 64 units: generating 32,767 units there takes minutes per case.
pub fn path_units(max_short: usize) -> impl Strategy<Value = Vec<u16>> {
    let long = if cfg!(miri) {
        64..=64
    } else {
        MAX_PATH_UNITS - 1..=MAX_PATH_UNITS
    };
    prop_oneof![
        1 => Just(Vec::new()),
        8 => vec(unit(), 1..=max_short),
        1 => vec(any::<u16>(), long),
    ]
}

/// Paths that keep records small (bit-flip and model tests iterate over every byte).
pub fn short_path_units(max: usize) -> impl Strategy<Value = Vec<u16>> {
    vec(unit(), 0..=max)
}

/// An event record that owns its strings, so strategies can produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub sequence: u64,
    pub timestamp: u64,
    pub operation: Operation,
    pub flags: RecordFlags,
    pub pid: u32,
    pub tid: u32,
    pub process_create_time: u64,
    pub status: u32,
    pub information: u64,
    pub create_disposition: u32,
    pub create_options: u32,
    pub desired_access: u32,
    pub share_access: u32,
    pub write_offset: u64,
    pub write_length: u32,
    pub path: Vec<u8>,
    pub volume: Vec<u8>,
    pub target: Vec<u8>,
}

impl OwnedRecord {
    /// The record as the encoder sees it (fields that do not apply may be non-zero).
    pub fn view(&self) -> EventRecord<'_> {
        EventRecord {
            sequence: self.sequence,
            timestamp: self.timestamp,
            operation: self.operation,
            flags: self.flags,
            pid: self.pid,
            tid: self.tid,
            process_create_time: self.process_create_time,
            status: self.status,
            information: self.information,
            create_disposition: self.create_disposition,
            create_options: self.create_options,
            desired_access: self.desired_access,
            share_access: self.share_access,
            write_offset: self.write_offset,
            write_length: self.write_length,
            path: Utf16Path::from_le_bytes(&self.path).expect("strategy makes valid paths"),
            volume: Utf16Path::from_le_bytes(&self.volume).expect("strategy makes valid paths"),
            target: Utf16Path::from_le_bytes(&self.target).expect("strategy makes valid paths"),
        }
    }

    /// What decoding the encoded record must give: the fields that do not apply to the operation
    /// are zero (the encoder writes them as zero by contract).
    pub fn expected(&self) -> EventRecord<'_> {
        let mut r = self.view();
        if r.operation != Operation::Create {
            r.create_disposition = 0;
            r.create_options = 0;
            r.desired_access = 0;
            r.share_access = 0;
        }
        if !matches!(r.operation, Operation::Write | Operation::Clone) {
            r.write_offset = 0;
            r.write_length = 0;
        }
        if !matches!(
            r.operation,
            Operation::Rename | Operation::Link | Operation::Clone
        ) {
            r.target = Utf16Path::EMPTY;
        }
        r
    }
}

/// Any operation this build knows.
pub fn operation() -> impl Strategy<Value = Operation> {
    prop::sample::select(Operation::ALL.to_vec())
}

/// The operations protocols 1..3 carry.
pub fn old_operation() -> impl Strategy<Value = Operation> {
    prop_oneof![Just(Operation::Create), Just(Operation::Write)]
}

fn flags() -> impl Strategy<Value = RecordFlags> {
    (0..=RecordFlags::ALL.bits()).prop_map(|b| RecordFlags::from_bits(b).expect("known bits"))
}

/// Any record, with paths drawn from `path`, the volume and the target from `volume`.
pub fn record_with<S>(path: S, volume: S) -> impl Strategy<Value = OwnedRecord>
where
    S: Strategy<Value = Vec<u16>>,
{
    // Two independent draws of `volume`: the volume and the target.
    let strings = (path, vec(volume, 2..=2)).prop_map(|(path, mut vt)| {
        let target = vt.pop().unwrap_or_default();
        let volume = vt.pop().unwrap_or_default();
        (path, volume, target)
    });
    record_from(operation(), strings)
}

/// Any record of an operation drawn from `op`, each string from its own strategy (the encoder
/// drops the target where it does not apply).
pub fn record_of<O, P, V, T>(
    op: O,
    path: P,
    volume: V,
    target: T,
) -> impl Strategy<Value = OwnedRecord>
where
    O: Strategy<Value = Operation>,
    P: Strategy<Value = Vec<u16>>,
    V: Strategy<Value = Vec<u16>>,
    T: Strategy<Value = Vec<u16>>,
{
    record_from(op, (path, volume, target))
}

fn record_from<O, S>(op: O, strings: S) -> impl Strategy<Value = OwnedRecord>
where
    O: Strategy<Value = Operation>,
    S: Strategy<Value = (Vec<u16>, Vec<u16>, Vec<u16>)>,
{
    (
        (any::<u64>(), any::<u64>(), op, flags()),
        (any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>()),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()),
        (any::<u32>(), any::<u64>(), any::<u32>()),
        strings,
    )
        .prop_map(
            |(
                (sequence, timestamp, operation, flags),
                (pid, tid, process_create_time, status),
                (information, create_disposition, create_options, desired_access),
                (share_access, write_offset, write_length),
                (path, volume, target),
            )| OwnedRecord {
                sequence,
                timestamp,
                operation,
                flags,
                pid,
                tid,
                process_create_time,
                status,
                information,
                create_disposition,
                create_options,
                desired_access,
                share_access,
                write_offset,
                write_length,
                path: le_bytes(&path),
                volume: le_bytes(&volume),
                target: le_bytes(&target),
            },
        )
}

/// Records with short paths (a few hundred bytes each at most).
pub fn small_record(max_units: usize) -> impl Strategy<Value = OwnedRecord> {
    record_with(short_path_units(max_units), short_path_units(max_units))
}

/// `records` with strictly increasing sequence numbers, starting anywhere.
pub fn sequenced(
    records: impl Strategy<Value = Vec<OwnedRecord>>,
) -> impl Strategy<Value = Vec<OwnedRecord>> {
    (records, 0u64..u64::MAX / 2, vec(1u64..1000, 0..64)).prop_map(|(mut recs, start, steps)| {
        let mut seq = start;
        for (i, r) in recs.iter_mut().enumerate() {
            seq += steps.get(i).copied().unwrap_or(1);
            r.sequence = seq;
        }
        recs
    })
}

/// Encodes `records` into one batch; panics if they do not fit (tests size them to fit).
pub fn encode_batch(records: &[OwnedRecord], dropped_before: u64) -> Vec<u8> {
    let needed: usize = records.iter().map(|r| r.view().encoded_len()).sum();
    let mut buf = vec![0u8; (BATCH_HEADER_LEN + needed).min(MAX_BATCH_BYTES)];
    let mut w = BatchWriter::new(&mut buf).expect("buffer holds a header");
    for r in records {
        w.push(&r.view()).expect("records fit");
    }
    let len = w.finish(dropped_before).expect("header fits");
    buf.truncate(len);
    buf
}

/// Re-encodes a decoded batch with the public encoder.
pub fn reencode_batch(view: &BatchView<'_>) -> Vec<u8> {
    // A valid batch's length field is its exact size.
    let mut buf = vec![0u8; view.header().batch_len as usize];
    let mut w = BatchWriter::new(&mut buf).expect("buffer holds a header");
    for r in view.records() {
        w.push(&r)
            .expect("the records fit the bytes they came from");
    }
    let len = w.finish(view.header().dropped_before).expect("header fits");
    buf.truncate(len);
    buf
}

/// Re-encodes any decoded driver message.
pub fn reencode_message(msg: &Message<'_>) -> Vec<u8> {
    match msg {
        Message::Batch(view) => reencode_batch(view),
        Message::Health(h) => {
            let mut buf = vec![0u8; fsense_proto::Health::LEN];
            let n = h.encode(&mut buf).expect("room for the largest layout");
            buf.truncate(n);
            buf
        }
    }
}

/// Re-encodes a single decoded record.
pub fn reencode_record(r: &EventRecord<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; r.encoded_len()];
    let n = r.encode(&mut buf).expect("exact size");
    assert_eq!(n, buf.len());
    buf
}
