//! Names: `UNICODE_STRING` checks and referenced file name information.

use super::*;

/// Why a `UNICODE_STRING` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadUnicodeString {
    /// `Length` is odd: not a whole number of UTF-16 units.
    OddLength,
    /// `Length` exceeds `MaximumLength`.
    LengthAboveMaximum,
    /// `Buffer` is null while `Length` is not zero.
    NullBuffer,
    /// `Buffer` is not aligned for u16.
    Misaligned,
}

/// Reads a `UNICODE_STRING` as UTF-16LE bytes after checking every field: even `Length`, not above
/// `MaximumLength`, non-null and aligned `Buffer`.
///
/// # Safety
/// `us` must be a string the system handed us (inside a structure it keeps alive for the borrow),
/// so that when its fields pass the checks, `Buffer` points to `Length` readable bytes. The
/// checks catch a malformed string; they cannot make up for a dangling one.
pub unsafe fn unicode_string_bytes(us: &UNICODE_STRING) -> Result<&[u8], BadUnicodeString> {
    let len = usize::from(us.Length);
    if len == 0 {
        return Ok(&[]);
    }
    if len % 2 != 0 {
        return Err(BadUnicodeString::OddLength);
    }
    if us.Length > us.MaximumLength {
        return Err(BadUnicodeString::LengthAboveMaximum);
    }
    if us.Buffer.is_null() {
        return Err(BadUnicodeString::NullBuffer);
    }
    if !us.Buffer.is_aligned() {
        return Err(BadUnicodeString::Misaligned);
    }
    // SAFETY: Buffer is non-null and aligned, Length is even and <= MaximumLength (<= 65,534
    // bytes, so within isize), and the caller guarantees Length bytes at Buffer stay readable
    // for the borrow.
    Ok(unsafe { core::slice::from_raw_parts(us.Buffer.cast::<u8>(), len) })
}

/// A referenced `FLT_FILE_NAME_INFORMATION`, released exactly once when dropped.
///
/// Invariant: `info` is non-null, aligned, returned by a successful `FltGetFileNameInformation`
/// and not yet released.
pub struct NameInfo {
    info: *const FLT_FILE_NAME_INFORMATION,
}

/// The name query failed or returned something unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Query(NTSTATUS),
    /// No query ran (a failed create whose pre-create did not take the opened name).
    NotQueried,
    NullInfo,
    Misaligned,
    BadString(BadUnicodeString),
}

impl NameInfo {
    /// Queries the normalized name (post-create, for a file that was opened) or the opened name
    /// (pre-create: the only place the docs promise it for a create that then fails,
    /// `nf-fltkernel-fltgetfilenameinformation`, Remarks; minispy queries there). PASSIVE_LEVEL.
    pub(super) fn query(data: &CallbackData<'_>, opened_name: bool) -> Result<Self, NameError> {
        let format = if opened_name {
            FLT_FILE_NAME_OPENED
        } else {
            FLT_FILE_NAME_NORMALIZED
        };
        let mut info: *mut FLT_FILE_NAME_INFORMATION = ptr::null_mut();
        // SAFETY: `data.raw` is this callback's valid callback data; `info` is a valid out pointer.
        let st = unsafe {
            FltGetFileNameInformation(data.raw, format | FLT_FILE_NAME_QUERY_DEFAULT, &mut info)
        };
        if !status::is_success(st) {
            return Err(NameError::Query(st));
        }
        Self::adopt(info)
    }

    /// The normalized destination name of a rename or link (`FltGetDestinationFileNameInformation`):
    /// pre-set-information only, IRQL <= APC_LEVEL (the Filter Manager's own documentation,
    /// `nf-fltkernel-fltgetdestinationfilenameinformation`, Requirements; the driver calls it at
    /// PASSIVE_LEVEL, where set-information's pre-operation runs). `name` is the checked
    /// `FileName` of the caller's buffer ([`crate::ffi::parse_name_change`]), at most 65,535 bytes.
    pub(super) fn destination(
        data: &CallbackData<'_>,
        root_directory: isize,
        name: &[u8],
    ) -> Result<Self, NameError> {
        let Ok(len) = u32::try_from(name.len()) else {
            return Err(NameError::NotQueried);
        };
        if !name.as_ptr().cast::<u16>().is_aligned() && !name.is_empty() {
            return Err(NameError::Misaligned);
        }
        let mut info: *mut FLT_FILE_NAME_INFORMATION = ptr::null_mut();
        // SAFETY: instance and file object of this operation; `name` points to `len` readable
        // bytes inside the caller's captured buffer, aligned for u16; `info` a valid out pointer.
        let st = unsafe {
            FltGetDestinationFileNameInformation(
                data.instance(),
                data.file_object(),
                ptr::without_provenance_mut(root_directory as usize),
                name.as_ptr().cast::<u16>(),
                len,
                FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT,
                &mut info,
            )
        };
        if !status::is_success(st) {
            return Err(NameError::Query(st));
        }
        Self::adopt(info)
    }

    /// Takes ownership of a reference; releases it even when refusing it.
    fn adopt(info: *mut FLT_FILE_NAME_INFORMATION) -> Result<Self, NameError> {
        if info.is_null() {
            return Err(NameError::NullInfo);
        }
        if !info.is_aligned() {
            // Still ours to release, even though we will not read it.
            // SAFETY: a successful query returned this reference; released exactly once here.
            unsafe { FltReleaseFileNameInformation(info) };
            return Err(NameError::Misaligned);
        }
        // SAFETY: non-null, aligned, referenced; FltParseFileNameInformation fills the component
        // strings (Volume among them) inside the same structure.
        unsafe { FltParseFileNameInformation(info) };
        Ok(Self { info })
    }

    /// Hands the reference to post-create through the completion context.
    pub(super) fn into_raw(self) -> *mut c_void {
        let info = self.info;
        core::mem::forget(self);
        info.cast_mut().cast()
    }

    /// Takes back a reference handed over by `into_raw`.
    ///
    /// # Safety
    /// `raw` must be null or come from `into_raw`, and be taken back exactly once.
    pub(super) unsafe fn from_raw(raw: *const c_void) -> Option<Self> {
        // `then`, not `then_some`: an eagerly built value would be released when null.
        (!raw.is_null()).then(|| Self { info: raw.cast() })
    }

    fn info(&self) -> &FLT_FILE_NAME_INFORMATION {
        // SAFETY: type invariant: non-null, aligned, referenced until drop.
        unsafe { &*self.info }
    }

    /// The full name (volume included), as UTF-16LE bytes, validated.
    pub fn name(&self) -> Result<&[u8], NameError> {
        // SAFETY: the strings live in the referenced name information (type invariant).
        unsafe { unicode_string_bytes(&self.info().Name) }.map_err(NameError::BadString)
    }

    /// The volume component, validated; empty if unusable (the path still names it).
    pub fn volume(&self) -> &[u8] {
        // SAFETY: as in `name`.
        unsafe { unicode_string_bytes(&self.info().Volume) }.unwrap_or(&[])
    }
}

impl Drop for NameInfo {
    fn drop(&mut self) {
        // SAFETY: type invariant: a live reference, released exactly once (here).
        unsafe { FltReleaseFileNameInformation(self.info) };
    }
}
