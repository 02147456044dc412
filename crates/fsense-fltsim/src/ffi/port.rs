//! Communication port: security descriptors, server and client ports, messages, and the simulated client's connect and disconnect.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsGetCurrentProcessId() -> HANDLE {
    verifier::current_pid() as usize as HANDLE
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltBuildDefaultSecurityDescriptor(
    security_descriptor: *mut PSECURITY_DESCRIPTOR,
    desired_access: u32,
) -> NTSTATUS {
    require_irql(PASSIVE_LEVEL, "FltBuildDefaultSecurityDescriptor");
    if fails(FailPoint::BuildSecurityDescriptor) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if security_descriptor.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let sd = Box::into_raw(Box::new([0u64; 4]));
    world::with_world(|w| w.security_descriptors.insert(sd as usize, desired_access));
    // SAFETY: non-null out pointer.
    unsafe { security_descriptor.write(sd.cast()) };
    STATUS_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltFreeSecurityDescriptor(security_descriptor: PSECURITY_DESCRIPTOR) {
    require_irql(APC_LEVEL, "FltFreeSecurityDescriptor");
    let known = world::with_world(|w| {
        w.security_descriptors
            .remove(&(security_descriptor as usize))
            .is_some()
    })
    .unwrap_or(false);
    if known {
        // SAFETY: created by Box::into_raw in FltBuildDefaultSecurityDescriptor, freed once.
        drop(unsafe { Box::from_raw(security_descriptor.cast::<[u64; 4]>()) });
    } else {
        violation(
            "SD_FREE_UNKNOWN",
            "FltFreeSecurityDescriptor on a descriptor not built by the Filter Manager",
        );
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltCreateCommunicationPort(
    filter: isize,
    server_port: *mut PFLT_PORT,
    object_attributes: *const OBJECT_ATTRIBUTES,
    server_port_cookie: *const c_void,
    connect_notify: PFLT_CONNECT_NOTIFY,
    disconnect_notify: PFLT_DISCONNECT_NOTIFY,
    message_notify: PFLT_MESSAGE_NOTIFY,
    max_connections: i32,
) -> NTSTATUS {
    require_irql(PASSIVE_LEVEL, "FltCreateCommunicationPort");
    if fails(FailPoint::CreatePort) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if server_port.is_null() || object_attributes.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null pointer to the driver's OBJECT_ATTRIBUTES.
    let oa = unsafe { &*object_attributes };
    let sd = oa.SecurityDescriptor as usize;
    let access = world::with_world(|w| w.security_descriptors.get(&sd).copied()).flatten();
    match access {
        None => violation(
            "PORT_SECURITY",
            "port created without a descriptor from FltBuildDefaultSecurityDescriptor (a NULL DACL lets any user read every file event)",
        ),
        Some(a) if a != FLT_PORT_ALL_ACCESS => violation(
            "PORT_SECURITY",
            format!("port descriptor built for access {a:#x}, not FLT_PORT_ALL_ACCESS"),
        ),
        Some(_) => {}
    }
    if oa.Attributes & 0x200 == 0 {
        violation(
            "PORT_KERNEL_HANDLE",
            "port object attributes lack OBJ_KERNEL_HANDLE",
        );
    }
    if max_connections != 1 {
        violation(
            "PORT_MAX_CONNECTIONS",
            format!("MaxConnections {max_connections}, expected 1"),
        );
    }
    if message_notify.is_some() {
        // Not a rule of the Filter Manager, but of this design: user memory is never read.
        violation(
            "PORT_MESSAGE_NOTIFY",
            "a message-notify callback would read user-mode buffers",
        );
    }
    let expected: Vec<u16> = "\\fsensePort".encode_utf16().collect();
    if read_unicode(oa.ObjectName).as_deref() != Some(expected.as_slice()) {
        violation("PORT_NAME", "port not named \\fsensePort");
    }
    if !filter_is_valid(filter, "FltCreateCommunicationPort") {
        return STATUS_INVALID_PARAMETER;
    }
    let port = world::with_world(|w| {
        if w.filter_handle != filter {
            return None;
        }
        let handle = w.new_handle() as isize;
        w.server_port = Some(ServerPort {
            handle,
            connect: connect_notify,
            disconnect: disconnect_notify,
            cookie: server_port_cookie as usize,
            open: true,
        });
        Some(handle)
    })
    .flatten();
    match port {
        Some(p) => {
            // SAFETY: non-null out pointer.
            unsafe { server_port.write(p) };
            STATUS_SUCCESS
        }
        None => STATUS_INVALID_PARAMETER,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltCloseCommunicationPort(server_port: PFLT_PORT) {
    require_irql(PASSIVE_LEVEL, "FltCloseCommunicationPort");
    let ok = world::with_world(|w| match w.server_port.as_mut() {
        Some(p) if p.handle == server_port && p.open => {
            p.open = false;
            true
        }
        _ => false,
    })
    .unwrap_or(false);
    if !ok {
        violation(
            "PORT_CLOSE_UNKNOWN",
            "closing a server port that is not open",
        );
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltCloseClientPort(filter: isize, client_port: *mut PFLT_PORT) {
    require_irql(PASSIVE_LEVEL, "FltCloseClientPort");
    // The client-port list lives in the filter object: a NULL or stale filter is a bugcheck on
    // Windows. The port is still closed here so one finding does not cascade into others.
    filter_is_valid(filter, "FltCloseClientPort");
    if client_port.is_null() || !client_port.is_aligned() {
        violation(
            "CLIENT_PORT_NULL",
            "FltCloseClientPort with a null or misaligned pointer",
        );
        return;
    }
    // SAFETY: non-null, aligned pointer to the driver's client-port variable, which the driver
    // reads concurrently (atomically) from its worker: access it atomically here too.
    let variable = unsafe { std::sync::atomic::AtomicIsize::from_ptr(client_port) };
    let value = variable.load(Ordering::Acquire);
    if value == 0 || value != PORT.client_port() {
        violation(
            "CLIENT_PORT_UNKNOWN",
            format!("closing client port {value:#x}, which is not connected"),
        );
    }
    // The Filter Manager zeroes the caller's variable.
    variable.store(0, Ordering::Release);
    PORT.set_disconnected();
}

static SEND_TIMEOUT_MISSING: AtomicUsize = AtomicUsize::new(0);

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltSendMessage(
    filter: isize,
    client_port: *const PFLT_PORT,
    sender_buffer: *const c_void,
    sender_buffer_length: u32,
    reply_buffer: *mut c_void,
    reply_length: *mut u32,
    timeout: *const i64,
) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_SEND", "FltSendMessage above PASSIVE_LEVEL");
    }
    if let Some(cb) = verifier::in_callback() {
        violation(
            "SEND_IN_IO_CALLBACK",
            format!("FltSendMessage from {cb}: I/O would wait on user mode"),
        );
    }
    let wait = match timeout_from(timeout) {
        Some(t) => t,
        None => {
            SEND_TIMEOUT_MISSING.fetch_add(1, Ordering::Relaxed);
            violation(
                "SEND_NULL_TIMEOUT",
                "FltSendMessage with a NULL timeout waits forever on user mode",
            );
            Duration::from_secs(1)
        }
    };
    if !filter_is_valid(filter, "FltSendMessage") {
        return STATUS_INVALID_PARAMETER;
    }
    if sender_buffer.is_null() || sender_buffer_length as usize > fsense_proto::MAX_MESSAGE_BYTES {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the driver's buffer of sender_buffer_length bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(sender_buffer.cast::<u8>(), sender_buffer_length as usize)
    }
    .to_vec();
    let is_health = bytes.get(..4) == Some(&fsense_proto::Health::MAGIC.to_le_bytes()[..]);
    if is_health {
        world::with_world(|w| w.last_health = Some(bytes.clone()));
    }
    let port = if client_port.is_null() || !client_port.is_aligned() {
        0
    } else {
        // SAFETY: the driver's client-port variable, shared with FltCloseClientPort: atomic.
        unsafe { std::sync::atomic::AtomicIsize::from_ptr(client_port.cast_mut()) }
            .load(Ordering::Acquire)
    };
    if port == 0 || port != PORT.client_port() {
        return STATUS_PORT_DISCONNECTED;
    }
    // `nf-fltkernel-fltsendmessage`: STATUS_INSUFFICIENT_RESOURCES, "FltSendMessage encountered
    // a pool allocation failure". Injected on request (Tuning::fail_every_nth_batch).
    if !is_health && batch_send_fails() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let wants_reply = !reply_buffer.is_null() && !reply_length.is_null();
    // SAFETY: non-null when wants_reply; the driver's reply buffer size.
    let reply_capacity = if wants_reply {
        unsafe { reply_length.read() }
    } else {
        0
    };
    match PORT.send_with_reply_buffer(bytes, reply_capacity, wait) {
        SendResult::Disconnected { .. } => STATUS_PORT_DISCONNECTED,
        SendResult::TimedOut { .. } => STATUS_TIMEOUT,
        SendResult::Delivered(reply) => {
            if let Some(reply) = reply {
                // SAFETY: both non-null (wants_reply); reply_length holds the buffer's capacity.
                let capacity = unsafe { reply_length.read() } as usize;
                let n = reply.len().min(capacity);
                // SAFETY: copy n <= capacity bytes into the driver's reply buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(reply.as_ptr(), reply_buffer.cast::<u8>(), n);
                    reply_length.write(n as u32);
                }
            }
            STATUS_SUCCESS
        }
    }
}

/// Counts a batch send to a connected consumer; whether this one is to fail.
fn batch_send_fails() -> bool {
    world::with_world(|w| {
        w.batch_sends += 1;
        let fails = w.fail_every_nth_batch != 0
            && w.batch_sends
                .is_multiple_of(u64::from(w.fail_every_nth_batch));
        if fails {
            w.failed_batch_sends += 1;
        }
        fails
    })
    .unwrap_or(false)
}

/// Connects the simulated client with `hello` (as `FilterConnectCommunicationPort` would).
/// Returns whether the driver accepted.
pub fn connect_client(hello: &[u8], client_pid: u32) -> bool {
    let port = world::with_world(|w| w.server_port.filter(|p| p.open)).flatten();
    let Some(port) = port else {
        return false;
    };
    if PORT.is_connected() {
        return false; // MaxConnections 1
    }
    let handle = world::with_world(|w| w.new_handle() as isize).unwrap_or(0);
    // The Filter Manager captures the context into kernel memory before calling the driver.
    let captured: Vec<u8> = hello.to_vec();
    let mut cookie: *mut c_void = std::ptr::null_mut();
    let previous_pid = verifier::current_pid();
    verifier::set_current_pid(client_pid);
    let st = match port.connect {
        // SAFETY: the driver's connect callback, called at PASSIVE_LEVEL in the connecting
        // process's context with a captured context buffer of the stated length.
        Some(cb) => unsafe {
            cb(
                handle,
                port.cookie as *const c_void,
                captured.as_ptr().cast(),
                captured.len() as u32,
                &mut cookie,
            )
        },
        None => STATUS_SUCCESS,
    };
    verifier::set_current_pid(previous_pid);
    if st >= 0 {
        PORT.set_connected(handle);
        true
    } else {
        world::with_world(|w| w.refused_connections += 1);
        false
    }
}

/// Disconnects the client (its handle closed, or the filter unloading): calls the driver's
/// disconnect callback, which must close the client port.
pub fn disconnect_client() {
    if !PORT.is_connected() {
        return;
    }
    let port = world::with_world(|w| w.server_port).flatten();
    if let Some(ServerPort {
        disconnect: Some(cb),
        ..
    }) = port
    {
        // SAFETY: the driver's disconnect callback, at PASSIVE_LEVEL.
        unsafe { cb(std::ptr::null()) };
    }
    if PORT.is_connected() {
        violation(
            "CLIENT_PORT_NOT_CLOSED",
            "disconnect callback returned without FltCloseClientPort",
        );
        PORT.set_disconnected();
    }
}

/// Whether the simulator ever saw a NULL send timeout (reported separately from violations).
pub fn null_timeouts_seen() -> usize {
    SEND_TIMEOUT_MISSING.swap(0, Ordering::Relaxed)
}
