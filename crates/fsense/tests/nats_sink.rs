//! `--sink nats://...` against a real `nats-server` on loopback: one message per event, nothing
//! lost and nothing doubled when the server, the stream leader or the consumer dies mid-run.
//!
//! One single-node server serves the tests that do not stop it (each test has its own stream and
//! subject); the restart and cluster tests start their own.
#![cfg(all(feature = "nats", target_os = "linux"))]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

mod nats_support;
use nats_support::*;
mod support;

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

/// N3: a full disk under the spool ended `watch` (blamed on `--output`), and the header-less
/// segment it left made every restart fail with `File exists`. Now: one line naming the spool,
/// the events it could not keep counted as spool_dropped, `--output` complete, and the next
/// start on the same full spool works. Runs as root on a 1 MiB tmpfs in a private namespace.
#[test]
fn a_full_disk_under_the_spool_does_not_stop_the_run() {
    support::in_private_namespace(
        "FSENSE_NATS_FULL_SPOOL",
        "a_full_disk_under_the_spool_does_not_stop_the_run",
        || {
            let small = support::Tmpfs::new("1m");
            let spool = small.path().join("spool");
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("events.json");
            let sum = dir.path().join("sum.json");
            let nowhere = format!("nats://127.0.0.1:{}/t.full", free_port());
            for run in 0..2 {
                let mut args = replay_args(&capture(20_000), &nowhere, "T_FULL", &sum);
                args[3] = out.to_str().unwrap().into(); // --output
                args.extend([
                    "--spool-dir".into(),
                    spool.to_str().unwrap().into(),
                    "--sink-drain-secs".into(),
                    "1".into(),
                ]);
                let o = fsense(&args.iter().map(String::as_str).collect::<Vec<_>>());
                let e = stderr(&o);
                assert!(o.status.success(), "run {run}: {:?}: {e}", o.status);
                assert!(!e.contains("File exists"), "run {run}: {e}");
                let s = summary(&sum);
                let reported = s["reported"].as_u64().unwrap();
                let lines = std::fs::read_to_string(&out).unwrap().lines().count() as u64;
                assert_eq!(lines, reported, "run {run}: --output is complete");
                let dropped = s["sink"]["spool_dropped"].as_u64().unwrap();
                assert!(dropped > 0, "run {run}: {s}");
                // Every event is either still spooled or counted as dropped, once.
                let recovered = s["sink"]["recovered"].as_u64().unwrap();
                let spooled = s["sink"]["spooled"].as_u64().unwrap();
                assert_eq!(reported + recovered, spooled + dropped, "run {run}: {s}");
                assert!(
                    e.contains(&format!("cannot write the spool {}", spool.display())),
                    "run {run}: {e}"
                );
                assert!(
                    e.lines()
                        .filter(|l| l.contains("cannot write the spool"))
                        .count()
                        <= 2,
                    "{e}"
                );
            }
        },
    );
}

/// N2: a spool directory another account made (or can write) let it forge, delete or block
/// events; it is refused at start, in one line naming it.
#[test]
fn a_spool_directory_others_can_write_is_refused_in_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("pub");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sum = dir.path().join("sum.json");
    let nowhere = format!("nats://127.0.0.1:{}/t.pub", free_port());
    let mut args = replay_args(&capture(2_000), &nowhere, "T_PUB", &sum);
    args.extend(["--spool-dir".into(), spool.to_str().unwrap().into()]);
    let o = fsense(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains(&spool.display().to_string()) && e.contains("writable by other users"),
        "{e}"
    );
}
