//! Synthetic driver messages for tests, benchmarks and fuzz seeds: real batches built with the
//! real encoder.

use fsense_proto::{BatchWriter, EventRecord, Health, MAX_BATCH_BYTES, Operation, Utf16Path};

/// One event to encode.
#[derive(Debug, Clone)]
pub struct SynthEvent {
    pub operation: Operation,
    /// UTF-16LE bytes.
    pub path: Vec<u8>,
    pub pid: u32,
    pub process_create_time: u64,
    pub timestamp: u64,
    pub status: u32,
    /// UTF-16LE bytes of the second name (rename, link, clone); empty for the others.
    pub target: Vec<u8>,
}

impl SynthEvent {
    pub fn new(operation: Operation, path: &str) -> Self {
        Self::with_units(operation, &path.encode_utf16().collect::<Vec<_>>())
    }

    pub fn with_units(operation: Operation, units: &[u16]) -> Self {
        Self {
            operation,
            path: units.iter().flat_map(|u| u.to_le_bytes()).collect(),
            pid: 4242,
            process_create_time: 133_000_000_000_000_000,
            timestamp: 133_500_000_000_000_000,
            status: 0,
            target: Vec::new(),
        }
    }

    fn record(&self) -> EventRecord<'_> {
        let (path, _) = Utf16Path::truncating(&self.path, usize::MAX);
        let mut r = match self.operation {
            Operation::Create => {
                let mut r = EventRecord::create(path, Utf16Path::EMPTY);
                r.create_disposition = 2;
                r.desired_access = 0x0012_0196;
                r.information = 2;
                r
            }
            Operation::Write | Operation::Clone => {
                let mut r = EventRecord::blank(self.operation, path, Utf16Path::EMPTY);
                r.write_length = 4096;
                r.information = 4096;
                r
            }
            Operation::Delete | Operation::Rename | Operation::Link => {
                EventRecord::blank(self.operation, path, Utf16Path::EMPTY)
            }
        };
        r.target = Utf16Path::truncating(&self.target, usize::MAX).0;
        r.pid = self.pid;
        r.tid = self.pid + 1;
        r.process_create_time = self.process_create_time;
        r.timestamp = self.timestamp;
        r.status = self.status;
        r
    }
}

/// Encodes `events` into batches with consecutive sequence numbers from `first_sequence`,
/// at most `per_batch` records each. `skip` lists sequence numbers to leave out (drops).
pub fn batches(
    events: &[SynthEvent],
    first_sequence: u64,
    per_batch: usize,
    skip: &[u64],
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; MAX_BATCH_BYTES];
    let mut seq = first_sequence;
    let mut chunk_start = 0;
    while chunk_start < events.len() {
        let mut writer = BatchWriter::new(&mut buf).expect("buffer holds a header");
        let mut dropped = 0;
        let mut taken = 0;
        while chunk_start + taken < events.len() && (writer.record_count() as usize) < per_batch {
            while skip.contains(&seq) {
                seq += 1;
                dropped += 1;
            }
            let ev = &events[chunk_start + taken];
            let mut r = ev.record();
            r.sequence = seq;
            if writer.push(&r).is_err() {
                break;
            }
            seq += 1;
            taken += 1;
        }
        assert!(taken > 0, "a record does not fit an empty batch");
        let len = writer.finish(dropped).expect("header fits");
        out.push(buf[..len].to_vec());
        chunk_start += taken;
    }
    out
}

/// An encoded health message.
pub fn health(health: &Health) -> Vec<u8> {
    let mut buf = vec![0u8; Health::LEN];
    let n = health
        .encode(&mut buf)
        .expect("room for the largest layout");
    buf.truncate(n);
    buf
}
