//! The Filter Manager port client (fltlib) and the process / device queries, over windows-sys.
//!
//! [`Port`] owns a connected port handle, an event, and a heap-pinned receive buffer with its
//! `OVERLAPPED`; at most one `FilterGetMessage` is outstanding, and the buffer is never read or
//! freed while the kernel may still write it (drop cancels and waits for the cancellation).

use std::ffi::c_void;
use std::io;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_IO_PENDING, FILETIME, GetLastError, HANDLE, INVALID_HANDLE_VALUE, LocalFree,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountSidW, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::QueryDosDeviceW;
use windows_sys::Win32::Storage::InstallableFileSystems::{
    FILTER_MESSAGE_HEADER, FILTER_REPLY_HEADER, FilterConnectCommunicationPort, FilterGetMessage,
    FilterReplyMessage,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetProcessTimes, OpenProcess, OpenProcessToken,
    PROCESS_QUERY_LIMITED_INFORMATION, QueryFullProcessImageNameW, WaitForSingleObject,
};

use crate::enrich::{ProcessInfo, ProcessLookup};

/// `HRESULT_FROM_WIN32(code)`.
const fn hresult_from_win32(code: u32) -> i32 {
    if code == 0 {
        0
    } else {
        ((code & 0xFFFF) | (7 << 16) | 0x8000_0000) as i32
    }
}

fn hresult_error(hr: i32) -> io::Error {
    // Win32-facility HRESULTs carry the Win32 code, which io::Error renders as text.
    if (hr as u32) >> 16 == 0x8007 {
        io::Error::from_raw_os_error((hr as u32 & 0xFFFF) as i32)
    } else {
        io::Error::other(format!("HRESULT {:#010x}", hr as u32))
    }
}

/// A kernel handle closed on drop.
struct OwnedHandle(HANDLE);

impl OwnedHandle {
    /// Takes ownership of `h` unless it is null or `INVALID_HANDLE_VALUE`.
    fn new(h: HANDLE) -> Option<Self> {
        (!h.is_null() && h != INVALID_HANDLE_VALUE).then_some(Self(h))
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a valid handle we own (constructor invariant), closed exactly once.
        unsafe { CloseHandle(self.0) };
    }
}

/// `\0`-terminated UTF-16.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// Receive buffer: the Filter Manager's header, then the driver's message.
#[repr(C)]
struct ReceiveBuffer {
    header: FILTER_MESSAGE_HEADER,
    body: [u8; fsense_proto::MAX_MESSAGE_BYTES],
}

/// Reply buffer: the Filter Manager's reply header, then a `ControlReply`.
#[repr(C)]
struct ReplyBuffer {
    header: FILTER_REPLY_HEADER,
    body: [u8; fsense_proto::ControlReply::LEN],
}

/// One message taken from the port.
pub struct Received<'a> {
    pub message_id: u64,
    /// How many reply bytes the driver waits for (0: no reply expected).
    pub reply_length: u32,
    /// The message bytes after the Filter Manager's header. May extend past the message (the
    /// port does not say where it ends): callers frame it by its own length fields.
    pub body: &'a [u8],
    /// Bytes the Filter Manager reported for the whole transfer, header included.
    pub transferred: u32,
}

/// A connected communication port.
///
/// Invariants: `port` and `event` are valid handles we own; `buffer` and `overlapped` are heap
/// allocations that do not move; while `pending` is true the kernel may write `buffer` and
/// `overlapped`, and neither is read (other than through `GetOverlappedResult`) nor freed.
pub struct Port {
    port: OwnedHandle,
    event: OwnedHandle,
    overlapped: Box<OVERLAPPED>,
    buffer: Box<ReceiveBuffer>,
    pending: bool,
}

// SAFETY: the handles and buffers are owned exclusively by this value; moving it to another
// thread moves that ownership (kernel handles are not thread-affine).
unsafe impl Send for Port {}

