//! The driver's hot path and its delivery, measured on the host with the same code.
//!
//! - `capture_encode_enqueue`: one post-write's work once the name is in hand (build the record,
//!   take the spin lock, encode into the queue); the queue is drained every 1,024 events, amortised
//!   in. Target: <= 100 ns median (issue 4).
//! - `set_information_not_reported` (issue 27): what pre-set-information does for a class the
//!   driver does not report (here FileBasicInformation, the most common one: timestamps and
//!   attributes): check the callback data, read the class, return. Must cost close to nothing.
//! - `simulated_port`: events/s through the simulated port, batched delivery against one message
//!   per event, same run (issue 5). Each iteration is a whole load, I/O, unload cycle of 20,000
//!   operations with a normal consumer and a queue large enough that nothing drops.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fsense_driver::ffi::{Requestor, WriteParams};
use fsense_driver::sensor::{LoadConfig, SENSOR, WriteFacts};
use fsense_fltsim::{ConsumerMode, SimConfig, Tuning};
use fsense_proto::{BatchWriter, MAX_BATCH_BYTES};

fn capture_encode_enqueue(c: &mut Criterion) {
    let config = LoadConfig::from_registry_value(Some(4096));
    let storage: &'static mut [u8] = Box::leak(vec![0u8; config.queue_bytes()].into_boxed_slice());
    SENSOR.install_queue(storage, &config);
    let path: Vec<u8> =
        "\\Device\\HarddiskVolume3\\Users\\alice\\Documents\\report-2026-q3-final.docx"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
    let volume: Vec<u8> = "\\Device\\HarddiskVolume3"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let facts = WriteFacts {
        requestor: Requestor {
            pid: 4242,
            tid: 17,
            process_create_time: 133_000_000_000_000_000,
            kernel_mode: false,
        },
        status: 0,
        bytes_written: 4096,
        params: WriteParams {
            offset: 8192,
            length: 4096,
            paging_io: false,
            mdl: false,
        },
        name_known: true,
        truncated: false,
    };
    let mut batch_buf = vec![0u8; MAX_BATCH_BYTES];
    let mut n = 0u32;
    let mut group = c.benchmark_group("driver");
    group.throughput(Throughput::Elements(1));
    group.bench_function("capture_encode_enqueue", |b| {
        b.iter(|| {
            SENSOR.record_write(&facts, &path, &volume);
            n += 1;
            if n == 1024 {
                n = 0;
                while let Ok(mut batch) = BatchWriter::new(&mut batch_buf) {
                    if SENSOR.drain_into(&mut batch).0 == 0 {
                        break;
                    }
                }
            }
        })
    });
    group.finish();
    SENSOR.remove_queue();
}

fn set_information_not_reported(c: &mut Criterion) {
    use fsense_driver::ffi::{CallbackData, classify_set_information};
    use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
        FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK,
    };
    use windows_sys::Wdk::System::SystemServices::IRP_MJ_SET_INFORMATION;
    // SAFETY: plain data for which all-zero is a valid bit pattern.
    let mut iopb: FLT_IO_PARAMETER_BLOCK = unsafe { std::mem::zeroed() };
    iopb.MajorFunction = IRP_MJ_SET_INFORMATION as u8;
    // FileInformationClass at 8 in the union (x64): FileBasicInformation = 4.
    let class = std::ptr::addr_of_mut!(iopb.Parameters)
        .cast::<u8>()
        .wrapping_add(8);
    // SAFETY: inside the union, which the bench owns; u32-aligned (the union is 8-aligned).
    unsafe { class.cast::<i32>().write(4) };
    // SAFETY: as above.
    let mut data: FLT_CALLBACK_DATA = unsafe { std::mem::zeroed() };
    data.Iopb = &mut iopb;
    let mut group = c.benchmark_group("driver");
    group.throughput(Throughput::Elements(1));
    group.bench_function("set_information_not_reported", |b| {
        b.iter(|| {
            let data = std::hint::black_box(&data);
            // SAFETY: `data` and its parameter block live for the whole bench.
            let view = unsafe { CallbackData::from_raw(data, IRP_MJ_SET_INFORMATION) };
            assert!(view.is_ok_and(|v| classify_set_information(&v).is_none()));
        })
    });
    group.finish();
}

fn simulated_port(c: &mut Criterion) {
    const EVENTS: u64 = 20_000;
    let config = SimConfig {
        events: EVENTS,
        threads: 1,
        queue_capacity: 65_536,
        consumer: ConsumerMode::Normal,
        seed: 11,
    };
    let mut group = c.benchmark_group("simulated_port");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    for (name, batch_records) in [("batched", 0), ("one_message_per_event", 1)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let tuning = Tuning {
                    batch_records,
                    ..Tuning::default()
                };
                let report = fsense_fltsim::run_tuned(&config, &tuning, &mut |_| {});
                assert!(report.failures().is_empty(), "{:?}", report.failures());
                assert_eq!(
                    report.dropped, 0,
                    "the queue must be large enough not to drop"
                );
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    capture_encode_enqueue,
    set_information_not_reported,
    simulated_port
);
criterion_main!(benches);
