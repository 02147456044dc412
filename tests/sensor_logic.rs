//! The sensor's decisions, one at a time, on the driver's own `SENSOR` (the simulator provides the
//! clock, spin lock and event it calls): load settings, the consumer's hello and self-exclusion,
//! config replies, what each record carries, draining, and health.
//! The simulator runs (`tests/simulator.rs`) check the same code end to end; these pin down the
//! individual rules those runs cannot tell apart (found by `scripts/mutants.sh`).

use std::sync::{Mutex, MutexGuard};

use fsense_driver::delivery;
use fsense_driver::ffi::{CreateParams, Requestor, WriteParams};
use fsense_driver::sensor::{
    BUILD_ID, CreateFacts, DEFAULT_QUEUE_CAPACITY, DRIVER_VERSION, LoadConfig, RefusedHello,
    SENSOR, WriteFacts, build_id, opens_for_writing,
};
use fsense_fltsim as _;
use fsense_proto::{
    BatchView, BatchWriter, ControlReply, EventRecord, Health, Hello, MAX_BATCH_BYTES,
    MAX_PATH_UNITS, MAX_RECORD_BYTES, Operation, PROTOCOL_VERSION, RecordFlags, ReplyKind,
    SensorConfig,
};

/// `FILE_WRITE_DATA`: an open that can write.
const FILE_WRITE_DATA: u32 = 0x2;

/// `SENSOR` is one static: tests take turns.
static TURN: Mutex<()> = Mutex::new(());

/// A fresh sensor with a queue of `capacity` records (and `batch_records` per drain).
fn fresh(capacity: u32, batch_records: Option<u32>) -> MutexGuard<'static, ()> {
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let config = LoadConfig::from_registry_value(Some(capacity)).with_batch_records(batch_records);
    let storage: &'static mut [u8] = Box::leak(vec![0u8; config.queue_bytes()].into_boxed_slice());
    SENSOR.install_queue(storage, &config);
    turn
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn requestor(pid: u32) -> Requestor {
    Requestor {
        pid,
        tid: pid + 1,
        process_create_time: 1000 + u64::from(pid),
        kernel_mode: false,
    }
}

fn create(pid: u32, status: i32, desired_access: u32) -> CreateFacts {
    CreateFacts {
        requestor: requestor(pid),
        status,
        information: 2,
        params: CreateParams {
            disposition: 3,
            options: 0x40,
            share_access: 7,
            desired_access,
        },
        directory: false,
        name_failed: false,
        // STATUS_REPARSE (0x104) succeeds without opening the file.
        opened: status >= 0 && status != 0x104,
        record: true,
        target_directory: false,
    }
}

fn write(pid: u32) -> WriteFacts {
    WriteFacts {
        requestor: requestor(pid),
        status: 0,
        bytes_written: 512,
        params: WriteParams {
            offset: 4096,
            length: 600,
            paging_io: false,
            mdl: false,
        },
        name_known: true,
        truncated: false,
    }
}

/// Owned copies of what a record says, so the batch buffer can go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    sequence: u64,
    operation: Operation,
    flags: RecordFlags,
    pid: u32,
    tid: u32,
    process_create_time: u64,
    status: u32,
    information: u64,
    create_disposition: u32,
    create_options: u32,
    desired_access: u32,
    share_access: u32,
    write_offset: u64,
    write_length: u32,
    path: Vec<u8>,
    volume: Vec<u8>,
    timestamp: u64,
}

impl From<EventRecord<'_>> for Seen {
    fn from(r: EventRecord<'_>) -> Self {
        Self {
            sequence: r.sequence,
            operation: r.operation,
            flags: r.flags,
            pid: r.pid,
            tid: r.tid,
            process_create_time: r.process_create_time,
            status: r.status,
            information: r.information,
            create_disposition: r.create_disposition,
            create_options: r.create_options,
            desired_access: r.desired_access,
            share_access: r.share_access,
            write_offset: r.write_offset,
            write_length: r.write_length,
            path: r.path.as_le_bytes().to_vec(),
            volume: r.volume.as_le_bytes().to_vec(),
            timestamp: r.timestamp,
        }
    }
}

