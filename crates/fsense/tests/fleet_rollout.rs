//! Issue 29: staged rollout on the fleet's real health, against a real `nats-server` on loopback.
//!
//! Agents are in-process: each runs the real live content checker (gated by the rollout), the
//! real fleet agent (health documents, rollout record) and a small synthetic workload evaluated
//! by the rules it runs. The controller is the `fsense content rollout --fleet` process. Each
//! test has its own server: the rollout bucket's name is fixed, and two tests stop theirs.

mod nats_support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fsense::fleet::{FleetConfig, nats_config};
use fsense::pipeline::live_content::{self, FleetGate, LiveContentConfig};
use fsense_content::fleet::protocol::{self, ROLLOUT_BUCKET, ROLLOUT_KEY};
use fsense_content::state::StateDir;
use fsense_content::{Operation, tuf};
use futures::StreamExt;
use nats_support::{Server, runtime};
use serde_json::Value;

const INTERVAL: Duration = Duration::from_millis(200);

fn rules(version: u64, glob: &str) -> String {
    format!(
        "version = {version}\n[[rule]]\nid = \"drop\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"write\"\nglob = \"{glob}\"\n"
    )
}

/// A release whose rule `fault-slow` or `fault-error` matches about one event in a hundred (less
/// than the previous release's rule: the match-rate gate stays quiet). The engine cannot error or
/// be slow on valid content (its validator is its compiler), so, as the simulation's
/// `--inject-fault` does, the test workload plays the faulty sensor when such a rule matches: 50 ms
/// of evaluation time, or an evaluation error. Agents, controller and gates are the real ones.
fn fault_rules(version: u64, fault: &str) -> String {
    format!(
        "version = {version}\n[[rule]]\nid = \"fault-{fault}\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"write\"\nglob = \"**/file1.txt\"\n"
    )
}

