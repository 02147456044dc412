//! Issue 27: the sensor's records of deletes, renames, hard links, block clones and MDL writes,
//! and what a consumer of an older protocol gets instead (nothing of those, counted and
//! flagged in its health). On the driver's own `SENSOR` (the simulator provides the clock, spin
//! lock and event it calls).

use std::sync::{Mutex, MutexGuard};

use fsense_driver::ffi::{Requestor, WriteParams};
use fsense_driver::sensor::{CloneRange, LoadConfig, NamespaceFacts, OpNames, SENSOR, WriteFacts};
use fsense_fltsim as _;
use fsense_proto::{
    BatchView, BatchWriter, ControlReply, Health, Hello, MAX_BATCH_BYTES, NAMESPACE_OPS_SINCE,
    Operation, RecordFlags, ReplyKind, SensorConfig,
};

static TURN: Mutex<()> = Mutex::new(());

/// A fresh sensor whose connected consumer (pid 9) speaks protocols up to `max_protocol`.
fn fresh(max_protocol: u16) -> MutexGuard<'static, ()> {
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let config = LoadConfig::from_registry_value(Some(64));
    let storage: &'static mut [u8] = Box::leak(vec![0u8; config.queue_bytes()].into_boxed_slice());
    SENSOR.install_queue(storage, &config);
    let hello = Hello {
        min_version: 1,
        max_version: max_protocol,
    };
    SENSOR
        .accept_consumer(Some(&hello.encode()), 9)
        .expect("a hello in range");
    turn
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn facts(pid: u32) -> NamespaceFacts {
    NamespaceFacts {
        requestor: Requestor {
            pid,
            tid: 2,
            process_create_time: 3,
            kernel_mode: false,
        },
        ..NamespaceFacts::default()
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    sequence: u64,
    operation: Operation,
    flags: RecordFlags,
    path: Vec<u8>,
    target: Vec<u8>,
    write_offset: u64,
    write_length: u32,
    information: u64,
}

fn drain() -> (Vec<Seen>, u64) {
    let mut buf = vec![0u8; MAX_BATCH_BYTES];
    let mut batch = BatchWriter::new(&mut buf).unwrap();
    let (_, drops) = SENSOR.drain_into(&mut batch);
    let len = batch.finish(drops).unwrap();
    let view = BatchView::parse(&buf[..len]).unwrap();
    let seen = view
        .records()
        .map(|r| Seen {
            sequence: r.sequence,
            operation: r.operation,
            flags: r.flags,
            path: r.path.as_le_bytes().to_vec(),
            target: r.target.as_le_bytes().to_vec(),
            write_offset: r.write_offset,
            write_length: r.write_length,
            information: r.information,
        })
        .collect();
    (seen, drops)
}

fn health_bytes(h: &Health) -> usize {
    let mut buf = [0u8; Health::LEN];
    h.encode(&mut buf).unwrap()
}

#[test]
fn a_rename_carries_the_old_and_the_new_name() {
    let _t = fresh(NAMESPACE_OPS_SINCE);
    let (old, new) = (utf16("\\v\\a.docx"), utf16("\\v\\a.docx.locked"));
    let f = NamespaceFacts {
        replace_existing: true,
        ..facts(100)
    };
    let names = OpNames {
        path: &old,
        target: &new,
        ..OpNames::default()
    };
    SENSOR.record_namespace(Operation::Rename, &f, &names);
    SENSOR.record_namespace(Operation::Link, &facts(100), &names);
    let (seen, drops) = drain();
    assert_eq!(drops, 0);
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].operation, &seen[0].path, &seen[0].target),
        (Operation::Rename, &old, &new)
    );
    assert!(seen[0].flags.contains(RecordFlags::REPLACE_EXISTING));
    assert_eq!(seen[1].operation, Operation::Link);
    assert!(!seen[1].flags.contains(RecordFlags::REPLACE_EXISTING));
}

#[test]
fn a_delete_has_no_target_and_says_posix() {
    let _t = fresh(NAMESPACE_OPS_SINCE);
    let path = utf16("\\v\\gone.txt");
    let f = NamespaceFacts {
        posix: true,
        replace_existing: true, // not a delete's flag: dropped
        ..facts(100)
    };
    let names = OpNames {
        path: &path,
        path_from_context: true,
        target: &path, // a delete carries none
        ..OpNames::default()
    };
    SENSOR.record_namespace(Operation::Delete, &f, &names);
    // Create and write are not namespace operations: ignored here.
    SENSOR.record_namespace(Operation::Write, &f, &names);
    let (seen, _) = drain();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].operation, Operation::Delete);
    assert!(seen[0].target.is_empty());
    assert!(seen[0].flags.contains(RecordFlags::POSIX_DELETE));
    assert!(seen[0].flags.contains(RecordFlags::NAME_FROM_CONTEXT));
    assert!(!seen[0].flags.contains(RecordFlags::REPLACE_EXISTING));
}

#[test]
fn a_clone_reports_the_target_range_and_a_missing_source_name() {
    let _t = fresh(NAMESPACE_OPS_SINCE);
    let path = utf16("\\v\\copy.vhdx");
    let names = OpNames {
        path: &path,
        path_from_context: true,
        target_failed: true,
        ..OpNames::default()
    };
    let range = CloneRange {
        target_offset: 1 << 36,
        byte_count: (1 << 32) + 5,
    };
    SENSOR.record_clone(&facts(100), &names, range);
    let (seen, _) = drain();
    assert_eq!(seen.len(), 1);
    let c = &seen[0];
    assert_eq!(c.operation, Operation::Clone);
    assert_eq!(
        (c.write_offset, c.information, c.write_length),
        (1 << 36, (1 << 32) + 5, u32::MAX)
    );
    assert!(c.flags.contains(RecordFlags::TARGET_NAME_FAILED));
    assert!(c.target.is_empty());
}

