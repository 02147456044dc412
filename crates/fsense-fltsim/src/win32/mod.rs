//! The user-mode half of the simulated machine: the fltlib, kernel32 and advapi32 functions the
//! consumer's Windows client (`crates/fsense/src/ffi/windows/`) imports, defined with the
//! windows-sys signatures (checked at compile time below), so that the client's unchanged code
//! runs on the host against the same simulated port the real driver code sends on.
//!
//! What they enforce, each as a named finding when the documentation forbids an argument:
//! - `FilterConnectCommunicationPort`: the port must exist and be served (else
//!   ERROR_FILE_NOT_FOUND); a caller that is not an administrator is refused (E_ACCESSDENIED, the
//!   port's default descriptor); one connection at a time (ERROR_CONNECTION_COUNT_LIMIT); the
//!   context is copied and handed to the driver's connect callback; context/size must agree.
//! - `FilterGetMessage`: buffer and size at least `FILTER_MESSAGE_HEADER`; overlapped receives
//!   return `HRESULT_FROM_WIN32(ERROR_IO_PENDING)` and reset their event; each message is written
//!   as `FILTER_MESSAGE_HEADER` (ReplyLength = the driver's reply buffer plus `FILTER_REPLY_HEADER`,
//!   0 when no reply is expected, as `ns-fltuserstructures-_filter_message_header` says; MessageId) followed by
//!   the message, and the byte count includes the header; an `OVERLAPPED` still pending must not
//!   be reused; receives fail when the driver closes the port (unload).
//! - `FilterReplyMessage`: a `FILTER_REPLY_HEADER` first; a reply to a message nobody waits for
//!   any more fails with ERROR_FLT_NO_WAITER_FOR_REPLY; a reply larger than the driver's buffer is
//!   a finding (the "Important" box of the page).
//! - Handles: closing one twice, or using a closed one, is a finding; closing the port handle
//!   cancels its receives and disconnects the driver's client port.
//! - Completion ports, events, `GetOverlappedResult`, `CancelIoEx` (ERROR_NOT_FOUND when nothing
//!   was pending), `GetQueuedCompletionStatus` (WAIT_TIMEOUT with a NULL OVERLAPPED on timeout;
//!   FALSE with the OVERLAPPED of a failed operation).
//! - Process and account lookups, slow on first use when asked ([`Win32Config::slow_lookup`]);
//!   `LocalFree` only of what the system allocated.
//!
//! What only a Windows VM can confirm: the exact error a receive gets when the driver closes the
//! port (ERROR_INVALID_HANDLE here), the
//! HRESULT of a refused connect, and the order in which several pending receives are completed.
#![allow(clippy::missing_safety_doc)]

mod fltlib;
mod io;
mod objects;
mod process;

use std::sync::Mutex;
use std::time::Duration;

pub use fltlib::{FilterConnectCommunicationPort, FilterGetMessage, FilterReplyMessage};
pub(crate) use fltlib::{begin_load, take_delivered, take_learned};
pub use io::{
    CancelIoEx, CloseHandle, CreateEventW, CreateIoCompletionPort, GetLastError,
    GetOverlappedResult, GetQueuedCompletionStatus, ResetEvent, SetEvent, WaitForSingleObject,
};
pub use objects::open_handles;
pub use process::{
    ConvertSidToStringSidW, GetProcessTimes, GetTokenInformation, LocalFree, LookupAccountSidW,
    OpenProcess, OpenProcessToken, QueryDosDeviceW, QueryFullProcessImageNameW,
    local_allocations_outstanding,
};

/// How the simulated user-mode side behaves.
#[derive(Debug, Clone, Copy)]
pub struct Win32Config {
    /// Whether the connecting process runs as an administrator (the port admits only those).
    pub caller_is_admin: bool,
    /// How long the first lookup of each process and of each account takes.
    pub slow_lookup: Duration,
}

