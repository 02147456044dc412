//! The real Windows port client (`winport`, `ffi::windows`) run on Linux against the simulated
//! Win32 functions and the real driver code: `fsense simulate --client win32` in every consumer
//! mode it supports, with the same invariants as the simulator's own consumer, and its output.
#![cfg(not(windows))]

use std::process::{Command, Output};

use serde_json::Value;

fn simulate(args: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("sim.json");
    let out = dir.path().join("events.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_fsense"))
        .arg("simulate")
        .args(args)
        // Unpaced unless the test paces it (the CLI's default rate is for a first run).
        .args(if args.contains(&"--rate") {
            &[][..]
        } else {
            &["--rate", "0"][..]
        })
        .args(["--output", out.to_str().unwrap()])
        .args(["--summary-json", summary.to_str().unwrap()])
        .output()
        .unwrap();
    let s: Value = match std::fs::read(&summary) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(e) => panic!("no summary ({e}): {}", String::from_utf8_lossy(&o.stderr)),
    };
    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    let first_event: Value = lines
        .lines()
        .next()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or(Value::Null);
    (o, json_with_first_event(s, first_event))
}

fn json_with_first_event(mut summary: Value, event: Value) -> Value {
    summary["first_event_for_test"] = event;
    summary
}

fn assert_invariants(mode: &str, s: &Value, o: &Output) {
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {s}"));
    assert_eq!(
        n("generated"),
        n("delivered") + n("dropped"),
        "{mode}: {s:#}"
    );
    assert_eq!(n("seq_gaps"), n("dropped"), "{mode}: {s:#}");
    assert_eq!(s["pipeline"]["events"], s["delivered"], "{mode}: {s:#}");
    // The client counts every gap it could know of; only sequence numbers of an unloaded load
    // above the last one it could learn of (batch or health it took) are invisible to it, and
    // the simulator counts those. Nothing else may be missing.
    let unobservable = s["client"]["unobservable_at_unload"]
        .as_u64()
        .unwrap_or_else(|| panic!("unobservable_at_unload missing: {s}"));
    if s["client"]["loads"] == 1 {
        assert_eq!(unobservable, 0, "{mode}: {s:#}");
    }
    let client_dropped = s["pipeline"]["dropped"].as_u64().unwrap();
    assert_eq!(
        client_dropped + unobservable,
        n("seq_gaps"),
        "{mode}: {s:#}"
    );
    assert_eq!(
        n("generated"),
        s["pipeline"]["events"].as_u64().unwrap() + client_dropped + unobservable,
        "{mode}: {s:#}"
    );
    assert!(n("generated") > 0, "{mode}: nothing generated");
    // Every check passed, except perhaps the driver-side timing one: on a loaded host an I/O
    // callback can be descheduled past the threshold, which says nothing about the client.
    let failures: Vec<&str> = s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|f| !f.starts_with("an I/O callback took"))
        .collect();
    assert_eq!(failures, Vec::<&str>::new(), "{mode}: {s:#}");
    if s["failures"].as_array().unwrap().is_empty() {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn run_mode(mode: &str) -> Value {
    let (o, s) = simulate(&[
        "--client",
        "win32",
        "--consumer",
        mode,
        "--events",
        "3000",
        "--threads",
        "4",
        "--seed",
        "5",
    ]);
    assert_invariants(mode, &s, &o);
    assert_eq!(s["client"]["kind"], "win32");
    assert_eq!(s["consumer"], mode);
    s
}

#[test]
fn normal_mode_delivers_through_the_windows_client_into_ocsf() {
    let s = run_mode("normal");
    let port = &s["client"]["port"];
    assert_eq!(port["receives"], 8);
    assert!(port["messages"].as_u64().unwrap() > 0);
    // Health messages were answered with acks the driver accepted (a reply can still fail
    // with no waiter when the driver's wait ran out first, on a loaded host).
    assert_eq!(port["replies_skipped"], 0, "{s:#}");
    assert_eq!(s["health"]["replies_rejected"], 0, "{s:#}");
    // The output is OCSF File System Activity, with the device path mapped to its drive letter
    // through the simulated QueryDosDeviceW.
    let event = &s["first_event_for_test"];
    assert_eq!(event["class_uid"], 1001, "{event:#}");
    let path = event["file"]["path"].as_str().unwrap_or_default();
    assert!(
        path.is_empty() || path.starts_with("C:\\"),
        "path not mapped: {path}"
    );
}

#[test]
fn slow_mode_keeps_the_invariants() {
    run_mode("slow");
}

#[test]
fn crash_mode_reconnects_to_the_same_load_without_inventing_losses() {
    let s = run_mode("crash");
    let port = &s["client"]["port"];
    assert!(port["reconnects"].as_u64().unwrap() > 0, "{s:#}");
    // Reconnecting to the same driver load is not a new session.
    assert_eq!(s["pipeline"]["sessions"], 1, "{s:#}");
}

#[test]
fn unload_and_reload_while_connected_starts_a_new_session_and_loses_nothing_unseen() {
    let (o, s) = simulate(&[
        "--client",
        "win32",
        "--loads",
        "2",
        "--events",
        "3000",
        "--threads",
        "4",
        "--seed",
        "7",
        "--quiet",
    ]);
    assert_invariants("reload", &s, &o);
    assert_eq!(s["client"]["loads"], 2);
    let port = &s["client"]["port"];
    // The first load's unload closed the port under the client, which connected to the second.
    assert!(port["disconnects"].as_u64().unwrap() >= 1, "{s:#}");
    assert!(port["connects"].as_u64().unwrap() >= 2, "{s:#}");
    assert_eq!(port["reconnects"], 0, "{s:#}");
    // Each port closed under the posted receives said so in one line, and no panic.
    let err = String::from_utf8_lossy(&o.stderr);
    let said = err
        .lines()
        .filter(|l| l.starts_with("fsense: port disconnected ("))
        .count() as u64;
    assert_eq!(Some(said), port["disconnects"].as_u64(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The client saw the second load start its sequence numbers over: a new session.
    assert_eq!(s["pipeline"]["sessions"], 2, "{s:#}");
    // The second load delivered to the reconnected client (its own final health says so).
    assert!(s["health"]["events_sent"].as_u64().unwrap() > 0, "{s:#}");
    assert!(
        s["pipeline"]["events"].as_u64().unwrap() > s["health"]["events_sent"].as_u64().unwrap(),
        "nothing from the first load: {s:#}"
    );
}

#[test]
fn modes_the_windows_client_cannot_play_are_one_line_errors() {
    let o = Command::new(env!("CARGO_BIN_EXE_fsense"))
        .args(["simulate", "--client", "win32", "--consumer", "malicious"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("normal, slow and crash"), "{err}");
    // Reloading needs a client that reconnects: the simulator's own consumer serves one load.
    let o = Command::new(env!("CARGO_BIN_EXE_fsense"))
        .args(["simulate", "--loads", "2"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--loads"), "{err}");
}

#[test]
fn slow_lookups_stall_the_old_design_and_not_the_new_one() {
    // Every first process and account lookup takes 2 s. The old design (one receive, lookups on
    // the receive path) leaves the driver without a posted receive for seconds; the new one
    // keeps receiving while the lookups run.
    let run = |client: &str| {
        let (o, s) = simulate(&[
            "--client",
            client,
            "--events",
            "6000",
            "--rate",
            "3000",
            "--slow-lookup-ms",
            "2000",
            "--seed",
            "9",
            "--quiet",
        ]);
        assert_invariants(client, &s, &o);
        s
    };
    let new = run("win32");
    let old = run("win32-single");
    let delivered = |s: &Value| s["delivered"].as_u64().unwrap();
    assert!(
        delivered(&new) > 5 * delivered(&old),
        "win32 delivered {}, win32-single {}",
        delivered(&new),
        delivered(&old)
    );
    assert!(old["dropped"].as_u64().unwrap() > 0);
    assert!(
        new["client"]["lookups_pending"].as_u64().unwrap() > 0,
        "{new:#}"
    );
    assert_eq!(old["client"]["lookups_pending"], 0, "{old:#}");
}
