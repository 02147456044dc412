//! `--sink nats://...` against a real `nats-server` on loopback: one message per event, nothing
//! lost and nothing doubled when the server, the stream leader or the consumer dies mid-run.
//!
//! One single-node server serves the tests that do not stop it (each test has its own stream and
//! subject); the restart and cluster tests start their own.
#![cfg(all(feature = "nats", target_os = "linux"))]

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

fn fsense_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fsense"));
    c.args(args);
    c
}

fn fsense(args: &[&str]) -> Output {
    fsense_cmd(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Option<Child>,
    args: Vec<String>,
    port: u16,
    name: String,
    _store: Option<tempfile::TempDir>,
    /// For a server kept in a `static` (never dropped): the write end of its guard's stdin. The
    /// guard kills the server when this closes, i.e. when the test process exits.
    guard: Option<std::process::ChildStdin>,
}

impl Server {
    /// A server on fresh ports, started; `cluster`: (this node's route port, every node's route
    /// port).
    fn start(name: &str, store: &Path, cluster: Option<(u16, &[u16])>) -> Self {
        let mut s = Self::new(name, store, cluster);
        s.run();
        s
    }

    /// The same, not started yet.
    fn new(name: &str, store: &Path, cluster: Option<(u16, &[u16])>) -> Self {
        let port = free_port();
        let mon = free_port();
        let mut args: Vec<String> = [
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &mon.to_string(),
            "-js",
            "-sd",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(store.to_str().unwrap().into());
        args.extend(["-n".into(), name.into()]);
        if let Some((own, all)) = cluster {
            let routes: Vec<String> = all
                .iter()
                .filter(|p| **p != own)
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            args.extend([
                "--cluster".into(),
                format!("nats://127.0.0.1:{own}"),
                "--cluster_name".into(),
                "fsense".into(),
                "--routes".into(),
                routes.join(","),
            ]);
        }
        Self {
            child: None,
            args,
            port,
            name: name.into(),
            _store: None,
            guard: None,
        }
    }

    /// Starts a server that the test process outlives no longer than it must: statics are not
    /// dropped, so a plain child would keep running after the tests.
    fn start_guarded(mut self) -> Self {
        let mut child = Command::new("sh")
            .args([
                "-c",
                r#"nats-server "$@" & s=$!; read line; kill -9 $s; wait $s"#,
                "sh",
            ])
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh and nats-server are installed (scripts/setup.sh)");
        self.guard = child.stdin.take();
        self.child = Some(child);
        self.wait_listening();
        self
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run(&mut self) {
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/setup.sh)");
        self.child = Some(child);
        self.wait_listening();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, subject: &str) -> String {
        format!("nats://127.0.0.1:{}/{subject}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server the tests share (never stopped; it ends with the test process).
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let store = tempfile::tempdir().unwrap();
        let mut s = Server::new("shared", store.path(), None);
        s._store = Some(store);
        s.start_guarded()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every message of `stream`: its `Nats-Msg-Id`s, in stream order; payloads checked to be JSON.
/// Retried for a while: after a node was killed, the cluster may still be electing leaders (on
/// a fresh CI machine with Miri running beside the tests, 30 s were once not enough).
fn read_stream(port: u16, stream: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match runtime().block_on(try_read_stream(port, stream)) {
            Ok(ids) => return ids,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reading {stream} back: {e}; again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("cannot read {stream} back: {e}"),
        }
    }
}

async fn try_read_stream(port: u16, stream: &str) -> Result<Vec<String>, String> {
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .map_err(|e| e.to_string())?;
    read_all(client, stream).await
}

async fn read_all(client: async_nats::Client, stream: &str) -> Result<Vec<String>, String> {
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let n = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    while (ids.len() as u64) < n {
        let m = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .map_err(|_| "timed out reading".to_string())?
            .ok_or("the stream ended early")?
            .map_err(|e| e.to_string())?;
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .expect("every message has an id")
            .to_string();
        if ids.len() % 1000 == 0 {
            let v: Value = serde_json::from_slice(&m.payload).expect("the payload is JSON");
            assert!(v["class_uid"].is_number(), "{v}");
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Messages in `stream` now (0 when it does not exist yet).
fn stream_count(port: u16, stream: &str) -> u64 {
    runtime().block_on(async {
        let Ok(client) = async_nats::connect(format!("127.0.0.1:{port}")).await else {
            return 0;
        };
        let js = async_nats::jetstream::new(client);
        match js.get_stream(stream).await {
            Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    })
}

/// Messages in `stream` now, asked until the server answers (it may be starting).
fn stored(port: u16, stream: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = runtime().block_on(async {
            let client = async_nats::connect(format!("127.0.0.1:{port}"))
                .await
                .ok()?;
            let js = async_nats::jetstream::new(client);
            let mut s = js.get_stream(stream).await.ok()?;
            s.info().await.ok().map(|i| i.state.messages)
        });
        match answer {
            Some(n) => return n,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => panic!("no answer about {stream}"),
        }
    }
}

/// Creates `config`'s stream on `port` (made by an operator before fsense runs).
fn create_stream(port: u16, config: async_nats::jetstream::stream::Config) {
    runtime().block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        async_nats::jetstream::new(client)
            .create_stream(config)
            .await
            .unwrap();
    });
}

fn assert_one_per_event(ids: &[String], expected: u64) {
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "duplicates in the stream");
    assert_eq!(ids.len() as u64, expected, "messages in the stream");
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "fsense did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn simulate_args(url: &str, stream: &str, events: u64, summary: &Path) -> Vec<String> {
    [
        "simulate",
        "--events",
        &events.to_string(),
        "--quiet",
        "--sink",
        url,
        "--nats-stream",
        stream,
        "--summary-json",
        summary.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `fsense simulate` fails its run (exit 1) when an I/O callback of the simulated driver took over
/// 50 ms, which a loaded machine can cause; the sink is what is tested here, so that is accepted.
fn run_sim(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fsense(&args);
    let e = stderr(&o);
    assert!(
        o.status.success() || (o.status.code() == Some(1) && e.contains("simulation failed")),
        "{e}"
    );
    o
}

/// A capture of `events` synthetic events, sequence numbers 1..=events (made once per size and
/// test binary).
fn capture(events: u64) -> PathBuf {
    use fsense::source::capture::{CaptureWriter, SourceKind};
    use fsense::source::synth::{self, SynthEvent};
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static MADE: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(format!("{events}.fsc"));
    let mut made = MADE.lock().unwrap();
    if !made.contains(&events) {
        let list: Vec<_> = (0..events)
            .map(|i| {
                SynthEvent::new(
                    fsense_proto::Operation::Create,
                    &format!("\\Device\\HarddiskVolume2\\Users\\ann\\f{i}.txt"),
                )
            })
            .collect();
        let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut w = CaptureWriter::new(f, SourceKind::Simulator, 0x1234_5678 + events).unwrap();
        for b in synth::batches(&list, 1, 256, &[]) {
            w.write_message(&b, 1).unwrap();
        }
        w.finish(2).unwrap();
        made.push(events);
    }
    path
}

fn replay_args(capture: &Path, url: &str, stream: &str, summary: &Path) -> Vec<String> {
    [
        "replay",
        capture.to_str().unwrap(),
        "--output",
        "/dev/null",
        "--sink",
        url,
        "--nats-stream",
        stream,
        "--summary-json",
        summary.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(args: &[String]) -> Child {
    fsense_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

type TimedLines = std::sync::mpsc::Receiver<(Instant, String)>;

/// Like [`spawn`], with each stderr line timed as it comes.
fn spawn_timed(args: &[String]) -> (Child, TimedLines) {
    let mut child = spawn(args);
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Like [`finish`]: stderr whole, and its lines with when they came.
fn finish_timed(mut child: Child, lines: TimedLines) -> (String, Vec<(Instant, String)>) {
    let status = wait_for(&mut child, Duration::from_secs(90));
    let timed: Vec<(Instant, String)> = lines.iter().collect();
    let err: String = timed.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert!(status.success(), "{err}");
    (err, timed)
}

fn finish(mut child: Child) -> String {
    let status = wait_for(&mut child, Duration::from_secs(90));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    err
}

fn run_ok(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fsense(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

#[test]
fn a_malformed_url_exits_2_with_one_line() {
    for url in [
        "http://127.0.0.1/x",
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1/a b",
    ] {
        let o = fsense(&["simulate", "--events", "10", "--quiet", "--sink", url]);
        assert_eq!(o.status.code(), Some(2), "{url}");
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("error: invalid --sink"), "{e}");
    }
}

#[test]
fn single_node_gets_one_message_per_event_and_a_replay_is_deduplicated() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    run_sim(&simulate_args(
        &server.url("t.single"),
        "T_SINGLE",
        20_000,
        &sum,
    ));
    let s = summary(&sum);
    let reported = s["pipeline"]["reported"].as_u64().unwrap();
    assert!(reported > 0, "{s}");
    assert_eq!(s["sink"]["acknowledged"], reported, "{s}");
    assert_eq!(s["sink"]["spooled"], 0);
    assert_eq!(s["sink"]["spool_dropped"], 0);
    assert_one_per_event(&read_stream(server.port, "T_SINGLE"), reported);

    // A capture replayed twice: the second time every message is a duplicate the server drops
    // (same host, capture start and sequence numbers).
    let capture = capture(20_000);
    let mut first = 0;
    for round in 0..2 {
        let rsum = dir.path().join(format!("replay{round}.json"));
        run_ok(&replay_args(
            &capture,
            &server.url("t.replay"),
            "T_REPLAY",
            &rsum,
        ));
        let r = summary(&rsum);
        if round == 0 {
            first = r["reported"].as_u64().unwrap();
            assert_eq!(r["sink"]["duplicates"], 0, "{r}");
        } else {
            assert_eq!(r["sink"]["duplicates"], first, "{r}");
        }
        assert_eq!(r["sink"]["acknowledged"], first, "{r}");
    }
    assert_one_per_event(&read_stream(server.port, "T_REPLAY"), first);
}

#[test]
fn an_unreachable_server_at_start_is_one_line_then_spooling() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sum = dir.path().join("sum.json");
    let nowhere = format!("nats://127.0.0.1:{}/t.late", free_port());
    let mut args = replay_args(&capture(20_000), &nowhere, "T_LATE", &sum);
    args.extend([
        "--spool-dir".into(),
        spool.to_str().unwrap().into(),
        "--sink-drain-secs".into(),
        "1".into(),
    ]);
    let o = run_ok(&args);
    let e = stderr(&o);
    assert_eq!(e.matches("cannot reach NATS").count(), 1, "{e}");
    let s = summary(&sum);
    let first = s["reported"].as_u64().unwrap();
    assert_eq!(s["sink"]["spooled"], first, "{s}");
    assert_eq!(s["sink"]["acknowledged"], 0);

    // The server is there now: the next run on the same spool (another source) delivers the
    // first run's events before its own.
    let mut args = simulate_args(&server.url("t.late"), "T_LATE", 500, &sum);
    args.extend(["--spool-dir".into(), spool.to_str().unwrap().into()]);
    run_sim(&args);
    let s = summary(&sum);
    let second = s["pipeline"]["reported"].as_u64().unwrap();
    assert_eq!(s["sink"]["recovered"], first, "{s}");
    assert_eq!(s["sink"]["spooled"], 0, "{s}");
    assert_one_per_event(&read_stream(server.port, "T_LATE"), first + second);
}

#[test]
fn the_whole_server_stopped_mid_run_and_restarted() {
    let store = tempfile::tempdir().unwrap();
    let mut server = Server::start("restart", store.path(), None);
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let mut args = replay_args(
        &capture(60_000),
        &server.url("t.restart"),
        "T_RESTART",
        &sum,
    );
    args.extend([
        "--spool-dir".into(),
        dir.path().join("spool").to_str().unwrap().into(),
    ]);
    let child = spawn(&args);
    wait_until(Duration::from_secs(30), || {
        stream_count(server.port, "T_RESTART") > 1_000
    });
    let at_stop = stream_count(server.port, "T_RESTART");
    server.kill();
    std::thread::sleep(Duration::from_secs(3));
    server.run();
    let err = finish(child);
    let s = summary(&sum);
    let reported = s["reported"].as_u64().unwrap();
    assert!(
        at_stop < reported,
        "stopped mid-run ({at_stop} of {reported})"
    );
    assert_eq!(s["sink"]["acknowledged"], reported, "{s} {err}");
    assert!(err.contains("retrying"), "the outage was noticed: {err}");
    assert_one_per_event(&read_stream(server.port, "T_RESTART"), reported);
}

/// A replay of 60,000 events into `stream` (three replicas) through `nodes[0]`; `mid_run` is
/// called once 1,000 are stored. Returns the summary, stderr, and when each stderr line came.
fn cluster_replay(
    nodes: &[Server],
    stream: &str,
    subject: &str,
    mid_run: impl FnOnce() -> u64,
) -> (Value, String, Vec<(Instant, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let mut args = replay_args(&capture(60_000), &nodes[0].url(subject), stream, &sum);
    args.extend([
        "--nats-replicas".into(),
        "3".into(),
        "--spool-dir".into(),
        dir.path().join("spool").to_str().unwrap().into(),
    ]);
    let (child, lines) = spawn_timed(&args);
    let port = nodes[0].port;
    wait_until(Duration::from_secs(60), || {
        stream_count(port, stream) > 1_000
    });
    let at_event = mid_run();
    let (err, timed) = finish_timed(child, lines);
    let s = summary(&sum);
    let reported = s["reported"].as_u64().unwrap();
    assert!(
        at_event < reported,
        "{stream}: mid-run ({at_event} of {reported})"
    );
    assert_eq!(s["sink"]["acknowledged"], reported, "{stream}: {s} {err}");
    (s, err, timed)
}

#[test]
fn a_three_node_cluster_loses_its_stream_leader_mid_run() {
    let stores: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| {
            Server::start(
                &format!("n{i}"),
                stores[i].path(),
                Some((routes[i], &routes)),
            )
        })
        .collect();
    let port = nodes[0].port;

    // The leader killed: fsense is connected to n0, so the leader is made another node before
    // the run (the connection stays up and what was in flight is lost with the leader). Moved
    // first, not mid-run: a hand-over takes longer than the whole run may.
    // A cluster that just started answers "timed out" until it has elected its meta leader.
    wait_until(Duration::from_secs(30), || {
        runtime().block_on(async {
            let Ok(client) = async_nats::connect(format!("127.0.0.1:{port}")).await else {
                return false;
            };
            async_nats::jetstream::new(client)
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "T_CLUSTER".into(),
                    subjects: vec!["t.cluster".into()],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    duplicate_window: Duration::from_secs(120),
                    num_replicas: 3,
                    ..Default::default()
                })
                .await
                .is_ok()
        })
    });
    let mut leader = stream_leader(port, "T_CLUSTER");
    while leader == nodes[0].name {
        step_down(port, "T_CLUSTER");
        wait_until(Duration::from_secs(20), || {
            let now = stream_leader(port, "T_CLUSTER");
            let moved = now != leader;
            leader = now;
            moved
        });
    }
    let mut victim = None;
    let (s, err, _) = cluster_replay(&nodes, "T_CLUSTER", "t.cluster", || {
        let n = stream_count(port, "T_CLUSTER");
        let v = nodes.iter().position(|n| n.name == leader).unwrap();
        victim = Some(v);
        // SIGKILL through the pid: `nodes` is borrowed here; the Server is reaped below.
        let pid = nodes[v].child.as_ref().unwrap().id();
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        n
    });
    nodes[victim.unwrap()].kill();
    assert!(
        err.contains("retrying"),
        "the lost leader was noticed: {err}"
    );
    let survivor = nodes.iter().find(|n| n.child.is_some()).unwrap();
    assert_one_per_event(
        &read_stream(survivor.port, "T_CLUSTER"),
        s["reported"].as_u64().unwrap(),
    );
}

/// The stream's leader, as the server `port` sees it (asked until there is one).
fn stream_leader(port: u16, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = runtime().block_on(async {
            let client = async_nats::connect(format!("127.0.0.1:{port}"))
                .await
                .ok()?;
            let js = async_nats::jetstream::new(client);
            let mut stream = js.get_stream(stream).await.ok()?;
            let info = stream.info().await.ok()?;
            assert_eq!(info.config.num_replicas, 3);
            info.cluster.clone().and_then(|c| c.leader)
        });
        match leader {
            Some(l) => return l,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => panic!("the stream has no leader"),
        }
    }
}

/// Asks the stream's leader to hand over to another replica.
fn step_down(port: u16, stream: &str) {
    runtime().block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let _ = client
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                "".into(),
            )
            .await;
    });
}

/// The ids a spool holds, unacknowledged.
fn spooled_ids(dir: &Path) -> Vec<String> {
    use fsense::output::sink::spool::{Spool, SpoolConfig};
    let (mut spool, _) = Spool::open(&SpoolConfig {
        dir: Some(dir.to_path_buf()),
        max_bytes: 1 << 30,
    })
    .unwrap();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        spool.read_next(10_000, &mut out).unwrap();
        if out.len() == before {
            break;
        }
    }
    out.into_iter().map(|o| o.id).collect()
}

/// The sequence numbers of the events in a capture, in order.
fn capture_sequences(path: &Path) -> Vec<u64> {
    use fsense::source::capture::CaptureReader;
    use fsense_proto::Message;
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = CaptureReader::new(f).unwrap();
    let mut seqs = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        if let Message::Batch(b) = frame.message {
            seqs.extend(b.records().map(|r| r.sequence));
        }
    }
    seqs
}

fn sequence_of(id: &str) -> u64 {
    id.rsplit('/').next().unwrap().parse().unwrap()
}

#[test]
fn a_consumer_killed_mid_run_restarts_on_its_spool_and_loses_nothing() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(60_000);
    let spool: PathBuf = dir.path().join("spool");
    let mut child = fsense_cmd(&[
        "replay",
        capture.to_str().unwrap(),
        "--output",
        "/dev/null",
        "--sink",
        &server.url("t.kill"),
        "--nats-stream",
        "T_KILL",
        "--spool-dir",
        spool.to_str().unwrap(),
    ])
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_until(Duration::from_secs(30), || {
        stream_count(server.port, "T_KILL") > 2_000
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before: HashSet<String> = read_stream(server.port, "T_KILL").into_iter().collect();
    let in_capture = capture_sequences(&capture);
    assert!(before.len() < in_capture.len(), "killed mid-run");
    let pending = spooled_ids(&spool);
    let replay_prefix = before
        .iter()
        .next()
        .unwrap()
        .rsplitn(3, '/')
        .nth(2)
        .unwrap()
        .to_string();

    // A different source on the same spool: it first publishes what the killed run left.
    let sum = dir.path().join("sum.json");
    let mut args = simulate_args(&server.url("t.kill"), "T_KILL", 500, &sum);
    args.extend(["--spool-dir".into(), spool.to_str().unwrap().into()]);
    run_sim(&args);
    let s = summary(&sum);
    let second = s["pipeline"]["reported"].as_u64().unwrap();
    assert_eq!(s["sink"]["recovered"], pending.len() as u64, "{s}");

    let after = read_stream(server.port, "T_KILL");
    let killed_run: HashSet<&String> = before.iter().chain(pending.iter()).collect();
    assert_one_per_event(&after, killed_run.len() as u64 + second);
    // Everything the killed run spooled is there, and its events form an unbroken prefix of
    // the capture's sequence: nothing between two delivered events was lost.
    let mut seqs: Vec<u64> = after
        .iter()
        .filter(|id| id.starts_with(&replay_prefix))
        .map(|id| sequence_of(id))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs.len(), killed_run.len());
    assert_eq!(seqs[..], in_capture[..seqs.len()]);
    assert!(pending.iter().all(|id| after.contains(id)));
}

/// A server that takes only TLS (certificate from a CA made here) and only users of the one
/// account its operator signed (operator mode, JWTs made here): what `tls://`, `--nats-ca-file`
/// and `--nats-creds` meet in a fleet.
struct Secure {
    server: Server,
    ca: PathBuf,
    /// A CA that did not sign the server's certificate.
    other_ca: PathBuf,
    creds: PathBuf,
    /// A user of an account the server does not know.
    stranger_creds: PathBuf,
    _dir: tempfile::TempDir,
}

fn openssl(args: &[&str], dir: &Path) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

/// `ca.pem` (and its key), a certificate for 127.0.0.1 it signed, and an unrelated `other-ca.pem`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (ca, name) in [("ca", "fsense test CA"), ("other-ca", "some other CA")] {
        let (key, pem, subj) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN={name}"),
        );
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-days", "2", "-subj", &subj, "-keyout", &key, "-out", &pem]);
        openssl(&a, dir);
    }
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&a, dir);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
        dir,
    );
}

