//! What the sensor decides per open and per write under each consumer configuration (issue 12,
//! defect 6): writes keep their names when creates are not reported, and a write without a saved
//! name says so with NO_NAME_CONTEXT, not NAME_QUERY_FAILED.

use fsense_driver::ffi::{CreateParams, Requestor, WriteParams};
use fsense_driver::sensor::{CreateFacts, CreateInterest, LoadConfig, SENSOR, WriteFacts};
use fsense_fltsim as _;
use fsense_proto::{
    BatchWriter, ControlReply, MAX_BATCH_BYTES, Message, RecordFlags, ReplyKind, SensorConfig,
};

/// `FILE_WRITE_DATA`: an open that can write.
const FILE_WRITE_DATA: u32 = 0x2;

fn configure(flags: u32) {
    let reply = ControlReply {
        kind: ReplyKind::SetConfig,
        poll_id: 9,
        acked_sequence: 0,
        config: Some(SensorConfig {
            flags,
            ..SensorConfig::DEFAULT
        }),
        content_version: None,
    }
    .encode();
    SENSOR.apply_reply(&reply, 9);
}

fn requestor() -> Requestor {
    Requestor {
        pid: 1234,
        tid: 1,
        process_create_time: 1,
        kernel_mode: false,
    }
}

/// One test: the sensor is process-wide state.
#[test]
fn decisions_per_configuration() {
    let config = LoadConfig::from_registry_value(Some(256));
    let storage: &'static mut [u8] = Box::leak(vec![0u8; config.queue_bytes()].into_boxed_slice());
    SENSOR.install_queue(storage, &config);

    // Writes only: post-create still runs (to keep the name), records nothing, queries nothing
    // in pre-create.
    configure(SensorConfig::REPORT_WRITES);
    assert_eq!(
        SENSOR.create_interest(&requestor(), FILE_WRITE_DATA),
        CreateInterest {
            post: true,
            record: false,
            name_in_pre: false
        }
    );
    assert!(!SENSOR.reports_creates());
    let path: Vec<u8> = "\\Device\\HarddiskVolume3\\w.txt"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let facts = CreateFacts {
        requestor: requestor(),
        status: 0,
        opened: true,
        record: false,
        target_directory: false,
        information: 1,
        params: CreateParams {
            desired_access: 0x2, // FILE_WRITE_DATA
            ..CreateParams::default()
        },
        directory: false,
        name_failed: false,
    };
    let stored = SENSOR.record_create(&facts, &path, &[]);
    assert!(stored.keep_name_for_writes);
    assert_eq!(
        SENSOR.health(0).events_generated,
        0,
        "a create was recorded"
    );

    // Rename targets and reparses keep no name for writes.
    let target = CreateFacts {
        target_directory: true,
        ..facts
    };
    assert!(
        !SENSOR
            .record_create(&target, &path, &[])
            .keep_name_for_writes
    );
    let reparse = CreateFacts {
        status: 0x104,
        opened: false,
        target_directory: false,
        ..target
    };
    assert!(
        !SENSOR
            .record_create(&reparse, &path, &[])
            .keep_name_for_writes
    );

    // Creates and failed creates reported: the opened name is taken in pre-create.
    configure(SensorConfig::DEFAULT.flags);
    assert_eq!(
        SENSOR.create_interest(&requestor(), FILE_WRITE_DATA),
        CreateInterest {
            post: true,
            record: true,
            name_in_pre: true
        }
    );
    assert!(SENSOR.reports_creates());
    // H5 (third driver review): writes only, and the open cannot write (FILE_READ_DATA |
    // SYNCHRONIZE): no post-create, so no normalized-name query for it.
    configure(SensorConfig::REPORT_WRITES);
    assert_eq!(
        SENSOR.create_interest(&requestor(), 0x0010_0001),
        CreateInterest::default(),
        "a read-only open asked for post-create (and its name query) with creates off"
    );

    // Failed creates without creates: nothing to record, so no name query in pre-create.
    configure(SensorConfig::REPORT_WRITES | SensorConfig::REPORT_FAILED_CREATES);
    assert_eq!(
        SENSOR.create_interest(&requestor(), FILE_WRITE_DATA),
        CreateInterest {
            post: true,
            record: false,
            name_in_pre: false
        }
    );
    // Nothing reported: no post-create at all.
    configure(0);
    assert_eq!(
        SENSOR.create_interest(&requestor(), FILE_WRITE_DATA),
        CreateInterest::default()
    );

    // A write with no saved name.
    configure(SensorConfig::REPORT_WRITES);
    let write = WriteFacts {
        requestor: requestor(),
        status: 0,
        bytes_written: 1,
        params: WriteParams::default(),
        name_known: false,
        truncated: false,
    };
    SENSOR.record_write(&write, &[], &[]);
    let mut buf = vec![0u8; MAX_BATCH_BYTES];
    let mut batch = BatchWriter::new(&mut buf).unwrap();
    assert_eq!(SENSOR.drain_into(&mut batch).0, 1);
    let len = batch.finish(0).unwrap();
    let Ok(Message::Batch(batch)) = Message::decode(&buf[..len]) else {
        panic!("not a batch");
    };
    let rec = batch.records().next().expect("one record");
    assert!(rec.flags.contains(RecordFlags::NO_NAME_CONTEXT));
    assert!(!rec.flags.contains(RecordFlags::NAME_QUERY_FAILED));
    SENSOR.remove_queue();
}
