//! What the sensor decides and records: safe Rust over the wrappers in [`crate::ffi`].
//!
//! The I/O callbacks call [`Sensor::wants_create`] / [`Sensor::wants_write`] in pre-operation and
//! [`Sensor::record_create`] / [`Sensor::record_write`] in post-operation. Recording builds one
//! [`EventRecord`] on the stack and offers it to the pre-allocated queue under a spin lock: no
//! allocation, no wait, no name query, bounded work (one copy of the path). Deletes, renames,
//! links and clones (issue 27) are recorded the same way ([`namespace`]).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use fsense_proto::{
    ControlReply, EventQueue, EventRecord, Health, Hello, PushOutcome, RecordFlags, SensorConfig,
    Utf16Path,
};

use crate::ffi::{self, CreateParams, KernelEvent, Requestor, SpinLock, WriteParams};

mod namespace;
pub use namespace::{CloneRange, NamespaceFacts, OpNames};

/// Queue capacity (records) when the registry says nothing usable.
pub const DEFAULT_QUEUE_CAPACITY: u32 = 4096;
/// Range accepted from the registry's `QueueCapacity`. The top is 65,536 records, that is
/// 32 MiB of non-paged pool at [`BYTES_PER_RECORD`]: a bound a reviewer accepts for one driver on
/// a small VM (1M records, the old top, was 512 MiB). Larger values are clamped to it.
pub const QUEUE_CAPACITY_RANGE: core::ops::RangeInclusive<u32> = 16..=65_536;
/// Queue bytes budgeted per record (a typical record is 300-500 bytes).
pub const BYTES_PER_RECORD: usize = 512;

/// `STATUS_REPARSE`: a success code for a create that opened nothing (a symbolic link, junction
/// or mount point was traversed and the open is reissued).
pub const STATUS_REPARSE: i32 = 0x0000_0104;

/// Settings fixed at load.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    pub queue_capacity: u32,
    /// Most records per batch; 0 = as many as fit. 1 sends one message per event (benchmarks).
    pub batch_records: u32,
}

impl LoadConfig {
    /// From `Parameters\QueueCapacity` (REG_DWORD): the default when missing or below the range,
    /// the top of the range (32 MiB of queue) when above it.
    pub fn from_registry_value(value: Option<u32>) -> Self {
        let queue_capacity = match value {
            Some(v) if v > *QUEUE_CAPACITY_RANGE.end() => *QUEUE_CAPACITY_RANGE.end(),
            Some(v) if QUEUE_CAPACITY_RANGE.contains(&v) => v,
            _ => DEFAULT_QUEUE_CAPACITY,
        };
        Self {
            queue_capacity,
            batch_records: 0,
        }
    }

    /// Adds the service key's `BatchRecords` (REG_DWORD, 1..=65535); anything else means no limit.
    pub fn with_batch_records(self, value: Option<u32>) -> Self {
        Self {
            batch_records: value.filter(|v| (1..=65_535).contains(v)).unwrap_or(0),
            ..self
        }
    }

    /// Bytes of queue storage: the record budget, and never less than one maximal record.
    pub fn queue_bytes(&self) -> usize {
        (self.queue_capacity as usize)
            .saturating_mul(BYTES_PER_RECORD)
            .max(fsense_proto::MAX_RECORD_BYTES)
    }
}

/// A consumer's hello was missing, malformed, or offered no protocol version we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedHello;

/// What pre-create decided for one open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateInterest {
    /// Run post-create: to record the open, or to keep its name for the writes that follow.
    pub post: bool,
    /// Record the open (creates are reported).
    pub record: bool,
    /// Query the opened name now, in pre-create: the only place Microsoft documents it for a
    /// create that then fails (failed creates are reported).
    pub name_in_pre: bool,
}

/// Facts of one create, read by the FFI layer.
pub struct CreateFacts {
    pub requestor: Requestor,
    pub status: i32,
    /// The file was opened: a success status other than STATUS_REPARSE (which reports that
    /// the open must be reissued, `nf-fltkernel-fltcancelfileopen`).
    pub opened: bool,
    /// Record the open (false when post-create runs only to keep the name for writes).
    pub record: bool,
    /// An open of the parent directory for a rename or link (`SL_OPEN_TARGET_DIRECTORY`).
    pub target_directory: bool,
    pub information: u64,
    pub params: CreateParams,
    pub directory: bool,
    pub name_failed: bool,
}