struct Fixture {
    dir: tempfile::TempDir,
    server: Server,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nats")).unwrap();
        let server = Server::start("fleet", &dir.path().join("nats"), None);
        let root = tuf::keygen(&dir.path().join("keys")).unwrap();
        Self { dir, server, root }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.port)
    }

    fn publish(&self, version: u64, glob: &str) {
        self.publish_text(version, &rules(version, glob));
    }

    fn publish_text(&self, version: u64, text: &str) {
        let file = self.dir.path().join(format!("rules-{version}.toml"));
        std::fs::write(&file, text).unwrap();
        tuf::publish(&file, &self.dir.path().join("keys"), &self.repo()).unwrap();
    }

    fn state(&self, host: &str) -> PathBuf {
        self.dir.path().join("state").join(host)
    }

    /// `count` agents, each with `installed` (if any) active before it starts.
    fn agents(&self, count: usize, installed: Option<u64>) -> Vec<Agent> {
        (0..count)
            .map(|i| {
                let host = format!("agent-{i:02}");
                if let Some(v) = installed {
                    StateDir::open(&self.state(&host))
                        .unwrap()
                        .update_to(&self.repo(), &self.root, Some(v), &mut |_| {})
                        .unwrap();
                }
                Agent::start(self, &host)
            })
            .collect()
    }

    fn controller(&self, args: &[&str]) -> Controller {
        let summary = self.dir.path().join("summary.json");
        let mut child = nats_support::fsense_cmd(
            &[
                &[
                    "content",
                    "rollout",
                    "--fleet",
                    &self.url(),
                    "--summary-json",
                    summary.to_str().unwrap(),
                    "--discover-s",
                    "1",
                    "--install-timeout-s",
                    "10",
                    "--lease-s",
                    "2",
                ][..],
                args,
            ]
            .concat(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let stderr = child.stderr.take().unwrap();
        let echo = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[controller] {line}");
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Controller { child, echo }
    }
}

/// A controller process; its stderr is echoed as it comes.
struct Controller {
    child: Child,
    echo: std::thread::JoinHandle<String>,
}

/// An in-process agent.
struct Agent {
    host: String,
    stop: Arc<AtomicBool>,
    workload: Option<std::thread::JoinHandle<()>>,
    counters: Arc<live_content::UpdateCounters>,
    health: Arc<live_content::FleetHealth>,
}

impl Agent {
    fn start(fx: &Fixture, host: &str) -> Self {
        let gate = Arc::new(FleetGate::default());
        let (mut rules, mut live) = live_content::start(LiveContentConfig {
            repo: fx.repo().to_str().unwrap().into(),
            root: fx.root.clone(),
            ca_file: None,
            state_dir: fx.state(host),
            interval: Duration::from_secs(1),
            gate: Some(gate.clone()),
        })
        .unwrap();
        let config = FleetConfig {
            nats: nats_config(&fx.url(), None, None).unwrap(),
            host_id: host.into(),
            interval: INTERVAL,
        };
        let agent =
            fsense::fleet::agent::start(config, live.counters.clone(), live.health.clone(), gate)
                .unwrap();
        live.attach_agent(Box::new(agent));
        let (counters, health) = (live.counters.clone(), live.health.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let workload = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut i = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                if let Some(new) = live.rules.take_new() {
                    rules = Some(new);
                }
                if let Some(rules) = rules.as_mut() {
                    for _ in 0..10 {
                        i += 1;
                        let ext = if i.is_multiple_of(20) { "docm" } else { "txt" };
                        let path = format!(r"C:\Users\ann\Documents\file{}.{ext}", i % 97);
                        let t = Instant::now();
                        rules.evaluate(Operation::Write, &path, 1000, i, &mut out);
                        let mut ns = t.elapsed().as_nanos() as u64;
                        // Injected faults (see `FAULT_RULE`): valid content cannot fail or be
                        // slow in this engine, so the harness plays the faulty sensor.
                        if out.iter().any(|m| m.id == "fault-slow") {
                            ns += 50_000_000;
                        }
                        if out.iter().any(|m| m.id == "fault-error") {
                            live.health.eval_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        live.health.observe(ns, !out.is_empty(), 0);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(live);
        });
        Self {
            host: host.into(),
            stop,
            workload: Some(workload),
            counters,
            health,
        }
    }

    fn version(&self) -> Option<u64> {
        self.counters.active_version()
    }

    fn events(&self) -> u64 {
        self.health.events.load(Ordering::Relaxed)
    }

    fn in_first_ring(&self, percent: u8) -> bool {
        protocol::ring_bucket(&self.host) < percent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.workload.take() {
            let _ = t.join();
        }
    }
}

fn finish(c: Controller) -> (bool, Value, String) {
    let out = c.child.wait_with_output().unwrap();
    let stderr = c.echo.join().unwrap();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), summary, stderr)
}

fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rollout record, as the bucket holds it now.
fn record(port: u16) -> Option<Value> {
    runtime().block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .ok()?;
        let kv = async_nats::jetstream::new(client)
            .get_key_value(ROLLOUT_BUCKET)
            .await
            .ok()?;
        let bytes = kv.get(ROLLOUT_KEY).await.ok()??;
        serde_json::from_slice(&bytes).ok()
    })
}

fn first_ring_count(agents: &[Agent], percent: u8) -> usize {
    agents.iter().filter(|a| a.in_first_ring(percent)).count()
}

#[test]
fn a_good_release_reaches_all_twenty_agents_ring_by_ring() {
    let fx = Fixture::new();
    fx.publish(1, "**/*.docm");
    let agents = fx.agents(20, Some(1));
    fx.publish(2, "**/*.xlsm");
    let started = Instant::now();
    let child = fx.controller(&[
        "--release",
        "2",
        "--rings",
        "10,50,100",
        "--soak-s",
        "1",
        "--expect-hosts",
        "20",
    ]);
    let (ok, summary, stderr) = finish(child);
    assert!(ok, "{stderr}");
    eprintln!("whole rollout of 20 agents: {:?}", started.elapsed());
    assert_eq!(summary["halted_at_ring"], Value::Null, "{summary:#}");
    assert_eq!(summary["rings"].as_array().unwrap().len(), 3);
    assert!(
        stderr.contains("hosts on release 2"),
        "progress lines: {stderr}"
    );
    let admit: Vec<f64> = summary["admit_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    eprintln!("MEASURE time to admit each ring (last: all 20 agents): {admit:?} s");
    for a in &agents {
        assert_eq!(a.version(), Some(2), "{}", a.host);
    }
    let written = std::fs::read_to_string(fx.dir.path().join("summary.json")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), summary);
    assert_eq!(record(fx.server.port).unwrap()["phase"], "done");
}

