//! The process and account lookups the consumer's enrichment makes (kernel32 and advapi32):
//! every simulated process exists, was created at [`crate::ffi::process_create_time`], runs
//! `C:\Sim\bin\app<pid>.exe` as one of three users of domain `SIM`. With
//! [`super::Win32Config::slow_lookup`], the first `OpenProcess` of each pid and the first
//! `LookupAccountSidW` of each SID take that long (a domain controller far away).
//!
//! Contract sources (MicrosoftDocs/sdk-api): `processthreadsapi/nf-processthreadsapi-openprocess.md`,
//! `processthreadsapi/nf-processthreadsapi-getprocesstimes.md`,
//! `winbase/nf-winbase-queryfullprocessimagenamew.md`,
//! `processthreadsapi/nf-processthreadsapi-openprocesstoken.md`,
//! `securitybaseapi/nf-securitybaseapi-gettokeninformation.md`,
//! `winbase/nf-winbase-lookupaccountsidw.md`, `sddl/nf-sddl-convertsidtostringsidw.md`,
//! `winbase/nf-winbase-localfree.md`, `fileapi/nf-fileapi-querydosdevicew.md`.

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_HANDLE, ERROR_INVALID_PARAMETER,
    ERROR_NOACCESS, FILETIME, HANDLE,
};
use windows_sys::core::{BOOL, PCWSTR, PWSTR};

use super::config;
use super::objects::{self, Object, lock, set_last_error};
use crate::verifier::violation;

/// The device the simulated C: drive maps to (the volume the driver reports).
const C_DRIVE_DEVICE: &str = crate::ffi::VOLUME;
const TOKEN_USER_CLASS: i32 = 1;
/// `TOKEN_USER` on x64: `SID_AND_ATTRIBUTES` (a pointer and a DWORD, padded).
const TOKEN_USER_LEN: usize = 16;
const SID_TYPE_USER: i32 = 1;

static LOOKED_UP_PIDS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
static LOOKED_UP_SIDS: Mutex<Option<HashSet<Vec<u8>>>> = Mutex::new(None);

/// Strings handed out by `ConvertSidToStringSidW`, owned until `LocalFree`.
struct LocalAllocation(*mut [u16]);

// SAFETY: uniquely owned (from Box::into_raw); only the map's lock holder frees it.
unsafe impl Send for LocalAllocation {}

static LOCAL_ALLOCATIONS: Mutex<Option<HashMap<usize, LocalAllocation>>> = Mutex::new(None);

pub fn reset() {
    *lock(&LOOKED_UP_PIDS) = None;
    *lock(&LOOKED_UP_SIDS) = None;
    let leaked = lock(&LOCAL_ALLOCATIONS).take().unwrap_or_default();
    for (_, a) in leaked {
        // SAFETY: from Box::into_raw in ConvertSidToStringSidW, never freed (still in the map).
        drop(unsafe { Box::from_raw(a.0) });
    }
}

/// How many `LocalAlloc`ed strings the client has not freed.
pub fn local_allocations_outstanding() -> usize {
    lock(&LOCAL_ALLOCATIONS).as_ref().map_or(0, HashMap::len)
}

fn first_time<T: std::hash::Hash + Eq>(seen: &Mutex<Option<HashSet<T>>>, key: T) -> bool {
    lock(seen).get_or_insert_with(HashSet::new).insert(key)
}

fn slow_first_lookup<T: std::hash::Hash + Eq>(seen: &Mutex<Option<HashSet<T>>>, key: T) {
    let delay = config().slow_lookup;
    if !delay.is_zero() && first_time(seen, key) {
        std::thread::sleep(delay);
    }
}

fn fail(code: u32) -> BOOL {
    set_last_error(code);
    0
}

/// The SID of `pid`'s user: S-1-5-21-1111-2222-3333-<1001..1003>.
fn user_sid(pid: u32) -> Vec<u8> {
    let mut sid = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
    for sub in [21u32, 1111, 2222, 3333, 1001 + pid % 3] {
        sid.extend_from_slice(&sub.to_le_bytes());
    }
    sid
}

