//! Access lists: files the consumer creates are for Administrators and SYSTEM only.

use std::io;

use windows_sys::Win32::Foundation::{HANDLE, LocalFree};

use super::win32::{OwnedHandle, wide};

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
