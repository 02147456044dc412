//! The Windows service entry point and the service's log: the two places `fsense service`
//! needs raw system calls.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::windows::io::IntoRawHandle;
use std::sync::OnceLock;

use windows_service::{define_windows_service, service_dispatcher};
use windows_sys::Win32::System::Console::{STD_ERROR_HANDLE, SetStdHandle};

/// The service main function the dispatcher's entry point forwards to.
static SERVICE_MAIN: OnceLock<fn(Vec<OsString>)> = OnceLock::new();

define_windows_service!(ffi_service_main, forward_service_main);

fn forward_service_main(arguments: Vec<OsString>) {
    if let Some(main) = SERVICE_MAIN.get() {
        main(arguments);
    }
}

/// Connects to the service manager and runs `main` as the service `name`'s main function;
/// returns when the service has stopped.
pub fn start_dispatcher(name: &str, main: fn(Vec<OsString>)) -> windows_service::Result<()> {
    let _ = SERVICE_MAIN.set(main);
    service_dispatcher::start(name, ffi_service_main)
}

/// Makes `log` the process's standard error: a service has no console, and everything the
/// agent reports goes through stderr. The handle is kept open for the life of the process.
pub fn redirect_stderr(log: File) -> io::Result<()> {
    let handle = log.into_raw_handle();
    // SAFETY: `handle` is a valid, open file handle that this process now owns and never closes
    // (`into_raw_handle` gave up the `File`), so it stays valid for every later write to stderr.
    let ok = unsafe { SetStdHandle(STD_ERROR_HANDLE, handle) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
