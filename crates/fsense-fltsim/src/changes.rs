//! The operations that change a file other than by writing to it: renames, hard links, delete
//! dispositions, cleanup of a handle, MDL writes and block clones, with their documented
//! parameters and the buffers the Filter Manager hands a filter for them (hostile ones included).
//!
//! Layouts are the WDK's for x64, written from Microsoft's pages, independently of the driver:
//! - `ns-ntifs-_file_rename_information`, `ns-ntifs-_file_link_information`: a 4-byte union
//!   (`ReplaceIfExists` / `Flags`), `RootDirectory` at 8, `FileNameLength` (bytes) at 16,
//!   `FileName` at 20; `sizeof` 24.
//! - `ns-ntddk-_file_disposition_information` (one BOOLEAN `DeleteFile`) and
//!   `ns-ntddk-_file_disposition_information_ex` (ULONG `Flags`: FILE_DISPOSITION_DELETE 1,
//!   _POSIX_SEMANTICS 2, _ON_CLOSE 8).
//! - `ns-winioctl-duplicate_extents_data` (`FileHandle`, `SourceFileOffset`, `TargetFileOffset`,
//!   `ByteCount`: 32 bytes) and `ns-winioctl-duplicate_extents_data_ex` (`Size` first: 48 bytes).

use std::sync::Arc;

/// `FILE_INFORMATION_CLASS` values (`ne-wdm-_file_information_class`).
pub const FILE_BASIC_INFORMATION: u32 = 4;
pub const FILE_RENAME_INFORMATION: u32 = 10;
pub const FILE_LINK_INFORMATION: u32 = 11;
pub const FILE_DISPOSITION_INFORMATION: u32 = 13;
pub const FILE_END_OF_FILE_INFORMATION: u32 = 20;
pub const FILE_DISPOSITION_INFORMATION_EX: u32 = 64;
pub const FILE_RENAME_INFORMATION_EX: u32 = 65;
pub const FILE_LINK_INFORMATION_EX: u32 = 72;

pub const FILE_DISPOSITION_DELETE: u32 = 0x1;
pub const FILE_DISPOSITION_POSIX_SEMANTICS: u32 = 0x2;
pub const FILE_DISPOSITION_ON_CLOSE: u32 = 0x8;
/// `FILE_DELETE_ON_CLOSE` create option.
pub const FILE_DELETE_ON_CLOSE: u32 = 0x1000;

/// `FSCTL_DUPLICATE_EXTENTS_TO_FILE`: CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 209, METHOD_BUFFERED,
/// FILE_WRITE_DATA) (`ni-winioctl-fsctl_duplicate_extents_to_file`).
pub const FSCTL_DUPLICATE_EXTENTS_TO_FILE: u32 = 0x0009_8344;
/// `FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX`: CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 250, METHOD_BUFFERED,
/// FILE_WRITE_DATA) (`ni-winioctl-fsctl_duplicate_extents_to_file_ex`).
pub const FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX: u32 = 0x0009_83E8;
/// `FSCTL_GET_OBJECT_ID` (METHOD_BUFFERED): an FSCTL a sensor ignores.
pub const FSCTL_GET_OBJECT_ID: u32 = 0x0009_009C;
/// A METHOD_NEITHER FSCTL (`FSCTL_GET_RETRIEVAL_POINTERS`): its input is a raw user address.
pub const FSCTL_GET_RETRIEVAL_POINTERS: u32 = 0x0009_0073;

pub const DUPLICATE_EXTENTS_DATA_LEN: usize = 32;
pub const DUPLICATE_EXTENTS_DATA_EX_LEN: usize = 48;
/// Offset of `FileName` in FILE_RENAME_INFORMATION / FILE_LINK_INFORMATION.
pub const RENAME_NAME_OFFSET: usize = 20;
/// `sizeof(FILE_RENAME_INFORMATION)`: the fixed header the documented minimum covers.
pub const RENAME_INFO_SIZE: usize = 24;

