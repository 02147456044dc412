//! The driver's event path allocates nothing: a counting global allocator watches one post-write
//! and one post-create's recording, and the worker's drain into a batch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use fsense_driver::ffi::{CreateParams, Requestor, WriteParams};
use fsense_driver::sensor::{CreateFacts, LoadConfig, SENSOR, WriteFacts};
use fsense_fltsim as _;
use fsense_proto::{BatchWriter, MAX_BATCH_BYTES};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn recording_and_draining_allocate_nothing() {
    let config = LoadConfig::from_registry_value(Some(256));
    let storage: &'static mut [u8] = Box::leak(vec![0u8; config.queue_bytes()].into_boxed_slice());
    SENSOR.install_queue(storage, &config);
    let path: Vec<u8> = "\\Device\\HarddiskVolume3\\x\\y.txt"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let requestor = Requestor {
        pid: 1,
        tid: 2,
        process_create_time: 3,
        kernel_mode: false,
    };
    let write = WriteFacts {
        requestor,
        status: 0,
        bytes_written: 1,
        params: WriteParams::default(),
        name_known: true,
        truncated: false,
    };
    let create = CreateFacts {
        requestor,
        status: 0,
        opened: true,
        record: true,
        target_directory: false,
        information: 1,
        params: CreateParams::default(),
        directory: false,
        name_failed: false,
    };
    let mut batch_buf = vec![0u8; MAX_BATCH_BYTES];
    // Warm up thread-locals and the clock once, then count.
    SENSOR.record_write(&write, &path, &[]);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        SENSOR.record_write(&write, &path, &[]);
        let _ = SENSOR.record_create(&create, &path, &[]);
    }
    let mut batch = BatchWriter::new(&mut batch_buf).unwrap();
    let (moved, _) = SENSOR.drain_into(&mut batch);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    SENSOR.remove_queue();
    assert_eq!(moved, 201);
    assert_eq!(after - before, 0, "the event path allocated");
}