impl Port {
    /// Connects to `name` (e.g. `\fsensePort`) with `context` as the connection context (the
    /// encoded `Hello`), which the Filter Manager copies into the driver's connect callback.
    pub fn connect(name: &str, context: &[u8]) -> io::Result<Self> {
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
        let port = OwnedHandle::new(handle).ok_or_else(io::Error::last_os_error)?;
        // SAFETY: no security attributes, manual-reset, non-signalled, unnamed: all valid.
        let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        let event = OwnedHandle::new(event).ok_or_else(io::Error::last_os_error)?;
        // SAFETY: OVERLAPPED is plain data; all-zero is its documented initial state.
        let mut overlapped: Box<OVERLAPPED> = Box::new(unsafe { std::mem::zeroed() });
        overlapped.hEvent = event.0;
        // The receive buffer is large (header + 256 KiB): build it on the heap directly.
        let buffer = zeroed_box::<ReceiveBuffer>();
        Ok(Self {
            port,
            event,
            overlapped,
            buffer,
            pending: false,
        })
    }

    /// Waits up to `timeout` for the next message. `Ok(None)` on timeout (the receive stays
    /// posted); an error means the port is gone (driver unloaded, port closed).
    pub fn receive(&mut self, timeout: Duration) -> io::Result<Option<Received<'_>>> {
        if !self.pending {
            // SAFETY: `buffer` and `overlapped` are pinned heap allocations we own; their sizes
            // are passed exactly; from here until completion nothing else touches them
            // (`pending` guards every other access).
            let hr = unsafe {
                FilterGetMessage(
                    self.port.0,
                    &mut self.buffer.header,
                    std::mem::size_of::<ReceiveBuffer>() as u32,
                    &mut *self.overlapped,
                )
            };
            if hr != hresult_from_win32(ERROR_IO_PENDING) && hr < 0 {
                return Err(hresult_error(hr));
            }
            self.pending = true;
        }
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
        // SAFETY: `event` is a valid event handle we own.
        let wait = unsafe { WaitForSingleObject(self.event.0, ms) };
        if wait == WAIT_TIMEOUT {
            return Ok(None);
        }
        if wait != WAIT_OBJECT_0 {
            return Err(io::Error::last_os_error());
        }
        let mut transferred = 0u32;
        // SAFETY: the operation on `port` with this `overlapped` has signalled completion; the
        // out-pointer is valid.
        let ok =
            unsafe { GetOverlappedResult(self.port.0, &*self.overlapped, &mut transferred, 0) };
        self.pending = false;
        // SAFETY: `event` is valid; resetting before the next receive is required for a
        // manual-reset event.
        unsafe { windows_sys::Win32::System::Threading::ResetEvent(self.event.0) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let header = &self.buffer.header;
        Ok(Some(Received {
            message_id: header.MessageId,
            reply_length: header.ReplyLength,
            body: &self.buffer.body,
            transferred,
        }))
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
        // exact size is passed.
        let hr = unsafe {
            FilterReplyMessage(
                self.port.0,
                &buffer.header,
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
        if self.pending {
            let mut n = 0u32;
            // SAFETY: cancel our own outstanding receive, then wait for it to finish so the
            // kernel no longer writes `buffer` / `overlapped` before they are freed.
            unsafe {
                CancelIoEx(self.port.0, &*self.overlapped);
                GetOverlappedResult(self.port.0, &*self.overlapped, &mut n, 1);
            }
            self.pending = false;
        }
    }
}

/// A zero-filled heap value, allocated without a stack temporary.
fn zeroed_box<T>() -> Box<T> {
    let layout = std::alloc::Layout::new::<T>();
    // SAFETY: `T` is only instantiated with repr(C) plain-data types (integers and byte arrays)
    // for which all-zero is valid, and the layout is non-zero-sized.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(ptr)
    }
}

/// Whether `e` says the port accepts no more connections (one consumer is already connected).
pub fn is_connection_limit(e: &io::Error) -> bool {
    // ERROR_CONNECTION_COUNT_LIMIT
    e.raw_os_error() == Some(1238)
}

/// (`\Device\HarddiskVolumeN`, `X:`) for every drive letter in use.
pub fn dos_devices() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut target = vec![0u16; 1024];
    for letter in b'A'..=b'Z' {
        let drive = format!("{}:", letter as char);
        let name = wide(&drive);
        // SAFETY: `name` is NUL-terminated; `target` is writable for the length passed.
        let n = unsafe { QueryDosDeviceW(name.as_ptr(), target.as_mut_ptr(), target.len() as u32) };
        if n == 0 {
            continue;
        }
        let written = target.get(..n as usize).unwrap_or(&[]);
        // The result is a list of NUL-terminated strings; the first is the current mapping.
        let first = written.split(|&u| u == 0).next().unwrap_or(&[]);
        if !first.is_empty() {
            out.push((String::from_utf16_lossy(first), drive));
        }
    }
    out
}