/// A bad release (`second`: its rules) halts at the first ring for `reason`; the agents of that
/// ring are back on release 1 and the others never installed release 2.
fn bad_release_halts_at_the_first_ring(second: &str, reason: &str) {
    let fx = Fixture::new();
    fx.publish(1, "**/*.docm");
    let agents = fx.agents(20, Some(1));
    assert!(
        first_ring_count(&agents, 10) > 0,
        "the test needs hosts in ring 1"
    );
    fx.publish_text(2, second);
    let started = Instant::now();
    let child = fx.controller(&[
        "--release",
        "2",
        "--rings",
        "10,50,100",
        "--soak-s",
        "1.5",
        "--expect-hosts",
        "20",
    ]);
    let (ok, summary, stderr) = finish(child);
    assert!(ok, "{stderr}");
    assert_eq!(summary["halted_at_ring"], 1, "{summary:#}");
    assert!(
        summary["halt_reason"].as_str().unwrap().contains(reason),
        "{summary:#}"
    );
    eprintln!(
        "MEASURE bad release ({reason}): first admission to the last rollback {} s (halt to last rollback {} s); whole run {:?}",
        summary["bad_release_to_last_rollback_s"],
        summary["rollback_s"],
        started.elapsed()
    );
    assert_eq!(
        summary["hosts_rolled_back"].as_u64().unwrap() as usize,
        first_ring_count(&agents, 10)
    );
    for a in &agents {
        assert_eq!(a.version(), Some(1), "{} is back on / stayed on 1", a.host);
        let installed = a.counters.installed.load(Ordering::Relaxed);
        if a.in_first_ring(10) {
            assert_eq!(installed, 2, "{}: installed 2, then rolled back", a.host);
        } else {
            assert_eq!(installed, 0, "{} never installed release 2", a.host);
        }
    }
    assert_eq!(record(fx.server.port).unwrap()["rollback"], true);
}

#[test]
fn a_release_matching_everything_halts_at_the_first_ring_and_rolls_back() {
    bad_release_halts_at_the_first_ring(&rules(2, "**"), "match rate");
}

#[test]
fn a_slow_release_halts_at_the_first_ring_and_rolls_back() {
    bad_release_halts_at_the_first_ring(&fault_rules(2, "slow"), "mean evaluation time");
}

#[test]
fn a_release_whose_rule_errors_halts_at_the_first_ring_and_rolls_back() {
    bad_release_halts_at_the_first_ring(&fault_rules(2, "error"), "evaluation errors");
}

#[test]
fn an_agent_that_never_reports_counts_against_the_gate() {
    let fx = Fixture::new();
    fx.publish(1, "**/*.docm");
    let agents = fx.agents(4, Some(1));
    fx.publish(2, "**/*.xlsm");
    let child = fx.controller(&[
        "--release",
        "2",
        "--rings",
        "100",
        "--soak-s",
        "0.5",
        "--expect-hosts",
        "5",
    ]);
    let (ok, summary, stderr) = finish(child);
    assert!(ok, "{stderr}");
    assert_eq!(summary["halted_at_ring"], 1, "{summary:#}");
    assert_eq!(summary["rings"][0]["health"]["update_failures"], 1);
    for a in &agents {
        assert_eq!(a.version(), Some(1), "{} rolled back", a.host);
    }
}