/// Reads a SID's bytes after checking its revision and sub-authority count.
///
/// # Safety
/// `sid` is null or points to at least the SID's header (8 bytes) and its sub-authorities.
unsafe fn read_sid(sid: *const c_void) -> Option<Vec<u8>> {
    if sid.is_null() {
        return None;
    }
    let p = sid.cast::<u8>();
    // SAFETY: the first two header bytes (caller contract).
    let (revision, count) = unsafe { (p.read(), p.add(1).read()) };
    if revision != 1 || count > 15 {
        return None;
    }
    let len = 8 + 4 * usize::from(count);
    // SAFETY: a valid SID of this count has `len` bytes (caller contract).
    Some(unsafe { std::slice::from_raw_parts(p, len) }.to_vec())
}

fn sid_string(sid: &[u8]) -> String {
    let mut authority = 0u64;
    for b in &sid[2..8] {
        authority = authority << 8 | u64::from(*b);
    }
    let mut s = format!("S-{}-{authority}", sid[0]);
    for sub in sid[8..].chunks_exact(4) {
        s.push_str(&format!(
            "-{}",
            u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]])
        ));
    }
    s
}

fn process(handle: HANDLE, api: &str) -> Option<u32> {
    match objects::get(handle) {
        Some(Object::Process(pid)) => Some(pid),
        _ => {
            violation(
                "HANDLE_INVALID",
                format!("{api} on {handle:?}, which is not an open process handle"),
            );
            None
        }
    }
}

