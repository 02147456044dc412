//! fltlib.dll: `FilterConnectCommunicationPort`, `FilterGetMessage`, `FilterReplyMessage`, wired
//! to the simulated port the driver's `FltSendMessage` offers messages on.
//!
//! Each connection has a pump thread, the simulated Filter Manager's side of it: it hands the
//! message the driver offers to the oldest posted receive, writing `FILTER_MESSAGE_HEADER` and
//! the message into the caller's buffer, then completes the receive (its `OVERLAPPED`, its event,
//! its completion port). A message is taken from the driver only when a receive is posted to take
//! it, under the connection's lock, so a cancelled receive never swallows a message.
//!
//! Contract sources (MicrosoftDocs/sdk-api, `sdk-api-src/content/fltuser/`):
//! `nf-fltuser-filterconnectcommunicationport.md`, `nf-fltuser-filtergetmessage.md`,
//! `nf-fltuser-filterreplymessage.md`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::c_void;
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fsense_proto::{Message, SeqTracker};
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_CONNECTION_COUNT_LIMIT, ERROR_FILE_NOT_FOUND, ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER, ERROR_IO_PENDING, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::InstallableFileSystems::{
    FILTER_MESSAGE_HEADER, FILTER_REPLY_HEADER,
};
use windows_sys::Win32::System::IO::OVERLAPPED;
use windows_sys::core::{HRESULT, PCWSTR};

use super::config;
use super::objects::{self, CompletionPort, Object, OverlappedPtr, Packet, lock, wait_until};
use crate::ffi;
use crate::port::PORT;
use crate::verifier::{self, violation};

pub const HEADER_LEN: usize = std::mem::size_of::<FILTER_MESSAGE_HEADER>();
const REPLY_HEADER_LEN: usize = std::mem::size_of::<FILTER_REPLY_HEADER>();

pub const STATUS_PENDING: i32 = 0x0000_0103;
pub const STATUS_CANCELLED: i32 = 0xC000_0120_u32 as i32;
pub const STATUS_PORT_DISCONNECTED: i32 = 0xC000_0037_u32 as i32;
pub const STATUS_BUFFER_OVERFLOW: i32 = 0x8000_0005_u32 as i32;
/// `FLT_PORT_FLAG_SYNC_HANDLE` (Windows 8.1+).
const FLT_PORT_FLAG_SYNC_HANDLE: u32 = 1;
/// `HRESULT_FROM_WIN32(ERROR_FLT_NO_WAITER_FOR_REPLY)`: the sender stopped waiting.
pub const E_FLT_NO_WAITER_FOR_REPLY: HRESULT = 0x801F_0020_u32 as i32;

/// The Win32 error a completion status becomes (`RtlNtStatusToDosError`). Which code a port
/// closed by the driver gives is not documented; ERROR_INVALID_HANDLE is what the port's
/// disconnected status maps to in the public status tables (confirm on a Windows VM).
pub fn win32_error_of(status: i32) -> u32 {
    match status {
        0 => 0,
        STATUS_CANCELLED => windows_sys::Win32::Foundation::ERROR_OPERATION_ABORTED,
        STATUS_PORT_DISCONNECTED => ERROR_INVALID_HANDLE,
        STATUS_BUFFER_OVERFLOW => windows_sys::Win32::Foundation::ERROR_MORE_DATA,
        _ => windows_sys::Win32::Foundation::ERROR_GEN_FAILURE,
    }
}

pub const fn hresult_from_win32(code: u32) -> HRESULT {
    if code == 0 {
        0
    } else {
        ((code & 0xFFFF) | 0x8007_0000) as i32
    }
}

/// `FILTER_MESSAGE_HEADER.ReplyLength` for a driver reply buffer of `capacity` bytes (rule S2
/// of docs/simulator.md): "the length, in bytes, of the expected reply, including the
/// FILTER_REPLY_HEADER header. Set to zero if no reply is expected"
/// (`ns-fltuserstructures-_filter_message_header`).
pub fn reply_length(capacity: u32) -> u32 {
    if capacity == 0 {
        0
    } else {
        capacity.saturating_add(REPLY_HEADER_LEN as u32)
    }
}