#[test]
fn a_killed_controller_resumes_and_a_second_one_is_refused() {
    let fx = Fixture::new();
    fx.publish(1, "**/*.docm");
    let agents = fx.agents(6, Some(1));
    fx.publish(2, "**/*.xlsm");
    let args = [
        "--release",
        "2",
        "--rings",
        "50,100",
        "--soak-s",
        "3",
        "--expect-hosts",
        "6",
    ];
    let mut first = fx.controller(&args);
    wait_until(Duration::from_secs(20), "the first soak", || {
        record(fx.server.port).is_some_and(|r| r["phase"] == "soaking")
    });
    let (ok, _, stderr) = finish(fx.controller(&args));
    assert!(!ok, "a second controller must be refused");
    assert!(stderr.contains("refusing a second controller"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1
    );
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    first.echo.join().unwrap();
    // After the lease, a new controller takes over where the first stopped.
    std::thread::sleep(Duration::from_millis(2200));
    let (ok, summary, stderr) = finish(fx.controller(&args));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("resuming release 2 at ring 1"), "{stderr}");
    assert_eq!(summary["resumed"], true);
    assert_eq!(summary["halted_at_ring"], Value::Null, "{summary:#}");
    for a in &agents {
        assert_eq!(a.version(), Some(2), "{}", a.host);
    }
}

#[test]
fn with_nats_stopped_the_agents_run_on_and_the_controller_waits() {
    let mut fx = Fixture::new();
    fx.publish(1, "**/*.docm");
    let agents = fx.agents(6, Some(1));
    fx.publish(2, "**/*.xlsm");
    let child = fx.controller(&[
        "--release",
        "2",
        "--rings",
        "50,100",
        "--soak-s",
        "2",
        "--expect-hosts",
        "6",
    ]);
    wait_until(Duration::from_secs(20), "the first soak", || {
        record(fx.server.port).is_some_and(|r| r["phase"] == "soaking")
    });
    fx.server.kill();
    let before: Vec<u64> = agents.iter().map(Agent::events).collect();
    std::thread::sleep(Duration::from_secs(3));
    for (a, before) in agents.iter().zip(before) {
        assert!(
            a.events() > before,
            "{} stopped working without NATS",
            a.host
        );
    }
    fx.server.run();
    let (ok, summary, stderr) = finish(child);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("NATS unreachable"), "{stderr}");
    assert_eq!(summary["halted_at_ring"], Value::Null, "{summary:#}");
    for a in &agents {
        assert_eq!(a.version(), Some(2), "{}", a.host);
    }
}

/// Writes `value` over the rollout record (as anyone with write access could).
fn overwrite_record(port: u16, value: Vec<u8>) {
    runtime().block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let kv = async_nats::jetstream::new(client)
            .get_key_value(ROLLOUT_BUCKET)
            .await
            .unwrap();
        kv.put(ROLLOUT_KEY, value.into()).await.unwrap();
    });
}

/// The next health document of `host`.
fn next_document(port: u16, host: &str) -> Value {
    runtime().block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let mut sub = client
            .subscribe(format!("fsense.health.{host}"))
            .await
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        serde_json::from_slice(&m.payload).unwrap()
    })
}

