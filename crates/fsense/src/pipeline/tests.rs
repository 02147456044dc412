use std::sync::{Arc, Mutex};

use super::*;
use crate::pipeline::enrich::{Offline, ProcessInfo, ProcessLookup};
use crate::source::synth::{self, SynthEvent};
use fsense_proto::Operation;
use serde_json::Value;

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);
impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Shared {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }
}

struct OneProcess;
impl ProcessLookup for OneProcess {
    fn lookup(&mut self, pid: u32, create_time: u64) -> Option<ProcessInfo> {
        (pid == 4242 && create_time == 133_000_000_000_000_000).then(|| ProcessInfo {
            name: "writer.exe".into(),
            user: Some("ann".into()),
            uid: Some("1000".into()),
        })
    }
}

fn pipeline(
    self_pid: Option<u32>,
    excludes: &[String],
    lookup: Box<dyn ProcessLookup>,
    devices: DosDeviceMap,
) -> (Pipeline, Shared) {
    let out = Shared::default();
    let p = Pipeline::new(
        ProcessCache::new(lookup, 64),
        Filter::new(self_pid, excludes, None).unwrap(),
        devices,
        Box::new(out.clone()),
        None,
    );
    (p, out)
}

#[test]
fn batches_become_ocsf_lines_and_gaps_become_drops() {
    let devices = DosDeviceMap::new(vec![("\\Device\\HarddiskVolume3".into(), "C:".into())]);
    let (mut p, out) = pipeline(None, &[], Box::new(OneProcess), devices);
    let events: Vec<_> = (0..5)
        .map(|i| {
            SynthEvent::new(
                Operation::Create,
                &format!("\\Device\\HarddiskVolume3\\dir\\f{i}"),
            )
        })
        .collect();
    for b in synth::batches(&events, 1, 2, &[3, 4]) {
        assert!(matches!(
            p.handle_message(&b, 0).unwrap(),
            Ok(Handled::Batch { .. })
        ));
    }
    p.close_session(9);
    p.finish(0).unwrap();
    let lines = out.lines();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["file"]["path"], "C:\\dir\\f0");
    assert_eq!(lines[0]["file"]["parent_folder"], "C:\\dir");
    assert_eq!(
        lines[0]["unmapped"]["raw_path"],
        "\\Device\\HarddiskVolume3\\dir\\f0"
    );
    assert_eq!(lines[0]["actor"]["process"]["name"], "writer.exe");
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["unmapped"]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 5, 6, 7]);
    let s = p.stats();
    // 3 and 4 skipped inside, 8 and 9 never arrived.
    assert_eq!((s.events, s.reported, s.dropped, s.batches), (5, 5, 4, 3));
    assert_eq!(p.last_sequence(), 7);
}

#[test]
fn self_and_excluded_events_are_counted_not_output() {
    let (mut p, out) = pipeline(
        Some(4242),
        &["**/*.tmp".into()],
        Box::new(Offline),
        DosDeviceMap::default(),
    );
    let mut mine = SynthEvent::new(Operation::Write, "/w/a");
    mine.pid = 4242;
    let mut other = SynthEvent::new(Operation::Write, "/w/b.tmp");
    other.pid = 1;
    let mut kept = SynthEvent::new(Operation::Write, "/w/c");
    kept.pid = 1;
    for b in synth::batches(&[mine, other, kept], 1, 10, &[]) {
        p.handle_message(&b, 0).unwrap().unwrap();
    }
    p.flush().unwrap();
    let lines = out.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["file"]["path"], "/w/c");
    assert_eq!(lines[0]["file"]["name"], "c");
    assert!(lines[0]["actor"]["process"].get("name").is_none());
    let s = p.stats();
    assert_eq!(
        (s.events, s.self_excluded, s.excluded, s.reported),
        (3, 1, 1, 1)
    );
}

#[test]
fn garbage_is_counted_and_health_is_kept() {
    let (mut p, out) = pipeline(None, &[], Box::new(Offline), DosDeviceMap::default());
    assert!(p.handle_message(b"not a message", 0).unwrap().is_err());
    let h = fsense_proto::Health {
        protocol_version: fsense_proto::PROTOCOL_VERSION,
        poll_id: 9,
        ..Default::default()
    };
    match p.handle_message(&synth::health(&h), 0).unwrap() {
        Ok(Handled::Health(got)) => assert_eq!(got.poll_id, 9),
        other => panic!("{other:?}"),
    }
    p.flush().unwrap();
    assert!(out.lines().is_empty());
    let s = p.stats();
    assert_eq!((s.messages, s.decode_errors, s.health_messages), (2, 1, 1));
    assert_eq!(p.last_health().map(|h| h.poll_id), Some(9));
}