/// One drain into a fresh batch: the records, the drops reported with them, and `moved`.
fn drain() -> (Vec<Seen>, u64) {
    let mut buf = vec![0u8; MAX_BATCH_BYTES];
    let mut batch = BatchWriter::new(&mut buf).unwrap();
    let (moved, drops) = SENSOR.drain_into(&mut batch);
    let len = batch.finish(drops).unwrap();
    let view = BatchView::parse(&buf[..len]).unwrap();
    let records: Vec<Seen> = view.records().map(Seen::from).collect();
    assert_eq!(records.len(), moved as usize);
    (records, drops)
}

fn set_config(flags: u32, max_path_units: u32, config_version: u32) {
    let poll_id = 77;
    let reply = ControlReply {
        kind: ReplyKind::SetConfig,
        poll_id,
        acked_sequence: 0,
        config: Some(SensorConfig {
            config_version,
            flags,
            max_path_units,
        }),
        content_version: None,
    };
    SENSOR.apply_reply(&reply.encode(), poll_id);
}

#[test]
fn load_config_takes_the_registry_values_in_range_only() {
    let cap = |v| LoadConfig::from_registry_value(v).queue_capacity;
    assert_eq!(cap(None), DEFAULT_QUEUE_CAPACITY);
    assert_eq!(cap(Some(15)), DEFAULT_QUEUE_CAPACITY);
    assert_eq!(cap(Some(16)), 16);
    assert_eq!(cap(Some(65_536)), 65_536);
    // Above the range is clamped to its top (32 MiB of non-paged queue), not ignored.
    assert_eq!(cap(Some(65_537)), 65_536);
    assert_eq!(cap(Some(u32::MAX)), 65_536);
    assert_eq!(LoadConfig::from_registry_value(Some(64)).batch_records, 0);

    let batch = |v| {
        let c = LoadConfig::from_registry_value(Some(64)).with_batch_records(v);
        assert_eq!(c.queue_capacity, 64, "batch records keep the capacity");
        c.batch_records
    };
    assert_eq!(batch(None), 0);
    assert_eq!(batch(Some(0)), 0);
    assert_eq!(batch(Some(1)), 1);
    assert_eq!(batch(Some(65_535)), 65_535);
    assert_eq!(batch(Some(65_536)), 0);
}

#[test]
fn queue_storage_is_the_record_budget_but_never_less_than_one_maximal_record() {
    let bytes = |cap| LoadConfig::from_registry_value(Some(cap)).queue_bytes();
    assert_eq!(bytes(16), MAX_RECORD_BYTES);
    assert_eq!(bytes(4096), 4096 * 512);
    assert_eq!(bytes(65_536), 65_536 * 512);
    assert_eq!(bytes(1 << 20), 65_536 * 512, "the cap bounds the pool");
}

#[test]
fn write_access_is_what_keeps_a_name_for_later_writes() {
    for bit in [0x2, 0x4, 0x4000_0000, 0x1000_0000, 0x0200_0000] {
        assert!(opens_for_writing(bit), "{bit:#x}");
        assert!(opens_for_writing(bit | 0x1), "{bit:#x} | read");
    }
    // FILE_READ_DATA, FILE_EXECUTE, FILE_READ_ATTRIBUTES, SYNCHRONIZE, GENERIC_READ,
    // GENERIC_EXECUTE, DELETE: none of them writes data.
    for bit in [
        0x1,
        0x20,
        0x80,
        0x10_0000,
        0x8000_0000,
        0x2000_0000,
        0x1_0000,
    ] {
        assert!(!opens_for_writing(bit), "{bit:#x}");
    }
    assert!(!opens_for_writing(0));
    assert!(!opens_for_writing(0x8012_0089)); // a typical read open
}

