//! The Filter Manager port client (fltlib): connect, several overlapped receives on a
//! completion port, replies.
//!
//! [`Port`] owns a connected port handle, an I/O completion port, and [`Port::receives`] receive
//! slots (a `FILTER_MESSAGE_HEADER` + 256 KiB buffer and its `OVERLAPPED`), each a heap
//! allocation reached only through a raw pointer while the kernel may write it. Several
//! `FilterGetMessage` stay posted (as Microsoft's scanner sample does on its completion port), so
//! the driver's `FltSendMessage` finds a receive waiting while the consumer is busy with the
//! previous message; a completed slot is copied out and posted again before its message is
//! processed. Dropping the port cancels every posted receive and waits for each to complete
//! before any slot is freed.

use std::ffi::c_void;
use std::io;
use std::ptr::{NonNull, addr_of, addr_of_mut};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{ERROR_IO_PENDING, HANDLE, WAIT_TIMEOUT};
use windows_sys::Win32::Storage::InstallableFileSystems::{
    FILTER_MESSAGE_HEADER, FILTER_REPLY_HEADER, FilterConnectCommunicationPort, FilterGetMessage,
    FilterReplyMessage,
};
use windows_sys::Win32::System::IO::{
    CancelIoEx, CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED,
};

use super::win32::{
    OwnedHandle, hresult_error, hresult_from_win32, last_error, last_win32_error, wide, win32_code,
    win32_error,
};

/// Receive buffer: the Filter Manager's header, then the driver's message.
#[repr(C)]
struct ReceiveBuffer {
    header: FILTER_MESSAGE_HEADER,
    body: [u8; fsense_proto::MAX_MESSAGE_BYTES],
}

/// One posted receive: its `OVERLAPPED` first, so the `OVERLAPPED` address a completion names
/// is the slot's address.
#[repr(C)]
struct Slot {
    overlapped: OVERLAPPED,
    buffer: ReceiveBuffer,
}

/// Reply buffer: the Filter Manager's reply header, then a `ControlReply`.
#[repr(C)]
struct ReplyBuffer {
    header: FILTER_REPLY_HEADER,
    body: [u8; fsense_proto::ControlReply::LEN],
}

// What the client checks ReplyLength against is what it really sends (N5).
const _: () =
    assert!(std::mem::size_of::<ReplyBuffer>() == crate::source::port_framing::ACK_REPLY_LEN);

/// How many receives stay posted by default.
pub const DEFAULT_RECEIVES: usize = 8;

/// What the Filter Manager said about one received message; the bytes went to the caller's
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub message_id: u64,
    /// How many reply bytes the driver waits for, `FILTER_REPLY_HEADER` included (0: no reply
    /// expected), as `FILTER_MESSAGE_HEADER.ReplyLength` reports it.
    pub reply_length: u32,
    /// Bytes the Filter Manager reported for the whole transfer, header included.
    pub transferred: u32,
}

/// A connected communication port with several receives posted.
///
/// Invariants: `port` and `completion` are valid handles we own, `port` associated with
/// `completion`; each `slots[i]` comes from `Box::into_raw` and is only reached through that
/// pointer; while `pending[i]` is true the kernel may write slot `i` and nothing reads or frees
/// it; `leaked` slots (never completed within the drop timeout) are never freed.
pub struct Port {
    port: OwnedHandle,
    completion: OwnedHandle,
    slots: Vec<NonNull<Slot>>,
    pending: Vec<bool>,
    /// The first error a repost met: reported once no receive is left posted.
    broken: Option<io::Error>,
}

// SAFETY: the handles and slots are owned exclusively by this value; moving it to another
// thread moves that ownership (kernel handles are not thread-affine).
unsafe impl Send for Port {}

