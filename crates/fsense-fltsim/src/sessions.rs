//! One I/O thread's share of the plan: each session's create, its writes, what else its handle
//! does (renames, links, delete dispositions, MDL writes, FSCTLs), and its cleanup, each
//! through the driver's own callbacks; and which of them the driver must have reported.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ffi;
use crate::plan::{Plan, PlannedOp, Session};

/// What one I/O thread did that the run's invariants check.
#[derive(Default)]
pub struct ThreadOutcome {
    /// Renames, links, deletes and clones that happened and whose callbacks all returned before
    /// the driver's unload began: each must arrive once or be counted dropped.
    pub changes_before_unload: Vec<u32>,
    /// Malformed buffers issued by processes the sensor watches before unload began: the
    /// driver must have rejected and counted each.
    pub hostile_before_unload: u64,
    /// Malformed buffers issued at all.
    pub hostile_issued: u64,
    /// Changes that happened through callbacks the driver did not register.
    pub changes_unwatched: u64,
}

/// Runs `sessions` in order; `pace` waits until the given op of this thread is due.
pub fn run_thread(
    sessions: &[Session],
    plan: &Plan,
    instance: isize,
    filter: isize,
    pace: &dyn Fn(u64),
    ops_done: &AtomicU64,
    max_ns: &AtomicU64,
) -> ThreadOutcome {
    let mut out = ThreadOutcome::default();
    let mut issued = 0u64;
    let longest = |t: std::time::Duration| {
        max_ns.fetch_max(t.as_nanos() as u64, Ordering::Relaxed);
    };
    for session in sessions {
        pace(issued);
        issued += session.op_count();
        let path = plan
            .files
            .get(session.create.file)
            .map(|f| f.path.clone())
            .unwrap_or_default();
        let (open, timing) = ffi::run_create(&session.create, path, instance, filter);
        longest(timing.longest);
        ops_done.fetch_add(1, Ordering::Relaxed);
        for w in &session.writes {
            if let Some(file) = &open {
                longest(ffi::run_write(w, file, instance, filter).longest);
            }
            ops_done.fetch_add(1, Ordering::Relaxed);
        }
        for op in &session.changes {
            if let Some(file) = &open {
                let timing = match op {
                    PlannedOp::Write(w) => ffi::run_write(w, file, instance, filter),
                    PlannedOp::SetInfo(s) => ffi::run_set_info(s, file, instance, filter),
                    PlannedOp::MdlWrite(m) => ffi::run_mdl_write(m, file, instance, filter),
                    PlannedOp::Fsctl(f) => ffi::run_fsctl(f, file, instance, filter),
                    PlannedOp::Create(_) | PlannedOp::Cleanup(_) => continue,
                };
                longest(timing.longest);
                out.account(op);
            }
            ops_done.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(cleanup), Some(file)) = (&session.cleanup, open) {
            longest(ffi::run_cleanup(cleanup, file, instance, filter).longest);
            out.account(&PlannedOp::Cleanup(cleanup.clone()));
            ops_done.fetch_add(1, Ordering::Relaxed);
        }
    }
    out
}

impl ThreadOutcome {
    fn account(&mut self, op: &PlannedOp) {
        let before_unload = !ffi::unload_begun();
        if !ffi::watches(op) {
            self.changes_unwatched += u64::from(op.must_report_change());
            return;
        }
        if op.is_hostile() {
            self.hostile_issued += 1;
            if before_unload && op.pid() != crate::plan::CONSUMER_PID {
                self.hostile_before_unload += 1;
            }
        }
        // The connected consumer's own I/O is not reported (and while it reconnects, may be).
        if op.must_report_change() && before_unload && op.pid() != crate::plan::CONSUMER_PID {
            let id = match op {
                PlannedOp::SetInfo(o) => o.op_id,
                PlannedOp::Cleanup(o) => o.op_id,
                PlannedOp::Fsctl(o) => o.op_id,
                _ => return,
            };
            self.changes_before_unload.push(id);
        }
    }
}

/// How many operations of each kind the plan for `events` operations holds (the op mix), by a
/// name per kind: what `fsense simulate` exercises, for tests and the README.
pub fn op_mix(
    events: u64,
    threads: u32,
    seed: u64,
) -> std::collections::BTreeMap<&'static str, u64> {
    use crate::changes::{
        FILE_DISPOSITION_ON_CLOSE, FILE_DISPOSITION_POSIX_SEMANTICS, SetInfoKind,
    };
    let plan = Plan::generate(events, threads, seed);
    let mut mix = std::collections::BTreeMap::new();
    for op in &plan.ops {
        let kind = match op {
            PlannedOp::Create(_) => "create",
            PlannedOp::Write(_) => "write",
            PlannedOp::MdlWrite(m) if m.irp_fallback => "mdl write (IRP fallback)",
            PlannedOp::MdlWrite(_) => "mdl write (fast I/O)",
            PlannedOp::Fsctl(f) if f.hostile.is_some() => "hostile fsctl",
            PlannedOp::Fsctl(f) if f.is_clone() => "block clone",
            PlannedOp::Fsctl(_) => "other fsctl",
            PlannedOp::SetInfo(s) if s.hostile.is_some() => "hostile set-information",
            PlannedOp::SetInfo(s) => match s.kind {
                SetInfoKind::Rename { .. } if s.status < 0 => "failed rename",
                SetInfoKind::Rename { .. } => "rename",
                SetInfoKind::Link { .. } => "hard link",
                SetInfoKind::Disposition { .. } => "delete disposition",
                SetInfoKind::DispositionEx { flags }
                    if flags & FILE_DISPOSITION_POSIX_SEMANTICS != 0 =>
                {
                    "posix delete disposition"
                }
                SetInfoKind::DispositionEx { flags } if flags & FILE_DISPOSITION_ON_CLOSE != 0 => {
                    "delete-on-close withdrawn"
                }
                SetInfoKind::DispositionEx { .. } => "delete disposition ex",
                SetInfoKind::Other { .. } => "other set-information",
            },
            PlannedOp::Cleanup(c) if c.deletes => "cleanup that deletes",
            PlannedOp::Cleanup(c) if c.cancelled => "cleanup after a cancelled delete",
            PlannedOp::Cleanup(_) => "cleanup",
        };
        *mix.entry(kind).or_insert(0) += 1;
    }
    mix
}