#[test]
fn a_consumer_needs_a_hello_we_can_speak() {
    let _turn = fresh(64, None);
    assert_eq!(SENSOR.accept_consumer(None, 40), Err(RefusedHello));
    assert_eq!(
        SENSOR.accept_consumer(Some(b"hello"), 40),
        Err(RefusedHello)
    );
    let future = Hello {
        min_version: PROTOCOL_VERSION + 1,
        max_version: PROTOCOL_VERSION + 3,
    };
    assert_eq!(
        SENSOR.accept_consumer(Some(&future.encode()), 40),
        Err(RefusedHello)
    );
    // A refused consumer is not excluded: its I/O is still reported.
    assert!(
        SENSOR
            .create_interest(&requestor(40), FILE_WRITE_DATA)
            .record
    );
    assert_eq!(
        SENSOR.accept_consumer(Some(&Hello::current().encode()), 40),
        Ok(())
    );
    assert!(
        !SENSOR
            .create_interest(&requestor(40), FILE_WRITE_DATA)
            .record
    );
}

#[test]
fn the_consumers_own_io_is_skipped_and_counted() {
    let _turn = fresh(64, None);
    // No consumer yet: nobody is excluded, pid 0 included.
    assert!(
        SENSOR
            .create_interest(&requestor(0), FILE_WRITE_DATA)
            .record
    );
    assert!(SENSOR.wants_write(&requestor(0), false));
    SENSOR
        .accept_consumer(Some(&Hello::current().encode()), 40)
        .unwrap();
    assert!(
        !SENSOR
            .create_interest(&requestor(40), FILE_WRITE_DATA)
            .record
    );
    assert!(!SENSOR.wants_write(&requestor(40), false));
    assert!(
        SENSOR
            .create_interest(&requestor(41), FILE_WRITE_DATA)
            .record
    );
    assert!(SENSOR.wants_write(&requestor(41), false));
    assert!(
        SENSOR
            .create_interest(&requestor(0), FILE_WRITE_DATA)
            .record
    );
    assert_eq!(SENSOR.health(1).self_excluded, 2);
    SENSOR.consumer_gone();
    assert!(
        SENSOR
            .create_interest(&requestor(40), FILE_WRITE_DATA)
            .record
    );
    assert!(
        SENSOR
            .create_interest(&requestor(0), FILE_WRITE_DATA)
            .record
    );
    assert_eq!(SENSOR.health(2).self_excluded, 2);
}

#[test]
fn config_flags_decide_what_is_reported() {
    let _turn = fresh(64, None);
    let r = requestor(9);
    // Default: creates and writes, not paging I/O.
    assert!(SENSOR.create_interest(&r, FILE_WRITE_DATA).record);
    assert!(SENSOR.wants_write(&r, false));
    assert!(!SENSOR.wants_write(&r, true));

    set_config(SensorConfig::REPORT_WRITES, 100, 1);
    assert!(!SENSOR.create_interest(&r, FILE_WRITE_DATA).record);
    assert!(SENSOR.wants_write(&r, false));
    assert!(!SENSOR.wants_write(&r, true));

    set_config(
        SensorConfig::REPORT_WRITES | SensorConfig::REPORT_PAGING_IO,
        100,
        2,
    );
    assert!(SENSOR.wants_write(&r, true));
    assert!(SENSOR.wants_write(&r, false));

    // Paging I/O alone reports nothing: writes are off.
    set_config(
        SensorConfig::REPORT_CREATES | SensorConfig::REPORT_PAGING_IO,
        100,
        3,
    );
    assert!(SENSOR.create_interest(&r, FILE_WRITE_DATA).record);
    assert!(!SENSOR.wants_write(&r, false));
    assert!(!SENSOR.wants_write(&r, true));
    let h = SENSOR.health(5);
    assert_eq!(h.config_version, 3);
    assert_eq!(
        h.sensor_flags,
        SensorConfig::REPORT_CREATES | SensorConfig::REPORT_PAGING_IO
    );
}

