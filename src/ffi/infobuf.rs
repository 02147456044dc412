//! Bounds-checked views of the variable-length buffers that set-information and FSCTL requests
//! carry (issue 27). A caller's buffer is data it chose: every length inside it is checked against
//! the buffer's own length before a byte past the fixed part is read, and a buffer that fails is
//! rejected whole (the caller counts it in `buffers_rejected`) and never read further.
//!
//! The parsers take a byte slice and are safe; the only `unsafe` is [`info_buffer`], which turns
//! the `(InfoBuffer, Length)` or `(SystemBuffer, InputBufferLength)` pair the Filter Manager hands
//! us into that slice. Layouts (x64, from the WDK's ntifs.h / winioctl.h; the offsets are checked
//! by the tests in `tests/ffi_wrappers.rs`):
//! - `FILE_RENAME_INFORMATION` and `FILE_LINK_INFORMATION` (also their `...Ex` classes, where the
//!   first member is a `ULONG Flags` instead of `BOOLEAN ReplaceIfExists`): flags/replace at 0,
//!   `HANDLE RootDirectory` at 8, `ULONG FileNameLength` at 16, `WCHAR FileName[]` at 20
//!   (`ns-ntifs-_file_rename_information`, `ns-ntifs-_file_link_information`).
//! - `FILE_DISPOSITION_INFORMATION`: `BOOLEAN DeleteFile` at 0
//!   (`ns-ntddk-_file_disposition_information`); `FILE_DISPOSITION_INFORMATION_EX`: `ULONG Flags`
//!   at 0 (`ns-ntddk-_file_disposition_information_ex`).
//! - `DUPLICATE_EXTENTS_DATA` (`FSCTL_DUPLICATE_EXTENTS_TO_FILE`, `ns-winioctl-duplicate_extents_data`):
//!   `HANDLE FileHandle` at 0, `SourceFileOffset` at 8, `TargetFileOffset` at 16, `ByteCount` at
//!   24, 32 bytes; a 32-bit caller's `DUPLICATE_EXTENTS_DATA32` has the same offsets (its 4-byte
//!   handle is followed by padding to the 8-aligned offsets).
//! - `DUPLICATE_EXTENTS_DATA_EX` (`FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX`,
//!   `ns-winioctl-duplicate_extents_data_ex`): `SIZE_T Size` at 0 (48), `FileHandle` at 8,
//!   `SourceFileOffset` at 16, `TargetFileOffset` at 24, `ByteCount` at 32, `ULONG Flags` at 40;
//!   the 32-bit `DUPLICATE_EXTENTS_DATA_EX32`: `DWORD32 Size` at 0 (40), handle at 4, offsets at
//!   8, 16, 24, flags at 32. The `Size` field tells them apart; any other value is rejected.

use super::*;

/// Why a caller's buffer was rejected (never read past its fixed part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBuffer {
    /// The buffer pointer is null with a non-zero length.
    Null,
    /// The buffer is not aligned for its structure.
    Misaligned,
    /// Shorter than the structure's fixed part.
    TooShort { needed: usize, len: usize },
    /// `FileNameLength` runs past the end of the buffer.
    NameLength { declared: u32, room: usize },
    /// `FileNameLength` is odd: not whole UTF-16 units.
    OddNameLength(u32),
    /// A structure version (`Size`) this build does not know.
    UnknownVersion(u64),
}

/// Longest buffer the driver looks at: a fixed part plus a name of 65,535 bytes (a
/// `UNICODE_STRING` cannot hold more). A longer declared length is not rejected for that alone
/// (the name inside is checked), but no slice longer than this is ever made.
pub const MAX_INFO_BUFFER: usize = 20 + 65_535;

