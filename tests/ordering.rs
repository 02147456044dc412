//! The driver's concurrent parts under the C11 memory model: Miri runs this file with its
//! weak-memory emulation over several seeds (`scripts/check-ordering.sh`, a stage of
//! `scripts/test.sh`); natively it is a quick smoke test. docs/ordering.md argues each atomic's
//! ordering; these tests check the ones that carry data from one thread to another.
//!
//! Each test runs the driver's own code (`SENSOR`, `delivery`, the FFI entry points) on threads
//! that share nothing but what the driver shares, against the simulator's kernel functions. The
//! simulator keeps its bookkeeping under a mutex, which orders whatever happens around its calls:
//! where a test checks one of the driver's own Release/Acquire pairs, the reading thread makes no
//! simulator call between the writer's store and its own load, so that pair is the only thing
//! that can order them. Miri then may (and with enough seeds does) let a load that is not ordered
//! after a store read an older value, as an ARM64 core may; x86 never does.

use std::thread;

use fsense_driver::delivery;
use fsense_driver::ffi::{Requestor, WriteParams};
use fsense_driver::sensor::{LoadConfig, SENSOR, WriteFacts};
use fsense_fltsim::ffi::{
    call_driver_entry, call_unload, connect_client, disconnect_client, take_event_wait_timeouts,
};
use fsense_fltsim::violations_of;
use fsense_proto::{BatchView, BatchWriter, Hello, MAX_BATCH_BYTES, PROTOCOL_VERSION};

/// Rounds of each race: under Miri every round is one more chance for a stale read, and costs
/// interpretation time; natively rounds are cheap.
const ROUNDS: u64 = if cfg!(miri) { 3 } else { 200 };

/// The consumer's own process in these tests.
const CONSUMER: u32 = 20;

fn install(capacity: u32) {
    let config = LoadConfig::from_registry_value(Some(capacity));
    let storage: &'static mut [u8] = Box::leak(vec![0u8; config.queue_bytes()].into_boxed_slice());
    SENSOR.install_queue(storage, &config);
}

fn write(pid: u32, offset: u64) -> WriteFacts {
    WriteFacts {
        requestor: Requestor {
            pid,
            tid: pid + 1,
            process_create_time: 1000,
            kernel_mode: false,
        },
        status: 0,
        bytes_written: 1,
        params: WriteParams {
            offset,
            length: 1,
            paging_io: false,
        },
        name_known: true,
        truncated: false,
    }
}

/// `\a` in UTF-16: a short path keeps the records small.
const PATH: [u8; 4] = [b'\\', 0, b'a', 0];

/// The connect callback stores the negotiated protocol, then asks the worker for a health (the
/// hello's answer). The worker builds that health with the protocol it reads: only the request
/// flag's Release store (`wake_for_health`) and the worker's Acquire swap
/// (`take_health_request`) make it read the new one. With the store Relaxed (feature
/// `ordering-probe`), Miri lets the worker see the request yet build the health with the
/// previous consumer's protocol, as an ARM64 core may: the layout the consumer negotiated away.
#[test]
fn the_hello_answer_is_built_with_the_protocol_its_connect_negotiated() {
    let old = Hello {
        min_version: 1,
        max_version: 1,
    }
    .encode();
    let current = Hello::current().encode();
    let mut seen = Vec::new();
    let violations = violations_of(|| {
        install(64);
        SENSOR.worker_wake.init();
        for round in 0..ROUNDS {
            // A protocol 1 consumer was connected and went away; its request was answered.
            SENSOR.accept_consumer(Some(&old), CONSUMER).unwrap();
            SENSOR.consumer_gone();
            while delivery::take_health_request() {}
            let connect = thread::spawn(move || {
                SENSOR.accept_consumer(Some(&current), CONSUMER).unwrap();
                delivery::wake_for_health();
            });
            // The worker's side, as in `run_worker`: nothing but the request orders it after
            // the connect (it never waits on the event here).
            let worker = thread::spawn(move || {
                loop {
                    if delivery::take_health_request() {
                        return SENSOR.health(round).protocol_version;
                    }
                    thread::yield_now();
                }
            });
            connect.join().unwrap();
            seen.push(worker.join().unwrap());
        }
    });
    assert_eq!(violations, Vec::<String>::new());
    for (round, version) in seen.iter().enumerate() {
        assert_eq!(
            *version, PROTOCOL_VERSION,
            "ORDERING: round {round}: the health answering a protocol {PROTOCOL_VERSION} hello was \
             built with protocol {version} (the connect's store was not visible to the worker)"
        );
    }
}