/// One receive the caller posted: its buffer and `OVERLAPPED`, valid until it completes.
struct Posted {
    buffer: *mut u8,
    size: u32,
    overlapped: OverlappedPtr,
}

// SAFETY: addresses the caller keeps valid while the receive is pending (the overlapped
// contract); only the connection's lock holder writes through them.
unsafe impl Send for Posted {}

#[derive(Default)]
struct State {
    posted: VecDeque<Posted>,
    completion: Option<(Arc<CompletionPort>, usize)>,
    /// Set when the connection ended: the status every pending and later receive fails with.
    closed: Option<i32>,
    /// Messages delivered whose sender waits for a reply: id -> the driver's reply buffer size.
    awaiting: HashMap<u64, u32>,
}

/// A client's connection to the driver's port.
pub struct Connection {
    /// The client port handle the driver was given at connect (what its FltSendMessage names).
    kernel_port: isize,
    /// The driver load it was made to (a reloaded driver may hand out the same port handle).
    load: u64,
    synchronous: bool,
    state: Mutex<State>,
    cv: Condvar,
}

/// Every batch record sequence number the simulated Filter Manager put into a client's buffer
/// (what "delivered" means when the consumer is real code), per driver load of the run.
static DELIVERED: Mutex<BTreeMap<u64, SeqTracker>> = Mutex::new(BTreeMap::new());
/// Per driver load, the highest sequence number a client could learn of from what it took: a
/// batch record's number or a health message's generated count. Numbers above it left no trace
/// the client received.
static LEARNED: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
/// The driver load in progress (numbered from 1 in a run); a connection belongs to the load it
/// was made to, and is dead once another load serves the port.
static LOAD: AtomicU64 = AtomicU64::new(0);

pub fn reset_delivered() {
    lock(&DELIVERED).clear();
    lock(&LEARNED).clear();
    LOAD.store(0, Ordering::Release);
}

/// A new driver load begins: connections made from now on belong to it. Returns its number.
pub fn begin_load() -> u64 {
    LOAD.fetch_add(1, Ordering::AcqRel) + 1
}

/// The sequence numbers delivered to clients of driver load `load`.
pub fn take_delivered(load: u64) -> SeqTracker {
    lock(&DELIVERED).remove(&load).unwrap_or_default()
}

/// The highest sequence number clients of driver load `load` could learn of (0: none).
pub fn take_learned(load: u64) -> u64 {
    lock(&LEARNED).remove(&load).unwrap_or(0)
}

impl Connection {
    fn alive(&self) -> bool {
        LOAD.load(Ordering::Acquire) == self.load
            && PORT.is_connected()
            && PORT.client_port() == self.kernel_port
    }

    /// Ends the connection: every posted receive completes with `status`.
    fn close(&self, status: i32) {
        let mut s = lock(&self.state);
        if s.closed.is_none() {
            s.closed = Some(status);
        }
        while let Some(p) = s.posted.pop_front() {
            complete(&s, p, status, 0);
        }
        self.cv.notify_all();
    }

    /// Associates the connection with a completion port (`CreateIoCompletionPort`).
    pub fn associate(&self, port: Arc<CompletionPort>, key: usize) -> bool {
        let mut s = lock(&self.state);
        if s.completion.is_some() {
            return false;
        }
        s.completion = Some((port, key));
        true
    }

    /// Cancels the posted receive using `overlapped` (all of them: `None`). Returns how many.
    pub fn cancel(&self, overlapped: Option<*const OVERLAPPED>) -> usize {
        let mut s = lock(&self.state);
        let mut cancelled = 0;
        let mut keep = VecDeque::new();
        while let Some(p) = s.posted.pop_front() {
            if overlapped.is_none_or(|o| std::ptr::eq(o, p.overlapped.0)) {
                complete(&s, p, STATUS_CANCELLED, 0);
                cancelled += 1;
            } else {
                keep.push_back(p);
            }
        }
        s.posted = keep;
        self.cv.notify_all();
        cancelled
    }