/// Facts of one write, read by the FFI layer.
pub struct WriteFacts {
    pub requestor: Requestor,
    pub status: i32,
    pub bytes_written: u64,
    pub params: WriteParams,
    pub name_known: bool,
    pub truncated: bool,
}

/// The (possibly truncated) name a create recorded, for the stream context.
pub struct StoredName<'a> {
    pub path: Utf16Path<'a>,
    pub volume: Utf16Path<'a>,
    pub truncated: bool,
    pub keep_name_for_writes: bool,
}

/// The queue and whether it still takes events (false once the worker's final drain began).
///
/// Ordering: plain data (the ring, the sequence counter, the counts, `accepting`), touched only
/// with [`Sensor::slot`]'s spin lock held. Taking the lock has acquire and releasing it release
/// semantics, so each holder sees every write of the holders before it, on any processor
/// (docs/ordering.md; Miri checks it in tests/ordering.rs).
pub struct QueueSlot {
    queue: Option<EventQueue<'static>>,
    accepting: bool,
}

/// Counters kept outside the queue lock.
///
/// Ordering: Relaxed, all of them. Each is a count (or `acked_sequence`'s running maximum) that
/// publishes nothing. The worker alone writes all but `self_excluded` and reads them for its own
/// health in program order, so the final health's generated = sent + dropped needs no ordering;
/// `self_excluded`, counted by I/O threads, may miss an increment in flight, which the next health
/// has. `install_queue` zeroes them in DriverEntry, before the worker thread exists and before
/// filtering starts, which order the zeroes before any other access.
#[derive(Default)]
pub struct Counters {
    pub self_excluded: AtomicU64,
    pub events_sent: AtomicU64,
    pub dropped_send: AtomicU64,
    pub send_timeouts: AtomicU64,
    pub send_failures: AtomicU64,
    pub batches_sent: AtomicU64,
    pub replies_rejected: AtomicU64,
    pub acked_sequence: AtomicU64,
    /// Requests whose variable-length buffers failed the bounds checks (issue 27).
    pub buffers_rejected: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Self {
            self_excluded: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            dropped_send: AtomicU64::new(0),
            send_timeouts: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            replies_rejected: AtomicU64::new(0),
            acked_sequence: AtomicU64::new(0),
            buffers_rejected: AtomicU64::new(0),
        }
    }
}

/// The sensor's whole mutable state. One instance, in static (non-paged) storage.
pub struct Sensor {
    slot: SpinLock<QueueSlot>,
    /// Signalled when the queue goes from empty to non-empty, and on stop / connect.
    pub worker_wake: KernelEvent,
    /// The connected consumer's process, for self-exclusion; 0 when none. Relaxed: it publishes
    /// nothing (a callback reads only the pid), and a callback racing a connect or disconnect may
    /// see either pid under any ordering. Every pre-create and pre-write reads it: no barrier.
    consumer_pid: AtomicU32,
    /// The protocol version negotiated with the connected consumer (reported in health, so the
    /// consumer knows which reply fields it may use). Relaxed: the connect callback stores it
    /// before the health request's Release store, and the worker reads it after the request's
    /// Acquire swap (`delivery::wake_for_health` / `take_health_request`), which orders it.
    consumer_protocol: AtomicU32,
    /// The content version the consumer last reported in an ack (protocol 2); 0 when none.
    /// Kept for diagnostics (a kernel debugger or crash dump shows what the agent ran).
    /// Relaxed: the driver never reads it.
    pub consumer_content_version: AtomicU64,
    /// Relaxed: stored in DriverEntry before the worker thread is created (which orders it),
    /// read by the worker only.
    batch_records: AtomicU32,
    /// The consumer's settings. Relaxed: each is one self-contained value. The worker writes
    /// them (DriverEntry before it exists) and reads them for health in program order; an I/O
    /// callback reads each setting it uses once, so a change lands at most one event apart
    /// between two settings, and no record depends on two of them agreeing.
    config_version: AtomicU32,
    config_flags: AtomicU32,
    max_path_units: AtomicU32,
    /// This load's identity (N6): the interrupt time when DriverEntry installed the queue,
    /// which only grows within a boot, so no two loads share it. Never 0. Relaxed: stored in
    /// DriverEntry before the worker thread is created, read by the worker only.
    load_id: AtomicU64,
    pub counters: Counters,
}

