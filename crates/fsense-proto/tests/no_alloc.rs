//! The hot paths allocate nothing: encoding a record, building a batch, queue push and drain, and
//! decoding a batch. Shown with a counting global allocator (this file is its own test binary, so
//! the allocator sees only this binary's threads; the count is per thread, so the test harness's
//! own allocations on other threads do not disturb it).

use std::cell::Cell;

use fsense_proto::{
    BatchView, BatchWriter, EventQueue, EventRecord, MAX_BATCH_BYTES, Message, RecordFlags,
    SeqTracker, Utf16Path,
};

mod counting {
    //! The only `unsafe` in this binary: forwarding `GlobalAlloc` to the system allocator.
    use std::alloc::{GlobalAlloc, Layout, System};

    pub struct Counting;

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
    // `System`'s guarantees are ours; counting touches only a const-initialised thread-local
    // `Cell`, which never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            super::count();
            // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            super::count();
            // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            super::count();
            // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// Heap allocations (alloc, alloc_zeroed, realloc) made by `f` on this thread.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    (ALLOCATIONS.with(Cell::get) - before, r)
}

/// Miri runs ~1000x slower: fewer records there, same code paths (the ring still wraps).
const BATCH_RECORDS: u64 = if cfg!(miri) { 20 } else { 500 };
const QUEUE_BYTES: usize = if cfg!(miri) { 4 * 1024 } else { 64 * 1024 };
const PUSHES_PER_ROUND: usize = if cfg!(miri) { 20 } else { 300 };

const PATH: &str = r"\Device\HarddiskVolume3\Users\alice\Documents\quarterly-report.docx";

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[test]
fn the_counter_counts() {
    let (n, v) = allocations_in(|| vec![1u8; 10]);
    assert_eq!((n, v.len()), (1, 10));
}

#[test]
fn hot_paths_do_not_allocate() {
    // Buffers are set up first: the driver allocates them once at load.
    let path_bytes = utf16(PATH);
    let volume_bytes = utf16(r"\Device\HarddiskVolume3");
    let mut record_buf = vec![0u8; 1024];
    let mut batch_buf = vec![0u8; MAX_BATCH_BYTES];
    let mut queue_storage = vec![0u8; QUEUE_BYTES];

    let (n, record) = allocations_in(|| {
        let path = Utf16Path::from_le_bytes(&path_bytes).unwrap();
        let volume = Utf16Path::from_le_bytes(&volume_bytes).unwrap();
        let mut r = EventRecord::write(path, volume);
        r.sequence = 1;
        r.write_offset = 4096;
        r.write_length = 512;
        r.information = 512;
        r.flags = RecordFlags::PAGING_IO;
        r
    });
    assert_eq!(n, 0, "building a record");

    let (n, len) = allocations_in(|| {
        record
            .encode_with_sequence(BATCH_RECORDS + 1, &mut record_buf)
            .unwrap()
    });
    assert_eq!(n, 0, "encoding a record");
    assert_eq!(len, record.encoded_len());

    let (n, batch_len) = allocations_in(|| {
        let mut w = BatchWriter::new(&mut batch_buf).unwrap();
        let mut r = record;
        for s in 1..=BATCH_RECORDS {
            r.sequence = s;
            w.push(&r).unwrap();
        }
        w.push_encoded(BATCH_RECORDS + 1, &record_buf[..len])
            .unwrap();
        w.finish(3).unwrap()
    });
    assert_eq!(n, 0, "building a batch");

    let (n, decoded) = allocations_in(|| {
        let view = match Message::decode(&batch_buf[..batch_len]).unwrap() {
            Message::Batch(v) => v,
            Message::Health(_) => unreachable!(),
        };
        let mut tracker = SeqTracker::new();
        let mut path_units = 0;
        for r in view.records() {
            path_units += r.path.units();
            assert!(tracker.observe(r.sequence).is_none());
        }
        (view.records().count(), path_units)
    });
    assert_eq!(n, 0, "decoding a batch");
    let n_records = BATCH_RECORDS as usize + 1;
    assert_eq!(
        decoded,
        (n_records, n_records * PATH.encode_utf16().count())
    );

    let (n, moved) = allocations_in(|| {
        let mut queue = EventQueue::new(&mut queue_storage, 4096);
        let mut moved = 0;
        // Enough rounds to fill and wrap the ring several times.
        for _ in 0..20 {
            for _ in 0..PUSHES_PER_ROUND {
                queue.push(&record);
            }
            let mut w = BatchWriter::new(&mut batch_buf).unwrap();
            moved += queue.drain_into(&mut w);
            let dropped = queue.take_unreported_drops();
            let len = w.finish(dropped).unwrap();
            assert!(BatchView::parse(&batch_buf[..len]).is_ok());
        }
        moved
    });
    assert_eq!(n, 0, "queue push and drain");
    assert!(moved > 0);
}