#[test]
fn long_targets_are_cut_to_the_configured_limit_and_flagged() {
    let _t = fresh(NAMESPACE_OPS_SINCE);
    let reply = ControlReply {
        kind: ReplyKind::SetConfig,
        poll_id: 5,
        acked_sequence: 0,
        config: Some(SensorConfig {
            max_path_units: 4,
            ..SensorConfig::DEFAULT
        }),
        content_version: None,
    };
    SENSOR.apply_reply(&reply.encode(), 5);
    let (old, new) = (utf16("ab"), utf16("abcdefgh"));
    let names = OpNames {
        path: &old,
        target: &new,
        ..OpNames::default()
    };
    SENSOR.record_namespace(Operation::Rename, &facts(100), &names);
    let (seen, _) = drain();
    assert_eq!(seen[0].target, utf16("abcd"));
    assert!(seen[0].flags.contains(RecordFlags::TARGET_TRUNCATED));
    assert!(!seen[0].flags.contains(RecordFlags::PATH_TRUNCATED));
}

#[test]
fn mdl_writes_are_flagged() {
    let _t = fresh(NAMESPACE_OPS_SINCE);
    let path = utf16("\\v\\smb.dat");
    let facts = WriteFacts {
        requestor: facts(100).requestor,
        status: 0,
        bytes_written: 4096,
        params: WriteParams {
            offset: 0,
            length: 4096,
            paging_io: false,
            mdl: true,
        },
        name_known: true,
        truncated: false,
    };
    SENSOR.record_write(&facts, &path, &[]);
    let (seen, _) = drain();
    assert_eq!(seen[0].operation, Operation::Write);
    assert!(seen[0].flags.contains(RecordFlags::MDL_WRITE));
}

#[test]
fn the_consumer_is_not_told_about_its_own_renames_and_clones() {
    let _t = fresh(NAMESPACE_OPS_SINCE);
    assert!(!SENSOR.wants_namespace(&facts(9).requestor));
    assert!(!SENSOR.wants_clone(&facts(9).requestor));
    assert!(SENSOR.wants_namespace(&facts(10).requestor));
    assert!(SENSOR.wants_clone(&facts(10).requestor));
}

/// Issue 27: a consumer of protocol 3 gets no record it cannot decode; their sequence numbers
/// are reported as drops in the batch (no unexplained gap), its health counts them as not sent
/// and sets WITHHELD_KINDS, and keeps its 144-byte layout.
#[test]
fn an_older_consumer_gets_no_new_kind_and_its_health_says_why() {
    let _t = fresh(NAMESPACE_OPS_SINCE - 1);
    let path = utf16("\\v\\x");
    let names = OpNames {
        path: &path,
        target: &path,
        ..OpNames::default()
    };
    let write = WriteFacts {
        requestor: facts(100).requestor,
        status: 0,
        bytes_written: 1,
        params: WriteParams::default(),
        name_known: true,
        truncated: false,
    };
    SENSOR.record_write(&write, &path, &[]);
    SENSOR.record_namespace(Operation::Delete, &facts(100), &names);
    SENSOR.record_namespace(Operation::Rename, &facts(100), &names);
    SENSOR.record_write(&write, &path, &[]);
    let (seen, drops) = drain();
    let seqs: Vec<_> = seen.iter().map(|s| (s.sequence, s.operation)).collect();
    assert_eq!(seqs, [(1, Operation::Write), (4, Operation::Write)]);
    assert_eq!(drops, 2, "the withheld sequence numbers are explained");
    let h = SENSOR.health(1);
    assert_eq!(h.protocol_version, 3);
    assert_ne!(h.sensor_flags & Health::WITHHELD_KINDS, 0);
    assert_eq!((h.withheld_old_protocol, h.buffers_rejected), (0, 0));
    assert_eq!(h.events_generated, 4);
    assert_eq!(
        h.dropped(),
        2,
        "generated = sent + dropped still holds for it"
    );
    assert_eq!(health_bytes(&h), Health::LEN_BEFORE_NAMESPACE_OPS);
}

#[test]
fn a_current_consumer_gets_the_counters_in_its_health() {
    let _t = fresh(NAMESPACE_OPS_SINCE);
    SENSOR.buffer_rejected();
    SENSOR.buffer_rejected();
    let h = SENSOR.health(1);
    assert_eq!(h.protocol_version, NAMESPACE_OPS_SINCE);
    assert_eq!((h.buffers_rejected, h.withheld_old_protocol), (2, 0));
    assert_eq!(h.sensor_flags & Health::WITHHELD_KINDS, 0);
    assert_eq!(health_bytes(&h), Health::LEN);
    // A reload starts the count again.
    SENSOR.install_queue(
        Box::leak(
            vec![0u8; LoadConfig::from_registry_value(Some(64)).queue_bytes()].into_boxed_slice(),
        ),
        &LoadConfig::from_registry_value(Some(64)),
    );
    assert_eq!(SENSOR.health(2).buffers_rejected, 0);
}