/// The one sensor.
pub static SENSOR: Sensor = Sensor::new();

/// Driver version reported in health: major << 16 | minor << 8 | patch.
pub const DRIVER_VERSION: u32 = 1 << 8;
/// Identifies the build in health snapshots: up to 32 hex digits from build.rs (the commit), as
/// 16 bytes; zeros when unknown.
pub const BUILD_ID: [u8; 16] = build_id(option_env!("FSENSE_BUILD_ID"));

const fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Two hex digits per byte, at most 16 bytes, zeros where digits are missing (public for tests).
pub const fn build_id(text: Option<&str>) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Some(t) = text {
        let b = t.as_bytes();
        let mut i = 0;
        while i < 16 && 2 * i + 1 < b.len() {
            out[i] = (hex_value(b[2 * i]) << 4) | hex_value(b[2 * i + 1]);
            i += 1;
        }
    }
    out
}

impl Sensor {
    const fn new() -> Self {
        Self {
            slot: SpinLock::new(QueueSlot {
                queue: None,
                accepting: false,
            }),
            worker_wake: KernelEvent::new(),
            consumer_pid: AtomicU32::new(0),
            consumer_protocol: AtomicU32::new(fsense_proto::MIN_PROTOCOL_VERSION as u32),
            consumer_content_version: AtomicU64::new(0),
            batch_records: AtomicU32::new(0),
            config_version: AtomicU32::new(SensorConfig::DEFAULT.config_version),
            config_flags: AtomicU32::new(SensorConfig::DEFAULT.flags),
            max_path_units: AtomicU32::new(SensorConfig::DEFAULT.max_path_units),
            load_id: AtomicU64::new(0),
            counters: Counters::new(),
        }
    }