    /// Whether a receive with this `OVERLAPPED` is still pending.
    fn is_pending(s: &State, overlapped: *const OVERLAPPED) -> bool {
        s.posted
            .iter()
            .any(|p| std::ptr::eq(p.overlapped.0, overlapped))
    }

    /// Waits (up to `deadline`) until the receive with this `OVERLAPPED` is no longer pending.
    pub fn wait_done(&self, overlapped: *const OVERLAPPED, deadline: Option<Instant>) -> bool {
        let mut s = lock(&self.state);
        loop {
            if !Self::is_pending(&s, overlapped) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            s = wait_until(&self.cv, s, deadline);
        }
    }

    /// The client closed its handle: pending receives are cancelled and the driver is told.
    pub fn handle_closed(&self) {
        self.close(STATUS_CANCELLED);
        if self.alive() {
            ffi::disconnect_client();
        }
    }

    /// The pump: the simulated Filter Manager hands offered messages to posted receives.
    fn pump(self: Arc<Self>) {
        verifier::set_thread_role("Filter Manager (port)");
        let poll = Duration::from_millis(20);
        loop {
            {
                let mut s = lock(&self.state);
                while s.closed.is_none() && s.posted.is_empty() && self.alive() {
                    s = wait_until(&self.cv, s, Some(Instant::now() + poll));
                }
                if s.closed.is_some() {
                    return;
                }
            }
            if !self.alive() {
                self.close(STATUS_PORT_DISCONNECTED);
                return;
            }
            if !PORT.wait_offered(poll) {
                continue;
            }
            let mut s = lock(&self.state);
            if s.closed.is_some() || s.posted.is_empty() {
                continue; // closed or cancelled meanwhile: leave the message to the driver
            }
            let Some(message) = PORT.take(Duration::ZERO) else {
                continue;
            };
            let Some(posted) = s.posted.pop_front() else {
                continue;
            };
            let room = (posted.size as usize).saturating_sub(HEADER_LEN);
            let n = message.bytes.len().min(room);
            let mut header = [0u8; HEADER_LEN];
            header[..4].copy_from_slice(&reply_length(message.reply_capacity).to_le_bytes());
            header[8..].copy_from_slice(&message.id.to_le_bytes());
            // SAFETY: `posted.buffer` is the caller's buffer of `posted.size` >= HEADER_LEN bytes
            // (checked when posted), valid while the receive is pending; byte copies need no
            // alignment.
            unsafe {
                std::ptr::copy_nonoverlapping(header.as_ptr(), posted.buffer, HEADER_LEN);
                std::ptr::copy_nonoverlapping(
                    message.bytes.as_ptr(),
                    posted.buffer.add(HEADER_LEN),
                    n,
                );
            }
            let status = if n < message.bytes.len() {
                violation(
                    "GET_MESSAGE_BUFFER_SMALL",
                    format!(
                        "a {}-byte message into a {}-byte FilterGetMessage buffer: the message is cut",
                        message.bytes.len(),
                        posted.size
                    ),
                );
                STATUS_BUFFER_OVERFLOW
            } else {
                0
            };
            if message.reply_capacity != 0 {
                s.awaiting.insert(message.id, message.reply_capacity);
            }
            if status == 0 {
                observe_delivery(self.load, &message.bytes);
            }
            complete(&s, posted, status, (HEADER_LEN + n) as u32);
            self.cv.notify_all();
        }
    }
}

fn observe_delivery(load: u64, bytes: &[u8]) {
    let learned = match Message::decode(bytes) {
        Ok(Message::Batch(batch)) => {
            let mut guard = lock(&DELIVERED);
            let tracker = guard.entry(load).or_default();
            let mut highest = 0;
            for record in batch.records() {
                tracker.observe(record.sequence);
                highest = highest.max(record.sequence);
            }
            highest
        }
        Ok(Message::Health(health)) => health.events_generated,
        _ => 0,
    };
    let mut guard = lock(&LEARNED);
    let known = guard.entry(load).or_default();
    *known = (*known).max(learned);
}