/// A NATS JWT (ed25519-nkey) with `claims` under `nats`, issued by `issuer` about `subject`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, claims: Value) -> String {
    let b64 = data_encoding::BASE64URL_NOPAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = serde_json::json!({
        "jti": format!("{name}-{}", &subject[..12]).to_uppercase(),
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": claims,
    });
    let signed = format!("{header}.{}", b64.encode(body.to_string().as_bytes()));
    let signature = b64.encode(&issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

/// A `.creds` file as `nsc` writes it: a user JWT signed by `account`, and the user's seed.
fn user_creds(account: &nkeys::KeyPair) -> String {
    let user = nkeys::KeyPair::new_user();
    let claims = serde_json::json!({
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
        "issuer_account": account.public_key(), "type": "user", "version": 2,
    });
    let token = jwt(account, &user.public_key(), "fsense", claims);
    format!(
        "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    )
}

fn secure() -> &'static Secure {
    static SECURE: OnceLock<Secure> = OnceLock::new();
    SECURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_certificates(d);
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "fsense-test",
            serde_json::json!({"type": "operator", "version": 2}),
        );
        // JetStream is on for an account whose limits give it storage.
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "FLEET",
            serde_json::json!({
                "limits": unlimited,
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account", "version": 2,
            }),
        );
        // JetStream needs a system account.
        let system = nkeys::KeyPair::new_account();
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            "SYS",
            serde_json::json!({"type": "account", "version": 2}),
        );
        std::fs::write(d.join("operator.jwt"), operator_jwt).unwrap();
        let creds = d.join("user.creds");
        std::fs::write(&creds, user_creds(&account)).unwrap();
        let stranger_creds = d.join("stranger.creds");
        std::fs::write(&stranger_creds, user_creds(&nkeys::KeyPair::new_account())).unwrap();
        let port = free_port();
        let conf = d.join("server.conf");
        let p = |f: &str| d.join(f).to_str().unwrap().to_string();
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\nserver_name: secure\n\
                 operator: \"{}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
                 resolver_preload: {{\n  {}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n\
                 jetstream: {{ store_dir: \"{}\" }}\n\
                 tls: {{ cert_file: \"{}\", key_file: \"{}\", timeout: 5 }}\n",
                p("operator.jwt"),
                account.public_key(),
                p("js"),
                p("server.pem"),
                p("server.key"),
                sys = system.public_key(),
            ),
        )
        .unwrap();
        let check = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .arg("-t")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            stderr(&check)
        );
        let server = Server {
            child: None,
            args: vec!["-c".into(), conf.to_str().unwrap().into()],
            port,
            name: "secure".into(),
            _store: None,
            guard: None,
        }
        .start_guarded();
        Secure {
            server,
            ca: d.join("ca.pem"),
            other_ca: d.join("other-ca.pem"),
            creds,
            stranger_creds,
            _dir: dir,
        }
    })
}

