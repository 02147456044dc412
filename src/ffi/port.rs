//! Communication port: the server port, the connected client and sending.

use super::*;

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn PsGetCurrentProcessId() -> HANDLE;
}

/// The filter handle, the server port and the connected client's port.
///
/// Ordering: each is a handle (a pointer to a Filter Manager object) published from one thread
/// and used from others: Release on every store, Acquire on every load (swap: AcqRel). The filter
/// is stored in DriverEntry and read by the worker, the disconnect callback and unload; the
/// server port in DriverEntry, closed at unload; the client port by the connect callback, read
/// by the worker's sends. Thread creation, the Filter Manager's own locks and unload's order
/// already order most of these; the pairs make each publication stand on its own. None of
/// them is read on the I/O path.
pub(super) struct Handles {
    pub(super) filter: AtomicIsize,
    pub(super) server_port: AtomicIsize,
    /// Read by the Filter Manager through the pointer we pass to `FltSendMessage`, which is why
    /// it is an atomic in static storage: FltCloseClientPort zeroes it under the Filter Manager's
    /// own synchronisation.
    pub(super) client_port: AtomicIsize,
}

pub(super) static HANDLES: Handles = Handles {
    filter: AtomicIsize::new(0),
    server_port: AtomicIsize::new(0),
    client_port: AtomicIsize::new(0),
};

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Delivered,
    TimedOut,
    NoConsumer,
    Failed,
}

/// Sends `message` to the consumer, waiting at most `timeout_ms` for it to be taken. Worker
/// thread only (PASSIVE_LEVEL), never from an I/O callback.
pub fn send_message(message: &[u8], timeout_ms: u32) -> SendOutcome {
    send(message, None, timeout_ms).0
}

/// Sends a health message and waits at most `timeout_ms` for a reply of at most `reply.len()`
/// bytes; returns the outcome and the reply's length. Unlike batches, health is handed to the
/// Filter Manager even with no consumer connected (it fails at once), so a kernel debugger, or the
/// simulator, sees the driver's final counters.
pub fn send_health(message: &[u8], reply: &mut [u8], timeout_ms: u32) -> (SendOutcome, usize) {
    send(message, Some(reply), timeout_ms)
}

fn send(message: &[u8], reply: Option<&mut [u8]>, timeout_ms: u32) -> (SendOutcome, usize) {
    if reply.is_none() && HANDLES.client_port.load(Ordering::Acquire) == 0 {
        return (SendOutcome::NoConsumer, 0);
    }
    let Ok(len) = u32::try_from(message.len()) else {
        return (SendOutcome::Failed, 0);
    };
    let timeout = relative_timeout(timeout_ms);
    let (reply_ptr, mut reply_len) = match reply {
        Some(buf) => (buf.as_mut_ptr().cast::<c_void>(), buf.len() as u32),
        None => (ptr::null_mut(), 0),
    };
    let reply_len_ptr = if reply_ptr.is_null() {
        ptr::null_mut()
    } else {
        &mut reply_len as *mut u32
    };
    // SAFETY: the filter handle is live while the worker runs; the client port pointer is our
    // static atomic (same layout as PFLT_PORT); message and reply point to `len` / `reply_len`
    // valid bytes; the timeout is non-null and bounded.
    let st = unsafe {
        FltSendMessage(
            HANDLES.filter.load(Ordering::Acquire),
            HANDLES.client_port.as_ptr().cast_const(),
            message.as_ptr().cast(),
            len,
            reply_ptr,
            reply_len_ptr,
            &timeout,
        )
    };
    match st {
        status::SUCCESS => (SendOutcome::Delivered, reply_len as usize),
        status::TIMEOUT => (SendOutcome::TimedOut, 0),
        status::PORT_DISCONNECTED => (SendOutcome::NoConsumer, 0),
        _ => (SendOutcome::Failed, 0),
    }
}