#[test]
fn a_new_driver_load_counts_what_the_old_load_generated_and_never_sent() {
    let (mut p, _) = pipeline(None, &[], Box::new(Offline), DosDeviceMap::default());
    let ev = [SynthEvent::new(Operation::Create, "/a")];
    for b in synth::batches(&ev, 1, 1, &[]) {
        p.handle_message(&b, 0).unwrap().unwrap();
    }
    // The old load's last health: 3 numbers handed out, only number 1 arrived.
    let h = fsense_proto::Health {
        protocol_version: fsense_proto::PROTOCOL_VERSION,
        events_generated: 3,
        ..Default::default()
    };
    p.handle_message(&synth::health(&h), 0).unwrap().unwrap();
    p.new_session();
    for b in synth::batches(&ev, 1, 1, &[]) {
        p.handle_message(&b, 0).unwrap().unwrap();
    }
    let s = p.stats();
    assert_eq!((s.events, s.dropped, s.sessions), (2, 2, 2));
}

#[test]
fn a_new_driver_load_restarts_sequences_without_false_drops() {
    let (mut p, _) = pipeline(None, &[], Box::new(Offline), DosDeviceMap::default());
    let ev = [SynthEvent::new(Operation::Create, "/a")];
    for b in synth::batches(&ev, 1, 1, &[]) {
        p.handle_message(&b, 0).unwrap().unwrap();
    }
    p.new_session();
    for b in synth::batches(&ev, 1, 1, &[]) {
        p.handle_message(&b, 0).unwrap().unwrap();
    }
    let s = p.stats();
    assert_eq!(
        (s.events, s.dropped, s.out_of_order, s.sessions),
        (2, 0, 0, 2)
    );
}

fn event_with_target(op: Operation, path: &str, target: &str) -> SynthEvent {
    let mut e = SynthEvent::new(op, path);
    e.target = target.encode_utf16().flat_map(u16::to_le_bytes).collect();
    e
}

/// Issue 27: a rename or link is kept when either name is, is shown with both names (drive
/// letters for both), and a clone is judged by the file it wrote into only.
#[test]
fn renames_and_links_are_judged_by_both_names_and_shown_with_both() {
    let devices = DosDeviceMap::new(vec![("\\Device\\HarddiskVolume3".into(), "C:".into())]);
    let (mut p, out) = pipeline(None, &["C:\\Temp\\*".into()], Box::new(Offline), devices);
    let v = "\\Device\\HarddiskVolume3";
    let events = [
        // From an excluded directory into a kept one: kept.
        event_with_target(
            Operation::Rename,
            &format!("{v}\\Temp\\x.part"),
            &format!("{v}\\Users\\ann\\x.docm"),
        ),
        // Out of a kept directory into an excluded one: kept.
        event_with_target(
            Operation::Link,
            &format!("{v}\\Users\\ann\\a"),
            &format!("{v}\\Temp\\a-link"),
        ),
        // Both names excluded: excluded.
        event_with_target(
            Operation::Rename,
            &format!("{v}\\Temp\\1"),
            &format!("{v}\\Temp\\2"),
        ),
        // A clone into an excluded file from a kept source: excluded (its file is the target).
        event_with_target(
            Operation::Clone,
            &format!("{v}\\Temp\\copy"),
            &format!("{v}\\Users\\ann\\src"),
        ),
        SynthEvent::new(Operation::Delete, &format!("{v}\\Users\\ann\\old.txt")),
    ];
    for batch in synth::batches(&events, 1, 16, &[]) {
        p.handle_message(&batch, 0).unwrap().unwrap();
    }
    p.flush().unwrap();
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(p.stats().excluded, 2);
    assert_eq!(lines[0]["activity_id"], 5);
    assert_eq!(lines[0]["file"]["path"], "C:\\Temp\\x.part");
    assert_eq!(lines[0]["file_result"]["path"], "C:\\Users\\ann\\x.docm");
    assert_eq!(lines[1]["activity_id"], 99);
    assert_eq!(lines[1]["file_result"]["path"], "C:\\Temp\\a-link");
    assert_eq!(lines[2]["activity_id"], 4);
    assert_eq!(lines[2]["file"]["path"], "C:\\Users\\ann\\old.txt");
}
