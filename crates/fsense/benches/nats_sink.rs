//! Events into NATS JetStream, sustained: the pipeline with its file output alone, then with
//! `--sink` (memory spool, disk spool) publishing to a local single-node stream, each run timed
//! until JetStream acknowledged every event. Also the spool's replay rate: reading a backlog off
//! disk, and delivering a backlog an earlier run left. Target: >= 100,000 events/s.
//!
//! Needs `nats-server` on PATH (scripts/setup.sh); without it the NATS cases are skipped.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fsense::enrich::{Offline, ProcessCache};
use fsense::filter::Filter;
use fsense::paths::DosDeviceMap;
use fsense::pipeline::Pipeline;
use fsense::sink::EventSink;
use fsense::sink::nats::NatsSink;
use fsense::sink::options::{SinkConfig, parse_url};
use fsense::sink::spool::{Spool, SpoolConfig};
use fsense::synth::{self, SynthEvent};
use fsense_proto::Operation;

const EVENTS: usize = 100_000;

fn batches() -> Vec<Vec<u8>> {
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            let op = if i % 3 == 0 {
                Operation::Create
            } else {
                Operation::Write
            };
            SynthEvent::new(
                op,
                &format!(
                    "\\Device\\HarddiskVolume3\\Users\\ann\\Documents\\project-{}\\report-{i}.docx",
                    i % 17
                ),
            )
        })
        .collect();
    synth::batches(&events, 1, 256, &[])
}

fn pipeline(out: std::fs::File) -> Pipeline {
    Pipeline::new(
        ProcessCache::new(Box::new(Offline), 4096),
        Filter::new(None, &[], None).unwrap(),
        DosDeviceMap::new(vec![("\\Device\\HarddiskVolume3".into(), "C:".into())]),
        Box::new(out),
        None,
    )
}

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server(store: &std::path::Path) -> Option<Server> {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let s = Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(s)
}

fn config(port: u16, spool_dir: Option<&std::path::Path>, run: u64) -> SinkConfig {
    SinkConfig {
        url: parse_url(&format!("nats://127.0.0.1:{port}/bench.events")).unwrap(),
        creds: None,
        ca_file: None,
        stream: "BENCH".into(),
        replicas: 1,
        spool: SpoolConfig {
            dir: spool_dir.map(|d| d.to_path_buf()),
            max_bytes: 4 << 30,
        },
        drain: Duration::from_secs(30),
        host: "bench".into(),
        run,
    }
}