/// A caller's information buffer as bytes: `len` bytes at `ptr`, clamped to [`MAX_INFO_BUFFER`],
/// after checking null and `align` (the alignment of the structure it holds).
///
/// # Safety
/// `ptr` must be null or the buffer the Filter Manager passed with this operation (the I/O
/// manager's system buffer for set-information and buffered FSCTLs), readable for `len` bytes
/// for the borrow `'a`.
pub unsafe fn info_buffer<'a>(
    ptr: *const c_void,
    len: u32,
    align: usize,
) -> Result<&'a [u8], BadBuffer> {
    let len = (len as usize).min(MAX_INFO_BUFFER);
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(BadBuffer::Null);
    }
    if align == 0 || !ptr.addr().is_multiple_of(align) {
        return Err(BadBuffer::Misaligned);
    }
    // SAFETY: non-null and aligned; the caller guarantees `len` readable bytes at `ptr` for 'a
    // (we only ever shorten it), and `len` <= MAX_INFO_BUFFER fits isize.
    Ok(unsafe { core::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn need(b: &[u8], n: usize) -> Result<(), BadBuffer> {
    if b.len() < n {
        Err(BadBuffer::TooShort {
            needed: n,
            len: b.len(),
        })
    } else {
        Ok(())
    }
}

/// `FILE_RENAME_INFORMATION` / `FILE_LINK_INFORMATION` (and their `Ex` forms), checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameChange<'a> {
    /// `ReplaceIfExists`, or `FILE_RENAME_REPLACE_IF_EXISTS` / `FILE_LINK_REPLACE_IF_EXISTS`
    /// (both 0x1) in the `Ex` flags.
    pub replace_if_exists: bool,
    /// `RootDirectory`, a handle value (0 when the name is full or in the same directory).
    pub root_directory: isize,
    /// `FileName`: exactly `FileNameLength` bytes, inside the buffer.
    pub file_name: &'a [u8],
}

/// Offset of `FileName` in `FILE_RENAME_INFORMATION` / `FILE_LINK_INFORMATION` on x64.
pub const NAME_CHANGE_NAME_OFFSET: usize = 20;
/// Alignment of those structures (they hold a HANDLE).
pub const NAME_CHANGE_ALIGN: usize = 8;
/// `FILE_RENAME_REPLACE_IF_EXISTS` / `FILE_LINK_REPLACE_IF_EXISTS`.
const REPLACE_IF_EXISTS_FLAG: u32 = 0x1;

/// Parses a rename or link buffer: `FileNameLength` must be even and end inside `buf`.
pub fn parse_name_change(buf: &[u8], ex: bool) -> Result<NameChange<'_>, BadBuffer> {
    need(buf, NAME_CHANGE_NAME_OFFSET)?;
    let first = u32_at(buf, 0).unwrap_or(0);
    let replace_if_exists = if ex {
        first & REPLACE_IF_EXISTS_FLAG != 0
    } else {
        first & 0xFF != 0
    };
    let root_directory = u64_at(buf, 8).unwrap_or(0) as isize;
    let declared = u32_at(buf, 16).unwrap_or(0);
    let room = buf.len() - NAME_CHANGE_NAME_OFFSET;
    if declared as usize > room {
        return Err(BadBuffer::NameLength { declared, room });
    }
    if !declared.is_multiple_of(2) {
        return Err(BadBuffer::OddNameLength(declared));
    }
    let file_name = buf
        .get(NAME_CHANGE_NAME_OFFSET..NAME_CHANGE_NAME_OFFSET + declared as usize)
        .ok_or(BadBuffer::NameLength { declared, room })?;
    Ok(NameChange {
        replace_if_exists,
        root_directory,
        file_name,
    })
}

/// A disposition request, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Disposition {
    /// The caller asks for the file to be deleted (false: a cancel, "do not delete").
    pub delete: bool,
    /// `FILE_DISPOSITION_POSIX_SEMANTICS`.
    pub posix: bool,
    /// `FILE_DISPOSITION_ON_CLOSE`: sets or clears delete-on-close instead of delete-pending.
    pub on_close: bool,
}

const FILE_DISPOSITION_DELETE: u32 = 0x1;
const FILE_DISPOSITION_POSIX_SEMANTICS: u32 = 0x2;
const FILE_DISPOSITION_ON_CLOSE: u32 = 0x8;

/// Parses `FILE_DISPOSITION_INFORMATION` (1 byte) or `..._EX` (a 4-byte `Flags`).
pub fn parse_disposition(buf: &[u8], ex: bool) -> Result<Disposition, BadBuffer> {
    if ex {
        need(buf, 4)?;
        let flags = u32_at(buf, 0).unwrap_or(0);
        Ok(Disposition {
            delete: flags & FILE_DISPOSITION_DELETE != 0,
            posix: flags & FILE_DISPOSITION_POSIX_SEMANTICS != 0,
            on_close: flags & FILE_DISPOSITION_ON_CLOSE != 0,
        })
    } else {
        need(buf, 1)?;
        Ok(Disposition {
            delete: buf.first().is_some_and(|&b| b != 0),
            ..Disposition::default()
        })
    }
}

/// A block clone request, checked: what the clone record keeps (the source offset is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clone {
    pub target_offset: u64,
    pub byte_count: u64,
}

/// `sizeof(DUPLICATE_EXTENTS_DATA)` (and its 32-bit form).
pub const DUPLICATE_EXTENTS_LEN: usize = 32;
/// `sizeof(DUPLICATE_EXTENTS_DATA_EX)` on x64, and the `Size` it must declare.
pub const DUPLICATE_EXTENTS_EX_LEN: usize = 48;
/// `sizeof(DUPLICATE_EXTENTS_DATA_EX32)`, and the `Size` it must declare.
pub const DUPLICATE_EXTENTS_EX32_LEN: usize = 40;

/// Parses the input of `FSCTL_DUPLICATE_EXTENTS_TO_FILE` (`ex` false) or `_EX`.
pub fn parse_duplicate_extents(buf: &[u8], ex: bool) -> Result<Clone, BadBuffer> {
    let (target_at, count_at) = if ex {
        need(buf, DUPLICATE_EXTENTS_EX32_LEN)?;
        match u64_at(buf, 0).unwrap_or(0) {
            n if n == DUPLICATE_EXTENTS_EX_LEN as u64 => {
                need(buf, DUPLICATE_EXTENTS_EX_LEN)?;
                (24, 32)
            }
            _ if u32_at(buf, 0) == Some(DUPLICATE_EXTENTS_EX32_LEN as u32) => (16, 24),
            other => return Err(BadBuffer::UnknownVersion(other)),
        }
    } else {
        need(buf, DUPLICATE_EXTENTS_LEN)?;
        (16, 24)
    };
    Ok(Clone {
        target_offset: u64_at(buf, target_at).unwrap_or(0),
        byte_count: u64_at(buf, count_at).unwrap_or(0),
    })
}