/// The queue under the spin lock and the worker's wake-up: producers push records (their plain
/// bytes written under the lock), a worker drains them and sleeps on the event whenever it finds
/// the queue empty. Under Miri, any access to the queue not ordered by the lock's acquire and
/// release is a data race (an error); a wake-up lost between "empty" and the wait shows as a
/// wait that ran out its timeout. Every sequence number arrives once, in order, as a record or
/// as a counted drop.
#[test]
fn records_pushed_under_the_lock_reach_a_sleeping_worker_whole_and_in_order() {
    const PRODUCERS: u32 = 2;
    let per_producer: u64 = if cfg!(miri) { 6 } else { 2_000 };
    let total = u64::from(PRODUCERS) * per_producer;
    let mut outcome = None;
    let violations = violations_of(|| {
        // 16 records: the producers outrun the worker at times, so drops are counted too.
        install(16);
        SENSOR.worker_wake.init();
        let _ = take_event_wait_timeouts();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                thread::spawn(move || {
                    for i in 0..per_producer {
                        SENSOR.record_write(&write(100 + p, i), &PATH, &[]);
                    }
                })
            })
            .collect();
        let worker = thread::spawn(move || {
            let mut buf = vec![0u8; MAX_BATCH_BYTES];
            let mut seen: Vec<(u64, u32, u64)> = Vec::new();
            let mut dropped = 0u64;
            let mut timed_out = 0u32;
            while seen.len() as u64 + dropped < total {
                let mut batch = BatchWriter::new(&mut buf).unwrap();
                let (moved, drops) = SENSOR.drain_into(&mut batch);
                let len = batch.finish(drops).unwrap();
                dropped += drops;
                if moved == 0 {
                    if seen.len() as u64 + dropped < total && !SENSOR.worker_wake.wait(60_000) {
                        timed_out += 1;
                    }
                    continue;
                }
                let view = BatchView::parse(&buf[..len]).unwrap();
                seen.extend(view.records().map(|r| (r.sequence, r.pid, r.write_offset)));
            }
            (seen, dropped, timed_out)
        });
        for p in producers {
            p.join().unwrap();
        }
        outcome = Some((worker.join().unwrap(), take_event_wait_timeouts()));
    });
    assert_eq!(violations, Vec::<String>::new());
    let ((seen, dropped, timed_out), wait_timeouts) = outcome.unwrap();
    assert_eq!((timed_out, wait_timeouts), (0, 0), "a wake-up was lost");
    assert_eq!(seen.len() as u64 + dropped, total);
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "sequence numbers out of order: {seen:?}"
    );
    assert!(seen.iter().all(|&(s, _, _)| (1..=total).contains(&s)));
    for p in 0..PRODUCERS {
        let offsets: Vec<u64> = seen
            .iter()
            .filter(|r| r.1 == 100 + p)
            .map(|r| r.2)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "producer {p}'s records out of order: {offsets:?}"
        );
    }
}

/// The accept / disconnect / unload handshake through the driver's real entry points: a load,
/// I/O on one thread, a consumer connecting and going away on another, then the unload (stop
/// and join the worker, unregister, free). The handles are published between those threads by
/// Release/Acquire pairs and the Filter Manager's own locks; Miri reports any access that
/// nothing orders. After the unload, every event was sent or counted as dropped.
#[test]
fn a_connect_and_disconnect_racing_io_then_an_unload_lose_nothing() {
    let events: u64 = if cfg!(miri) { 6 } else { 40 };
    let mut counted = None;
    let violations = violations_of(|| {
        assert_eq!(call_driver_entry(), 0);
        let io = thread::spawn(move || {
            for i in 0..events {
                SENSOR.record_write(&write(300, i), &PATH, &[]);
            }
        });
        let consumer = thread::spawn(|| {
            let accepted = connect_client(&Hello::current().encode(), CONSUMER);
            thread::yield_now();
            disconnect_client();
            accepted
        });
        io.join().unwrap();
        let accepted = consumer.join().unwrap();
        let unload = call_unload();
        let c = &SENSOR.counters;
        let sent = c.events_sent.load(std::sync::atomic::Ordering::Relaxed);
        let dropped = c.dropped_send.load(std::sync::atomic::Ordering::Relaxed);
        counted = Some((accepted, unload, sent + dropped));
    });
    assert_eq!(violations, Vec::<String>::new());
    assert_eq!(counted, Some((true, Some(0), events)));
}