/// Writes `text` and a NUL into a caller's buffer of `*capacity` units; `*capacity` becomes the
/// length written (success) or the length needed with the NUL (ERROR_INSUFFICIENT_BUFFER).
///
/// # Safety
/// `capacity` is a valid pointer; `buffer` is writable for `*capacity` units (or null with 0).
unsafe fn write_wide(text: &str, buffer: *mut u16, capacity: *mut u32) -> bool {
    let units: Vec<u16> = text.encode_utf16().collect();
    // SAFETY: valid pointer (caller contract).
    let room = unsafe { capacity.read_unaligned() } as usize;
    if buffer.is_null() || room < units.len() + 1 {
        // SAFETY: as above.
        unsafe { capacity.write_unaligned((units.len() + 1) as u32) };
        return false;
    }
    // SAFETY: `buffer` holds `room` >= len + 1 units (caller contract).
    unsafe {
        for (i, u) in units.iter().enumerate() {
            buffer.add(i).write_unaligned(*u);
        }
        buffer.add(units.len()).write_unaligned(0);
        capacity.write_unaligned(units.len() as u32);
    }
    true
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn OpenProcess(
    _dwdesiredaccess: u32,
    _binherithandle: BOOL,
    dwprocessid: u32,
) -> HANDLE {
    if dwprocessid == 0 {
        set_last_error(ERROR_INVALID_PARAMETER);
        return std::ptr::null_mut();
    }
    slow_first_lookup(&LOOKED_UP_PIDS, dwprocessid);
    objects::insert(Object::Process(dwprocessid))
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetProcessTimes(
    hprocess: HANDLE,
    lpcreationtime: *mut FILETIME,
    lpexittime: *mut FILETIME,
    lpkerneltime: *mut FILETIME,
    lpusertime: *mut FILETIME,
) -> BOOL {
    let Some(pid) = process(hprocess, "GetProcessTimes") else {
        return fail(ERROR_INVALID_HANDLE);
    };
    let outs = [lpcreationtime, lpexittime, lpkerneltime, lpusertime];
    if outs.iter().any(|p| p.is_null()) {
        violation(
            "PROCESS_TIMES_NULL",
            "GetProcessTimes with a NULL out pointer (nf-processthreadsapi-getprocesstimes: all four required)",
        );
        return fail(ERROR_NOACCESS);
    }
    let created = crate::ffi::process_create_time(pid) as u64;
    for (i, p) in outs.into_iter().enumerate() {
        let t = if i == 0 { created } else { 0 };
        // SAFETY: non-null out pointers of the caller (checked).
        unsafe {
            p.write_unaligned(FILETIME {
                dwLowDateTime: t as u32,
                dwHighDateTime: (t >> 32) as u32,
            })
        };
    }
    1
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn QueryFullProcessImageNameW(
    hprocess: HANDLE,
    _dwflags: u32,
    lpexename: PWSTR,
    lpdwsize: *mut u32,
) -> BOOL {
    let Some(pid) = process(hprocess, "QueryFullProcessImageNameW") else {
        return fail(ERROR_INVALID_HANDLE);
    };
    if lpdwsize.is_null() {
        violation(
            "IMAGE_NAME_NULL_SIZE",
            "QueryFullProcessImageNameW without lpdwSize",
        );
        return fail(ERROR_INVALID_PARAMETER);
    }
    // SAFETY: the caller's buffer holds *lpdwsize units (doc); lpdwsize is non-null.
    if unsafe { write_wide(&format!("C:\\Sim\\bin\\app{pid}.exe"), lpexename, lpdwsize) } {
        1
    } else {
        fail(ERROR_INSUFFICIENT_BUFFER)
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn OpenProcessToken(
    processhandle: HANDLE,
    _desiredaccess: u32,
    tokenhandle: *mut HANDLE,
) -> BOOL {
    let Some(pid) = process(processhandle, "OpenProcessToken") else {
        return fail(ERROR_INVALID_HANDLE);
    };
    if tokenhandle.is_null() {
        violation("TOKEN_NULL_OUT", "OpenProcessToken without TokenHandle");
        return fail(ERROR_NOACCESS);
    }
    // SAFETY: non-null out pointer of the caller.
    unsafe { tokenhandle.write_unaligned(objects::insert(Object::Token(pid))) };
    1
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetTokenInformation(
    tokenhandle: HANDLE,
    tokeninformationclass: i32,
    tokeninformation: *mut c_void,
    tokeninformationlength: u32,
    returnlength: *mut u32,
) -> BOOL {
    let Some(Object::Token(pid)) = objects::get(tokenhandle) else {
        violation(
            "HANDLE_INVALID",
            "GetTokenInformation on a handle that is not a token",
        );
        return fail(ERROR_INVALID_HANDLE);
    };
    if tokeninformationclass != TOKEN_USER_CLASS || returnlength.is_null() {
        return fail(ERROR_INVALID_PARAMETER);
    }
    let sid = user_sid(pid);
    let needed = TOKEN_USER_LEN + sid.len();
    // SAFETY: non-null out pointer of the caller.
    unsafe { returnlength.write_unaligned(needed as u32) };
    if tokeninformation.is_null() || (tokeninformationlength as usize) < needed {
        return fail(ERROR_INSUFFICIENT_BUFFER);
    }
    if !tokeninformation
        .addr()
        .is_multiple_of(std::mem::align_of::<usize>())
    {
        // The structure holds a pointer: Windows fails a misaligned buffer with ERROR_NOACCESS.
        violation(
            "TOKEN_INFORMATION_MISALIGNED",
            "GetTokenInformation into a buffer not aligned for TOKEN_USER",
        );
        return fail(ERROR_NOACCESS);
    }
    let base = tokeninformation.cast::<u8>();
    // SAFETY: the caller's buffer holds `needed` bytes (checked) and is pointer-aligned
    // (checked); the SID pointer points into that same buffer, as Windows does.
    unsafe {
        let sid_at = base.add(TOKEN_USER_LEN);
        std::ptr::copy_nonoverlapping(sid.as_ptr(), sid_at, sid.len());
        base.cast::<*mut u8>().write(sid_at);
        base.add(8).cast::<u64>().write(0);
    }
    1
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn LookupAccountSidW(
    _lpsystemname: PCWSTR,
    sid: *mut c_void,
    name: PWSTR,
    cchname: *mut u32,
    referenceddomainname: PWSTR,
    cchreferenceddomainname: *mut u32,
    peuse: *mut i32,
) -> BOOL {
    // SAFETY: the caller passes a SID (doc); only its declared length is read.
    let Some(sid) = (unsafe { read_sid(sid) }) else {
        violation(
            "SID_INVALID",
            "LookupAccountSidW with a NULL or malformed SID",
        );
        return fail(ERROR_INVALID_PARAMETER);
    };
    if cchname.is_null() || cchreferenceddomainname.is_null() || peuse.is_null() {
        violation(
            "LOOKUP_ACCOUNT_NULL",
            "LookupAccountSidW with a NULL size or SID_NAME_USE pointer (nf-winbase-lookupaccountsidw)",
        );
        return fail(ERROR_NOACCESS);
    }
    slow_first_lookup(&LOOKED_UP_SIDS, sid.clone());
    let rid = sid
        .get(sid.len().saturating_sub(4)..)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    // SAFETY: the caller's buffers hold the unit counts it passed (doc); pointers non-null.
    let (named, domained) = unsafe {
        (
            write_wide(&format!("user{rid}"), name, cchname),
            write_wide("SIM", referenceddomainname, cchreferenceddomainname),
        )
    };
    if !(named && domained) {
        return fail(ERROR_INSUFFICIENT_BUFFER);
    }
    // SAFETY: non-null out pointer (checked).
    unsafe { peuse.write_unaligned(SID_TYPE_USER) };
    1
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ConvertSidToStringSidW(
    sid: *mut c_void,
    stringsid: *mut PWSTR,
) -> BOOL {
    // SAFETY: the caller passes a SID (doc); only its declared length is read.
    let Some(sid) = (unsafe { read_sid(sid) }) else {
        violation(
            "SID_INVALID",
            "ConvertSidToStringSidW with a NULL or malformed SID",
        );
        return fail(ERROR_INVALID_PARAMETER);
    };
    if stringsid.is_null() {
        violation(
            "SID_STRING_NULL_OUT",
            "ConvertSidToStringSidW without StringSid",
        );
        return fail(ERROR_INVALID_PARAMETER);
    }
    let text: Box<[u16]> = sid_string(&sid).encode_utf16().chain(Some(0)).collect();
    let raw = Box::into_raw(text);
    let ptr = raw.cast::<u16>();
    lock(&LOCAL_ALLOCATIONS)
        .get_or_insert_with(HashMap::new)
        .insert(ptr.addr(), LocalAllocation(raw));
    // SAFETY: non-null out pointer; the string lives until LocalFree (doc: "free ... LocalFree").
    unsafe { stringsid.write_unaligned(ptr) };
    1
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn LocalFree(hmem: *mut c_void) -> *mut c_void {
    if hmem.is_null() {
        return hmem;
    }
    let found = lock(&LOCAL_ALLOCATIONS)
        .as_mut()
        .and_then(|m| m.remove(&hmem.addr()));
    match found {
        Some(a) => {
            // SAFETY: from Box::into_raw in ConvertSidToStringSidW, removed from the map, so
            // freed exactly once.
            drop(unsafe { Box::from_raw(a.0) });
            std::ptr::null_mut()
        }
        None => {
            violation(
                "LOCAL_FREE_UNKNOWN",
                "LocalFree of memory the system did not allocate (or freed twice)",
            );
            set_last_error(ERROR_INVALID_HANDLE);
            hmem
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn QueryDosDeviceW(
    lpdevicename: PCWSTR,
    lptargetpath: PWSTR,
    ucchmax: u32,
) -> u32 {
    let mut name = Vec::new();
    if !lpdevicename.is_null() {
        for i in 0..8 {
            // SAFETY: a NUL-terminated device name (doc); at most 8 units are read.
            let u = unsafe { lpdevicename.add(i).read_unaligned() };
            if u == 0 {
                break;
            }
            name.push(u);
        }
    }
    if name != "C:".encode_utf16().collect::<Vec<_>>() {
        set_last_error(ERROR_FILE_NOT_FOUND);
        return 0;
    }
    // The list of targets: one NUL-terminated string, then the list's closing NUL.
    let target: Vec<u16> = C_DRIVE_DEVICE.encode_utf16().chain([0, 0]).collect();
    if lptargetpath.is_null() || (ucchmax as usize) < target.len() {
        set_last_error(ERROR_INSUFFICIENT_BUFFER);
        return 0;
    }
    // SAFETY: the caller's buffer holds `ucchmax` >= target.len() units (doc).
    unsafe {
        for (i, u) in target.iter().enumerate() {
            lptargetpath.add(i).write_unaligned(*u);
        }
    }
    target.len() as u32
}