    /// Takes the queue storage allocated at load. Resets everything a previous load left.
    pub fn install_queue(&self, storage: &'static mut [u8], config: &LoadConfig) {
        // A later load always reads a later interrupt time: at least one more tick.
        let load_id = ffi::interval_time()
            .max(self.load_id.load(Ordering::Relaxed).saturating_add(1))
            .max(1);
        self.load_id.store(load_id, Ordering::Relaxed);
        self.batch_records
            .store(config.batch_records, Ordering::Relaxed);
        let mut slot = self.slot.lock();
        slot.queue = Some(EventQueue::new(storage, config.queue_capacity));
        slot.accepting = true;
        drop(slot);
        self.consumer_pid.store(0, Ordering::Relaxed);
        self.apply_config(&SensorConfig::DEFAULT);
        for c in [
            &self.counters.self_excluded,
            &self.counters.events_sent,
            &self.counters.dropped_send,
            &self.counters.send_timeouts,
            &self.counters.send_failures,
            &self.counters.batches_sent,
            &self.counters.replies_rejected,
            &self.counters.acked_sequence,
            &self.counters.buffers_rejected,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Gives the storage back (unload), dropping the queue's borrow of it.
    pub fn remove_queue(&self) {
        let mut slot = self.slot.lock();
        slot.queue = None;
        slot.accepting = false;
    }

    /// Stops taking events: from now on nothing gets a sequence number. The worker calls this
    /// before its final drain, so every sequence number handed out is delivered or counted.
    pub fn stop_accepting(&self) {
        self.slot.lock().accepting = false;
    }

    // --- consumer ------------------------------------------------------------------------

    /// Checks the hello of a connecting consumer and remembers its process for self-exclusion.
    pub fn accept_consumer(&self, hello: Option<&[u8]>, pid: u32) -> Result<(), RefusedHello> {
        let negotiated = hello
            .and_then(|bytes| Hello::decode(bytes).ok())
            .and_then(|h| h.negotiate());
        match negotiated {
            Some(version) => {
                // Release: a worker that reads it (Acquire) before sending sees a new consumer's
                // protocol (issue 27: no batch drained for another protocol goes to it).
                self.consumer_protocol
                    .store(u32::from(version), Ordering::Release);
                self.consumer_content_version.store(0, Ordering::Relaxed);
                self.consumer_pid.store(pid, Ordering::Relaxed);
                Ok(())
            }
            None => Err(RefusedHello),
        }
    }

    pub fn consumer_gone(&self) {
        self.consumer_pid.store(0, Ordering::Relaxed);
    }

    fn is_consumer(&self, requestor: &Requestor) -> bool {
        let pid = self.consumer_pid.load(Ordering::Relaxed);
        if pid != 0 && pid == requestor.pid {
            self.counters.self_excluded.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn has(&self, flag: u32) -> bool {
        self.config_flags.load(Ordering::Relaxed) & flag == flag
    }

    // --- I/O callbacks -------------------------------------------------------------------

    /// Pre-create: whether post-create should run for this open, and what it does. With create
    /// reporting off but writes on, post-create still runs for an open that can write data
    /// (`desired_access`): it keeps the name writes report. A read-only open then needs no
    /// post-create and no name query.
    pub fn create_interest(&self, requestor: &Requestor, desired_access: u32) -> CreateInterest {
        let record = self.has(SensorConfig::REPORT_CREATES);
        let writes = self.has(SensorConfig::REPORT_WRITES) && opens_for_writing(desired_access);
        if !(record || writes) || self.is_consumer(requestor) {
            return CreateInterest::default();
        }
        CreateInterest {
            post: true,
            record,
            name_in_pre: record && self.has(SensorConfig::REPORT_FAILED_CREATES),
        }
    }

    /// Post-create: whether creates are still reported (the setting can change in between).
    pub fn reports_creates(&self) -> bool {
        self.has(SensorConfig::REPORT_CREATES)
    }

    /// Pre-write: whether post-write should run for this write.
    pub fn wants_write(&self, requestor: &Requestor, paging_io: bool) -> bool {
        if !self.has(SensorConfig::REPORT_WRITES) {
            return false;
        }
        if paging_io && !self.has(SensorConfig::REPORT_PAGING_IO) {
            return false;
        }
        !self.is_consumer(requestor)
    }

    fn cut<'a>(&self, bytes: &'a [u8]) -> (Utf16Path<'a>, bool) {
        let max = self.max_path_units.load(Ordering::Relaxed) as usize;
        Utf16Path::truncating(bytes, max)
    }

    /// Post-create: records the open and returns the name to keep for later writes.
    pub fn record_create<'a>(
        &self,
        facts: &CreateFacts,
        path: &'a [u8],
        volume: &'a [u8],
    ) -> StoredName<'a> {
        let (path, path_cut) = self.cut(path);
        let (volume, _) = Utf16Path::truncating(volume, fsense_proto::MAX_VOLUME_UNITS);
        let succeeded = facts.opened;
        let mut rec = EventRecord::create(path, volume);
        rec.timestamp = ffi::system_time();
        rec.pid = facts.requestor.pid;
        rec.tid = facts.requestor.tid;
        rec.process_create_time = facts.requestor.process_create_time;
        rec.status = facts.status as u32;
        rec.information = facts.information;
        rec.create_disposition = facts.params.disposition;
        rec.create_options = facts.params.options;
        rec.desired_access = facts.params.desired_access;
        rec.share_access = facts.params.share_access;
        rec.flags = flags(path_cut, facts.name_failed, facts.requestor.kernel_mode);
        if facts.directory {
            rec.flags.insert(RecordFlags::DIRECTORY);
        }
        // STATUS_REPARSE (#11): nothing was opened and nothing failed; the I/O manager reissues
        // the create on the link's target (`nf-fltkernel-fltcancelfileopen`, Note), and that
        // create is reported on its own. So it is never recorded, as success or as failure.
        let reparse = facts.status == STATUS_REPARSE;
        if facts.record && !reparse && (succeeded || self.has(SensorConfig::REPORT_FAILED_CREATES))
        {
            self.enqueue(&rec);
        }
        StoredName {
            path,
            volume,
            truncated: path_cut,
            keep_name_for_writes: succeeded
                && !facts.directory
                && !facts.target_directory
                && !facts.name_failed
                && opens_for_writing(facts.params.desired_access),
        }
    }

    /// Post-write: records the write with the name saved at create time, if any.
    pub fn record_write(&self, facts: &WriteFacts, path: &[u8], volume: &[u8]) {
        let (path, path_cut) = self.cut(path);
        let (volume, _) = Utf16Path::truncating(volume, fsense_proto::MAX_VOLUME_UNITS);
        let mut rec = EventRecord::write(path, volume);
        rec.timestamp = ffi::system_time();
        rec.pid = facts.requestor.pid;
        rec.tid = facts.requestor.tid;
        rec.process_create_time = facts.requestor.process_create_time;
        rec.status = facts.status as u32;
        rec.information = facts.bytes_written;
        rec.write_offset = facts.params.offset;
        rec.write_length = facts.params.length;
        // No name query runs for a write: a write without a context is NO_NAME_CONTEXT, never
        // NAME_QUERY_FAILED.
        rec.flags = flags(
            path_cut || facts.truncated,
            false,
            facts.requestor.kernel_mode,
        );
        if facts.name_known {
            rec.flags.insert(RecordFlags::NAME_FROM_CONTEXT);
        } else {
            rec.flags.insert(RecordFlags::NO_NAME_CONTEXT);
        }
        if facts.params.paging_io {
            rec.flags.insert(RecordFlags::PAGING_IO);
        }
        if facts.params.mdl {
            rec.flags.insert(RecordFlags::MDL_WRITE);
        }
        self.enqueue(&rec);
    }

    /// Offers one record to the queue; wakes the worker when the queue was empty.
    fn enqueue(&self, rec: &EventRecord<'_>) {
        let outcome = {
            let mut slot = self.slot.lock();
            if !slot.accepting {
                return;
            }
            match slot.queue.as_mut() {
                Some(q) => q.push(rec),
                None => return,
            }
        };
        if let PushOutcome::Queued {
            was_empty: true, ..
        } = outcome
        {
            self.worker_wake.set();
        }
    }

    // --- worker side ---------------------------------------------------------------------

    /// The protocol negotiated with the consumer that connected last (the minimum before any).
    pub fn negotiated_protocol(&self) -> u16 {
        u16::try_from(self.consumer_protocol.load(Ordering::Acquire))
            .unwrap_or(fsense_proto::MIN_PROTOCOL_VERSION)
    }

    /// Moves queued records into `batch`; returns (records moved, drops not yet reported).
    pub fn drain_into(&self, batch: &mut fsense_proto::BatchWriter<'_>) -> (u32, u64) {
        self.drain_into_for(batch, self.negotiated_protocol())
    }

    /// [`Sensor::drain_into`] for a consumer of `protocol`: records of operations it cannot
    /// decode leave unsent, counted (issue 27). The worker reads the protocol once, drains for
    /// it, and does not send the batch if another consumer connected in between.
    pub fn drain_into_for(
        &self,
        batch: &mut fsense_proto::BatchWriter<'_>,
        protocol: u16,
    ) -> (u32, u64) {
        let mut slot = self.slot.lock();
        match slot.queue.as_mut() {
            Some(q) => {
                let limit = match self.batch_records.load(Ordering::Relaxed) {
                    0 => u32::MAX,
                    n => n,
                };
                let moved = q.drain_for_protocol(batch, limit, protocol);
                (moved, q.take_unreported_drops())
            }
            None => (0, 0),
        }
    }

    /// Applies the consumer's reply to a health message.
    pub fn apply_reply(&self, reply: &[u8], poll_id: u64) {
        match ControlReply::decode(reply) {
            Ok(r) if r.poll_id == poll_id => {
                self.counters
                    .acked_sequence
                    .fetch_max(r.acked_sequence, Ordering::Relaxed);
                if let Some(config) = r.config {
                    self.apply_config(&config);
                }
                if let Some(version) = r.content_version {
                    self.consumer_content_version
                        .store(version, Ordering::Relaxed);
                }
            }
            _ => {
                self.counters
                    .replies_rejected
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn apply_config(&self, config: &SensorConfig) {
        self.config_flags.store(config.flags, Ordering::Relaxed);
        self.max_path_units
            .store(config.max_path_units, Ordering::Relaxed);
        self.config_version
            .store(config.config_version, Ordering::Relaxed);
    }

    /// A health snapshot of everything the sensor counts.
    pub fn health(&self, poll_id: u64) -> Health {
        let (generated, dropped_queue_full, withheld, high_water, capacity) = {
            let slot = self.slot.lock();
            slot.queue.as_ref().map_or((0, 0, 0, 0, 0), |q| {
                (
                    q.generated(),
                    q.dropped_total(),
                    q.withheld_total(),
                    q.high_water(),
                    q.max_records(),
                )
            })
        };
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let protocol_version = u16::try_from(self.consumer_protocol.load(Ordering::Relaxed))
            .unwrap_or(fsense_proto::MIN_PROTOCOL_VERSION);
        let v4 = protocol_version >= fsense_proto::NAMESPACE_OPS_SINCE;
        let mut sensor_flags = self.config_flags.load(Ordering::Relaxed);
        // An older health has no withheld counter: the records withheld (each with a sequence
        // number) count as not sent, so generated = sent + dropped still holds for it, and the
        // flag says why (issue 27).
        let mut dropped_send = get(&c.dropped_send);
        if !v4 && withheld != 0 {
            sensor_flags |= Health::WITHHELD_KINDS;
            dropped_send = dropped_send.saturating_add(withheld);
        }
        Health {
            protocol_version,
            // Only a consumer that negotiated protocol 3 reads it (older layouts have no room).
            load_id: if protocol_version >= fsense_proto::LOAD_ID_SINCE {
                self.load_id.load(Ordering::Relaxed)
            } else {
                0
            },
            driver_version: DRIVER_VERSION,
            config_version: self.config_version.load(Ordering::Relaxed),
            build_id: BUILD_ID,
            poll_id,
            events_generated: generated,
            events_sent: get(&c.events_sent),
            dropped_queue_full,
            dropped_send,
            send_timeouts: get(&c.send_timeouts),
            send_failures: get(&c.send_failures),
            batches_sent: get(&c.batches_sent),
            replies_rejected: get(&c.replies_rejected),
            acked_sequence: get(&c.acked_sequence),
            self_excluded: get(&c.self_excluded),
            queue_high_water: high_water,
            queue_capacity: capacity,
            sensor_flags,
            withheld_old_protocol: if v4 { withheld } else { 0 },
            buffers_rejected: if v4 { get(&c.buffers_rejected) } else { 0 },
        }
    }
}

fn flags(truncated: bool, name_failed: bool, kernel_mode: bool) -> RecordFlags {
    let mut f = RecordFlags::empty();
    if truncated {
        f.insert(RecordFlags::PATH_TRUNCATED);
    }
    if name_failed {
        f.insert(RecordFlags::NAME_QUERY_FAILED);
    }
    if kernel_mode {
        f.insert(RecordFlags::KERNEL_REQUESTOR);
    }
    f
}

/// Whether an open's access mask can write data (so its later writes need the name).
pub fn opens_for_writing(desired_access: u32) -> bool {
    const FILE_WRITE_DATA: u32 = 0x2;
    const FILE_APPEND_DATA: u32 = 0x4;
    const GENERIC_WRITE: u32 = 0x4000_0000;
    const GENERIC_ALL: u32 = 0x1000_0000;
    const MAXIMUM_ALLOWED: u32 = 0x0200_0000;
    desired_access
        & (FILE_WRITE_DATA | FILE_APPEND_DATA | GENERIC_WRITE | GENERIC_ALL | MAXIMUM_ALLOWED)
        != 0
}
