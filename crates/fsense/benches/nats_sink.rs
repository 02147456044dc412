//! Events into NATS JetStream, sustained: the pipeline with its file output alone, then with
//! `--sink` (memory spool, disk spool) publishing to a local single-node stream, each run timed
//! until JetStream acknowledged every event; the sink alone given the same events; and the
//! spool's replay rate: reading a backlog off disk, and delivering a backlog an earlier run left.
//! Target: >= 100,000 events/s.
//!
//! The floor: the same payloads from a bare async-nats program, core NATS and JetStream, the
//! JetStream cases varied one thing at a time to give the server its best chance (a larger
//! window of acknowledgements, memory storage, no `Nats-Msg-Id`, two streams at once, all of
//! them together), and published the sink's way (reply subjects of its own). Every sample
//! starts on a new, empty stream. For each NATS case the server's CPU time (/proc/PID/stat) and
//! this process's are printed as a share of the timed wall time: 200% is both cores.
//!
//! Needs `nats-server` on PATH (scripts/setup.sh); without it the NATS cases are skipped. In
//! test mode (`cargo test --benches`, no `--bench` argument) each case runs once on 2,000
//! events.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fsense::output::sink::EventSink;
use fsense::output::sink::config::{SinkConfig, parse_url};
use fsense::output::sink::nats::NatsSink;
use fsense::output::sink::spool::{Spool, SpoolConfig};
use fsense::pipeline::Pipeline;
use fsense::pipeline::enrich::{Offline, ProcessCache};
use fsense::pipeline::filter::Filter;
use fsense::pipeline::paths::DosDeviceMap;
use fsense::source::synth::{self, SynthEvent};
use fsense_proto::Operation;

/// Events per sample (a bench run) or per check (test mode).
fn events() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        if std::env::args().any(|a| a == "--bench") {
            100_000
        } else {
            2_000
        }
    })
}

fn batches() -> Vec<Vec<u8>> {
    let events: Vec<_> = (0..events())
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
        meanwhile: "spooling events",
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

/// CPU time of a process so far (user + system), from /proc/PID/stat.
fn cpu_time(pid: &str) -> Duration {
    static TICKS_PER_SECOND: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let hz = *TICKS_PER_SECOND.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    });
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz.max(1))
}

/// CPU used by the server and by this process over the timed parts of a case.
#[derive(Default)]
struct CpuTally {
    server: Duration,
    own: Duration,
    wall: Duration,
}

impl CpuTally {
    /// Times `f`, adding the CPU time both processes used meanwhile.
    fn measure(&mut self, server_pid: u32, f: impl FnOnce() -> Duration) -> Duration {
        let pid = server_pid.to_string();
        let (server, own) = (cpu_time(&pid), cpu_time("self"));
        let took = f();
        self.server += cpu_time(&pid).saturating_sub(server);
        self.own += cpu_time("self").saturating_sub(own);
        self.wall += took;
        took
    }

    fn report(&mut self, case: &str) {
        if self.wall.is_zero() {
            return;
        }
        let share = |d: Duration| 100.0 * d.as_secs_f64() / self.wall.as_secs_f64();
        eprintln!(
            "{case}: nats-server CPU {:.0}%, bench process CPU {:.0}% of the timed wall time \
             ({:.2} s; 200% = both cores)",
            share(self.server),
            share(self.own),
            self.wall.as_secs_f64()
        );
        *self = Self::default();
    }
}

/// `events()` core NATS messages, then a flush (the server has read them all).
async fn core_publish(port: u16, payload: bytes::Bytes) -> Duration {
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let start = Instant::now();
    for _ in 0..events() {
        client.publish("bench.core", payload.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
    start.elapsed()
}

/// A JetStream floor case: how a bare publisher sends the events.
#[derive(Clone, Copy)]
struct Floor {
    name: &'static str,
    /// Acknowledgements outstanding at most (per stream).
    window: usize,
    memory: bool,
    msg_id: bool,
    /// Streams published to at once (one connection each), the events split between them.
    streams: usize,
}

const SINK_WINDOW: usize = fsense::output::sink::nats::WINDOW;

const FLOORS: [Floor; 7] = [
    // The sink's own settings: file storage, message ids, its window.
    Floor {
        name: "floor_jetstream_publish",
        window: SINK_WINDOW,
        memory: false,
        msg_id: true,
        streams: 1,
    },
    Floor {
        name: "floor_jetstream_window_32768",
        window: 32_768,
        memory: false,
        msg_id: true,
        streams: 1,
    },
    Floor {
        name: "floor_jetstream_window_65536",
        window: 65_536,
        memory: false,
        msg_id: true,
        streams: 1,
    },
    Floor {
        name: "floor_jetstream_memory_storage",
        window: SINK_WINDOW,
        memory: true,
        msg_id: true,
        streams: 1,
    },
    Floor {
        name: "floor_jetstream_no_msg_id",
        window: SINK_WINDOW,
        memory: false,
        msg_id: false,
        streams: 1,
    },
    Floor {
        name: "floor_jetstream_two_streams",
        window: SINK_WINDOW,
        memory: false,
        msg_id: true,
        streams: 2,
    },
    // Everything that helps at once: the best JetStream can do here.
    Floor {
        name: "floor_jetstream_best_chance",
        window: 65_536,
        memory: true,
        msg_id: false,
        streams: 2,
    },
];

fn floor_stream(f: &Floor, i: usize) -> (String, String) {
    let storage = if f.memory { "M" } else { "F" };
    (
        format!("FLOOR{storage}{i}"),
        format!("bench.floor.{storage}.{i}"),
    )
}

/// Deletes a stream if it is there: each sample starts from an empty store and an empty
/// duplicate window (the server's table of message ids, which a purge may keep), so later cases
/// do not pay for the ids earlier ones left. Untimed.
async fn delete_stream(js: &async_nats::jetstream::Context, name: &str) {
    let _ = js.delete_stream(name).await;
}

/// The sink's stream, deleted before a sample (the sink creates it again).
fn reset_sink_stream(rt: &tokio::runtime::Runtime, port: u16) {
    rt.block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        delete_stream(&async_nats::jetstream::new(client), "BENCH").await;
    });
}