fn spool_config(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        dir: Some(dir.to_path_buf()),
        max_bytes: 4 << 30,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// EVENTS core NATS messages, then a flush (the server has read them all).
async fn core_publish(port: u16, payload: bytes::Bytes) -> Duration {
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let start = Instant::now();
    for _ in 0..EVENTS {
        client.publish("bench.core", payload.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
    start.elapsed()
}

/// EVENTS JetStream messages with message ids, at most WINDOW acknowledgements outstanding,
/// awaited in order, until the last is acknowledged.
async fn jetstream_publish(port: u16, payload: bytes::Bytes, run: u64) -> Duration {
    use async_nats::jetstream;
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(fsense::sink::nats::WINDOW)
        .build(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: "FLOOR".into(),
        subjects: vec!["bench.floor".into()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..EVENTS {
        if pending.len() == fsense::sink::nats::WINDOW {
            let ack: jetstream::context::PublishAckFuture = pending.pop_front().unwrap();
            ack.await.unwrap();
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("floor/{run}/{i}").as_str(),
        );
        pending.push_back(
            js.publish_with_headers("bench.floor", headers, payload.clone())
                .await
                .unwrap(),
        );
    }
    for ack in pending {
        ack.await.unwrap();
    }
    start.elapsed()
}

const BACKLOG_EVENT: &[u8] = br#"{"activity_id":1,"category_uid":1,"class_uid":1001,"class_name":"File System Activity","severity_id":1,"type_uid":100101,"file":{"name":"report.docx","parent_folder":"C:\\Users\\ann\\Documents\\project-1","path":"C:\\Users\\ann\\Documents\\project-1\\report.docx","type_id":1},"metadata":{"product":{"name":"fsense","vendor_name":"fsense"},"version":"1.1.0"},"time":1700000000000}"#;

/// A spool holding EVENTS unacknowledged OCSF-sized events, as an outage leaves it.
fn fill_backlog(dir: &std::path::Path, run: u64) {
    let (mut s, _) = Spool::open(&spool_config(dir)).unwrap();
    for i in 0..EVENTS {
        s.append(format!("bench/{run}/1/{i}").as_bytes(), BACKLOG_EVENT)
            .unwrap();
    }
    s.sync().unwrap();
}

fn run_pipeline(batches: &[Vec<u8>], dir: &std::path::Path, sink: Option<NatsSink>) -> Duration {
    let out = std::fs::File::create(dir.join("out.jsonl")).unwrap();
    let mut p = pipeline(out);
    let with_sink = sink.is_some();
    if let Some(s) = sink {
        p.set_sink(Box::new(s));
    }
    let start = Instant::now();
    for b in batches {
        p.handle_message(b, 0).unwrap().unwrap();
    }
    p.finish(0).unwrap();
    let took = start.elapsed();
    if with_sink {
        let s = p.stats().sink.unwrap();
        assert_eq!(s.acknowledged, EVENTS as u64, "{s:?}");
    }
    took
}

fn bench(c: &mut Criterion) {
    let batches = batches();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("sink");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("file_output_only", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run_pipeline(&batches, tmp.path(), None))
                .sum()
        })
    });

    let store = tempfile::tempdir().unwrap();
    let Some(srv) = server(store.path()) else {
        eprintln!("nats-server not available: NATS benchmarks skipped");
        return;
    };
    let mut run = 1u64;
    for (name, disk) in [
        ("file_output_and_nats_memory_spool", false),
        ("file_output_and_nats_disk_spool", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let spool = tempfile::tempdir().unwrap();
                    let sink =
                        NatsSink::start(config(srv.1, disk.then_some(spool.path()), run)).unwrap();
                    total += run_pipeline(&batches, tmp.path(), Some(sink));
                }
                total
            })
        });
    }

    // The floor: the same payloads published by a bare async-nats program (no pipeline, no
    // spool), first as core NATS messages (no acknowledgement), then into JetStream with the
    // sink's window of acknowledgements. What the sink gets cannot exceed the second.
    let payload = bytes::Bytes::from_static(BACKLOG_EVENT);
    g.bench_function("floor_core_nats_publish", |b| {
        b.iter_custom(|iters| {
            let rt = runtime();
            (0..iters)
                .map(|_| rt.block_on(core_publish(srv.1, payload.clone())))
                .sum()
        })
    });
    g.bench_function("floor_jetstream_publish", |b| {
        b.iter_custom(|iters| {
            let rt = runtime();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                total += rt.block_on(jetstream_publish(srv.1, payload.clone(), run));
            }
            total
        })
    });

    // A backlog on disk: what a restart after an outage replays.
    let backlog = tempfile::tempdir().unwrap();
    fill_backlog(backlog.path(), 1);
    g.bench_function("spool_read_backlog", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut s, rec) = Spool::open(&spool_config(backlog.path())).unwrap();
                assert_eq!(rec.pending, EVENTS as u64);
                let mut out = Vec::with_capacity(8192);
                let start = Instant::now();
                let mut n = 0;
                while n < EVENTS {
                    out.clear();
                    n += s.read_next(8192, &mut out).unwrap();
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("spool_deliver_backlog", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                // Fresh ids each round, or the server would drop them as duplicates.
                let dir = tempfile::tempdir().unwrap();
                fill_backlog(dir.path(), run);
                let start = Instant::now();
                let mut sink = NatsSink::start(config(srv.1, Some(dir.path()), run)).unwrap();
                let s = sink.finish().unwrap();
                total += start.elapsed();
                assert_eq!(s.acknowledged, EVENTS as u64, "{s:?}");
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
