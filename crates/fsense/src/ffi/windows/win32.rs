//! What every Win32 wrapper of the consumer shares: errors as `io::Error` (on the simulated
//! build too), owned handles, wide strings.

use std::io;

use windows_sys::Win32::Foundation::{CloseHandle, GetLastError, HANDLE, INVALID_HANDLE_VALUE};

/// `HRESULT_FROM_WIN32(code)`.
pub(super) const fn hresult_from_win32(code: u32) -> i32 {
    if code == 0 {
        0
    } else {
        ((code & 0xFFFF) | (7 << 16) | 0x8000_0000) as i32
    }
}

pub(super) fn hresult_error(hr: i32) -> io::Error {
    // Win32-facility HRESULTs carry the Win32 code, which io::Error renders as text.
    if (hr as u32) >> 16 == 0x8007 {
        win32_error(hr as u32 & 0xFFFF)
    } else {
        io::Error::other(format!("HRESULT {:#010x}", hr as u32))
    }
}

/// A Win32 error code as an `io::Error`: the OS error on Windows (rendered by the system); on
/// the simulated build, a named code (the host's errno table would give it the wrong text).
pub(super) fn win32_error(code: u32) -> io::Error {
    #[cfg(windows)]
    {
        io::Error::from_raw_os_error(code as i32)
    }
    #[cfg(not(windows))]
    {
        io::Error::other(SimulatedWin32Error(code))
    }
}

/// The calling thread's last Win32 error.
pub(super) fn last_win32_error() -> io::Error {
    win32_error(last_error())
}

/// A Win32 error code from the simulated system calls.
#[cfg(not(windows))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedWin32Error(pub u32);

#[cfg(not(windows))]
impl std::fmt::Display for SimulatedWin32Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            2 => "the system cannot find the file specified",
            5 => "access is denied",
            6 => "the handle is invalid",
            87 => "the parameter is incorrect",
            234 => "more data is available",
            995 => "the I/O operation has been aborted",
            1238 => "the connection count limit has been reached",
            _ => "Win32 error",
        };
        write!(f, "{name} (Win32 error {})", self.0)
    }
}

#[cfg(not(windows))]
impl std::error::Error for SimulatedWin32Error {}

/// The Win32 code inside `e`, on either build.
pub(super) fn win32_code(e: &io::Error) -> Option<u32> {
    #[cfg(not(windows))]
    if let Some(w) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<SimulatedWin32Error>())
    {
        return Some(w.0);
    }
    e.raw_os_error().map(|c| c as u32)
}

/// A kernel handle closed on drop.
pub(super) struct OwnedHandle(pub(super) HANDLE);

impl OwnedHandle {
    /// Takes ownership of `h` unless it is null or `INVALID_HANDLE_VALUE`.
    pub(super) fn new(h: HANDLE) -> Option<Self> {
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
pub(super) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// The last Win32 error, for messages.
pub fn last_error() -> u32 {
    // SAFETY: GetLastError reads thread-local state only.
    unsafe { GetLastError() }
}