impl Secure {
    fn url(&self, subject: &str) -> String {
        format!("tls://127.0.0.1:{}/{subject}", self.server.port)
    }

    fn read_stream(&self, stream: &str) -> Vec<String> {
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
        runtime().block_on(async {
            let client = async_nats::ConnectOptions::with_credentials_file(&self.creds)
                .await
                .unwrap()
                .require_tls(true)
                .add_root_certificates(self.ca.clone())
                .connect(format!("tls://127.0.0.1:{}", self.server.port))
                .await
                .unwrap();
            read_all(client, stream).await.unwrap()
        })
    }
}

fn secure_args(url: &str, stream: &str, ca: &Path, creds: &Path, sum: &Path) -> Vec<String> {
    let mut args = replay_args(&capture(2_000), url, stream, sum);
    args.extend([
        "--nats-ca-file".into(),
        ca.to_str().unwrap().into(),
        "--nats-creds".into(),
        creds.to_str().unwrap().into(),
    ]);
    args
}

#[test]
fn tls_with_a_ca_file_and_a_creds_file_delivers_every_event() {
    let s = secure();
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    run_ok(&secure_args(
        &s.url("t.secure"),
        "T_SECURE",
        &s.ca,
        &s.creds,
        &sum,
    ));
    let r = summary(&sum);
    let reported = r["reported"].as_u64().unwrap();
    assert!(reported > 0, "{r}");
    assert_eq!(r["sink"]["acknowledged"], reported, "{r}");
    assert_one_per_event(&s.read_stream("T_SECURE"), reported);
}

