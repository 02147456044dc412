//! The `fsense` command line as users meet it: help, one-line errors, decode on damaged input,
//! replay, simulate's summary.

use std::path::Path;
use std::process::{Command, Output};

use fsense::source::capture::{CaptureWriter, FILE_HEADER_LEN, FRAME_HEADER_LEN, SourceKind};
use fsense::source::synth::{self, SynthEvent};
use fsense_proto::{Health, Operation, PROTOCOL_VERSION};
use serde_json::Value;

fn fsense(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsense"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A capture with two batches of 3 records and a health message; returns it and the offset of
/// the second batch's frame.
fn sample_capture() -> (Vec<u8>, usize) {
    let events: Vec<_> = (0..6)
        .map(|i| {
            SynthEvent::new(
                Operation::Create,
                &format!("\\Device\\HarddiskVolume2\\f{i}"),
            )
        })
        .collect();
    let batches = synth::batches(&events, 1, 3, &[]);
    let mut w = CaptureWriter::new(Vec::new(), SourceKind::Simulator, 1).unwrap();
    w.write_message(&batches[0], 1).unwrap();
    let second = FILE_HEADER_LEN + FRAME_HEADER_LEN + batches[0].len();
    w.write_message(&batches[1], 2).unwrap();
    let health = synth::health(&Health {
        protocol_version: PROTOCOL_VERSION,
        driver_version: 0x0001_0000,
        config_version: 7,
        events_generated: 6,
        ..Health::default()
    });
    w.write_message(&health, 3).unwrap();
    (w.finish(4).unwrap(), second)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn every_command_has_help() {
    let mut commands = vec!["watch", "decode", "replay", "status", "content"];
    if cfg!(not(windows)) {
        commands.push("simulate");
    }
    for cmd in commands {
        let o = fsense(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help failed");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{cmd}"
        );
    }
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    for args in [
        &["no-such-command"][..],
        &["decode"],
        &["simulate", "--events", "many"],
        // The plan is built in memory: a run past the cap is refused, not an out-of-memory kill.
        &["simulate", "--operations", "100000000"],
        &["simulate", "--operations", "0"],
        &["simulate", "--consumer", "sleepy"],
        &["replay", "x", "--rules", "a", "--state-dir", "b"],
    ] {
        let o = fsense(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
        assert!(e.starts_with("error: "), "{args:?}: {e}");
    }
}

#[test]
fn decode_prints_a_capture_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = sample_capture();
    let path = write(dir.path(), "ok.cap", &bytes);
    let o = fsense(&["decode", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["sequence"], 1);
    assert_eq!(lines[5]["path"], "\\Device\\HarddiskVolume2\\f5");
    assert_eq!(lines[6]["health"]["config_version"], 7);
}

/// Issue 27: decode shows a rename's and a link's second name, and keeps the exact units of one
/// that is not text; replay renders them as OCSF Rename and Link.
#[test]
fn decode_and_replay_show_both_names_of_renames_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let mut rename = SynthEvent::new(Operation::Rename, "C:\\d\\a.docx");
    rename.target = "C:\\d\\a.docx.locked"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut link = SynthEvent::new(Operation::Link, "C:\\d\\b");
    // An unpaired surrogate in the new name.
    link.target = [0x43u16, 0x3A, 0x5C, 0xD800]
        .iter()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let delete = SynthEvent::new(Operation::Delete, "C:\\d\\c");
    let batches = synth::batches(&[rename, link, delete], 1, 8, &[]);
    let mut w = CaptureWriter::new(Vec::new(), SourceKind::Simulator, 1).unwrap();
    w.write_message(&batches[0], 1).unwrap();
    let path = write(dir.path(), "ns.cap", &w.finish(2).unwrap());

    let o = fsense(&["decode", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["operation"], "rename");
    assert_eq!(lines[0]["path"], "C:\\d\\a.docx");
    assert_eq!(lines[0]["target"], "C:\\d\\a.docx.locked");
    assert!(lines[0].get("target_units").is_none());
    assert_eq!(lines[1]["operation"], "link");
    assert_eq!(lines[1]["target"], "C:\\\u{FFFD}");
    assert_eq!(
        lines[1]["target_units"],
        serde_json::json!([0x43, 0x3A, 0x5C, 0xD800])
    );
    assert_eq!(lines[2]["operation"], "delete");
    assert_eq!(lines[2]["target"], "");

    let out = dir.path().join("ocsf.json");
    let o = fsense(&["replay", &path, "--output", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ocsf: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ocsf[0]["activity_name"], "Rename");
    assert_eq!(ocsf[0]["file_result"]["path"], "C:\\d\\a.docx.locked");
    assert_eq!(ocsf[1]["activity_id"], 99);
    assert_eq!(
        ocsf[1]["unmapped"]["target_units"],
        serde_json::json!([0x43, 0x3A, 0x5C, 0xD800])
    );
    assert_eq!(ocsf[2]["activity_name"], "Delete");
}

#[test]
fn decode_of_a_damaged_capture_prints_the_intact_prefix_then_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, second) = sample_capture();
    bytes[second + FRAME_HEADER_LEN + 40] ^= 0x10; // inside the second batch
    let path = write(dir.path(), "flipped.cap", &bytes);
    let o = fsense(&["decode", &path]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
    assert_eq!(
        stderr(&o),
        format!("error: checksum mismatch in the frame at byte offset {second}\n")
    );

    let (bytes, second) = sample_capture();
    let path = write(dir.path(), "cut.cap", &bytes[..second + 10]);
    let o = fsense(&["decode", &path]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
    let e = stderr(&o);
    assert!(e.starts_with("error: truncated frame header"), "{e}");
    assert!(e.ends_with(&format!("at byte offset {second}\n")), "{e}");

    let path = write(dir.path(), "empty.cap", b"");
    let o = fsense(&["decode", &path]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).ends_with("at byte offset 0\n"));
}

#[test]
fn replay_runs_the_pipeline_and_status_reads_the_last_health() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = sample_capture();
    let path = write(dir.path(), "ok.cap", &bytes);
    let summary = dir.path().join("s.json");
    let o = fsense(&[
        "replay",
        &path,
        "--exclude",
        "**f0",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(
        lines
            .iter()
            .all(|l| l["class_uid"] == 1001 && l["activity_id"] == 1)
    );
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(
        (s["events"].as_u64(), s["excluded"].as_u64()),
        (Some(6), Some(1))
    );
    assert_eq!(s["complete"], true);

    let o = fsense(&["status", "--capture", &path, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sensor"]["config_version"], 7);
    assert_eq!(v["sensor"]["driver_version"], "1.0.0");
}

#[cfg(not(windows))]
#[test]
fn simulate_writes_the_summary_fields() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("sim.json");
    let o = fsense(&[
        "simulate",
        "--rate",
        "0",
        "--events",
        "200",
        "--threads",
        "2",
        "--queue-capacity",
        "64",
        "--consumer",
        "normal",
        "--seed",
        "3",
        "--quiet",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    for field in [
        "generated",
        "delivered",
        "dropped",
        "seq_gaps",
        "leaked_allocations",
        "unreleased_name_infos",
        "verifier_violations",
        "max_callback_us",
        "unload_clean",
        "health",
        "consumer",
        "events",
        "threads",
        "queue_capacity",
        "seed",
    ] {
        assert!(s.get(field).is_some(), "summary lacks {field}");
    }
    assert_eq!(s["consumer"], "normal");
    assert_eq!(s["queue_capacity"], 64);
    assert!(s["verifier_violations"].is_array());
    let passed = s["failures"].as_array().unwrap().is_empty();
    assert_eq!(
        o.status.code(),
        Some(if passed { 0 } else { 1 }),
        "{}",
        stderr(&o)
    );
    // What the consumer saw agrees with what the simulator says it delivered.
    assert_eq!(s["pipeline"]["events"], s["delivered"]);
    assert_eq!(s["pipeline"]["dropped"], s["seq_gaps"]);
}

#[test]
fn simulate_counts_operations_and_paces_them_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("sim.json");
    let sum = summary.to_str().unwrap();
    // The flag says what it counts; its old name still works.
    for flag in ["--operations", "--events"] {
        let o = fsense(&["simulate", flag, "300", "--quiet", "--summary-json", sum]);
        let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert_eq!(s["operations"], 300, "{flag}");
        // A first run is paced at the default rate; generated counts the reported events.
        assert_eq!(s["rate"], 2000, "{flag}");
        let generated = s["generated"].as_u64().unwrap();
        assert!(generated > 0 && generated <= 300, "{flag}: {generated}");
        let err = stderr(&o);
        assert!(err.contains("300 file operations"), "{flag}: {err}");
    }
    let o = fsense(&[
        "simulate",
        "--operations",
        "300",
        "--rate",
        "0",
        "--quiet",
        "--summary-json",
        sum,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["rate"], 0);
}

#[test]
fn matching_events_carry_rule_ids_and_severity() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = sample_capture();
    let path = write(dir.path(), "ok.cap", &bytes);
    let rules = write(
        dir.path(),
        "rules.toml",
        b"version = 1\n[[rule]]\nid = \"f3-create\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"**/f3\"\n",
    );
    let o = fsense(&["replay", &path, "--rules", &rules]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let matched: Vec<&Value> = lines
        .iter()
        .filter(|l| l["unmapped"].get("rules").is_some())
        .collect();
    assert_eq!(matched.len(), 1);
    assert_eq!(matched[0]["file"]["name"], "f3");
    assert_eq!(matched[0]["unmapped"]["rules"][0]["id"], "f3-create");
    assert_eq!(matched[0]["severity_id"], 4);
    assert!(lines.iter().filter(|l| l["severity_id"] == 1).count() == 5);

    let bad = write(
        dir.path(),
        "bad.toml",
        b"version = 1\n[[rule]]\nid = \"x\"\n",
    );
    let o = fsense(&["replay", &path, "--rules", &bad]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// N10: `watch` refuses an output directory others can write to before it creates anything
/// (the summary is written only at the end, so it is checked at start).
#[cfg(unix)]
#[test]
fn watch_refuses_an_output_directory_others_can_write_before_starting() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let capture = dir.path().join("run.cap");
    let o = fsense(&[
        "watch",
        dir.path().to_str().unwrap(),
        "--capture",
        capture.to_str().unwrap(),
        "--summary-json",
        open.join("summary.json").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: refusing ") && err.contains(open.to_str().unwrap()),
        "{err}"
    );
    assert!(
        !capture.exists(),
        "the capture was created before the refusal"
    );
}
