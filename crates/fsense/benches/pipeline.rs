//! decode + enrich + filter + OCSF JSON, one core: events per second through the consumer's
//! pipeline. Target: >= 1 M events/s.
//!
//! The events are real fsense-proto batches (256 records each) with Windows-style paths mapped
//! to drive letters; enrichment is the live process lookup with its cache, for a pid that exists
//! (this process, with its real creation time), so each event pays a cache lookup as in
//! production. Output goes to a sink: the cost measured is the serialisation, not the disk.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fsense::pipeline::Pipeline;
use fsense::pipeline::enrich::{self, ProcessCache};
use fsense::pipeline::filter::Filter;
use fsense::pipeline::paths::DosDeviceMap;
use fsense::source::synth::{self, SynthEvent};
use fsense_proto::{Message, Operation};

const EVENTS: usize = 16_384;

fn own_create_time() -> u64 {
    #[cfg(target_os = "linux")]
    {
        fsense::pipeline::enrich::procfs::ProcClock::new()
            .start_time(std::process::id())
            .unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

fn batches() -> Vec<Vec<u8>> {
    let create_time = own_create_time();
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            let op = if i % 3 == 0 {
                Operation::Create
            } else {
                Operation::Write
            };
            let mut e = SynthEvent::new(
                op,
                &format!(
                    "\\Device\\HarddiskVolume3\\Users\\ann\\Documents\\project-{}\\report-{i}.docx",
                    i % 17
                ),
            );
            e.pid = std::process::id();
            e.process_create_time = create_time;
            e
        })
        .collect();
    synth::batches(&events, 1, 256, &[])
}

fn pipeline(excludes: &[String]) -> Pipeline {
    Pipeline::new(
        ProcessCache::new(enrich::live(), 4096),
        Filter::new(None, excludes, None).unwrap(),
        DosDeviceMap::new(vec![("\\Device\\HarddiskVolume3".into(), "C:".into())]),
        Box::new(std::io::sink()),
        None,
    )
}

fn bench(c: &mut Criterion) {
    let batches = batches();
    let mut g = c.benchmark_group("consumer");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for batch in &batches {
                if let Ok(Message::Batch(v)) = Message::decode(black_box(batch)) {
                    n += v.records().count();
                }
            }
            n
        })
    });
    let mut p = pipeline(&[]);
    g.bench_function("decode_enrich_ocsf_json", |b| {
        b.iter(|| {
            for batch in &batches {
                let _ = p.handle_message(black_box(batch), 0).unwrap();
            }
        })
    });
    let mut p = pipeline(&[
        "C:\\Windows\\**".into(),
        "**/*.tmp".into(),
        "**/node_modules/**".into(),
    ]);
    g.bench_function("decode_enrich_exclude3_ocsf_json", |b| {
        b.iter(|| {
            for batch in &batches {
                let _ = p.handle_message(black_box(batch), 0).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
