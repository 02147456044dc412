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

/// Issue 27's records: per 8 events a create, three writes, a rename to a new extension, a delete,
/// a hard link and a block clone (the last four with a second name), as ransomware would leave them.
fn namespace_batches() -> Vec<Vec<u8>> {
    let create_time = own_create_time();
    let ops = [
        Operation::Create,
        Operation::Write,
        Operation::Write,
        Operation::Write,
        Operation::Rename,
        Operation::Delete,
        Operation::Link,
        Operation::Clone,
    ];
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            let op = ops[i % ops.len()];
            let path = format!(
                "\\Device\\HarddiskVolume3\\Users\\ann\\Documents\\project-{}\\report-{i}.docx",
                i % 17
            );
            let mut e = SynthEvent::new(op, &path);
            if op.has_target() {
                e.target = format!("{path}.locked")
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect();
            }
            e.pid = std::process::id();
            e.process_create_time = create_time;
            e
        })
        .collect();
    synth::batches(&events, 1, 256, &[])
}

/// The two ransomware templates and a `path_match` on the new name of a rename.
const RANSOM_RULES: &str = r#"
version = 1
[[rule]]
id = "mass-rename"
template = "rename_burst"
severity = "critical"
[rule.fields]
renames = 50
window_ms = 10000
[[rule]]
id = "write-then-delete"
template = "delete_burst"
severity = "critical"
[rule.fields]
writes = 50
deletes = 50
window_ms = 10000
[[rule]]
id = "locked"
template = "path_match"
severity = "high"
[rule.fields]
operation = "rename"
name = "target"
glob = "**/*.locked"
"#;

fn pipeline(excludes: &[String]) -> Pipeline {
    pipeline_with(excludes, None)
}

fn pipeline_with(excludes: &[String], rules: Option<fsense::pipeline::content::Rules>) -> Pipeline {
    Pipeline::new(
        ProcessCache::new(enrich::live(), 4096),
        Filter::new(None, excludes, rules).unwrap(),
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
    let namespace = namespace_batches();
    let mut p = pipeline(&[]);
    g.bench_function("namespace_mix_ocsf_json", |b| {
        b.iter(|| {
            for batch in &namespace {
                let _ = p.handle_message(black_box(batch), 0).unwrap();
            }
        })
    });
    let rules_file =
        std::env::temp_dir().join(format!("fsense-bench-rules-{}.toml", std::process::id()));
    std::fs::write(&rules_file, RANSOM_RULES).unwrap();
    let rules = fsense::pipeline::content::Rules::from_file(&rules_file).unwrap();
    let _ = std::fs::remove_file(&rules_file);
    let mut p = pipeline_with(&[], Some(rules));
    g.bench_function("namespace_mix_ransom_rules_ocsf_json", |b| {
        b.iter(|| {
            for batch in &namespace {
                let _ = p.handle_message(black_box(batch), 0).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