#[test]
fn a_wrong_ca_or_bad_creds_is_one_line_then_spooling() {
    let s = secure();
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    for (what, ca, creds, wording) in [
        ("wrong CA", &s.other_ca, &s.creds, "TLS handshake refused"),
        (
            "unknown account",
            &s.ca,
            &s.stranger_creds,
            "authorization violation",
        ),
    ] {
        let mut args = secure_args(&s.url("t.refused"), "T_REFUSED", ca, creds, &sum);
        args.extend(["--sink-drain-secs".into(), "1".into()]);
        let o = run_ok(&args);
        let e = stderr(&o);
        assert_eq!(e.matches(wording).count(), 1, "{what}: {e}");
        assert!(!e.contains("cannot reach"), "{what}: {e}");
        assert_eq!(
            e.matches("NATS").count(),
            2,
            "{what}: one line, then the end: {e}"
        );
        let r = summary(&sum);
        assert_eq!(r["sink"]["acknowledged"], 0, "{what}: {r}");
        assert_eq!(r["sink"]["spooled"], r["reported"], "{what}: {r}");
    }
}

#[test]
fn an_unreadable_or_malformed_creds_or_ca_file_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "not a creds file, not a certificate\n").unwrap();
    let missing = dir.path().join("missing");
    let ca = dir.path().join("ca.pem");
    make_certificates(dir.path());
    let creds = dir.path().join("user.creds");
    std::fs::write(&creds, user_creds(&nkeys::KeyPair::new_account())).unwrap();
    let url = format!("tls://127.0.0.1:{}/t.bad", free_port());
    for (what, ca, creds) in [
        ("malformed creds", &ca, &garbage),
        ("missing creds", &ca, &missing),
        ("malformed CA", &garbage, &creds),
        ("missing CA", &missing, &creds),
    ] {
        let o = fsense(
            &secure_args(&url, "T_BAD", ca, creds, &dir.path().join("s.json"))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {e}");
        assert_eq!(e.lines().count(), 1, "{what}: {e}");
        assert!(e.starts_with("error: "), "{what}: {e}");
    }
}