#[test]
fn replies_apply_only_to_their_own_poll() {
    let _turn = fresh(64, None);
    let ack = |poll_id, acked_sequence| ControlReply {
        kind: ReplyKind::Ack,
        poll_id,
        acked_sequence,
        config: None,
        content_version: None,
    };
    SENSOR.apply_reply(&ack(5, 10).encode(), 5);
    assert_eq!(SENSOR.health(0).acked_sequence, 10);
    // An older ack never moves it back.
    SENSOR.apply_reply(&ack(6, 4).encode(), 6);
    assert_eq!(SENSOR.health(0).acked_sequence, 10);
    assert_eq!(SENSOR.health(0).replies_rejected, 0);
    // A reply to another poll, or garbage, is rejected and changes nothing.
    let stale_config = ControlReply {
        kind: ReplyKind::SetConfig,
        poll_id: 7,
        acked_sequence: 50,
        config: Some(SensorConfig {
            config_version: 9,
            flags: 0,
            max_path_units: 1,
        }),
        content_version: None,
    };
    SENSOR.apply_reply(&stale_config.encode(), 8);
    SENSOR.apply_reply(&[0u8; ControlReply::LEN], 8);
    let h = SENSOR.health(0);
    assert_eq!(h.replies_rejected, 2);
    assert_eq!(h.acked_sequence, 10);
    assert_eq!(h.config_version, 0);
    assert_eq!(h.sensor_flags, SensorConfig::DEFAULT.flags);
    assert!(
        SENSOR
            .create_interest(&requestor(3), FILE_WRITE_DATA)
            .record
    );
}

#[test]
fn a_create_record_carries_the_operation_and_its_flags() {
    let _turn = fresh(64, None);
    let path = utf16(r"\Device\HarddiskVolume3\a\b.txt");
    let volume = utf16(r"\Device\HarddiskVolume3");
    let facts = create(21, 0, 0x0012_0116);
    let stored = SENSOR.record_create(&facts, &path, &volume);
    assert!(stored.keep_name_for_writes);
    assert!(!stored.truncated);
    assert_eq!(stored.path.as_le_bytes(), &path[..]);
    assert_eq!(stored.volume.as_le_bytes(), &volume[..]);
    let (recs, _) = drain();
    let [r] = &recs[..] else { panic!("{recs:?}") };
    assert_eq!(
        (r.operation, r.pid, r.tid, r.process_create_time),
        (Operation::Create, 21, 22, 1021)
    );
    assert_eq!((r.status, r.information), (0, 2));
    assert_eq!(
        (
            r.create_disposition,
            r.create_options,
            r.desired_access,
            r.share_access
        ),
        (3, 0x40, 0x0012_0116, 7)
    );
    assert_eq!(r.flags, RecordFlags::empty());
    assert_eq!((&r.path, &r.volume), (&path, &volume));
    assert!(r.timestamp > 0, "stamped with the system time");

    // A directory opened by kernel mode whose name query failed.
    let mut facts = create(21, 0, 0x0012_0116);
    facts.directory = true;
    facts.name_failed = true;
    facts.requestor.kernel_mode = true;
    let stored = SENSOR.record_create(&facts, &[], &[]);
    assert!(!stored.keep_name_for_writes);
    let (recs, _) = drain();
    assert_eq!(
        recs[0].flags,
        RecordFlags::DIRECTORY
            .union(RecordFlags::NAME_QUERY_FAILED)
            .union(RecordFlags::KERNEL_REQUESTOR)
    );
}

#[test]
fn only_a_successful_file_open_for_writing_with_a_name_keeps_it() {
    let _turn = fresh(64, None);
    let path = utf16(r"\x");
    let keeps = |facts: &CreateFacts| SENSOR.record_create(facts, &path, &[]).keep_name_for_writes;
    assert!(keeps(&create(1, 0, 0x2)));
    // STATUS_REPARSE succeeds without opening the file (nf-fltkernel-fltcancelfileopen).
    assert!(
        !keeps(&create(1, 0x0000_0104, 0x2)),
        "a reparse opened nothing"
    );
    assert!(
        keeps(&create(1, 0x0000_0001, 0x2)),
        "another informational status succeeded"
    );
    assert!(!keeps(&create(1, 0, 0x1)), "read only");
    assert!(!keeps(&create(1, -1_073_741_772, 0x2)), "failed");
    let mut dir = create(1, 0, 0x2);
    dir.directory = true;
    assert!(!keeps(&dir));
    let mut nameless = create(1, 0, 0x2);
    nameless.name_failed = true;
    assert!(!keeps(&nameless));
}

