//! What a run found, and the invariants it checks.

use fsense_proto::Health;

/// A callback this slow has waited on something (host preemption on 2 cores stays far below):
/// half the driver's send timeout, so a callback that waited for the consumer is caught.
pub const CALLBACK_WAIT_THRESHOLD_US: u64 = 50_000;

/// What a run found. `failures()` lists every invariant or check that did not hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// Sequence numbers the driver assigned.
    pub generated: u64,
    /// Records the simulated consumer received.
    pub delivered: u64,
    /// Events the driver counted as dropped (queue full or failed send).
    pub dropped: u64,
    /// Sequence numbers the consumer never saw.
    pub seq_gaps: u64,
    pub leaked_allocations: u64,
    pub unreleased_name_infos: u64,
    /// Each names the rule and the call site.
    pub verifier_violations: Vec<String>,
    /// Longest time any I/O callback took, in microseconds.
    pub max_callback_us: u64,
    pub unload_clean: bool,
    /// How long the driver's unload callback took, in milliseconds.
    pub unload_ms: u64,
    /// The driver's last health snapshot, as it reported it.
    pub health: Option<Health>,
    /// Per load, the sequence numbers above the highest one the real (external) client could
    /// learn of (from a batch or a health message it took): generated, never delivered, and
    /// invisible to it, as when the unload's final health found no posted receive. Always 0
    /// for the simulator's own consumer, which is told each load's final count.
    pub unseen_tail_per_load: Vec<u64>,
    /// Batch messages `FltSendMessage` failed on purpose ([`Tuning::fail_every_nth_batch`]).
    pub injected_send_failures: u64,
    /// Waits on a kernel event that ended by their timeout, not a signal: what an idle worker
    /// that polls costs (each is a wake-up with nothing to do).
    pub event_wait_timeouts: u64,
    /// Renames, hard links, deletes and block clones that happened while the driver was
    /// loaded and before its unload began (simulated consumer: each must arrive once or be
    /// counted dropped).
    pub changes_expected: u64,
    /// Changes made through operations the driver registered no callback for (not held
    /// against it; a driver that watches them all has 0).
    pub changes_unwatched: u64,
    /// Of the expected ones, how many the simulated consumer never received.
    pub changes_missing: u64,
    /// Malformed set-information and FSCTL buffers issued, and those issued by watched
    /// processes before unload began (each must be rejected and counted by the driver).
    pub hostile_buffers_issued: u64,
    pub hostile_buffers_watched: u64,
    /// What the driver's health says it rejected (`Health::buffers_rejected`, summed over loads).
    pub buffers_rejected: u64,
    /// Some load's last health was not a protocol-4 one (no consumer of that protocol), so it
    /// did not carry `buffers_rejected`: the hostile-buffer check is skipped.
    pub buffers_rejected_unknown: bool,
}

impl SimReport {
    /// Every invariant that failed, one line each. Empty means the run passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.generated != self.delivered + self.dropped {
            out.push(format!(
                "generated ({}) != delivered ({}) + dropped ({})",
                self.generated, self.delivered, self.dropped
            ));
        }
        // Each missing change is one of the drops (the consumer cannot tell which record a gap
        // was, so this bounds them; with no drops it is exact).
        if self.changes_missing > self.dropped {
            out.push(format!(
                "{} of {} renames/links/deletes/clones never arrived, more than the {} drops counted",
                self.changes_missing, self.changes_expected, self.dropped
            ));
        }
        // Every malformed buffer a watched process sent before unload was rejected and counted;
        // the count cannot pass what was sent at all.
        if !self.buffers_rejected_unknown
            && (self.buffers_rejected < self.hostile_buffers_watched
                || self.buffers_rejected > self.hostile_buffers_issued)
        {
            out.push(format!(
                "the driver counted {} rejected buffers; {} malformed ones were sent before unload \
                 ({} in all)",
                self.buffers_rejected, self.hostile_buffers_watched, self.hostile_buffers_issued
            ));
        }
        if self.seq_gaps != self.dropped {
            out.push(format!(
                "sequence gaps seen by the consumer ({}) != drops counted by the driver ({})",
                self.seq_gaps, self.dropped
            ));
        }
        if self.leaked_allocations != 0 {
            out.push(format!(
                "{} pool allocations leaked",
                self.leaked_allocations
            ));
        }
        if self.unreleased_name_infos != 0 {
            out.push(format!(
                "{} file name information references not released",
                self.unreleased_name_infos
            ));
        }
        out.extend(self.verifier_violations.iter().cloned());
        // Under Miri every instruction is interpreted; wall-clock times mean nothing there.
        if self.max_callback_us >= CALLBACK_WAIT_THRESHOLD_US && !cfg!(miri) {
            out.push(format!(
                "an I/O callback took {} us: it must have waited (the driver's send timeout is 100 ms)",
                self.max_callback_us
            ));
        }
        if !self.unload_clean {
            out.push("unload was not clean".to_string());
        }
        out
    }
}
