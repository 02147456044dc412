//! kernel32.dll: handles, events, waits, overlapped results, cancellation and I/O completion
//! ports, as the port client uses them.
//!
//! Contract sources (MicrosoftDocs/sdk-api): `handleapi/nf-handleapi-closehandle.md`,
//! `synchapi/nf-synchapi-createeventw.md`, `synchapi/nf-synchapi-waitforsingleobject.md`,
//! `ioapiset/nf-ioapiset-getoverlappedresult.md`, `ioapiset/nf-ioapiset-cancelioex.md`,
//! `ioapiset/nf-ioapiset-createiocompletionport.md`,
//! `ioapiset/nf-ioapiset-getqueuedcompletionstatus.md`.

use std::ptr::addr_of;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
    ERROR_INVALID_HANDLE, ERROR_INVALID_PARAMETER, ERROR_IO_INCOMPLETE, ERROR_NOT_FOUND, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_EVENT, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::System::IO::OVERLAPPED;
use windows_sys::core::{BOOL, PCWSTR};

use super::fltlib::{STATUS_PENDING, as_connection, connection, win32_error_of};
use super::objects::{
    self, CompletionPort, Event, Object, deadline_after, last_error, set_last_error,
};
use crate::verifier::violation;

fn fail(code: u32) -> BOOL {
    set_last_error(code);
    0
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetLastError() -> u32 {
    last_error()
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn CloseHandle(hobject: HANDLE) -> BOOL {
    match objects::remove(hobject) {
        Some(Object::Port(object)) => {
            if let Some(connection) = as_connection(&object) {
                connection.handle_closed();
            }
            1
        }
        Some(_) => 1,
        None => {
            violation(
                "CLOSE_HANDLE_INVALID",
                format!("CloseHandle({hobject:?}): not an open handle (closed twice?)"),
            );
            fail(ERROR_INVALID_HANDLE)
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn CreateEventW(
    _lpeventattributes: *const SECURITY_ATTRIBUTES,
    bmanualreset: BOOL,
    binitialstate: BOOL,
    lpname: PCWSTR,
) -> HANDLE {
    if !lpname.is_null() {
        // Named events are shared objects other processes can open and set; the client has no
        // use for one.
        violation(
            "EVENT_NAMED",
            "CreateEventW with a name: another process could signal it",
        );
    }
    objects::insert(Object::Event(Arc::new(Event::new(
        bmanualreset != 0,
        binitialstate != 0,
    ))))
}

fn event(handle: HANDLE, api: &str) -> Option<Arc<Event>> {
    match objects::get(handle) {
        Some(Object::Event(e)) => Some(e),
        _ => {
            violation(
                "HANDLE_INVALID",
                format!("{api} on {handle:?}, which is not an open event handle"),
            );
            None
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn SetEvent(hevent: HANDLE) -> BOOL {
    match event(hevent, "SetEvent") {
        Some(e) => {
            e.set();
            1
        }
        None => fail(ERROR_INVALID_HANDLE),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ResetEvent(hevent: HANDLE) -> BOOL {
    match event(hevent, "ResetEvent") {
        Some(e) => {
            e.reset();
            1
        }
        None => fail(ERROR_INVALID_HANDLE),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn WaitForSingleObject(
    hhandle: HANDLE,
    dwmilliseconds: u32,
) -> WAIT_EVENT {
    match event(hhandle, "WaitForSingleObject") {
        Some(e) => {
            if e.wait(deadline_after(dwmilliseconds)) {
                WAIT_OBJECT_0
            } else {
                WAIT_TIMEOUT
            }
        }
        None => {
            set_last_error(ERROR_INVALID_HANDLE);
            WAIT_FAILED
        }
    }
}

/// Reads the result the simulated kernel wrote into a completed `OVERLAPPED`.
///
/// # Safety
/// `ov` points to a readable `OVERLAPPED` whose operation is no longer pending.
unsafe fn completed_result(ov: *const OVERLAPPED, transferred: *mut u32) -> BOOL {
    // SAFETY: caller contract; fields read without forming a reference.
    let (status, bytes) = unsafe {
        (
            addr_of!((*ov).Internal).read(),
            addr_of!((*ov).InternalHigh).read(),
        )
    };
    if !transferred.is_null() {
        // SAFETY: non-null out pointer of the caller.
        unsafe { transferred.write_unaligned(bytes as u32) };
    }
    let error = win32_error_of(status as u32 as i32);
    if error == 0 { 1 } else { fail(error) }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetOverlappedResult(
    hfile: HANDLE,
    lpoverlapped: *const OVERLAPPED,
    lpnumberofbytestransferred: *mut u32,
    bwait: BOOL,
) -> BOOL {
    if lpoverlapped.is_null() || lpnumberofbytestransferred.is_null() {
        violation(
            "OVERLAPPED_RESULT_NULL",
            "GetOverlappedResult with a NULL OVERLAPPED or byte count (nf-ioapiset-getoverlappedresult: both required)",
        );
        return fail(ERROR_INVALID_PARAMETER);
    }
    let Ok(connection) = connection(hfile, "GetOverlappedResult") else {
        return fail(ERROR_INVALID_HANDLE);
    };
    let deadline = if bwait != 0 {
        None
    } else {
        Some(std::time::Instant::now())
    };
    if !connection.wait_done(lpoverlapped, deadline) {
        return fail(ERROR_IO_INCOMPLETE);
    }
    // SAFETY: the caller's OVERLAPPED; its operation has completed (checked above).
    let status = unsafe { addr_of!((*lpoverlapped).Internal).read() };
    if status == STATUS_PENDING as usize {
        // Never posted (or already reported through a completion port and reposted elsewhere).
        return fail(ERROR_IO_INCOMPLETE);
    }
    // SAFETY: as above; the out pointer is non-null (checked).
    unsafe { completed_result(lpoverlapped, lpnumberofbytestransferred) }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn CancelIoEx(hfile: HANDLE, lpoverlapped: *const OVERLAPPED) -> BOOL {
    let Ok(connection) = connection(hfile, "CancelIoEx") else {
        return fail(ERROR_INVALID_HANDLE);
    };
    let which = (!lpoverlapped.is_null()).then_some(lpoverlapped);
    if connection.cancel(which) == 0 {
        // "If ... no pending operations were found ... GetLastError returns ERROR_NOT_FOUND."
        return fail(ERROR_NOT_FOUND);
    }
    1
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn CreateIoCompletionPort(
    filehandle: HANDLE,
    existingcompletionport: HANDLE,
    completionkey: usize,
    _numberofconcurrentthreads: u32,
) -> HANDLE {
    let port = if existingcompletionport.is_null() {
        None
    } else {
        match objects::get(existingcompletionport) {
            Some(Object::CompletionPort(p)) => Some((existingcompletionport, p)),
            _ => {
                violation(
                    "HANDLE_INVALID",
                    "CreateIoCompletionPort: ExistingCompletionPort is not a completion port",
                );
                set_last_error(ERROR_INVALID_PARAMETER);
                return std::ptr::null_mut();
            }
        }
    };
    let (handle, port) = match port {
        Some(p) => p,
        None => {
            let p = Arc::new(CompletionPort::default());
            (objects::insert(Object::CompletionPort(p.clone())), p)
        }
    };
    if filehandle == INVALID_HANDLE_VALUE {
        return handle;
    }
    match objects::get(filehandle) {
        Some(Object::Port(object)) if let Some(connection) = as_connection(&object) => {
            if !connection.associate(port, completionkey) {
                // "A handle can be associated with only one I/O completion port."
                violation(
                    "COMPLETION_PORT_TWICE",
                    "a port handle associated with a second completion port (nf-ioapiset-createiocompletionport)",
                );
                set_last_error(ERROR_INVALID_PARAMETER);
                return std::ptr::null_mut();
            }
            handle
        }
        _ => {
            violation(
                "HANDLE_INVALID",
                "CreateIoCompletionPort: FileHandle is not an open overlapped handle",
            );
            set_last_error(ERROR_INVALID_HANDLE);
            std::ptr::null_mut()
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetQueuedCompletionStatus(
    completionport: HANDLE,
    lpnumberofbytestransferred: *mut u32,
    lpcompletionkey: *mut usize,
    lpoverlapped: *mut *mut OVERLAPPED,
    dwmilliseconds: u32,
) -> BOOL {
    if lpnumberofbytestransferred.is_null() || lpcompletionkey.is_null() || lpoverlapped.is_null() {
        violation(
            "COMPLETION_STATUS_NULL",
            "GetQueuedCompletionStatus with a NULL out pointer (nf-ioapiset-getqueuedcompletionstatus: all three required)",
        );
        return fail(ERROR_INVALID_PARAMETER);
    }
    let Some(Object::CompletionPort(port)) = objects::get(completionport) else {
        violation(
            "HANDLE_INVALID",
            "GetQueuedCompletionStatus on a handle that is not a completion port",
        );
        return fail(ERROR_INVALID_HANDLE);
    };
    let Some(packet) = port.dequeue(deadline_after(dwmilliseconds)) else {
        // "If ... the function times out ... *lpOverlapped is NULL ... GetLastError WAIT_TIMEOUT."
        // SAFETY: non-null out pointer (checked).
        unsafe { lpoverlapped.write_unaligned(std::ptr::null_mut()) };
        return fail(WAIT_TIMEOUT);
    };
    // SAFETY: the three out pointers are non-null (checked).
    unsafe {
        lpnumberofbytestransferred.write_unaligned(packet.bytes);
        lpcompletionkey.write_unaligned(packet.key);
        lpoverlapped.write_unaligned(packet.overlapped.0);
    }
    // A failed operation's packet: FALSE with *lpOverlapped set and its error.
    if packet.error == 0 {
        1
    } else {
        fail(packet.error)
    }
}
