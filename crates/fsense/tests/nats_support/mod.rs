//! What the NATS sink tests share: a `nats-server` on loopback (one per test binary), reading a
//! stream back, captures of synthetic events, and running `fsense` with a sink.
#![allow(dead_code)] // each test binary uses part of it

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

pub mod fake;

pub fn fsense_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fsense"));
    c.args(args);
    c
}

pub fn fsense(args: &[&str]) -> Output {
    fsense_cmd(args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub child: Option<Child>,
    pub args: Vec<String>,
    pub port: u16,
    pub name: String,
    pub _store: Option<tempfile::TempDir>,
    /// For a server kept in a `static` (never dropped): the write end of its guard's stdin. The
    /// guard kills the server when this closes, i.e. when the test process exits.
    pub guard: Option<std::process::ChildStdin>,
}

impl Server {
    /// A server on fresh ports, started; `cluster`: (this node's route port, every node's route
    /// port).
    pub fn start(name: &str, store: &Path, cluster: Option<(u16, &[u16])>) -> Self {
        let mut s = Self::new(name, store, cluster);
        s.run();
        s
    }

    /// The same, not started yet.
    pub fn new(name: &str, store: &Path, cluster: Option<(u16, &[u16])>) -> Self {
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
    pub fn start_guarded(mut self) -> Self {
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

    pub fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn run(&mut self) {
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/setup.sh)");
        self.child = Some(child);
        self.wait_listening();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, subject: &str) -> String {
        format!("nats://127.0.0.1:{}/{subject}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server the tests share (never stopped; it ends with the test process).
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let store = tempfile::tempdir().unwrap();
        let mut s = Server::new("shared", store.path(), None);
        s._store = Some(store);
        s.start_guarded()
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every message of `stream`: its `Nats-Msg-Id`s, in stream order; payloads checked to be JSON.
/// Retried for a while: after a node was killed, the cluster may still be electing leaders (on
/// a fresh CI machine with Miri running beside the tests, 30 s were once not enough).
pub fn read_stream(port: u16, stream: &str) -> Vec<String> {
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

pub async fn try_read_stream(port: u16, stream: &str) -> Result<Vec<String>, String> {
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .map_err(|e| e.to_string())?;
    read_all(client, stream).await
}

pub async fn read_all(client: async_nats::Client, stream: &str) -> Result<Vec<String>, String> {
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
pub fn stream_count(port: u16, stream: &str) -> u64 {
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
pub fn stored(port: u16, stream: &str) -> u64 {
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
pub fn create_stream(port: u16, config: async_nats::jetstream::stream::Config) {
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

pub fn assert_one_per_event(ids: &[String], expected: u64) {
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "duplicates in the stream");
    assert_eq!(ids.len() as u64, expected, "messages in the stream");
}

pub fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "fsense did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn simulate_args(url: &str, stream: &str, events: u64, summary: &Path) -> Vec<String> {
    [
        "simulate",
        "--rate",
        "0",
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
pub fn run_sim(args: &[String]) -> Output {
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
pub fn capture(events: u64) -> PathBuf {
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

pub fn replay_args(capture: &Path, url: &str, stream: &str, summary: &Path) -> Vec<String> {
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

pub fn spawn(args: &[String]) -> Child {
    fsense_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub type TimedLines = std::sync::mpsc::Receiver<(Instant, String)>;

/// Like [`spawn`], with each stderr line timed as it comes.
pub fn spawn_timed(args: &[String]) -> (Child, TimedLines) {
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
pub fn finish_timed(mut child: Child, lines: TimedLines) -> (String, Vec<(Instant, String)>) {
    let status = wait_for(&mut child, Duration::from_secs(90));
    let timed: Vec<(Instant, String)> = lines.iter().collect();
    let err: String = timed.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert!(status.success(), "{err}");
    (err, timed)
}

pub fn finish(mut child: Child) -> String {
    let status = wait_for(&mut child, Duration::from_secs(90));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    err
}

pub fn run_ok(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fsense(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}