#[test]
fn failed_creates_are_reported_only_when_configured() {
    let _turn = fresh(64, None);
    let path = utf16(r"\missing");
    let failed = create(5, 0xC000_0034_u32 as i32, 0x1);
    // Default config reports them, with their status.
    SENSOR.record_create(&failed, &path, &[]);
    let (recs, _) = drain();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, 0xC000_0034);
    set_config(SensorConfig::REPORT_CREATES, 100, 1);
    SENSOR.record_create(&failed, &path, &[]);
    SENSOR.record_create(&create(5, 0, 0x1), &path, &[]);
    let (recs, _) = drain();
    assert_eq!(recs.len(), 1, "only the successful one");
    assert_eq!(recs[0].status, 0);
}

#[test]
fn paths_are_cut_to_the_configured_length_and_say_so() {
    let _turn = fresh(64, None);
    set_config(SensorConfig::DEFAULT.flags, 4, 1);
    let path = utf16(r"\abcdef");
    let volume = utf16(r"\Device\V");
    let stored = SENSOR.record_create(&create(1, 0, 0x2), &path, &volume);
    assert!(stored.truncated);
    assert_eq!(stored.path.as_le_bytes(), &path[..8]);
    // The volume name is not cut by max_path_units.
    assert_eq!(stored.volume.as_le_bytes(), &volume[..]);
    SENSOR.record_write(&write(1), &path, &volume);
    let exact = utf16(r"\abc");
    SENSOR.record_write(&write(1), &exact, &[]);
    let (recs, _) = drain();
    assert_eq!(recs[0].path, path[..8]);
    assert!(recs[0].flags.contains(RecordFlags::PATH_TRUNCATED));
    assert_eq!(recs[1].path, path[..8]);
    assert_eq!(recs[1].volume, volume);
    assert!(recs[1].flags.contains(RecordFlags::PATH_TRUNCATED));
    assert_eq!(recs[2].path, exact);
    assert!(!recs[2].flags.contains(RecordFlags::PATH_TRUNCATED));
    set_config(SensorConfig::DEFAULT.flags, MAX_PATH_UNITS as u32, 2);
    let stored = SENSOR.record_create(&create(1, 0, 0x2), &path, &[]);
    assert!(!stored.truncated);
}

