//! The simulated consumer at the user-mode end of the port, and the checks it makes on every
//! record it receives against the operation that produced it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fsense_proto::{
    ControlReply, EventRecord, Hello, Message, Operation, RecordFlags, ReplyKind, SensorConfig,
    SeqTracker,
};

use crate::ConsumerMode;
use crate::ffi::{self, VOLUME};
use crate::plan::{CONSUMER_PID, Plan, PlannedOp};
use crate::port::PORT;
use crate::verifier::{self, violation};

/// The content version the simulated consumer reports in its acks.
const SIMULATED_CONTENT_VERSION: u64 = 7;

/// Health messages a malicious client answers (reconnecting after each) before it is done.
const MALICIOUS_HEALTHS: u64 = 5;

/// What the client saw, for the report.
#[derive(Default)]
pub struct ClientOutcome {
    pub tracker: SeqTracker,
    /// Replies sent that the driver must reject.
    pub bad_replies: u64,
    pub hostile_hellos_accepted: u64,
    /// Operations a record was delivered for.
    pub reported: std::collections::HashSet<usize>,
}

pub struct Client<'a> {
    pub mode: ConsumerMode,
    pub plan: &'a Plan,
    pub stop: &'a AtomicBool,
    pub connected: &'a AtomicBool,
    /// Set once the client has done what its mode is for (malicious: answered enough healths);
    /// the simulator unloads only after that (or a timeout).
    pub done: &'a AtomicBool,
    /// Set before unload: stop dropping the connection and be connected, so every unload
    /// happens with a consumer connected (the Filter Manager disconnects it inside
    /// FltUnregisterFilter).
    pub settle: Option<&'a AtomicBool>,
    pub outcome: ClientOutcome,
    messages: u64,
    healths: u64,
    volume_le: Vec<u8>,
    /// Operations a record was delivered for: each operation is reported at most once.
    reported: std::collections::HashSet<usize>,
}

impl<'a> Client<'a> {
    pub fn new(
        mode: ConsumerMode,
        plan: &'a Plan,
        stop: &'a AtomicBool,
        connected: &'a AtomicBool,
        done: &'a AtomicBool,
    ) -> Self {
        Self {
            mode,
            plan,
            stop,
            connected,
            done,
            settle: None,
            outcome: ClientOutcome {
                tracker: SeqTracker::new(),
                ..ClientOutcome::default()
            },
            messages: 0,
            healths: 0,
            volume_le: VOLUME.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            reported: std::collections::HashSet::new(),
        }
    }