impl Port {
    /// Connects to `name` (e.g. `\fsensePort`) with `context` as the connection context (the
    /// encoded `Hello`), which the Filter Manager copies into the driver's connect callback, and
    /// posts `receives` receives (at least one).
    pub fn connect(name: &str, context: &[u8], receives: usize) -> io::Result<Self> {
        let context_len = u16::try_from(context.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "context too long"))?;
        let name = wide(name);
        let mut handle: HANDLE = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated UTF-16 and `context` is `context_len` readable bytes,
        // both alive for the call; `handle` is a valid out-pointer.
        let hr = unsafe {
            FilterConnectCommunicationPort(
                name.as_ptr(),
                0,
                context.as_ptr().cast::<c_void>(),
                context_len,
                std::ptr::null(),
                &mut handle,
            )
        };
        if hr < 0 {
            return Err(hresult_error(hr));
        }
        let port = OwnedHandle::new(handle).ok_or_else(last_win32_error)?;
        // SAFETY: `port` is an overlapped handle (dwOptions 0); a new completion port, key 0.
        let completion = unsafe { CreateIoCompletionPort(port.0, std::ptr::null_mut(), 0, 1) };
        let completion = OwnedHandle::new(completion).ok_or_else(last_win32_error)?;
        let mut this = Self {
            port,
            completion,
            slots: Vec::new(),
            pending: Vec::new(),
            broken: None,
        };
        for _ in 0..receives.max(1) {
            // The slot is large (header + 256 KiB): built on the heap directly.
            let slot = NonNull::new(Box::into_raw(zeroed_box::<Slot>()))
                .ok_or_else(|| io::Error::other("allocation failed"))?;
            this.slots.push(slot);
            this.pending.push(false);
            this.post(this.slots.len() - 1)?;
        }
        Ok(this)
    }

    /// How many receives this port keeps posted.
    pub fn receives(&self) -> usize {
        self.slots.len()
    }

    /// Posts slot `index` (which is not pending).
    fn post(&mut self, index: usize) -> io::Result<()> {
        let slot = self.slots[index].as_ptr();
        // SAFETY: slot `index` is ours and not pending (caller contract), so nothing else
        // touches it; the kernel may write it from the call on, and `pending` records that
        // before any other access. Sizes are exact.
        let hr = unsafe {
            addr_of_mut!((*slot).overlapped).write(std::mem::zeroed());
            FilterGetMessage(
                self.port.0,
                addr_of_mut!((*slot).buffer.header),
                std::mem::size_of::<ReceiveBuffer>() as u32,
                addr_of_mut!((*slot).overlapped),
            )
        };
        if hr != hresult_from_win32(ERROR_IO_PENDING) && hr < 0 {
            return Err(hresult_error(hr));
        }
        self.pending[index] = true;
        Ok(())
    }

    fn slot_of(&self, overlapped: *mut OVERLAPPED) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ptr().cast::<OVERLAPPED>() == overlapped)
    }

    /// Waits up to `timeout` for the next message and copies it into `body` (replacing its
    /// contents). `Ok(None)` on timeout; an error means the port is gone (driver unloaded, port
    /// closed). The receive that completed is posted again before this returns.
    pub fn receive(
        &mut self,
        timeout: Duration,
        body: &mut Vec<u8>,
    ) -> io::Result<Option<Received>> {
        if !self.pending.contains(&true) {
            return Err(self
                .broken
                .take()
                .unwrap_or_else(|| io::Error::other("no receive is posted")));
        }
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
        let Some((index, ok, transferred)) = self.dequeue(ms)? else {
            return Ok(None);
        };
        if !ok {
            return Err(last_win32_error());
        }
        let received = self.copy_out(index, transferred, body);
        if let Err(e) = self.post(index) {
            self.broken.get_or_insert(e);
        }
        Ok(Some(received))
    }

    /// The next completion: (slot, succeeded, bytes), `None` on timeout. The slot is no longer
    /// pending. A failed completion leaves its error as the thread's last error.
    fn dequeue(&mut self, ms: u32) -> io::Result<Option<(usize, bool, u32)>> {
        let (mut transferred, mut key) = (0u32, 0usize);
        let mut overlapped: *mut OVERLAPPED = std::ptr::null_mut();
        // SAFETY: `completion` is our completion port; the out-pointers are valid locals.
        let ok = unsafe {
            GetQueuedCompletionStatus(
                self.completion.0,
                &mut transferred,
                &mut key,
                &mut overlapped,
                ms,
            )
        } != 0;
        if overlapped.is_null() {
            let code = last_error();
            if !ok && code == WAIT_TIMEOUT {
                return Ok(None);
            }
            return Err(win32_error(code));
        }
        let index = self.slot_of(overlapped).ok_or_else(|| {
            io::Error::other("a completion named an OVERLAPPED this port never posted")
        })?;
        self.pending[index] = false;
        Ok(Some((index, ok, transferred)))
    }

    /// Copies completed slot `index` out: its header fields, and its message into `body`.
    fn copy_out(&self, index: usize, transferred: u32, body: &mut Vec<u8>) -> Received {
        let slot = self.slots[index].as_ptr();
        // SAFETY: slot `index` completed (not pending): the kernel no longer writes it, and no
        // one else holds a reference, so reading through shared references is sound.
        let (header, message) = unsafe {
            (
                addr_of!((*slot).buffer.header).read(),
                &*addr_of!((*slot).buffer.body),
            )
        };
        take_message(&header, message, transferred, body)
    }

    /// Cancels every posted receive and waits (up to `wait`) until each has completed. Messages
    /// that completed before the cancellation took effect are returned, in order, so that a
    /// clean stop loses none of what the driver counted as delivered.
    pub fn cancel_all(&mut self, wait: Duration) -> Vec<(Received, Vec<u8>)> {
        for (i, slot) in self.slots.iter().enumerate() {
            if self.pending[i] {
                // SAFETY: cancels our own posted receive; the OVERLAPPED is its slot's.
                unsafe { CancelIoEx(self.port.0, slot.as_ptr().cast::<OVERLAPPED>()) };
            }
        }
        let mut completed = Vec::new();
        let end = Instant::now() + wait;
        while self.pending.contains(&true) && Instant::now() < end {
            match self.dequeue(50) {
                Ok(Some((index, true, transferred))) => {
                    let mut body = Vec::new();
                    let r = self.copy_out(index, transferred, &mut body);
                    completed.push((r, body));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        completed
    }

    /// Replies to message `message_id` with `reply` (a `ControlReply`).
    pub fn reply(
        &mut self,
        message_id: u64,
        reply: &[u8; fsense_proto::ControlReply::LEN],
    ) -> io::Result<()> {
        let buffer = ReplyBuffer {
            header: FILTER_REPLY_HEADER {
                Status: 0,
                MessageId: message_id,
            },
            body: *reply,
        };
        // SAFETY: `buffer` is a fully initialised repr(C) header + body on our stack, and its
        // exact size is passed. The pointer is derived from the whole buffer (the header comes
        // first), not from the header field: the callee reads the body through it too (a
        // pointer to the field alone only covers its 16 bytes; Miri caught that).
        let hr = unsafe {
            FilterReplyMessage(
                self.port.0,
                (&raw const buffer).cast::<FILTER_REPLY_HEADER>(),
                std::mem::size_of::<ReplyBuffer>() as u32,
            )
        };
        if hr < 0 {
            return Err(hresult_error(hr));
        }
        Ok(())
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let _ = self.cancel_all(Duration::from_secs(5));
        for (i, slot) in self.slots.iter().enumerate() {
            if !self.pending[i] {
                // SAFETY: from Box::into_raw in `connect`; not pending, so the kernel no longer
                // writes it; freed exactly once (the port is being dropped). A slot still pending
                // after the wait is leaked rather than freed under the kernel.
                drop(unsafe { Box::from_raw(slot.as_ptr()) });
            }
        }
    }
}

/// A zero-filled heap value, allocated without a stack temporary.
fn zeroed_box<T>() -> Box<T> {
    let layout = std::alloc::Layout::new::<T>();
    // SAFETY: `T` is only instantiated with repr(C) plain-data types (integers, byte arrays,
    // OVERLAPPED whose all-zero state is its documented initial one) for which all-zero is
    // valid, and the layout is non-zero-sized.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(ptr)
    }
}

/// A completed receive's message: the header's fields, and into `body` the bytes after the
/// header that the Filter Manager reports transferring (`transferred` counts the header too),
/// never more than the buffer holds, whatever the count says.
fn take_message(
    header: &FILTER_MESSAGE_HEADER,
    message: &[u8],
    transferred: u32,
    body: &mut Vec<u8>,
) -> Received {
    let n = (transferred as usize)
        .saturating_sub(std::mem::size_of::<FILTER_MESSAGE_HEADER>())
        .min(message.len());
    body.clear();
    body.extend_from_slice(&message[..n]);
    Received {
        message_id: header.MessageId,
        reply_length: header.ReplyLength,
        transferred,
    }
}

/// Whether `e` says the port accepts no more connections (one consumer is already connected).
pub fn is_connection_limit(e: &io::Error) -> bool {
    // ERROR_CONNECTION_COUNT_LIMIT
    win32_code(e) == Some(1238)
}

/// The port client against the simulated Filter Manager and the real driver code (also run
/// under Miri: the slots, the raw pointers into them and the cancellation).
#[cfg(all(test, not(windows)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use fsense_fltsim::win32::{self, Win32Config};
    use fsense_fltsim::{ConsumerMode, SimConfig, Tuning};
    use fsense_proto::{Hello, Message};

    use super::*;
    use crate::ffi::windows::process::{WinProcessLookup, dos_devices};
    use crate::pipeline::enrich::lookup::ProcessLookup;
    use crate::source::port_framing::{ack, message_slice};

    const PORT_NAME: &str = "\\fsensePort";

    fn small(events: u64) -> SimConfig {
        SimConfig {
            events,
            threads: 2,
            queue_capacity: 64,
            consumer: ConsumerMode::Normal,
            seed: 3,
        }
    }

    fn wait_for(stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[derive(Default)]
    struct Seen {
        records: u64,
        healths: u64,
        replies: u64,
    }

    fn take(port: &mut Port, r: Received, body: &[u8], seen: &mut Seen) {
        match Message::decode(message_slice(body, r.transferred)) {
            Ok(Message::Batch(b)) => seen.records += b.records().count() as u64,
            Ok(Message::Health(h)) => {
                seen.healths += 1;
                if r.reply_length != 0 && port.reply(r.message_id, &ack(&h, 0, None)).is_ok() {
                    seen.replies += 1;
                }
            }
            Err(e) => panic!("undecodable message from the driver: {e}"),
        }
    }

    /// A completion's byte count is the Filter Manager's word, not checked by anyone before
    /// this: below the header, exact, past the buffer. The message taken never reaches past
    /// the receive buffer, and what the framing and the decoder make of it is an error, not a
    /// panic.
    #[test]
    fn hostile_transfer_counts_never_read_past_the_buffer() {
        use fsense_proto::Operation;

        use crate::source::synth::{self, SynthEvent};

        let batch =
            synth::batches(&[SynthEvent::new(Operation::Create, "C:\\x")], 1, 1, &[]).remove(0);
        let header = FILTER_MESSAGE_HEADER {
            ReplyLength: 56,
            MessageId: 9,
        };
        let header_len = std::mem::size_of::<FILTER_MESSAGE_HEADER>() as u32;
        let whole = header_len + batch.len() as u32;
        let mut body = vec![0xEE; 3];
        for (transferred, expected) in [
            (0, 0),
            (header_len - 1, 0),
            (header_len, 0),
            (header_len + 10, 10),
            (whole, batch.len()),
            (whole + 1, batch.len()),
            (u32::MAX, batch.len()),
        ] {
            let r = take_message(&header, &batch, transferred, &mut body);
            assert_eq!(body.len(), expected, "transferred {transferred}");
            assert_eq!(body[..], batch[..expected]);
            assert_eq!((r.message_id, r.reply_length), (9, 56));
            let framed = message_slice(&body, r.transferred);
            match Message::decode(framed) {
                Ok(Message::Batch(b)) => assert_eq!(framed, &batch[..], "{transferred}: {b:?}"),
                Ok(other) => panic!("{transferred}: decoded as {other:?}"),
                Err(_) => assert!(expected < batch.len(), "{transferred}: whole batch refused"),
            }
        }
    }

    #[test]
    fn several_receives_take_every_message_reply_and_cancel_cleanly() {
        let events = if cfg!(miri) { 30 } else { 400 };
        let mut seen = Seen::default();
        let mut handles_left = Vec::new();
        let report = fsense_fltsim::run_external(
            &small(events),
            &Tuning::default(),
            &mut |stop: &AtomicBool| {
                let mut port = Port::connect(PORT_NAME, &Hello::current().encode(), 3).unwrap();
                assert_eq!(port.receives(), 3);
                let mut body = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    match port.receive(Duration::from_millis(20), &mut body) {
                        Ok(Some(r)) => take(&mut port, r, &body, &mut seen),
                        Ok(None) => {}
                        Err(_) => break, // the driver unloaded: its port is gone
                    }
                }
                for (r, b) in port.cancel_all(Duration::from_secs(5)) {
                    take(&mut port, r, &b, &mut seen);
                }
                drop(port);
                handles_left = win32::open_handles();
                wait_for(stop);
            },
        );
        // Every check holds but perhaps the driver-side timing one, which a loaded host can
        // miss by descheduling an I/O thread (it says nothing about this client).
        let failures: Vec<String> = report
            .failures()
            .into_iter()
            .filter(|f| !f.starts_with("an I/O callback took"))
            .collect();
        assert_eq!(failures, Vec::<String>::new(), "{report:#?}");
        assert!(report.delivered > 0);
        assert_eq!(seen.records, report.delivered);
        assert!(seen.healths > 0);
        // The acks that arrived in time were accepted.
        assert_eq!(report.health.map(|h| h.replies_rejected), Some(0));
        assert!(
            handles_left.is_empty(),
            "handles left open: {handles_left:?}"
        );
    }

    #[test]
    fn one_consumer_at_a_time_and_administrators_only() {
        let mut second = None;
        let mut not_admin = None;
        fsense_fltsim::run_external(&small(50), &Tuning::default(), &mut |stop: &AtomicBool| {
            let hello = Hello::current().encode();
            let first = Port::connect(PORT_NAME, &hello, 1).unwrap();
            second = Port::connect(PORT_NAME, &hello, 1).err();
            drop(first);
            win32::configure(Win32Config {
                caller_is_admin: false,
                ..Win32Config::DEFAULT
            });
            not_admin = Port::connect(PORT_NAME, &hello, 1).err();
            win32::configure(Win32Config::DEFAULT);
            wait_for(stop);
        });
        let second = second.expect("a second consumer was let in");
        assert!(is_connection_limit(&second), "{second}");
        let not_admin = not_admin.expect("a non-administrator was let in");
        assert_eq!(win32_code(&not_admin), Some(5), "{not_admin}");
        assert!(
            not_admin.to_string().contains("access is denied"),
            "{not_admin}"
        );
    }

    #[test]
    fn process_and_account_lookups_name_the_process_and_its_user() {
        let mut found = None;
        fsense_fltsim::run_external(&small(20), &Tuning::default(), &mut |stop: &AtomicBool| {
            let pid = 1003;
            let created = fsense_fltsim::ffi::process_create_time(pid) as u64;
            found = Some((
                WinProcessLookup.lookup(pid, created),
                WinProcessLookup.lookup(pid, created + 1),
                win32::local_allocations_outstanding(),
                dos_devices(),
            ));
            wait_for(stop);
        });
        let (found, reused, outstanding, devices) = found.unwrap();
        let found = found.expect("the process was not found");
        assert_eq!(found.name, "app1003.exe");
        assert_eq!(found.user.as_deref(), Some("SIM\\user1002"));
        assert_eq!(found.uid.as_deref(), Some("S-1-5-21-1111-2222-3333-1002"));
        // A process created at another time is another process.
        assert_eq!(reused, None);
        // The SID string was freed with LocalFree.
        assert_eq!(outstanding, 0);
        assert_eq!(
            devices,
            vec![("\\Device\\HarddiskVolume3".to_string(), "C:".to_string())]
        );
    }
}
