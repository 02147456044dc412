//! Access lists: files the consumer creates are for Administrators and SYSTEM only.

use std::io;

use windows_sys::Win32::Foundation::{HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{ACL, GetSecurityDescriptorDacl, PSECURITY_DESCRIPTOR};

use super::win32::OwnedHandle;

/// A protected DACL granting full access to SYSTEM and the Administrators group only.
const ADMINISTRATORS_AND_SYSTEM_ONLY: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

/// A security descriptor from `ConvertStringSecurityDescriptorToSecurityDescriptorW`
/// (`LocalAlloc`), freed on drop.
pub struct Descriptor(PSECURITY_DESCRIPTOR);

impl Descriptor {
    pub fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated UTF-16 that outlives the call; `descriptor` is a valid
        // out pointer; the size out pointer may be null.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || descriptor.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(descriptor))
    }

    /// Takes ownership of a descriptor a Win32 call allocated with `LocalAlloc` (the
    /// `ppSecurityDescriptor` of `GetSecurityInfo`).
    ///
    /// # Safety
    /// `descriptor` is null or came from `LocalAlloc`, and nothing else frees it.
    pub unsafe fn from_local(descriptor: PSECURITY_DESCRIPTOR) -> Self {
        Self(descriptor)
    }

    /// The descriptor, valid while `self` lives.
    pub fn as_ptr(&self) -> PSECURITY_DESCRIPTOR {
        self.0
    }

    /// The DACL inside the descriptor (valid while `self` lives).
    pub fn dacl(&self) -> io::Result<*mut ACL> {
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = std::ptr::null_mut();
        // SAFETY: `self.0` is a valid descriptor alive for the call; the out pointers are locals.
        let ok =
            unsafe { GetSecurityDescriptorDacl(self.0, &mut present, &mut dacl, &mut defaulted) };
        if ok == 0 || present == 0 || dacl.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(dacl)
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW with
        // LocalAlloc; freed exactly once.
        unsafe { LocalFree(self.0) };
    }
}

/// Replaces the DACL of the open `file` with [`ADMINISTRATORS_AND_SYSTEM_ONLY`] (inheritance
/// from the directory cut off). Works on the already open file object, never on a path that could
/// be redirected in between.
pub fn restrict_to_administrators(file: &std::fs::File) -> io::Result<()> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Security::Authorization::{SE_FILE_OBJECT, SetSecurityInfo};
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, ReOpenFile, WRITE_DAC,
    };

    let descriptor = Descriptor::from_sddl(ADMINISTRATORS_AND_SYSTEM_ONLY)?;
    let dacl = descriptor.dacl()?;
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