#[test]
fn a_write_record_carries_the_write_and_where_its_name_came_from() {
    let _turn = fresh(64, None);
    let path = utf16(r"\Device\HarddiskVolume3\log.txt");
    SENSOR.record_write(&write(33), &path, &[]);
    let mut paging = write(33);
    paging.params.paging_io = true;
    paging.requestor.kernel_mode = true;
    paging.name_known = false;
    SENSOR.record_write(&paging, &[], &[]);
    let mut cut_at_create = write(33);
    cut_at_create.truncated = true;
    SENSOR.record_write(&cut_at_create, &path, &[]);
    let (recs, _) = drain();
    let r = &recs[0];
    assert_eq!(
        (r.operation, r.pid, r.tid, r.process_create_time),
        (Operation::Write, 33, 34, 1033)
    );
    assert_eq!(
        (r.status, r.information, r.write_offset, r.write_length),
        (0, 512, 4096, 600)
    );
    assert_eq!(r.flags, RecordFlags::NAME_FROM_CONTEXT);
    assert_eq!(r.path, path);
    assert_eq!(
        recs[1].flags,
        // No name query runs for a write: a missing context is not a failed query.
        RecordFlags::PAGING_IO
            .union(RecordFlags::NO_NAME_CONTEXT)
            .union(RecordFlags::KERNEL_REQUESTOR)
    );
    assert_eq!(
        recs[2].flags,
        RecordFlags::NAME_FROM_CONTEXT.union(RecordFlags::PATH_TRUNCATED)
    );
    let seqs: Vec<u64> = recs.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[test]
fn drains_move_at_most_the_configured_batch_and_report_drops() {
    let _turn = fresh(16, Some(3));
    for _ in 0..20 {
        SENSOR.record_write(&write(2), &[], &[]);
    }
    let (first, drops) = drain();
    assert_eq!(first.len(), 3);
    assert_eq!(drops, 4);
    let (second, drops) = drain();
    assert_eq!(second.len(), 3);
    assert_eq!(second[0].sequence, 4);
    assert_eq!(drops, 0, "drops are reported once");
    drop(_turn);

    let _turn = fresh(16, None);
    for _ in 0..10 {
        SENSOR.record_write(&write(2), &[], &[]);
    }
    assert_eq!(drain().0.len(), 10, "no limit: everything that fits");
}

#[test]
fn after_stop_nothing_gets_a_sequence_number() {
    let _turn = fresh(64, None);
    SENSOR.record_write(&write(2), &[], &[]);
    SENSOR.stop_accepting();
    SENSOR.record_write(&write(2), &[], &[]);
    SENSOR.record_create(&create(2, 0, 0x2), &[], &[]);
    assert_eq!(SENSOR.health(0).events_generated, 1);
    assert_eq!(drain().0.len(), 1, "what was queued still drains");
    SENSOR.remove_queue();
    SENSOR.record_write(&write(2), &[], &[]);
    assert_eq!(SENSOR.health(0).events_generated, 0);
    let mut buf = vec![0u8; MAX_BATCH_BYTES];
    let mut batch = BatchWriter::new(&mut buf).unwrap();
    assert_eq!(SENSOR.drain_into(&mut batch), (0, 0));
}

#[test]
fn health_reports_the_queue_and_the_counters() {
    let _turn = fresh(16, None);
    for _ in 0..18 {
        SENSOR.record_write(&write(2), &[], &[]);
    }
    SENSOR
        .counters
        .events_sent
        .store(5, std::sync::atomic::Ordering::Relaxed);
    SENSOR
        .counters
        .batches_sent
        .store(2, std::sync::atomic::Ordering::Relaxed);
    SENSOR
        .accept_consumer(Some(&Hello::current().encode()), 99)
        .unwrap();
    let h = SENSOR.health(42);
    assert_eq!(h.poll_id, 42);
    assert_eq!(h.protocol_version, PROTOCOL_VERSION);
    assert_eq!(h.driver_version, DRIVER_VERSION);
    assert_eq!(h.driver_version_parts(), (0, 1, 0));
    assert_eq!(h.build_id, BUILD_ID);
    assert_eq!(
        (h.events_generated, h.dropped_queue_full, h.queue_high_water),
        (18, 2, 16)
    );
    assert_eq!(h.queue_capacity, 16);
    assert_eq!((h.events_sent, h.batches_sent), (5, 2));
    // Health is encodable as the worker sends it.
    let mut buf = [0u8; Health::LEN];
    let n = h.encode(&mut buf).unwrap();
    assert_eq!(Health::decode(&buf[..n]), Ok(h));

    // A new load starts from zero.
    drop(_turn);
    let _turn = fresh(32, None);
    let h = SENSOR.health(1);
    assert_eq!(
        (
            h.events_generated,
            h.events_sent,
            h.batches_sent,
            h.queue_capacity
        ),
        (0, 0, 0, 32)
    );
}

#[test]
fn a_new_load_forgets_the_previous_consumer_and_config() {
    let _turn = fresh(64, None);
    SENSOR
        .accept_consumer(Some(&Hello::current().encode()), 40)
        .unwrap();
    set_config(SensorConfig::REPORT_WRITES, 10, 4);
    assert!(
        !SENSOR
            .create_interest(&requestor(41), FILE_WRITE_DATA)
            .record
    );
    drop(_turn);
    let _turn = fresh(64, None);
    assert!(
        SENSOR
            .create_interest(&requestor(40), FILE_WRITE_DATA)
            .record
    );
    let h = SENSOR.health(0);
    assert_eq!(h.config_version, 0);
    assert_eq!(h.sensor_flags, SensorConfig::DEFAULT.flags);
    assert_eq!(h.self_excluded, 0);
}

/// The build id in health is the commit build.rs saw (FSENSE_BUILD_ID, or `git rev-parse HEAD`),
/// as bytes: up to 32 hex digits, two per byte, zeros when unknown.
#[test]
fn the_build_id_is_the_commit_as_bytes() {
    let hex = env!("FSENSE_BUILD_ID");
    let mut expected = [0u8; 16];
    for (i, byte) in expected.iter_mut().enumerate() {
        if let Some(pair) = hex.get(2 * i..2 * i + 2) {
            *byte = u8::from_str_radix(pair, 16).unwrap();
        }
    }
    assert_eq!(BUILD_ID, expected, "{hex}");
}

/// Any text: two digits per byte, both cases, at most 16 bytes, an odd last digit ignored.
#[test]
fn build_ids_of_any_length_become_sixteen_bytes() {
    let mut expect = [0u8; 16];
    assert_eq!(build_id(None), expect);
    assert_eq!(build_id(Some("")), expect);
    assert_eq!(build_id(Some("a")), expect);
    expect[0] = 0xab;
    assert_eq!(build_id(Some("abc")), expect);
    assert_eq!(build_id(Some("AB")), expect);
    expect[1] = 0x09;
    assert_eq!(build_id(Some("aB09")), expect);
    let all: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ];
    let digits = "0123456789abcdefFEDCBA9876543210";
    assert_eq!(build_id(Some(digits)), all);
    // A whole commit id (40 digits): the first 32 are kept.
    assert_eq!(build_id(Some(&format!("{digits}77777777"))), all);
    assert_eq!(build_id(Some(&format!("{digits}7"))), all);
}

