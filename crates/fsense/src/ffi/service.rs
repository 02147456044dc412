//! The Windows service entry point, the service's log, and the access lists of the agent's data
//! directory and log: where `fsense service` needs raw system calls.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::IntoRawHandle;
use std::path::Path;
use std::sync::OnceLock;

use windows_service::{define_windows_service, service_dispatcher};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    GetSecurityInfo, SE_FILE_OBJECT, SetSecurityInfo,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, IsWellKnownSid, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    WinBuiltinAdministratorsSid, WinLocalSystemSid,
};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CreateDirectoryW, CreateFileW, FILE_ATTRIBUTE_REPARSE_POINT,
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, GetFileInformationByHandle,
    OPEN_EXISTING, READ_CONTROL, WRITE_DAC,
};
use windows_sys::Win32::System::Console::{STD_ERROR_HANDLE, SetStdHandle};

use super::windows::acl::Descriptor;

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

/// The agent's data directory and log are for Administrators and SYSTEM only: a protected DACL
/// granting them full access, inherited by what is created inside. Not `Users`, who by default
/// may create files in `%ProgramData%` subfolders and read them (review N14 / driver review H2).
const ADMIN_DIR_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";
/// The same for a file (no inheritance flags).
const ADMIN_FILE_SDDL: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

fn wide_path(p: &Path) -> Vec<u16> {
    p.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// A handle from `CreateFileW`, closed on drop.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a valid handle this struct owns; closed exactly once.
        unsafe { CloseHandle(self.0) };
    }
}

/// Whether the owner of the object behind `handle` is SYSTEM or the Administrators group.
fn owned_by_admins(handle: HANDLE) -> io::Result<bool> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `handle` is open with READ_CONTROL; the owner and descriptor out pointers are
    // locals, the others may be null. `owner` points into `descriptor`, freed below.
    let rc = unsafe {
        GetSecurityInfo(
            handle,
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    // SAFETY: GetSecurityInfo allocated `descriptor` with LocalAlloc; only this value frees it.
    let descriptor = unsafe { Descriptor::from_local(descriptor) };
    // SAFETY: `owner` points into `descriptor`, alive for both calls.
    let ok = unsafe {
        IsWellKnownSid(owner, WinLocalSystemSid) != 0
            || IsWellKnownSid(owner, WinBuiltinAdministratorsSid) != 0
    };
    drop(descriptor);
    Ok(ok)
}

/// Puts the protected DACL of `sddl` on the object behind `handle` (open with WRITE_DAC).
fn set_dacl(handle: HANDLE, sddl: &str) -> io::Result<()> {
    let descriptor = Descriptor::from_sddl(sddl)?;
    let dacl = descriptor.dacl()?;
    // SAFETY: `handle` is open with WRITE_DAC; `dacl` points into `descriptor`, alive until the
    // end of the function; owner, group and SACL are not set (null).
    let rc = unsafe {
        SetSecurityInfo(
            handle,
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

/// Opens `path` itself (never a reparse point's target) for reading and changing its access list.
fn open_for_acl(path: &Path, directory: bool) -> io::Result<Handle> {
    let name = wide_path(path);
    let flags = FILE_FLAG_OPEN_REPARSE_POINT
        | if directory {
            FILE_FLAG_BACKUP_SEMANTICS
        } else {
            0
        };
    // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call; no security attributes
    // and no template.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            READ_CONTROL | WRITE_DAC | FILE_READ_ATTRIBUTES,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            std::ptr::null(),
            OPEN_EXISTING,
            flags,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE || h.is_null() {
        return Err(io::Error::last_os_error());
    }
    let handle = Handle(h);
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe_zeroed_info();
    // SAFETY: `handle.0` is open; `info` is a valid out structure.
    if unsafe { GetFileInformationByHandle(handle.0, &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    if info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(io::Error::other("it is a symbolic link or reparse point"));
    }
    Ok(handle)
}

fn unsafe_zeroed_info() -> BY_HANDLE_FILE_INFORMATION {
    // SAFETY: BY_HANDLE_FILE_INFORMATION is plain data (integers and FILETIMEs); all zeroes is a
    // valid value.
    unsafe { std::mem::zeroed() }
}

/// Makes `dir` the agent's private directory: created with the Administrators-and-SYSTEM DACL,
/// or, when it already exists, refused unless it is a real directory (no reparse point) owned by
/// SYSTEM or Administrators, and then given that DACL (replacing an inherited one).
pub fn ensure_admin_dir(dir: &Path) -> Result<(), String> {
    let descriptor = Descriptor::from_sddl(ADMIN_DIR_SDDL)
        .map_err(|e| format!("cannot build the access list for {}: {e}", dir.display()))?;
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.as_ptr(),
        bInheritHandle: 0,
    };
    let name = wide_path(dir);
    // SAFETY: `name` is NUL-terminated UTF-16 and `attributes` points to a valid descriptor; both
    // outlive the call.
    if unsafe { CreateDirectoryW(name.as_ptr(), &attributes) } != 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(ERROR_ALREADY_EXISTS as i32) {
        return Err(format!("cannot create {}: {err}", dir.display()));
    }
    let handle = open_for_acl(dir, true).map_err(|e| format!("refusing {}: {e}", dir.display()))?;
    match owned_by_admins(handle.0) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "refusing {}: it belongs to an account other than SYSTEM or Administrators",
                dir.display()
            ));
        }
        Err(e) => return Err(format!("cannot read the owner of {}: {e}", dir.display())),
    }
    set_dacl(handle.0, ADMIN_DIR_SDDL)
        .map_err(|e| format!("cannot restrict access to {}: {e}", dir.display()))
}

/// Checks that an existing `file` (opened by `fsense-safefs`, no reparse point followed) is owned
/// by SYSTEM or Administrators, and gives it the Administrators-and-SYSTEM DACL.
pub fn restrict_admin_file(path: &Path) -> Result<(), String> {
    let handle =
        open_for_acl(path, false).map_err(|e| format!("refusing {}: {e}", path.display()))?;
    match owned_by_admins(handle.0) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "refusing {}: it belongs to an account other than SYSTEM or Administrators",
                path.display()
            ));
        }
        Err(e) => return Err(format!("cannot read the owner of {}: {e}", path.display())),
    }
    set_dacl(handle.0, ADMIN_FILE_SDDL)
        .map_err(|e| format!("cannot restrict access to {}: {e}", path.display()))
}
