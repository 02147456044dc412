//! Process and device queries for enrichment: the image, creation time and account of a pid,
//! and the `\Device\HarddiskVolumeN` name behind each drive letter.

use std::ffi::c_void;

use windows_sys::Win32::Foundation::{FILETIME, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountSidW, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::QueryDosDeviceW;
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    QueryFullProcessImageNameW,
};

use super::win32::{OwnedHandle, wide};
use crate::pipeline::enrich::lookup::{ProcessInfo, ProcessLookup};

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