/// How a set-information or FSCTL input buffer is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// `FileNameLength` runs past the buffer's `Length`.
    NameLongerThanBuffer,
    /// `FileNameLength` odd (not whole UTF-16 units).
    OddNameLength,
    /// `FileNameLength` near `u32::MAX` (offset + length overflows 32 bits).
    NameLengthNearMax,
    /// `Length` shorter than the fixed header.
    ShorterThanHeader,
    /// `InfoBuffer` not aligned for the structure.
    Unaligned,
    /// FSCTL input length shorter than DUPLICATE_EXTENTS_DATA.
    FsctlShort,
    /// FSCTL input length non-zero with a NULL `SystemBuffer`.
    FsctlNullBuffer,
    /// FSCTL _EX input whose `Size` field disagrees with the input length.
    FsctlSizeMismatch,
}

/// What a set-information operation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetInfoKind {
    /// FileRenameInformation(Ex) to `target` (a full path on the same volume).
    Rename { ex: bool, replace: bool },
    /// FileLinkInformation(Ex) creating `target`.
    Link { ex: bool },
    /// FileDispositionInformation { DeleteFile }.
    Disposition { delete: bool },
    /// FileDispositionInformationEx { Flags }.
    DispositionEx { flags: u32 },
    /// Another class, which the sensor must let pass at once.
    Other { class: u32 },
}

impl SetInfoKind {
    pub fn class(&self) -> u32 {
        match self {
            Self::Rename { ex: false, .. } => FILE_RENAME_INFORMATION,
            Self::Rename { ex: true, .. } => FILE_RENAME_INFORMATION_EX,
            Self::Link { ex: false } => FILE_LINK_INFORMATION,
            Self::Link { ex: true } => FILE_LINK_INFORMATION_EX,
            Self::Disposition { .. } => FILE_DISPOSITION_INFORMATION,
            Self::DispositionEx { .. } => FILE_DISPOSITION_INFORMATION_EX,
            Self::Other { class } => *class,
        }
    }

    pub fn names_a_target(&self) -> bool {
        matches!(self, Self::Rename { .. } | Self::Link { .. })
    }
}

/// One IRP_MJ_SET_INFORMATION through an open handle.
#[derive(Debug, Clone)]
pub struct SetInfoOp {
    pub op_id: u32,
    pub pid: u32,
    pub file: usize,
    pub create_op: u32,
    pub kind: SetInfoKind,
    /// The file's name when the operation starts (UTF-16 units, and as record bytes).
    pub source: Arc<Vec<u16>>,
    pub source_le: Arc<Vec<u8>>,
    /// The full destination path of a rename or link.
    pub target: Option<Arc<Vec<u16>>>,
    pub target_le: Option<Arc<Vec<u8>>>,
    pub hostile: Option<Hostile>,
    pub status: i32,
    pub post_at_dispatch: bool,
}

impl SetInfoOp {
    /// The rename or link happened: a record must arrive (or be counted dropped).
    pub fn must_report(&self) -> bool {
        self.kind.names_a_target() && self.hostile.is_none() && self.status >= 0
    }

    /// The InfoBuffer the I/O manager captured, and its `Length`. The bytes live in an
    /// allocation of exactly this size (see [`InfoBuffer`]), so a read past it is caught.
    pub fn info_buffer(&self) -> (Vec<u8>, u32) {
        match &self.kind {
            SetInfoKind::Rename { ex, replace } => {
                let flags = if *ex { u32::from(*replace) } else { 0 };
                let first = if *ex { flags } else { u32::from(*replace) };
                self.named_buffer(first)
            }
            SetInfoKind::Link { .. } => self.named_buffer(0),
            SetInfoKind::Disposition { delete } => (vec![u8::from(*delete)], 1),
            SetInfoKind::DispositionEx { flags } => (flags.to_le_bytes().to_vec(), 4),
            SetInfoKind::Other { .. } => (vec![0u8; 40], 40),
        }
    }

    fn named_buffer(&self, first: u32) -> (Vec<u8>, u32) {
        // The new name as the caller passes it: the final component (RootDirectory NULL: the
        // same directory), which the Filter Manager completes into a full destination path.
        let name = self
            .target
            .as_deref()
            .map(|t| final_component(t).to_vec())
            .unwrap_or_default();
        let name_bytes: Vec<u8> = name.iter().flat_map(|u| u.to_le_bytes()).collect();
        let mut b = vec![0u8; RENAME_NAME_OFFSET];
        b[0..4].copy_from_slice(&first.to_le_bytes());
        let mut name_len = name_bytes.len() as u32;
        b.extend_from_slice(&name_bytes);
        while b.len() < RENAME_INFO_SIZE {
            b.push(0);
        }
        match self.hostile {
            Some(Hostile::NameLongerThanBuffer) => name_len += 64,
            Some(Hostile::OddNameLength) => name_len |= 1,
            Some(Hostile::NameLengthNearMax) => name_len = u32::MAX - 1,
            Some(Hostile::ShorterThanHeader) => b.truncate(12),
            _ => {}
        }
        if b.len() >= RENAME_NAME_OFFSET {
            b[16..20].copy_from_slice(&name_len.to_le_bytes());
        }
        let len = b.len() as u32;
        (b, len)
    }
}

