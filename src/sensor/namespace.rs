//! Recording the operations of protocol 4 (issue 27): deletes, renames, hard links and block
//! clones. Same rules as creates and writes: one record built on the stack, offered to the queue,
//! no allocation, no wait, no name query here (the FFI layer hands over names it already holds).

use core::sync::atomic::Ordering;

use fsense_proto::{EventRecord, Operation, RecordFlags, SensorConfig, Utf16Path};

use super::{Sensor, flags};
use crate::ffi::{self, Requestor};

/// Facts of one delete, rename, link or clone, read by the FFI layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceFacts {
    pub requestor: Requestor,
    pub status: i32,
    pub information: u64,
    /// `REPLACE_EXISTING` (rename, link) or `POSIX_DELETE` (delete), from the request.
    pub replace_existing: bool,
    pub posix: bool,
}

/// The names of one such operation; each may be missing (empty, flagged).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpNames<'a> {
    pub path: &'a [u8],
    pub volume: &'a [u8],
    /// The path came from the stream's saved name (not a query).
    pub path_from_context: bool,
    /// No path could be had (query failed, or nothing saved).
    pub path_failed: bool,
    pub path_truncated: bool,
    pub target: &'a [u8],
    pub target_failed: bool,
}

/// The range of a block clone (`FSCTL_DUPLICATE_EXTENTS_TO_FILE` / `_EX`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRange {
    pub target_offset: u64,
    pub byte_count: u64,
}

impl Sensor {
    /// Pre-set-information / pre-cleanup: whether a rename, link or delete of this requestor
    /// is reported at all (the consumer's own are not). Costs one atomic load.
    pub fn wants_namespace(&self, requestor: &Requestor) -> bool {
        !self.is_consumer(requestor)
    }

    /// Pre-FSCTL: whether a block clone is reported (it writes data: `REPORT_WRITES`).
    pub fn wants_clone(&self, requestor: &Requestor) -> bool {
        self.has(SensorConfig::REPORT_WRITES) && !self.is_consumer(requestor)
    }

    /// A caller's variable-length buffer failed its bounds checks: rejected unread, counted.
    pub fn buffer_rejected(&self) {
        self.counters
            .buffers_rejected
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Post-set-information (rename, link) or post-cleanup (delete): records the operation.
    /// `op` must be Delete, Rename or Link; anything else is ignored.
    pub fn record_namespace(&self, op: Operation, facts: &NamespaceFacts, names: &OpNames<'_>) {
        if !matches!(op, Operation::Delete | Operation::Rename | Operation::Link) {
            return;
        }
        let mut rec = self.namespace_record(op, facts, names);
        if facts.replace_existing && op != Operation::Delete {
            rec.flags.insert(RecordFlags::REPLACE_EXISTING);
        }
        if facts.posix && op == Operation::Delete {
            rec.flags.insert(RecordFlags::POSIX_DELETE);
        }
        self.enqueue(&rec);
    }

    /// Post-FSCTL: records a block clone into the file at `names.path`. The source's name is
    /// not at hand in the driver (the request names it by handle), so the target is empty
    /// and flagged `TARGET_NAME_FAILED` unless the caller passes one.
    pub fn record_clone(&self, facts: &NamespaceFacts, names: &OpNames<'_>, range: CloneRange) {
        let mut rec = self.namespace_record(Operation::Clone, facts, names);
        rec.write_offset = range.target_offset;
        rec.information = range.byte_count;
        rec.write_length = u32::try_from(range.byte_count).unwrap_or(u32::MAX);
        self.enqueue(&rec);
    }

    fn namespace_record<'a>(
        &self,
        op: Operation,
        facts: &NamespaceFacts,
        names: &OpNames<'a>,
    ) -> EventRecord<'a> {
        let (path, path_cut) = self.cut(names.path);
        let (volume, _) = Utf16Path::truncating(names.volume, fsense_proto::MAX_VOLUME_UNITS);
        let (target, target_cut) = self.cut(names.target);
        let mut rec = EventRecord::blank(op, path, volume);
        rec.target = target;
        rec.timestamp = ffi::system_time();
        rec.pid = facts.requestor.pid;
        rec.tid = facts.requestor.tid;
        rec.process_create_time = facts.requestor.process_create_time;
        rec.status = facts.status as u32;
        rec.information = facts.information;
        rec.flags = flags(
            path_cut || names.path_truncated,
            names.path_failed,
            facts.requestor.kernel_mode,
        );
        if names.path_from_context {
            rec.flags.insert(RecordFlags::NAME_FROM_CONTEXT);
        }
        if target_cut {
            rec.flags.insert(RecordFlags::TARGET_TRUNCATED);
        }
        if names.target_failed {
            rec.flags.insert(RecordFlags::TARGET_NAME_FAILED);
        }
        rec
    }
}