impl Win32Config {
    pub const DEFAULT: Self = Self {
        caller_is_admin: true,
        slow_lookup: Duration::ZERO,
    };
}

impl Default for Win32Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

static CONFIG: Mutex<Win32Config> = Mutex::new(Win32Config::DEFAULT);

fn config() -> Win32Config {
    *objects::lock(&CONFIG)
}

/// Sets how the user-mode side behaves from now on.
pub fn configure(config: Win32Config) {
    *objects::lock(&CONFIG) = config;
}

/// A fresh user-mode side: no handles, no lookups remembered, delivery count at zero.
pub fn reset() {
    objects::reset();
    process::reset();
    fltlib::reset_delivered();
}

/// Each simulated function has exactly the type windows-sys declares for it, so the client's
/// calls (through windows-sys) and these definitions agree on every argument.
macro_rules! same_signature {
    ($($ours:ident = $theirs:path;)*) => {
        $(const _: () = {
            // Two function items unify into one function-pointer type only if their types match.
            let _same = [$ours, $theirs];
        };)*
    };
}

same_signature! {
    FilterConnectCommunicationPort = windows_sys::Win32::Storage::InstallableFileSystems::FilterConnectCommunicationPort;
    FilterGetMessage = windows_sys::Win32::Storage::InstallableFileSystems::FilterGetMessage;
    FilterReplyMessage = windows_sys::Win32::Storage::InstallableFileSystems::FilterReplyMessage;
    CloseHandle = windows_sys::Win32::Foundation::CloseHandle;
    GetLastError = windows_sys::Win32::Foundation::GetLastError;
    LocalFree = windows_sys::Win32::Foundation::LocalFree;
    CreateEventW = windows_sys::Win32::System::Threading::CreateEventW;
    SetEvent = windows_sys::Win32::System::Threading::SetEvent;
    ResetEvent = windows_sys::Win32::System::Threading::ResetEvent;
    WaitForSingleObject = windows_sys::Win32::System::Threading::WaitForSingleObject;
    OpenProcess = windows_sys::Win32::System::Threading::OpenProcess;
    GetProcessTimes = windows_sys::Win32::System::Threading::GetProcessTimes;
    QueryFullProcessImageNameW = windows_sys::Win32::System::Threading::QueryFullProcessImageNameW;
    OpenProcessToken = windows_sys::Win32::System::Threading::OpenProcessToken;
    GetOverlappedResult = windows_sys::Win32::System::IO::GetOverlappedResult;
    CancelIoEx = windows_sys::Win32::System::IO::CancelIoEx;
    CreateIoCompletionPort = windows_sys::Win32::System::IO::CreateIoCompletionPort;
    GetQueuedCompletionStatus = windows_sys::Win32::System::IO::GetQueuedCompletionStatus;
    GetTokenInformation = windows_sys::Win32::Security::GetTokenInformation;
    LookupAccountSidW = windows_sys::Win32::Security::LookupAccountSidW;
    ConvertSidToStringSidW = windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    QueryDosDeviceW = windows_sys::Win32::Storage::FileSystem::QueryDosDeviceW;
}

/// Offers `bytes` on the port as if the driver had sent them, waiting up to `timeout` for a
/// receive to take it (and a reply, if `reply_capacity` is not 0): lets tests put hostile
/// driver-side shapes in front of the real client.
/// Waits (within `timeout`) for a client to be connected first. Returns whether the client
/// took the message (answered or not), so a test knows exactly what reached the client.
pub fn inject_message(bytes: Vec<u8>, reply_capacity: u32, timeout: Duration) -> bool {
    use crate::port::SendResult;
    let end = std::time::Instant::now() + timeout;
    while !crate::port::PORT.is_connected() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    let left = end.saturating_duration_since(std::time::Instant::now());
    matches!(
        crate::port::PORT.send_with_reply_buffer(bytes, reply_capacity, left),
        SendResult::Delivered(_)
            | SendResult::TimedOut { taken: true }
            | SendResult::Disconnected { taken: true }
    )
}