/// The final path component of `path` (after its last backslash).
pub fn final_component(path: &[u16]) -> &[u16] {
    let start = path
        .iter()
        .rposition(|&u| u == u16::from(b'\\'))
        .map_or(0, |i| i + 1);
    path.get(start..).unwrap_or(&[])
}

/// IRP_MJ_CLEANUP of the session's handle (the last one of its private file), then close.
#[derive(Debug, Clone)]
pub struct CleanupOp {
    pub op_id: u32,
    pub pid: u32,
    pub file: usize,
    pub create_op: u32,
    /// The file's name at cleanup.
    pub name_le: Arc<Vec<u8>>,
    /// The file is gone once this cleanup completes (delete-on-close or a disposition that
    /// stayed set, POSIX or not): a delete record must arrive (or be counted dropped).
    pub deletes: bool,
    /// The delete went with POSIX semantics.
    pub posix: bool,
    /// A delete was asked for and then withdrawn on this handle: never a delete record.
    pub cancelled: bool,
    pub post_at_dispatch: bool,
}

/// IRP_MJ_PREPARE_MDL_WRITE (fast I/O), or its IRP fallback.
#[derive(Debug, Clone)]
pub struct MdlWriteOp {
    pub op_id: u32,
    pub pid: u32,
    pub file: usize,
    pub create_op: u32,
    pub offset: u64,
    pub length: u32,
    /// The fast I/O path is refused by a filter below (STATUS_FLT_DISALLOW_FAST_IO): the
    /// write comes again as IRP_MJ_WRITE / IRP_MN_MDL, then IRP_MJ_WRITE /
    /// IRP_MN_COMPLETE_MDL, which wrote nothing new.
    pub irp_fallback: bool,
    pub post_at_dispatch: bool,
}

/// IRP_MJ_FILE_SYSTEM_CONTROL on the handle: a block clone or another FSCTL.
#[derive(Debug, Clone)]
pub struct FsctlOp {
    pub op_id: u32,
    pub pid: u32,
    pub file: usize,
    pub create_op: u32,
    pub code: u32,
    pub target_offset: u64,
    pub byte_count: u64,
    pub source_offset: u64,
    pub hostile: Option<Hostile>,
    pub status: i32,
    pub post_at_dispatch: bool,
}

impl FsctlOp {
    pub fn is_clone(&self) -> bool {
        matches!(
            self.code,
            FSCTL_DUPLICATE_EXTENTS_TO_FILE | FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX
        )
    }

    pub fn must_report(&self) -> bool {
        self.is_clone() && self.hostile.is_none() && self.status >= 0
    }

    /// The buffered input (`SystemBuffer`) and the `InputBufferLength` the FSCTL carries.
    pub fn input(&self) -> (Vec<u8>, u32) {
        let mut b = Vec::new();
        if self.code == FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX {
            let size = match self.hostile {
                Some(Hostile::FsctlSizeMismatch) => 4096u64,
                _ => DUPLICATE_EXTENTS_DATA_EX_LEN as u64,
            };
            b.extend_from_slice(&size.to_le_bytes());
        }
        b.extend_from_slice(&0x1234u64.to_le_bytes()); // FileHandle of the source
        b.extend_from_slice(&self.source_offset.to_le_bytes());
        b.extend_from_slice(&self.target_offset.to_le_bytes());
        b.extend_from_slice(&self.byte_count.to_le_bytes());
        if self.code == FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX {
            b.extend_from_slice(&[0u8; 8]); // Flags + padding
        }
        if !self.is_clone() {
            b = vec![0u8; 16];
        }
        let mut len = b.len() as u32;
        match self.hostile {
            Some(Hostile::FsctlShort) => {
                b.truncate(20);
                len = 20;
            }
            Some(Hostile::FsctlNullBuffer) => b.clear(),
            _ => {}
        }
        (b, len)
    }
}