/// The case's streams, new and empty: untimed.
async fn floor_prepare(port: u16, f: Floor) {
    use async_nats::jetstream::{self, stream};
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = jetstream::new(client);
    for i in 0..f.streams {
        let (name, subject) = floor_stream(&f, i);
        delete_stream(&js, &name).await;
        js.create_stream(stream::Config {
            name,
            subjects: vec![subject],
            storage: if f.memory {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

/// `count` messages into stream `i` of the case, at most `f.window` acknowledgements
/// outstanding, awaited in order, until the last is acknowledged.
async fn floor_publish_one(port: u16, payload: bytes::Bytes, run: u64, f: Floor, i: usize) {
    use async_nats::jetstream;
    let count = events() / f.streams;
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(f.window)
        .build(client);
    let (_, subject) = floor_stream(&f, i);
    let subject = async_nats::Subject::from(subject);
    let mut pending = std::collections::VecDeque::with_capacity(f.window);
    for n in 0..count {
        if pending.len() == f.window {
            let ack: jetstream::context::PublishAckFuture = pending.pop_front().unwrap();
            ack.await.unwrap();
        }
        let ack = if f.msg_id {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("floor/{run}/{i}/{n}").as_str(),
            );
            js.publish_with_headers(subject.clone(), headers, payload.clone())
                .await
        } else {
            js.publish(subject.clone(), payload.clone()).await
        };
        pending.push_back(ack.unwrap());
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

/// The case's events over its streams at once; timed from the first publish to the last ack.
async fn floor_publish(port: u16, payload: bytes::Bytes, run: u64, f: Floor) -> Duration {
    let start = Instant::now();
    futures::future::join_all(
        (0..f.streams).map(|i| floor_publish_one(port, payload.clone(), run, f, i)),
    )
    .await;
    start.elapsed()
}

/// The sink's settings, published the sink's way: a reply subject of its own per message (one
/// wildcard subscription, a counter for the token) instead of async-nats' JetStream publish (a
/// request each: a random token, a oneshot channel, a timer, a semaphore permit). Answers are
/// only counted here.
async fn floor_own_replies(port: u16, payload: bytes::Bytes, run: u64) -> Duration {
    use futures::StreamExt;
    let f = FLOORS[0];
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let (_, subject) = floor_stream(&f, 0);
    let subject = async_nats::Subject::from(subject);
    let inbox = client.new_inbox();
    let mut acks = client.subscribe(format!("{inbox}.*")).await.unwrap();
    let start = Instant::now();
    let mut outstanding = 0usize;
    let mut acked = 0usize;
    let count = events();
    let mut id = String::new();
    for n in 0..count {
        if outstanding == f.window {
            let m = acks.next().await.unwrap();
            assert!(m.payload.starts_with(b"{\"stream\""), "{m:?}");
            outstanding -= 1;
            acked += 1;
        }
        use std::fmt::Write;
        id.clear();
        write!(id, "own/{run}/{n}").unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        client
            .publish_with_reply_and_headers(
                subject.clone(),
                format!("{inbox}.{n}"),
                headers,
                payload.clone(),
            )
            .await
            .unwrap();
        outstanding += 1;
    }
    while acked < count {
        let m = acks.next().await.unwrap();
        assert!(m.payload.starts_with(b"{\"stream\""), "{m:?}");
        acked += 1;
    }
    start.elapsed()
}

const BACKLOG_EVENT: &[u8] = br#"{"activity_id":1,"category_uid":1,"class_uid":1001,"class_name":"File System Activity","severity_id":1,"type_uid":100101,"file":{"name":"report.docx","parent_folder":"C:\\Users\\ann\\Documents\\project-1","path":"C:\\Users\\ann\\Documents\\project-1\\report.docx","type_id":1},"metadata":{"product":{"name":"fsense","vendor_name":"fsense"},"version":"1.1.0"},"time":1700000000000}"#;

/// A spool holding `events()` unacknowledged OCSF-sized events, as an outage leaves it.
fn fill_backlog(dir: &std::path::Path, run: u64) {
    let (mut s, _) = Spool::open(&spool_config(dir)).unwrap();
    for i in 0..events() {
        s.append(format!("bench/{run}/1/{i}").as_bytes(), BACKLOG_EVENT)
            .unwrap();
    }
    s.sync().unwrap();
}

/// `events()` OCSF-sized events into the sink, flushed every 256 as the pipeline does after a
/// batch, until JetStream acknowledged the last.
fn publish_events(sink: &mut NatsSink) -> Duration {
    let start = Instant::now();
    for i in 0..events() {
        let key = fsense::output::sink::EventKey {
            session: 1,
            sequence: i as u64,
        };
        sink.send(key, BACKLOG_EVENT).unwrap();
        if i % 256 == 255 {
            sink.flush().unwrap();
        }
    }
    let s = sink.finish().unwrap();
    let took = start.elapsed();
    assert_eq!(s.acknowledged, events() as u64, "{s:?}");
    took
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
        assert_eq!(s.acknowledged, events() as u64, "{s:?}");
    }
    took
}

fn bench(c: &mut Criterion) {
    let batches = batches();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("sink");
    g.throughput(Throughput::Elements(events() as u64));
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
    let server_pid = srv.0.id();
    let rt = runtime();
    let mut cpu = CpuTally::default();
    let mut run = 1u64;
    for (name, disk, alone) in [
        ("file_output_and_nats_memory_spool", false, false),
        ("file_output_and_nats_disk_spool", true, false),
        // The sink alone, given the events as the pipeline gives them (no decoding, no OCSF, no
        // file output on the same cores): what it publishes sustained.
        ("nats_publish_memory_spool", false, true),
        ("nats_publish_disk_spool", true, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    reset_sink_stream(&rt, srv.1);
                    let spool = tempfile::tempdir().unwrap();
                    let mut sink =
                        NatsSink::start(config(srv.1, disk.then_some(spool.path()), run)).unwrap();
                    total += cpu.measure(server_pid, || {
                        if alone {
                            publish_events(&mut sink)
                        } else {
                            run_pipeline(&batches, tmp.path(), Some(sink))
                        }
                    });
                }
                total
            })
        });
        cpu.report(name);
    }

    // The floor: the same payloads published by a bare async-nats program (no pipeline, no
    // spool), first as core NATS messages (no acknowledgement), then into JetStream: with the
    // sink's settings (what the sink gets cannot exceed it), then with what could make the
    // server faster.
    let payload = bytes::Bytes::from_static(BACKLOG_EVENT);
    g.bench_function("floor_core_nats_publish", |b| {
        b.iter_custom(|iters| {
            let rt = runtime();
            (0..iters)
                .map(|_| {
                    cpu.measure(server_pid, || {
                        rt.block_on(core_publish(srv.1, payload.clone()))
                    })
                })
                .sum()
        })
    });
    cpu.report("floor_core_nats_publish");
    for floor in FLOORS {
        g.bench_function(floor.name, |b| {
            b.iter_custom(|iters| {
                let rt = runtime();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    rt.block_on(floor_prepare(srv.1, floor));
                    total += cpu.measure(server_pid, || {
                        rt.block_on(floor_publish(srv.1, payload.clone(), run, floor))
                    });
                }
                total
            })
        });
        cpu.report(floor.name);
    }

    g.bench_function("floor_jetstream_own_replies", |b| {
        b.iter_custom(|iters| {
            let rt = runtime();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                rt.block_on(floor_prepare(srv.1, FLOORS[0]));
                total += cpu.measure(server_pid, || {
                    rt.block_on(floor_own_replies(srv.1, payload.clone(), run))
                });
            }
            total
        })
    });
    cpu.report("floor_jetstream_own_replies");
    // A backlog on disk: what a restart after an outage replays.
    let backlog = tempfile::tempdir().unwrap();
    fill_backlog(backlog.path(), 1);
    g.bench_function("spool_read_backlog", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut s, rec) = Spool::open(&spool_config(backlog.path())).unwrap();
                assert_eq!(rec.pending, events() as u64);
                let mut out = Vec::with_capacity(8192);
                let start = Instant::now();
                let mut n = 0;
                while n < events() {
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
                reset_sink_stream(&rt, srv.1);
                let dir = tempfile::tempdir().unwrap();
                fill_backlog(dir.path(), run);
                let mut s = None;
                total += cpu.measure(server_pid, || {
                    let start = Instant::now();
                    let mut sink = NatsSink::start(config(srv.1, Some(dir.path()), run)).unwrap();
                    s = Some(sink.finish().unwrap());
                    start.elapsed()
                });
                let s = s.unwrap();
                assert_eq!(s.acknowledged, events() as u64, "{s:?}");
            }
            total
        })
    });
    cpu.report("spool_deliver_backlog");
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