#[test]
fn a_worker_whose_buffer_was_removed_does_nothing() {
    // A load that fails after allocating the batch buffer frees it again: the worker must not
    // keep it (it would run the final drain and stop the sensor taking events).
    let _turn = fresh(64, None);
    let buf: &'static mut [u8] = Box::leak(vec![0u8; MAX_BATCH_BYTES].into_boxed_slice());
    delivery::install_batch_buffer(buf);
    delivery::remove_batch_buffer();
    delivery::request_stop();
    delivery::run_worker();
    SENSOR.record_write(&write(2), &[], &[]);
    assert_eq!(SENSOR.health(0).events_generated, 1);
}

/// N6 (third driver review): every load has its own identity in health, so a consumer never
/// takes a reload for the old load, however many events the new load has counted. Only a
/// consumer that negotiated protocol 3 gets it (older health layouts have no room).
#[test]
fn each_load_reports_its_own_load_id() {
    let first = {
        let _turn = fresh(64, None);
        SENSOR
            .accept_consumer(Some(&Hello::current().encode()), 77)
            .unwrap();
        SENSOR.health(1)
    };
    let second = {
        let _turn = fresh(64, None);
        SENSOR
            .accept_consumer(Some(&Hello::current().encode()), 77)
            .unwrap();
        SENSOR.health(1)
    };
    assert_eq!(first.protocol_version, PROTOCOL_VERSION);
    assert_ne!(first.load_id, 0);
    assert_ne!(second.load_id, 0);
    assert_ne!(first.load_id, second.load_id, "a reload reused the load id");
    let mut buf = [0u8; Health::LEN];
    assert_eq!(second.encode(&mut buf), Ok(Health::LEN));
    assert_eq!(Health::decode(&buf), Ok(second));

    // A protocol 2 consumer gets the 136-byte layout, without the id.
    let _turn = fresh(64, None);
    let old = Hello {
        min_version: 1,
        max_version: 2,
    };
    SENSOR.accept_consumer(Some(&old.encode()), 77).unwrap();
    let h = SENSOR.health(1);
    assert_eq!((h.protocol_version, h.load_id), (2, 0));
    assert_eq!(h.encode(&mut buf), Ok(Health::LEN_BEFORE_LOAD_ID));
}

/// #11 (third driver review): a create that returned STATUS_REPARSE opened nothing (the I/O
/// manager reissues it on the link's target, which is reported itself). It is never recorded:
/// not as a success (the consumer rendered 0x104 as "Success"), not as a failed create.
#[test]
fn a_reparse_is_never_recorded() {
    let _turn = fresh(64, None);
    set_config(SensorConfig::DEFAULT.flags, 32_767, 5);
    assert!(SENSOR.reports_creates());
    let path = utf16(r"\Device\HarddiskVolume3\link");
    SENSOR.record_create(&create(1, 0x0000_0104, 0x2), &path, &[]);
    assert_eq!(
        SENSOR.health(0).events_generated,
        0,
        "a reparse was recorded"
    );
    SENSOR.record_create(&create(1, 0, 0x2), &path, &[]);
    SENSOR.record_create(&create(1, -1_073_741_772, 0x2), &path, &[]);
    assert_eq!(SENSOR.health(0).events_generated, 2);
}
