//! Wire-format speed: encode ns/record, decode records/s, queue push+drain ns/record.
//!
//! Run: `cargo bench -p fsense-proto --bench codec` (single-threaded; ~30 s). Numbers and the
//! machine they came from are in `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fsense_proto::{
    BatchView, BatchWriter, EventQueue, EventRecord, MAX_BATCH_BYTES, Message, RecordFlags,
    Utf16Path,
};

/// A typical path: 60 UTF-16 units, volume-relative like what the driver reports.
const PATH: &str = r"\Users\alice\AppData\Local\Temp\cargo-build\obj\main-1.o.tmp";
const VOLUME: &str = r"\Device\HarddiskVolume3";

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn typical<'a>(path: &'a [u8], volume: &'a [u8]) -> EventRecord<'a> {
    let mut r = EventRecord::write(
        Utf16Path::from_le_bytes(path).expect("even length"),
        Utf16Path::from_le_bytes(volume).expect("even length"),
    );
    r.timestamp = 133_500_000_000_000_000;
    r.pid = 4242;
    r.tid = 4243;
    r.process_create_time = 133_499_999_000_000_000;
    r.information = 4096;
    r.write_offset = 1 << 20;
    r.write_length = 4096;
    r.flags = RecordFlags::NAME_FROM_CONTEXT;
    r
}

/// A batch of `count` typical records, as the driver would send it.
fn batch_of(record: &EventRecord<'_>, count: u64, buf: &mut [u8]) -> usize {
    let mut w = BatchWriter::new(buf).expect("room for the header");
    let mut r = *record;
    for s in 1..=count {
        r.sequence = s;
        w.push(&r).expect("fits");
    }
    w.finish(0).expect("header fits")
}

fn benches(c: &mut Criterion) {
    let path = utf16(PATH);
    let volume = utf16(VOLUME);
    assert_eq!(path.len() / 2, 60, "the typical path is 60 units");
    let record = typical(&path, &volume);

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let mut out = [0u8; 512];
    let mut sequence = 0u64;
    g.bench_function("record", |b| {
        b.iter(|| {
            sequence += 1;
            black_box(&record)
                .encode_with_sequence(sequence, black_box(&mut out))
                .expect("fits")
        })
    });
    // Whole batches through BatchWriter::push (per-record cost includes the ordering check).
    let per_batch = 512u64;
    g.throughput(Throughput::Elements(per_batch));
    let mut batch_buf = vec![0u8; MAX_BATCH_BYTES];
    g.bench_function("batch_of_512", |b| {
        b.iter(|| batch_of(black_box(&record), per_batch, &mut batch_buf))
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    // The largest batch the protocol allows, filled with typical records.
    let full = (MAX_BATCH_BYTES - fsense_proto::batch::BATCH_HEADER_LEN) / record.encoded_len();
    let len = batch_of(&record, full as u64, &mut batch_buf);
    let bytes = &batch_buf[..len];
    g.throughput(Throughput::Elements(full as u64));
    g.bench_function("full_batch", |b| {
        b.iter(|| {
            let Ok(Message::Batch(view)) = Message::decode(black_box(bytes)) else {
                panic!("valid batch");
            };
            // Touch every record as a consumer would: sequence, path length.
            view.records()
                .fold(0u64, |acc, r| acc ^ r.sequence ^ r.path.units() as u64)
        })
    });
    // Validation alone (what `parse` costs before any record is handed out).
    g.bench_function("full_batch_parse_only", |b| {
        b.iter(|| BatchView::parse(black_box(bytes)).map(|v| v.header().record_count))
    });
    g.finish();

    let mut g = c.benchmark_group("queue");
    let rounds = 256u32;
    g.throughput(Throughput::Elements(rounds.into()));
    // 1 MiB of ring (the driver's default is larger; size does not change per-record cost).
    let mut storage = vec![0u8; 1 << 20];
    let mut queue = EventQueue::new(&mut storage, 8192);
    g.bench_function("push_drain_256", |b| {
        b.iter(|| {
            for _ in 0..rounds {
                black_box(queue.push(black_box(&record)));
            }
            let mut w = BatchWriter::new(&mut batch_buf).expect("room for the header");
            let moved = queue.drain_into(&mut w);
            let dropped = queue.take_unreported_drops();
            black_box(w.finish(dropped).expect("header fits"));
            moved
        })
    });
    g.finish();
}

criterion_group! {
    name = codec;
    // Short runs: the whole file takes well under a minute on a 2-core machine.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(codec);