/// The process id of the caller (used in the connect callback to learn the consumer's pid).
fn current_process_id() -> u32 {
    // SAFETY: no preconditions.
    unsafe { PsGetCurrentProcessId() as usize as u32 }
}

/// `\fsensePort` as UTF-16.
static PORT_NAME: [u16; 11] = ascii_utf16(b"\\fsensePort");

pub(super) fn create_port(filter: isize) -> NTSTATUS {
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: valid out pointer. FLT_PORT_ALL_ACCESS gives administrators and SYSTEM only; never
    // a NULL DACL.
    let st = unsafe { FltBuildDefaultSecurityDescriptor(&mut sd, FLT_PORT_ALL_ACCESS) };
    if !status::is_success(st) {
        return st;
    }
    let name = UNICODE_STRING {
        Length: (PORT_NAME.len() * 2) as u16,
        MaximumLength: (PORT_NAME.len() * 2) as u16,
        Buffer: PORT_NAME.as_ptr().cast_mut(),
    };
    let oa = OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: ptr::null_mut(),
        ObjectName: &name,
        Attributes: OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
        SecurityDescriptor: sd.cast_const().cast(),
        SecurityQualityOfService: ptr::null(),
    };
    let mut port: PFLT_PORT = 0;
    // SAFETY: all pointers are valid for the call; callbacks match their prototypes; no
    // message-notify callback (see module docs); one connection at most.
    let st = unsafe {
        FltCreateCommunicationPort(
            filter,
            &mut port,
            &oa,
            ptr::null(),
            Some(port_connect),
            Some(port_disconnect),
            None,
            1,
        )
    };
    // SAFETY: sd came from FltBuildDefaultSecurityDescriptor; the port keeps its own copy.
    unsafe { FltFreeSecurityDescriptor(sd) };
    if status::is_success(st) {
        HANDLES.server_port.store(port, Ordering::Release);
    }
    st
}

pub(super) fn close_server_port() {
    let port = HANDLES.server_port.swap(0, Ordering::AcqRel);
    if port != 0 {
        // SAFETY: the server port we created, closed exactly once (swap).
        unsafe { FltCloseCommunicationPort(port) };
    }
}

unsafe extern "system" fn port_connect(
    client_port: PFLT_PORT,
    _server_cookie: *const c_void,
    context: *const c_void,
    context_len: u32,
    connection_cookie: *mut *mut c_void,
) -> NTSTATUS {
    if !connection_cookie.is_null() && connection_cookie.is_aligned() {
        // SAFETY: non-null, aligned out pointer from the Filter Manager.
        unsafe { *connection_cookie = ptr::null_mut() };
    }
    let hello = if context.is_null() || context_len as usize != fsense_proto::Hello::LEN {
        None
    } else {
        // SAFETY: the connection context is the captured EA buffer of the port's create (kernel
        // memory, see module docs) of exactly `context_len` bytes; u8 needs no alignment.
        Some(unsafe { core::slice::from_raw_parts(context.cast::<u8>(), context_len as usize) })
    };
    match sensor::SENSOR.accept_consumer(hello, current_process_id()) {
        Ok(()) => {
            HANDLES.client_port.store(client_port, Ordering::Release);
            delivery::wake_for_health();
            status::SUCCESS
        }
        Err(sensor::RefusedHello) => status::CONNECTION_REFUSED,
    }
}

unsafe extern "system" fn port_disconnect(_connection_cookie: *const c_void) {
    sensor::SENSOR.consumer_gone();
    let filter = HANDLES.filter.load(Ordering::Acquire);
    // SAFETY: closes the connected client's port exactly once. We pass the same variable that
    // FltSendMessage reads, so the Filter Manager closes and zeroes it under the lock it also
    // takes in FltSendMessage: a send racing this disconnect sees either the open port or none,
    // never a closed handle.
    unsafe { FltCloseClientPort(filter, HANDLES.client_port.as_ptr()) };
}