/// fsense's stderr lines that contain `what`.
fn lines_with<'a>(err: &'a str, what: &str) -> Vec<&'a str> {
    err.lines().filter(|l| l.contains(what)).collect()
}

fn refused_run(server: &Server, subject: &str, stream: &str, dir: &Path) -> (Value, String) {
    let sum = dir.join(format!("{stream}.json"));
    let mut args = replay_args(&capture(2_000), &server.url(subject), stream, &sum);
    args.extend([
        "--spool-dir".into(),
        dir.join(stream).to_str().unwrap().into(),
        "--sink-drain-secs".into(),
        "1".into(),
    ]);
    let o = run_ok(&args);
    (summary(&sum), stderr(&o))
}

#[test]
fn a_stream_that_refuses_the_events_is_one_line_no_hot_loop_and_they_stay_spooled() {
    use async_nats::jetstream::stream::{Config, DiscardPolicy};
    let server = shared();
    let dir = tempfile::tempdir().unwrap();

    // Full after 10 messages, and it discards new ones: every later publish is refused.
    create_stream(
        server.port,
        Config {
            name: "T_FULL".into(),
            subjects: vec!["t.full".into()],
            max_messages: 10,
            discard: DiscardPolicy::New,
            ..Default::default()
        },
    );
    let (s, err) = refused_run(server, "t.full", "T_FULL", dir.path());
    let reported = s["reported"].as_u64().unwrap();
    assert_eq!(s["sink"]["acknowledged"], 10, "{s}");
    // Each event sent at most once: a refusal is not answered by publishing the window again
    // (after the refusal, the rest of the run's events wait in the spool).
    let published = s["sink"]["published"].as_u64().unwrap();
    assert!(published > 10 && published <= reported, "{s} {err}");
    assert_eq!(s["sink"]["refused"], 1, "{s}");
    assert_eq!(
        s["sink"]["spooled"],
        reported - 10,
        "not delivered, kept: {s}"
    );
    assert_eq!(s["sink"]["rejected"], 0, "{s}");
    assert_eq!(lines_with(&err, "refuses").len(), 1, "{err}");
    assert_eq!(stored(server.port, "T_FULL"), 10);

    // A stream (named by --nats-stream) that does not take the subject.
    create_stream(
        server.port,
        Config {
            name: "T_OTHER".into(),
            subjects: vec!["other.subject".into()],
            ..Default::default()
        },
    );
    let (s, err) = refused_run(server, "t.mismatch", "T_OTHER", dir.path());
    assert_eq!(s["sink"]["published"], 0, "{s}");
    assert_eq!(s["sink"]["refused"], 1, "asked once, not in a loop: {s}");
    assert_eq!(s["sink"]["spooled"], s["reported"], "{s}");
    let refusals = lines_with(&err, "refuses");
    assert_eq!(refusals.len(), 1, "{err}");
    assert!(
        refusals[0].contains("does not take subject t.mismatch"),
        "{err}"
    );
}