/// Completes a receive as the I/O manager does: status and byte count into its `OVERLAPPED`,
/// then its event, then (unless the event's low bit says not to) a packet to its completion port.
fn complete(s: &State, posted: Posted, status: i32, bytes: u32) {
    let ov = posted.overlapped.0;
    // SAFETY: the pending receive's OVERLAPPED, valid until this completion (overlapped
    // contract); written field by field without forming a reference.
    let event = unsafe {
        addr_of_mut!((*ov).InternalHigh).write(bytes as usize);
        addr_of_mut!((*ov).Internal).write(status as u32 as usize);
        addr_of!((*ov).hEvent).read()
    };
    let quiet = event.addr() & 1 == 1;
    if !event.is_null() {
        let event = std::ptr::without_provenance_mut::<c_void>(event.addr() & !1);
        if let Some(Object::Event(e)) = objects::get(event) {
            e.set();
        }
    }
    if let Some((port, key)) = &s.completion
        && !quiet
    {
        port.post(Packet {
            bytes,
            key: *key,
            overlapped: posted.overlapped,
            error: win32_error_of(status),
        });
    }
}

/// The connection a port handle's object holds (None for anything fltlib did not put there).
pub fn as_connection(object: &objects::PortConnection) -> Option<Arc<Connection>> {
    Arc::clone(object).downcast::<Connection>().ok()
}

/// The open connection behind `handle`, or the error to fail with.
pub fn connection(handle: HANDLE, api: &str) -> Result<Arc<Connection>, u32> {
    match objects::get(handle) {
        Some(Object::Port(c)) if let Some(c) = as_connection(&c) => Ok(c),
        _ => {
            violation(
                "HANDLE_INVALID",
                format!("{api} on {handle:?}, which is not an open communication port handle"),
            );
            Err(ERROR_INVALID_HANDLE)
        }
    }
}