#[test]
fn hostile_records_and_documents_change_nothing_and_are_counted() {
    let fx = Fixture::new();
    fx.publish(1, "**/*.docm");
    let agents = fx.agents(3, Some(1));
    fx.publish(2, "**/*.xlsm");
    // Hostile health documents while the controller listens: counted, not believed.
    let port = fx.server.port;
    let noise = std::thread::spawn(move || {
        runtime().block_on(async {
            let client = async_nats::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap();
            let good = next_document_async(&client, "agent-00").await;
            for _ in 0..20 {
                for payload in [
                    b"{\"schema\":\"one\"}".to_vec(),
                    vec![b'{'; 3000],
                    vec![b' '; 5000],
                    good.clone(), // a replay
                    serde_json::to_vec(
                        &serde_json::json!({"host": "agent-00", "content_version": 2}),
                    )
                    .unwrap(),
                ] {
                    client
                        .publish("fsense.health.agent-00", payload.into())
                        .await
                        .unwrap();
                }
                client
                    .publish("fsense.health.agent-01", good.clone().into())
                    .await
                    .unwrap();
                client.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let child = fx.controller(&[
        "--release",
        "2",
        "--rings",
        "100",
        "--soak-s",
        "1",
        "--expect-hosts",
        "3",
    ]);
    let (ok, summary, stderr) = finish(child);
    noise.join().unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(summary["halted_at_ring"], Value::Null, "{summary:#}");
    assert!(
        summary["documents_ignored"].as_u64().unwrap() >= 20,
        "{summary:#}"
    );
    // Hostile rollout records: wrong types, over the limit, an older one replayed.
    let done = record(fx.server.port).unwrap();
    let mut older = done.clone();
    older["seq"] = Value::from(1);
    older["rollback"] = Value::from(true);
    older["phase"] = Value::from("halted");
    let ignored_before = next_document(fx.server.port, "agent-00")["records_ignored"]
        .as_u64()
        .unwrap();
    for hostile in [
        b"{\"seq\": \"9\"}".to_vec(),
        vec![b' '; 4000],
        serde_json::to_vec(&older).unwrap(),
    ] {
        overwrite_record(fx.server.port, hostile);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    for a in &agents {
        assert_eq!(a.version(), Some(2), "{} changed its content", a.host);
    }
    let ignored = next_document(fx.server.port, "agent-00")["records_ignored"]
        .as_u64()
        .unwrap();
    assert!(
        ignored >= ignored_before + 3,
        "{ignored_before} -> {ignored}"
    );
}

async fn next_document_async(client: &async_nats::Client, host: &str) -> Vec<u8> {
    let mut sub = client
        .subscribe(format!("fsense.health.{host}"))
        .await
        .unwrap();
    sub.next().await.unwrap().payload.to_vec()
}

#[test]
fn an_agent_without_nats_keeps_working_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = tuf::keygen(&dir.path().join("keys")).unwrap();
    let file = dir.path().join("rules-1.toml");
    std::fs::write(&file, rules(1, "**")).unwrap();
    let repo = dir.path().join("repo");
    tuf::publish(&file, &dir.path().join("keys"), &repo).unwrap();
    let state = dir.path().join("state");
    StateDir::open(&state)
        .unwrap()
        .update_to(&repo, &root, Some(1), &mut |_| {})
        .unwrap();
    let summary = dir.path().join("summary.json");
    let nowhere = format!("nats://127.0.0.1:{}", nats_support::free_port());
    let out = nats_support::fsense(&[
        "simulate",
        "--operations",
        "3000",
        "--rate",
        "1500",
        "--quiet",
        "--content-repo",
        repo.to_str().unwrap(),
        "--content-root",
        root.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--fleet",
        &nowhere,
        "--host-id",
        "lonely",
        "--health-interval-s",
        "0.2",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let stderr = nats_support::stderr(&out);
    assert!(out.status.success(), "{stderr}");
    let mentions = stderr
        .lines()
        .filter(|l| l.contains(&nowhere) && !l.contains("reporting health"))
        .count();
    assert_eq!(mentions, 1, "{stderr}");
    let s = nats_support::summary(&summary);
    assert_eq!(s["content_version"], 1, "{s:#}");
    assert!(s["pipeline"]["rule_matches"].as_u64().unwrap() > 0, "{s:#}");
}

#[test]
fn rollout_usage_errors_are_one_line() {
    for (args, expected) in [
        (
            vec!["content", "rollout", "--fleet", "nats://127.0.0.1:1"],
            "needs --release",
        ),
        (
            vec![
                "content",
                "rollout",
                "--fleet",
                "nats://h:1/x",
                "--release",
                "2",
            ],
            "no subject expected",
        ),
        (
            vec!["content", "rollout", "--fleet", "nats://h:1", "--simulate"],
            "--simulate needs --fleet N",
        ),
        (
            vec![
                "content",
                "rollout",
                "--fleet",
                "nats://h:1",
                "--release",
                "2",
                "--rings",
                "50,10",
            ],
            "--rings",
        ),
    ] {
        let out = nats_support::fsense(&args);
        let stderr = nats_support::stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = nats_support::fsense(&["simulate", "--fleet", "nats://h:1"]);
    assert!(!out.status.success());
    assert!(nats_support::stderr(&out).contains("required"));
}