#[test]
fn events_too_large_for_the_stream_are_rejected_once_each_and_counted() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    create_stream(
        server.port,
        async_nats::jetstream::stream::Config {
            name: "T_SMALL".into(),
            subjects: vec!["t.small".into()],
            max_message_size: 64,
            ..Default::default()
        },
    );
    let (s, err) = refused_run(server, "t.small", "T_SMALL", dir.path());
    let reported = s["reported"].as_u64().unwrap();
    assert!(reported > 0, "{s}");
    assert_eq!(s["sink"]["published"], reported, "each sent once: {s}");
    assert_eq!(s["sink"]["rejected"], reported, "{s}");
    assert_eq!(s["sink"]["acknowledged"], 0, "{s}");
    assert_eq!(s["sink"]["spooled"], 0, "{s}");
    assert_eq!(lines_with(&err, "rejects event").len(), 1, "{err}");
}

/// A subscriber on `subject` that takes messages and never answers, until dropped.
struct BlackHole {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    fn start(port: u16, subject: &str) -> Self {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let subject = subject.to_string();
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                let client = async_nats::connect(format!("127.0.0.1:{port}"))
                    .await
                    .unwrap();
                let mut sub = client.subscribe(subject).await.unwrap();
                client.flush().await.unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    let _ = tokio::time::timeout(Duration::from_millis(50), sub.next()).await;
                    if !matches!(
                        stop_rx.try_recv(),
                        Err(std::sync::mpsc::TryRecvError::Empty)
                    ) {
                        break;
                    }
                }
            })
        });
        ready.recv().unwrap();
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn after_acknowledgements_were_lost_publishing_resumes_at_once() {
    let server = shared();
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    // With the stream deleted mid-run, what is published goes to this subscriber alone: no
    // acknowledgement comes, with the connection up (as when a stream leader dies).
    let _hole = BlackHole::start(server.port, "t.lost");
    let mut args = replay_args(&capture(60_000), &server.url("t.lost"), "T_LOST", &sum);
    args.extend([
        "--spool-dir".into(),
        dir.path().join("spool").to_str().unwrap().into(),
    ]);
    let (child, lines) = spawn_timed(&args);
    wait_until(Duration::from_secs(30), || {
        stream_count(server.port, "T_LOST") > 1_000
    });
    runtime().block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{}", server.port))
            .await
            .unwrap();
        async_nats::jetstream::new(client)
            .delete_stream("T_LOST")
            .await
            .unwrap();
    });
    let (err, timed) = finish_timed(child, lines);
    let s = summary(&sum);
    assert_eq!(s["sink"]["acknowledged"], s["reported"], "{s} {err}");
    // The acknowledgement timeout (5 s) tells the publisher; it creates the stream again and
    // publishes from the first unacknowledged event at once, not after the lost
    // acknowledgements' window slots were given back (another 5 s).
    let at = |what: &str| {
        timed
            .iter()
            .find(|(_, l)| l.contains(what))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("no '{what}' in {err}"))
    };
    let stalled = at("delivering again") - at("retrying");
    assert!(
        stalled < Duration::from_secs(2),
        "{stalled:?} from the failure to delivering again: {err}"
    );
}