/// Reads a NUL-terminated UTF-16 string of at most `max` units.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string (or at least `max` readable units).
unsafe fn read_wide(p: PCWSTR, max: usize) -> Option<Vec<u16>> {
    if p.is_null() {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..max {
        // SAFETY: within the string, whose NUL has not been reached yet (caller contract).
        let unit = unsafe { p.add(i).read_unaligned() };
        if unit == 0 {
            return Some(out);
        }
        out.push(unit);
    }
    None
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FilterConnectCommunicationPort(
    lpportname: PCWSTR,
    dwoptions: u32,
    lpcontext: *const c_void,
    wsizeofcontext: u16,
    _lpsecurityattributes: *const SECURITY_ATTRIBUTES,
    hport: *mut HANDLE,
) -> HRESULT {
    let invalid = hresult_from_win32(ERROR_INVALID_PARAMETER);
    if hport.is_null() {
        violation(
            "CONNECT_NULL_HANDLE_OUT",
            "FilterConnectCommunicationPort without hPort (nf-fltuser-filterconnectcommunicationport: it receives the handle)",
        );
        return invalid;
    }
    // SAFETY: non-null out pointer; "otherwise, it receives INVALID_HANDLE_VALUE" (doc).
    unsafe { hport.write_unaligned(INVALID_HANDLE_VALUE) };
    if lpcontext.is_null() != (wsizeofcontext == 0) {
        violation(
            "CONNECT_CONTEXT_SIZE",
            format!(
                "context {} with size {wsizeofcontext} (nf-fltuser-filterconnectcommunicationport: a non-NULL lpContext needs a nonzero size, a NULL one size 0)",
                if lpcontext.is_null() {
                    "NULL"
                } else {
                    "non-NULL"
                }
            ),
        );
        return invalid;
    }
    if dwoptions & !FLT_PORT_FLAG_SYNC_HANDLE != 0 {
        violation(
            "CONNECT_OPTIONS",
            format!("dwOptions {dwoptions:#x}: only FLT_PORT_FLAG_SYNC_HANDLE is defined"),
        );
        return invalid;
    }
    // SAFETY: the caller passes a NUL-terminated name (doc); at most 512 units are read.
    let Some(name) = (unsafe { read_wide(lpportname, 512) }) else {
        violation(
            "CONNECT_PORT_NAME",
            "lpPortName is NULL or not NUL-terminated",
        );
        return invalid;
    };
    let served =
        crate::world::with_world(|w| w.server_port.is_some_and(|p| p.open)).unwrap_or(false);
    let expected: Vec<u16> = "\\fsensePort".encode_utf16().collect();
    if !served || !name.eq_ignore_ascii_case_u16(&expected) {
        objects::set_last_error(ERROR_FILE_NOT_FOUND);
        return hresult_from_win32(ERROR_FILE_NOT_FOUND);
    }
    // The port's descriptor (FltBuildDefaultSecurityDescriptor(FLT_PORT_ALL_ACCESS)) admits
    // administrators and SYSTEM only.
    if !config().caller_is_admin {
        return hresult_from_win32(ERROR_ACCESS_DENIED);
    }
    if PORT.is_connected() {
        // MaxConnections 1.
        return hresult_from_win32(ERROR_CONNECTION_COUNT_LIMIT);
    }
    let context = if lpcontext.is_null() {
        Vec::new()
    } else {
        // SAFETY: the caller's context of `wsizeofcontext` readable bytes (doc).
        unsafe { std::slice::from_raw_parts(lpcontext.cast::<u8>(), usize::from(wsizeofcontext)) }
            .to_vec()
    };
    if !ffi::connect_client(&context, verifier::current_pid()) {
        // The driver's connect callback failed: its status comes back as an HRESULT
        // (HRESULT_FROM_NT of STATUS_CONNECTION_REFUSED here; the exact code is the driver's).
        return (0xC000_0236_u32 | 0x1000_0000) as i32;
    }
    let connection = Arc::new(Connection {
        kernel_port: PORT.client_port(),
        load: LOAD.load(Ordering::Acquire),
        synchronous: dwoptions & FLT_PORT_FLAG_SYNC_HANDLE != 0,
        state: Mutex::new(State::default()),
        cv: Condvar::new(),
    });
    let pump = connection.clone();
    std::thread::spawn(move || pump.pump());
    let handle = objects::insert(Object::Port(connection));
    // SAFETY: non-null out pointer (checked above).
    unsafe { hport.write_unaligned(handle) };
    0
}

trait EqIgnoreAsciiCase {
    fn eq_ignore_ascii_case_u16(&self, other: &[u16]) -> bool;
}

impl EqIgnoreAsciiCase for Vec<u16> {
    fn eq_ignore_ascii_case_u16(&self, other: &[u16]) -> bool {
        let lower = |u: u16| {
            if (u16::from(b'A')..=u16::from(b'Z')).contains(&u) {
                u + 32
            } else {
                u
            }
        };
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| lower(*a) == lower(*b))
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FilterGetMessage(
    hport: HANDLE,
    lpmessagebuffer: *mut FILTER_MESSAGE_HEADER,
    dwmessagebuffersize: u32,
    lpoverlapped: *mut OVERLAPPED,
) -> HRESULT {
    let invalid = hresult_from_win32(ERROR_INVALID_PARAMETER);
    let connection = match connection(hport, "FilterGetMessage") {
        Ok(c) => c,
        Err(e) => return hresult_from_win32(e),
    };
    if lpmessagebuffer.is_null() {
        violation(
            "GET_MESSAGE_NULL_BUFFER",
            "FilterGetMessage with lpMessageBuffer NULL (nf-fltuser-filtergetmessage: required, cannot be NULL)",
        );
        return invalid;
    }
    if (dwmessagebuffersize as usize) < HEADER_LEN {
        violation(
            "GET_MESSAGE_BUFFER_SMALL",
            format!(
                "FilterGetMessage buffer of {dwmessagebuffersize} bytes cannot hold FILTER_MESSAGE_HEADER (nf-fltuser-filtergetmessage: the message must contain it)"
            ),
        );
        return invalid;
    }
    if lpoverlapped.is_null() {
        // Allowed by the documentation, refused by this design: a synchronous receive cannot be
        // cancelled, so stopping would wait for the next driver message.
        violation(
            "GET_MESSAGE_SYNCHRONOUS",
            "FilterGetMessage without an OVERLAPPED blocks until a message arrives; the consumer must stay cancellable",
        );
        return invalid;
    }
    if connection.synchronous {
        violation(
            "GET_MESSAGE_OVERLAPPED_ON_SYNC_HANDLE",
            "an overlapped FilterGetMessage on a handle opened with FLT_PORT_FLAG_SYNC_HANDLE",
        );
        return invalid;
    }
    let mut s = lock(&connection.state);
    if Connection::is_pending(&s, lpoverlapped) {
        violation(
            "OVERLAPPED_IN_USE",
            "an OVERLAPPED reused while its receive is still pending (an OVERLAPPED belongs to one operation until it completes)",
        );
        return invalid;
    }
    if let Some(status) = s.closed {
        return hresult_from_win32(win32_error_of(status));
    }
    // SAFETY: the caller's OVERLAPPED (non-null), valid until the receive completes (overlapped
    // contract): mark it pending and, as the doc says, reset its event before returning.
    let event = unsafe {
        addr_of_mut!((*lpoverlapped).Internal).write(STATUS_PENDING as usize);
        addr_of_mut!((*lpoverlapped).InternalHigh).write(0);
        addr_of!((*lpoverlapped).hEvent).read()
    };
    if !event.is_null() {
        let event = std::ptr::without_provenance_mut::<c_void>(event.addr() & !1);
        match objects::get(event) {
            Some(Object::Event(e)) => e.reset(),
            _ => {
                violation(
                    "OVERLAPPED_BAD_EVENT",
                    "OVERLAPPED.hEvent is neither NULL nor an event handle (nf-fltuser-filtergetmessage)",
                );
                return invalid;
            }
        }
    }
    s.posted.push_back(Posted {
        buffer: lpmessagebuffer.cast::<u8>(),
        size: dwmessagebuffersize,
        overlapped: OverlappedPtr(lpoverlapped),
    });
    connection.cv.notify_all();
    // "If lpOverlapped is not NULL, FilterGetMessage returns ERROR_IO_PENDING."
    hresult_from_win32(ERROR_IO_PENDING)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FilterReplyMessage(
    hport: HANDLE,
    lpreplybuffer: *const FILTER_REPLY_HEADER,
    dwreplybuffersize: u32,
) -> HRESULT {
    let invalid = hresult_from_win32(ERROR_INVALID_PARAMETER);
    let connection = match connection(hport, "FilterReplyMessage") {
        Ok(c) => c,
        Err(e) => return hresult_from_win32(e),
    };
    if lpreplybuffer.is_null() {
        violation(
            "REPLY_NULL_BUFFER",
            "FilterReplyMessage with lpReplyBuffer NULL (nf-fltuser-filterreplymessage: required, cannot be NULL)",
        );
        return invalid;
    }
    let size = dwreplybuffersize as usize;
    if size < REPLY_HEADER_LEN {
        violation(
            "REPLY_BUFFER_SMALL",
            format!(
                "FilterReplyMessage of {size} bytes cannot hold FILTER_REPLY_HEADER (nf-fltuser-filterreplymessage: the reply must contain it)"
            ),
        );
        return invalid;
    }
    // SAFETY: the caller's reply buffer of `size` readable bytes (doc).
    let bytes = unsafe { std::slice::from_raw_parts(lpreplybuffer.cast::<u8>(), size) };
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..16]);
    let id = u64::from_le_bytes(id);
    let body = bytes[REPLY_HEADER_LEN..].to_vec();
    let capacity = lock(&connection.state).awaiting.remove(&id);
    let Some(capacity) = capacity else {
        return E_FLT_NO_WAITER_FOR_REPLY;
    };
    if body.len() > capacity as usize {
        violation(
            "REPLY_TOO_LARGE",
            format!(
                "a {}-byte reply to a driver waiting for {capacity} (nf-fltuser-filterreplymessage, Important: FltSendMessage then fails with STATUS_BUFFER_OVERFLOW)",
                body.len()
            ),
        );
    }
    if PORT.reply_if_waiting(id, body) {
        0
    } else {
        E_FLT_NO_WAITER_FOR_REPLY
    }
}