    /// The client thread's body.
    pub fn run(&mut self, on_message: &mut (dyn FnMut(&[u8]) + Send)) {
        verifier::set_thread_role("consumer");
        verifier::set_current_pid(CONSUMER_PID);
        if self.mode == ConsumerMode::Malicious {
            self.hostile_hellos();
        }
        if !ffi::connect_client(&Hello::current().encode(), CONSUMER_PID) {
            violation("CONNECT_REFUSED", "the driver refused a valid hello");
        }
        self.connected.store(true, Ordering::Release);
        if self.mode != ConsumerMode::Malicious {
            self.done.store(true, Ordering::Release);
        }
        while !self.stop.load(Ordering::Acquire) {
            if self.mode == ConsumerMode::Stalled {
                if !PORT.is_connected() && self.settling() {
                    self.reconnect();
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let settling = self.settling();
            let Some(msg) = PORT.take(Duration::from_millis(20)) else {
                if !PORT.is_connected() && (self.mode == ConsumerMode::Crash || settling) {
                    self.reconnect();
                }
                continue;
            };
            self.messages += 1;
            self.handle(msg.id, &msg.bytes, on_message);
            if self.mode == ConsumerMode::Slow {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Crash: drop the connection every few messages.
            if self.mode == ConsumerMode::Crash && self.messages.is_multiple_of(3) && !settling {
                ffi::disconnect_client();
                std::thread::sleep(Duration::from_millis(2));
                self.reconnect();
            }
        }
        self.outcome.reported = std::mem::take(&mut self.reported);
    }

    fn settling(&self) -> bool {
        self.settle.is_some_and(|s| s.load(Ordering::Acquire))
    }

    fn reconnect(&mut self) {
        if !PORT.is_connected() {
            ffi::connect_client(&Hello::current().encode(), CONSUMER_PID);
        }
    }

    /// Hellos the driver must refuse: unsupported version, truncated, garbage.
    fn hostile_hellos(&mut self) {
        let future = Hello {
            min_version: 99,
            max_version: 99,
        }
        .encode();
        let truncated = &Hello::current().encode()[..8];
        let garbage = [0xA5u8; Hello::LEN];
        for hello in [&future[..], truncated, &garbage[..]] {
            if ffi::connect_client(hello, CONSUMER_PID) {
                self.outcome.hostile_hellos_accepted += 1;
                violation(
                    "HELLO_ACCEPTED",
                    "the driver accepted a hello it must refuse",
                );
                ffi::disconnect_client();
            }
        }
    }

    fn handle(&mut self, id: u64, bytes: &[u8], on_message: &mut (dyn FnMut(&[u8]) + Send)) {
        match Message::decode(bytes) {
            Ok(Message::Batch(batch)) => {
                for rec in batch.records() {
                    self.check_record(&rec);
                    self.outcome.tracker.observe(rec.sequence);
                }
            }
            Ok(Message::Health(h)) => {
                let reply = self.reply_for(h.poll_id, h.events_generated);
                PORT.reply(id, reply);
                // Malicious: reconnect after each of the first few healths, since every connect
                // earns another health to answer with garbage.
                if self.mode == ConsumerMode::Malicious && !self.settling() {
                    if self.healths < MALICIOUS_HEALTHS {
                        ffi::disconnect_client();
                        self.reconnect();
                    } else {
                        self.done.store(true, Ordering::Release);
                    }
                }
            }
            Err(e) => violation("DRIVER_SENT_GARBAGE", format!("undecodable message: {e}")),
        }
        on_message(bytes);
    }

    fn reply_for(&mut self, poll_id: u64, acked: u64) -> Vec<u8> {
        // The client speaks the current protocol, so its acks carry a content version: the
        // driver must accept them (the reply checks below count what it rejects).
        let valid = ControlReply {
            kind: ReplyKind::Ack,
            poll_id,
            acked_sequence: acked,
            config: None,
            content_version: Some(SIMULATED_CONTENT_VERSION),
        }
        .encode()
        .to_vec();
        if self.mode != ConsumerMode::Malicious {
            return valid;
        }
        self.healths += 1;
        let variant = self.healths % 5;
        if variant != 4 {
            self.outcome.bad_replies += 1;
        }
        match variant {
            0 => vec![0x5A; ControlReply::LEN],
            1 => valid[..10].to_vec(),
            2 => {
                let mut bad = ControlReply {
                    kind: ReplyKind::SetConfig,
                    poll_id,
                    acked_sequence: acked,
                    config: Some(SensorConfig {
                        max_path_units: 0,
                        ..SensorConfig::DEFAULT
                    }),
                    content_version: None,
                }
                .encode()
                .to_vec();
                // max_path_units 0 is out of range: the driver must keep its config.
                bad.truncate(ControlReply::LEN);
                bad
            }
            3 => {
                let mut wrong = valid.clone();
                wrong[0] ^= 0xFF;
                wrong
            }
            _ => valid,
        }
    }

    /// Compares a delivered record with the operation that produced it.
    fn check_record(&mut self, rec: &EventRecord<'_>) {
        let op_id = rec.tid as usize;
        let Some(op) = self.plan.ops.get(op_id) else {
            violation(
                "DELIVERY_UNKNOWN_OP",
                format!("record {} names op {op_id}", rec.sequence),
            );
            return;
        };
        if !self.reported.insert(op_id) {
            // One operation, one record: a fast I/O write that fell back to an IRP reaches the
            // callbacks twice, and only the IRP wrote anything (#14).
            violation(
                "DELIVERY_DUPLICATE",
                format!("op {op_id} reported twice (record {})", rec.sequence),
            );
        }
        let pid = op.pid();
        let mut wrong = Vec::new();
        if rec.pid != pid {
            wrong.push(format!("pid {} != {pid}", rec.pid));
        }
        if rec.process_create_time != ffi::process_create_time(pid) as u64 {
            wrong.push("process create time".to_string());
        }
        let reconnects = matches!(self.mode, ConsumerMode::Crash | ConsumerMode::Malicious);
        if pid == CONSUMER_PID && !reconnects {
            violation(
                "SELF_EXCLUSION",
                format!("op {op_id} by the connected consumer was reported"),
            );
        }
        match op {
            PlannedOp::Create(c) => {
                let file = &self.plan.files[c.file];
                if rec.operation != Operation::Create {
                    wrong.push("operation".into());
                }
                if rec.status != c.status as u32 || rec.information != c.information {
                    wrong.push("status/information".into());
                }
                if rec.create_disposition != c.disposition
                    || rec.create_options != c.options & 0x00FF_FFFF
                    || rec.desired_access != c.desired_access
                    || rec.share_access != u32::from(c.share_access)
                {
                    wrong.push("create parameters".into());
                }
                let directory = c.options & 1 != 0 || (c.opened() && c.directory_stream);
                if rec.flags.contains(RecordFlags::DIRECTORY) != directory {
                    wrong.push("directory flag".into());
                }
                self.check_name(rec, &file.path_le, c.shape.is_valid(), false, &mut wrong);
            }
            PlannedOp::Write(w) => {
                let file = &self.plan.files[w.file];
                if rec.operation != Operation::Write {
                    wrong.push("operation".into());
                }
                if rec.write_offset != w.offset || rec.write_length != w.length {
                    wrong.push("offset/length".into());
                }
                if rec.information != w.bytes_written || rec.status != w.status as u32 {
                    wrong.push("bytes written/status".into());
                }
                if rec.flags.contains(RecordFlags::PAGING_IO) != w.paging_io {
                    wrong.push("paging flag".into());
                }
                let must_have_name = match self.plan.ops.get(w.create_op as usize) {
                    Some(PlannedOp::Create(c)) => {
                        c.shape.is_valid()
                            && c.opened()
                            && !c.directory_stream
                            && c.pid != CONSUMER_PID
                            && fsense_driver::sensor::opens_for_writing(c.desired_access)
                    }
                    _ => false,
                };
                // After a rename through the handle, the new name; a driver that does not watch
                // set-information cannot know it (held to it once it registers for it).
                let path = match &w.name_le {
                    Some(renamed) if ffi::watches_renames() => renamed.as_slice(),
                    _ => &file.path_le,
                };
                self.check_name(rec, path, file.shape.is_valid(), must_have_name, &mut wrong);
            }
            PlannedOp::MdlWrite(m) => {
                let file = &self.plan.files[m.file];
                if rec.operation != Operation::Write {
                    wrong.push("operation (an MDL write is a write)".into());
                }
                if rec.write_offset != m.offset || rec.write_length != m.length {
                    wrong.push("offset/length".into());
                }
                if rec.information != u64::from(m.length) || rec.status != 0 {
                    wrong.push("bytes written/status".into());
                }
                // A driver that registers PREPARE_MDL_WRITE knows an MDL write as one, by fast
                // I/O or by its IRP form.
                if ffi::watches(op) && !rec.flags.contains(RecordFlags::MDL_WRITE) {
                    wrong.push("an MDL write without the MDL_WRITE flag".into());
                }
                let must_have_name = self.handle_has_name(m.create_op);
                self.check_name(
                    rec,
                    &file.path_le,
                    file.shape.is_valid(),
                    must_have_name,
                    &mut wrong,
                );
            }
            PlannedOp::SetInfo(_) | PlannedOp::Cleanup(_) | PlannedOp::Fsctl(_) => {
                self.check_change(rec, op, &mut wrong);
            }
        }
        if !wrong.is_empty() {
            violation(
                "DELIVERY_MISMATCH",
                format!(
                    "record {} (op {op_id}, {} reported as {}): {}",
                    rec.sequence,
                    op.kind(),
                    rec.operation.as_str(),
                    wrong.join(", ")
                ),
            );
        }
    }

    /// Whether the driver knows the name of the handle `create_op` opened (so its writes must
    /// carry it).
    pub(crate) fn handle_has_name(&self, create_op: u32) -> bool {
        match self.plan.ops.get(create_op as usize) {
            Some(PlannedOp::Create(c)) => {
                c.shape.is_valid()
                    && c.opened()
                    && !c.directory_stream
                    && c.pid != CONSUMER_PID
                    && fsense_driver::sensor::opens_for_writing(c.desired_access)
            }
            _ => false,
        }
    }

    fn check_name(
        &self,
        rec: &EventRecord<'_>,
        path: &[u8],
        valid: bool,
        must_have: bool,
        wrong: &mut Vec<String>,
    ) {
        let got = rec.path.as_le_bytes();
        let is_write = rec.operation == Operation::Write;
        if is_write && rec.flags.contains(RecordFlags::NAME_QUERY_FAILED) {
            wrong.push("NAME_QUERY_FAILED on a write (no name query runs for writes)".into());
        }
        if is_write
            && rec.flags.contains(RecordFlags::NO_NAME_CONTEXT)
                == rec.flags.contains(RecordFlags::NAME_FROM_CONTEXT)
        {
            wrong.push(
                "a write must carry exactly one of NAME_FROM_CONTEXT, NO_NAME_CONTEXT".into(),
            );
        }
        let failed = if is_write {
            rec.flags.contains(RecordFlags::NO_NAME_CONTEXT)
        } else {
            rec.flags.contains(RecordFlags::NAME_QUERY_FAILED)
        };
        if got.is_empty() && !path.is_empty() {
            if !failed {
                wrong.push("empty path without NAME_QUERY_FAILED / NO_NAME_CONTEXT".into());
            }
            if valid && (rec.operation == Operation::Create || must_have) {
                wrong.push("a valid name was not reported".into());
            }
            return;
        }
        if !valid && !got.is_empty() {
            wrong.push("a malformed name was reported instead of refused".into());
            return;
        }
        // A write's name may be cut to fit a stream context (at most MAXUSHORT bytes): then it
        // is a strict prefix of the path and carries PATH_TRUNCATED.
        let truncated = rec.flags.contains(RecordFlags::PATH_TRUNCATED);
        let name_ok = if truncated {
            is_write && got.len() < path.len() && path.starts_with(got)
        } else {
            got == path
        };
        if !name_ok {
            wrong.push(format!(
                "path differs ({} units, expected {}, truncated flag {truncated})",
                got.len() / 2,
                path.len() / 2
            ));
        }
        if !got.is_empty() && rec.volume.as_le_bytes() != self.volume_le.as_slice() {
            wrong.push("volume differs".into());
        }
    }
}