/// Process lookups through `OpenProcess`.
#[derive(Default)]
pub struct WinProcessLookup;

impl ProcessLookup for WinProcessLookup {
    fn lookup(&mut self, pid: u32, create_time: u64) -> Option<ProcessInfo> {
        // SAFETY: OpenProcess takes plain integers and returns a handle or null.
        let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        let process = OwnedHandle::new(h)?;
        if process_create_time(&process)? != create_time {
            return None; // the pid now belongs to another process
        }
        let image = image_path(&process)?;
        let name = image.rsplit('\\').next().unwrap_or(&image).to_string();
        let (user, uid) = token_user(&process).unwrap_or((None, None));
        Some(ProcessInfo { name, user, uid })
    }
}

fn process_create_time(process: &OwnedHandle) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: `process` is a valid process handle; the four out-pointers are valid FILETIMEs.
    let ok =
        unsafe { GetProcessTimes(process.0, &mut created, &mut exited, &mut kernel, &mut user) };
    (ok != 0).then(|| u64::from(created.dwHighDateTime) << 32 | u64::from(created.dwLowDateTime))
}

fn image_path(process: &OwnedHandle) -> Option<String> {
    let mut buf = vec![0u16; 32_768];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` writable units; `len` is in/out.
    let ok = unsafe { QueryFullProcessImageNameW(process.0, 0, buf.as_mut_ptr(), &mut len) };
    if ok == 0 {
        return None;
    }
    Some(String::from_utf16_lossy(buf.get(..len as usize)?))
}

/// (`DOMAIN\name`, SID string) of the process's user.
fn token_user(process: &OwnedHandle) -> Option<(Option<String>, Option<String>)> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is valid; `token` is a valid out-pointer.
    if unsafe { OpenProcessToken(process.0, TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    let token = OwnedHandle::new(token)?;
    // TOKEN_USER plus the SID it points into; u64 words keep the buffer pointer-aligned.
    let mut words = vec![0u64; 64];
    let mut needed = 0u32;
    // SAFETY: `words` is writable for the byte length passed and aligned for TOKEN_USER.
    let ok = unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            words.as_mut_ptr().cast::<c_void>(),
            (words.len() * 8) as u32,
            &mut needed,
        )
    };
    if ok == 0 {
        return None;
    }
    // SAFETY: on success the buffer starts with an initialised TOKEN_USER whose SID pointer
    // points inside the same buffer, which lives until the end of this function.
    let sid = unsafe { (*words.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut name = [0u16; 256];
    let mut domain = [0u16; 256];
    let (mut name_len, mut domain_len) = (name.len() as u32, domain.len() as u32);
    let mut use_: SID_NAME_USE = 0;
    // SAFETY: `sid` is valid (above); the buffers are writable for the lengths passed.
    let named = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut name_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut use_,
        )
    } != 0;
    let user = named.then(|| {
        let n = String::from_utf16_lossy(name.get(..name_len as usize).unwrap_or(&[]));
        let d = String::from_utf16_lossy(domain.get(..domain_len as usize).unwrap_or(&[]));
        if d.is_empty() { n } else { format!("{d}\\{n}") }
    });
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is valid; on success `text` receives a LocalAlloc'ed NUL-terminated string.
    let uid = if unsafe { ConvertSidToStringSidW(sid, &mut text) } != 0 && !text.is_null() {
        // SAFETY: `text` is NUL-terminated (API contract); we read up to the NUL, then free it
        // exactly once with LocalFree as documented.
        unsafe {
            let mut len = 0usize;
            while *text.add(len) != 0 && len < 1024 {
                len += 1;
            }
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
            LocalFree(text.cast::<c_void>());
            Some(s)
        }
    } else {
        None
    };
    Some((user, uid))
}

/// The last Win32 error, for messages.
pub fn last_error() -> u32 {
    // SAFETY: GetLastError reads thread-local state only.
    unsafe { GetLastError() }
}

/// A protected DACL granting full access to SYSTEM and the Administrators group only.
const ADMINISTRATORS_AND_SYSTEM_ONLY: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

/// Replaces the DACL of the open `file` with [`ADMINISTRATORS_AND_SYSTEM_ONLY`] (inheritance
/// from the directory cut off). Works on the already open file object, never on a path that could
/// be redirected in between.
pub fn restrict_to_administrators(file: &std::fs::File) -> io::Result<()> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1, SE_FILE_OBJECT,
        SetSecurityInfo,
    };
    use windows_sys::Win32::Security::{
        ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl,
        PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, ReOpenFile, WRITE_DAC,
    };

    /// A security descriptor from `LocalAlloc`, freed on drop.
    struct LocalDescriptor(PSECURITY_DESCRIPTOR);
    impl Drop for LocalDescriptor {
        fn drop(&mut self) {
            // SAFETY: the pointer came from ConvertStringSecurityDescriptorToSecurityDescriptorW,
            // which allocates with LocalAlloc; it is freed exactly once.
            unsafe { LocalFree(self.0) };
        }
    }

    let sddl = wide(ADMINISTRATORS_AND_SYSTEM_ONLY);
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `sddl` is a NUL-terminated UTF-16 string that outlives the call; `descriptor` is a
    // valid out pointer; the size out pointer may be null.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 || descriptor.is_null() {
        return Err(io::Error::last_os_error());
    }
    let descriptor = LocalDescriptor(descriptor);
    let mut present = 0;
    let mut defaulted = 0;
    let mut dacl: *mut ACL = std::ptr::null_mut();
    // SAFETY: `descriptor.0` is a valid self-relative descriptor that lives until the end of this
    // function; the three out pointers are valid locals. `dacl` points into the descriptor.
    let ok =
        unsafe { GetSecurityDescriptorDacl(descriptor.0, &mut present, &mut dacl, &mut defaulted) };
    if ok == 0 || present == 0 || dacl.is_null() {
        return Err(io::Error::last_os_error());
    }
    // The caller's handle was opened for writing, which does not include WRITE_DAC: a second
    // handle to the same file object (no path lookup, so nothing to redirect) carries it.
    // SAFETY: `file` keeps its handle open for the duration of the call.
    let raw = unsafe {
        ReOpenFile(
            file.as_raw_handle() as HANDLE,
            WRITE_DAC,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            0,
        )
    };
    let Some(handle) = OwnedHandle::new(raw) else {
        return Err(io::Error::last_os_error());
    };
    // SAFETY: `handle` is a valid file handle with WRITE_DAC; `dacl` points into `descriptor`,
    // alive until the end of the function; owner, group and SACL are not set (null).
    let rc = unsafe {
        SetSecurityInfo(
            handle.0,
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            dacl,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    Ok(())
}
