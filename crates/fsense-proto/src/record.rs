//! One file event: the record the driver captures and the consumer decodes.
//!
//! Layout (little-endian, [`RECORD_HEADER_LEN`] = 88 bytes, then the path, the volume name and the
//! target as UTF-16LE units, in that order):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 | 4 | `record_len`: whole record, header included; exactly 88 + 2 × (path + volume + target units) |
//! |   4 | 1 | `record_version` (1) |
//! |   5 | 1 | `operation`: 1 create, 2 write, 3 delete, 4 rename, 5 link, 6 clone (3..6: protocol 4) |
//! |   6 | 2 | `flags` ([`RecordFlags`]; unknown bits rejected) |
//! |   8 | 8 | `sequence`: per driver load, gap-free at the source |
//! |  16 | 8 | `timestamp`: 100 ns ticks since 1601-01-01 UTC |
//! |  24 | 8 | `process_create_time`: 100 ns ticks; with `pid` names a process even after pid reuse |
//! |  32 | 4 | `pid` |
//! |  36 | 4 | `tid` |
//! |  40 | 4 | `status`: the operation's final NTSTATUS (the post-operation phase) |
//! |  44 | 4 | `create_disposition` (create only) |
//! |  48 | 8 | `information`: the create result, the bytes written, a clone's byte count (below) |
//! |  56 | 8 | `write_offset` (write and clone only) |
//! |  64 | 4 | `write_length`: requested length (write and clone only) |
//! |  68 | 4 | `create_options` (create only) |
//! |  72 | 4 | `desired_access` (create only) |
//! |  76 | 4 | `share_access` (create only) |
//! |  80 | 2 | `path_units` (<= 32,767) |
//! |  82 | 2 | `volume_units` (<= 32,767); with the `RENAMED` flag, the units of the previous path |
//! |  84 | 2 | `target_units` (<= 32,767; rename, link and clone only, zero otherwise) |
//! |  86 | 2 | reserved, zero |
//!
//! The strings follow the header: `path`, then `volume`, then `target`.
//! - Rename and link: `path` is the name before the operation (the file's name, or the name the
//!   link is made to), `target` the destination name (`FltGetDestinationFileNameInformation`).
//! - Clone (`FSCTL_DUPLICATE_EXTENTS_TO_FILE` and `_EX`, a block clone into the file at `path`):
//!   `write_offset` is the target file offset, `information` the byte count (exact, 64 bits),
//!   `write_length` the same byte count saturated at `u32::MAX`; `target` is the *source* file's
//!   name when the driver already has it (empty, with `TARGET_NAME_FAILED`, when not). The
//!   source offset is not kept.
//! - Delete: `path` is the name of the file that is gone; the `POSIX_DELETE` flag says it went
//!   with POSIX semantics (the name left at once, the data with the last handle).
//!
//! A create or write record has no target, so its bytes are those of protocols 1..3.

use crate::bytes::{Reader, Writer, ensure_capacity};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::{MAX_PATH_UNITS, MAX_TARGET_UNITS, MAX_VOLUME_UNITS};

/// Size of the fixed part of a record.
pub const RECORD_HEADER_LEN: usize = 88;
/// The record layout version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;

/// The file-system operation a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Operation {
    /// IRP_MJ_CREATE: a file or directory was opened or created (successfully or not).
    Create = 1,
    /// IRP_MJ_WRITE (or an MDL write, flag [`RecordFlags::MDL_WRITE`]): data was written.
    Write = 2,
    /// The file is gone: a disposition or delete-on-close that took effect (protocol 4).
    Delete = 3,
    /// The file was renamed from `path` to `target` (protocol 4).
    Rename = 4,
    /// A hard link named `target` was made to the file at `path` (protocol 4).
    Link = 5,
    /// A block clone into the file at `path`, from the file `target` (protocol 4).
    Clone = 6,
}

impl Operation {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Create),
            2 => Some(Self::Write),
            3 => Some(Self::Delete),
            4 => Some(Self::Rename),
            5 => Some(Self::Link),
            6 => Some(Self::Clone),
            _ => None,
        }
    }

    /// Lower-case name, as used in output and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Rename => "rename",
            Self::Link => "link",
            Self::Clone => "clone",
        }
    }

    /// Every operation, in wire order.
    pub const ALL: [Self; 6] = [
        Self::Create,
        Self::Write,
        Self::Delete,
        Self::Rename,
        Self::Link,
        Self::Clone,
    ];

    /// The first protocol version that carries this operation: a driver sends it only to a
    /// consumer that negotiated this version or later.
    pub const fn since_protocol(self) -> u16 {
        match self {
            Self::Create | Self::Write => 1,
            _ => crate::NAMESPACE_OPS_SINCE,
        }
    }

    /// Whether records of this operation carry a `target` string.
    pub const fn has_target(self) -> bool {
        matches!(self, Self::Rename | Self::Link | Self::Clone)
    }

    /// Whether `write_offset` and `write_length` apply.
    pub const fn has_range(self) -> bool {
        matches!(self, Self::Write | Self::Clone)
    }
}

/// Per-record flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RecordFlags(u16);

impl RecordFlags {
    /// The path was cut to fit a limit; the record holds a prefix of it.
    pub const PATH_TRUNCATED: Self = Self(1 << 0);
    /// The name query failed; the path is empty or partial.
    pub const NAME_QUERY_FAILED: Self = Self(1 << 1);
    /// The write was paging I/O (from the memory manager, not a direct request).
    pub const PAGING_IO: Self = Self(1 << 2);
    /// The write's name came from what post-create saved for the stream, not a fresh query.
    pub const NAME_FROM_CONTEXT: Self = Self(1 << 3);
    /// The create opened a directory.
    pub const DIRECTORY: Self = Self(1 << 4);
    /// The request came from kernel mode.
    pub const KERNEL_REQUESTOR: Self = Self(1 << 5);
    /// A write whose stream has no saved name (opened before the driver loaded, opened without
    /// write access, a name too malformed to keep, ...): no name query ran, so this is not
    /// `NAME_QUERY_FAILED`.
    pub const NO_NAME_CONTEXT: Self = Self(1 << 6);
    /// A create record for an entry that arrived at `path` by rename (the Linux source); the
    /// record's second string then holds the path it had before, not a volume name.
    pub const RENAMED: Self = Self(1 << 7);
    /// The process had already exited when the event was read: `process_create_time` is 0 and
    /// the pid may name another process by now (the Linux source).
    pub const PROCESS_EXITED: Self = Self(1 << 8);
    /// The target name was cut to fit a limit; the record holds a prefix of it (protocol 4).
    pub const TARGET_TRUNCATED: Self = Self(1 << 9);
    /// The target name could not be had (query failed, or a clone's source name was not at
    /// hand); the target is empty or partial (protocol 4).
    pub const TARGET_NAME_FAILED: Self = Self(1 << 10);
    /// A write through the MDL interface (`IRP_MJ_PREPARE_MDL_WRITE`, by fast I/O or its IRP
    /// form), reported once (protocol 4).
    pub const MDL_WRITE: Self = Self(1 << 11);
    /// A delete with POSIX semantics (`FILE_DISPOSITION_POSIX_SEMANTICS`) (protocol 4).
    pub const POSIX_DELETE: Self = Self(1 << 12);
    /// A rename or link that was allowed to replace an existing target (`ReplaceIfExists`, or
    /// `FILE_RENAME_REPLACE_IF_EXISTS` / `FILE_LINK_REPLACE_IF_EXISTS`) (protocol 4).
    pub const REPLACE_EXISTING: Self = Self(1 << 13);
    /// Every bit this build knows.
    pub const ALL: Self = Self(0x3FFF);

    /// No flags.
    pub const fn empty() -> Self {
        Self(0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }
    /// Flags from raw bits, or `None` if an unknown bit is set.
    pub const fn from_bits(bits: u16) -> Option<Self> {
        if bits & !Self::ALL.0 == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }
    /// Flags from raw bits, unknown bits dropped.
    pub const fn from_bits_truncate(bits: u16) -> Self {
        Self(bits & Self::ALL.0)
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Both sets of bits.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

/// A UTF-16LE string as raw bytes: what a `UNICODE_STRING` holds. Any unit sequence is valid data
/// (unpaired surrogates included); the only invariants are an even byte length and at most
/// [`MAX_PATH_UNITS`] units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Utf16Path<'a>(&'a [u8]);

impl<'a> Utf16Path<'a> {
    /// The empty string.
    pub const EMPTY: Utf16Path<'static> = Utf16Path(&[]);

    /// Wraps UTF-16LE bytes. Fails on an odd length or more than [`MAX_PATH_UNITS`] units.
    pub fn from_le_bytes(bytes: &'a [u8]) -> Result<Self, EncodeError> {
        if !bytes.len().is_multiple_of(2) {
            return Err(EncodeError::OddUtf16Length(bytes.len()));
        }
        if bytes.len() / 2 > MAX_PATH_UNITS {
            return Err(EncodeError::TooLong {
                len: bytes.len() / 2,
                limit: MAX_PATH_UNITS,
            });
        }
        Ok(Self(bytes))
    }

    /// Wraps the longest valid prefix of `bytes` (even length, at most `max_units` units, never
    /// more than [`MAX_PATH_UNITS`]). Returns the path and whether anything was cut.
    pub fn truncating(bytes: &'a [u8], max_units: usize) -> (Self, bool) {
        let max_units = max_units.min(MAX_PATH_UNITS);
        let units = (bytes.len() / 2).min(max_units);
        let cut = bytes.get(..units * 2).unwrap_or(&[]);
        (Self(cut), cut.len() != bytes.len())
    }

    /// The raw UTF-16LE bytes.
    pub fn as_le_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Number of UTF-16 units.
    pub fn units(&self) -> usize {
        self.0.len() / 2
    }

    /// Whether there are no units.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The UTF-16 units in order.
    pub fn iter_units(&self) -> impl Iterator<Item = u16> + 'a {
        self.0
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
    }

    /// Decodes to chars, unpaired surrogates as `Err(unit)`.
    pub fn chars(&self) -> impl Iterator<Item = Result<char, u16>> + 'a {
        char::decode_utf16(self.iter_units()).map(|r| r.map_err(|e| e.unpaired_surrogate()))
    }
}

/// One file event. The same type is encoded by the driver and decoded by the consumer; a decoded
/// record borrows its strings from the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventRecord<'a> {
    pub sequence: u64,
    pub timestamp: u64,
    pub operation: Operation,
    pub flags: RecordFlags,
    pub pid: u32,
    pub tid: u32,
    pub process_create_time: u64,
    /// Final NTSTATUS of the operation, as its bit pattern.
    pub status: u32,
    /// Create result (`IoStatus.Information`: FILE_CREATED, FILE_OPENED, ...) or bytes written.
    pub information: u64,
    pub create_disposition: u32,
    pub create_options: u32,
    pub desired_access: u32,
    pub share_access: u32,
    pub write_offset: u64,
    pub write_length: u32,
    pub path: Utf16Path<'a>,
    pub volume: Utf16Path<'a>,
    /// Rename and link: the destination name; clone: the source file's name when at hand.
    /// Empty for the other operations (the encoder writes none).
    pub target: Utf16Path<'a>,
}

impl<'a> EventRecord<'a> {
    /// A create record with every create-only field zero; fill in what applies.
    pub fn create(path: Utf16Path<'a>, volume: Utf16Path<'a>) -> Self {
        Self::blank(Operation::Create, path, volume)
    }

    /// A write record with every write-only field zero; fill in what applies.
    pub fn write(path: Utf16Path<'a>, volume: Utf16Path<'a>) -> Self {
        Self::blank(Operation::Write, path, volume)
    }

    /// A record of `operation` with every operation-specific field zero and no target.
    pub fn blank(operation: Operation, path: Utf16Path<'a>, volume: Utf16Path<'a>) -> Self {
        Self {
            sequence: 0,
            timestamp: 0,
            operation,
            flags: RecordFlags::empty(),
            pid: 0,
            tid: 0,
            process_create_time: 0,
            status: 0,
            information: 0,
            create_disposition: 0,
            create_options: 0,
            desired_access: 0,
            share_access: 0,
            write_offset: 0,
            write_length: 0,
            path,
            volume,
            target: Utf16Path::EMPTY,
        }
    }

    /// The target as encoded: empty unless the operation carries one.
    fn wire_target(&self) -> Utf16Path<'a> {
        if self.operation.has_target() {
            self.target
        } else {
            Utf16Path::EMPTY
        }
    }

    /// Bytes this record occupies on the wire.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN
            + self.path.as_le_bytes().len()
            + self.volume.as_le_bytes().len()
            + self.wire_target().as_le_bytes().len()
    }

    /// Writes the record into the front of `dst` with the given sequence number, returning the
    /// bytes written. Fields that do not apply to the operation are written as zero, so the
    /// output always decodes.
    pub fn encode_with_sequence(
        &self,
        sequence: u64,
        dst: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let len = self.encoded_len();
        ensure_capacity(dst, len)?;
        let create = self.operation == Operation::Create;
        let write = self.operation.has_range();
        let target = self.wire_target();
        let only = |applies: bool, v: u32| if applies { v } else { 0 };
        // The fixed header is built in a local array at constant offsets (no bounds checks
        // survive), then copied once; this is the driver's per-event hot path.
        let mut h = [0u8; RECORD_HEADER_LEN];
        // `len` fits in u32: both strings are bounded by Utf16Path's invariant.
        put(&mut h, 0, &(len as u32).to_le_bytes());
        h[4] = RECORD_VERSION;
        h[5] = self.operation as u8;
        put(&mut h, 6, &self.flags.bits().to_le_bytes());
        put(&mut h, 8, &sequence.to_le_bytes());
        put(&mut h, 16, &self.timestamp.to_le_bytes());
        put(&mut h, 24, &self.process_create_time.to_le_bytes());
        put(&mut h, 32, &self.pid.to_le_bytes());
        put(&mut h, 36, &self.tid.to_le_bytes());
        put(&mut h, 40, &self.status.to_le_bytes());
        put(
            &mut h,
            44,
            &only(create, self.create_disposition).to_le_bytes(),
        );
        put(&mut h, 48, &self.information.to_le_bytes());
        put(
            &mut h,
            56,
            &(if write { self.write_offset } else { 0 }).to_le_bytes(),
        );
        put(&mut h, 64, &only(write, self.write_length).to_le_bytes());
        put(&mut h, 68, &only(create, self.create_options).to_le_bytes());
        put(&mut h, 72, &only(create, self.desired_access).to_le_bytes());
        put(&mut h, 76, &only(create, self.share_access).to_le_bytes());
        put(&mut h, 80, &(self.path.units() as u16).to_le_bytes());
        put(&mut h, 82, &(self.volume.units() as u16).to_le_bytes());
        put(&mut h, 84, &(target.units() as u16).to_le_bytes());
        // 86..88 reserved, zero.
        let mut w = Writer::new(dst);
        w.put(&h)?;
        w.put(self.path.as_le_bytes())?;
        w.put(self.volume.as_le_bytes())?;
        w.put(target.as_le_bytes())?;
        Ok(w.position())
    }

    /// Writes the record with its own `sequence`.
    pub fn encode(&self, dst: &mut [u8]) -> Result<usize, EncodeError> {
        self.encode_with_sequence(self.sequence, dst)
    }

    /// Decodes one record from the front of `src`; returns it and the bytes it used. `base` is
    /// the offset of `src` inside the caller's buffer, for error offsets.
    pub fn decode_prefix(src: &'a [u8], base: usize) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(src, base);
        let record_len = r.u32()?;
        if (record_len as usize) < RECORD_HEADER_LEN {
            return Err(r.error_at(
                0,
                DecodeErrorKind::LengthMismatch {
                    declared: record_len.into(),
                    actual: RECORD_HEADER_LEN as u64,
                },
            ));
        }
        let limit = crate::MAX_RECORD_BYTES as u64;
        if u64::from(record_len) > limit {
            return Err(r.error_at(
                0,
                DecodeErrorKind::TooLong {
                    declared: record_len.into(),
                    limit,
                },
            ));
        }
        if src.len() < record_len as usize {
            return Err(r.error_at(
                0,
                DecodeErrorKind::Truncated {
                    needed: record_len as usize,
                    available: src.len(),
                },
            ));
        }
        // From here on, read only inside the record's own length.
        let body = src.get(..record_len as usize).unwrap_or(&[]);
        let mut r = Reader::new(body, base);
        r.u32()?;
        let version_at = r.offset();
        let version = r.u8()?;
        if version != RECORD_VERSION {
            return Err(DecodeError {
                kind: DecodeErrorKind::UnsupportedVersion(version.into()),
                offset: version_at,
            });
        }
        let op_at = r.offset();
        let op_raw = r.u8()?;
        let operation = Operation::from_u8(op_raw).ok_or(DecodeError {
            kind: DecodeErrorKind::BadEnum {
                field: "operation",
                value: op_raw.into(),
            },
            offset: op_at,
        })?;
        let flags_at = r.offset();
        let flags_raw = r.u16()?;
        let flags = RecordFlags::from_bits(flags_raw).ok_or(DecodeError {
            kind: DecodeErrorKind::NonZeroReserved {
                field: "flags bits",
            },
            offset: flags_at,
        })?;
        let sequence = r.u64()?;
        let timestamp = r.u64()?;
        let process_create_time = r.u64()?;
        let pid = r.u32()?;
        let tid = r.u32()?;
        let status = r.u32()?;
        let is_create = operation == Operation::Create;
        let is_write = operation.has_range();
        let create_disposition = applicable(&mut r, is_create, "create_disposition")?;
        let information = r.u64()?;
        let off_at = r.offset();
        let write_offset = r.u64()?;
        if !is_write && write_offset != 0 {
            return Err(DecodeError {
                kind: DecodeErrorKind::FieldNotApplicable {
                    field: "write_offset",
                },
                offset: off_at,
            });
        }
        let write_length = applicable(&mut r, is_write, "write_length")?;
        let create_options = applicable(&mut r, is_create, "create_options")?;
        let desired_access = applicable(&mut r, is_create, "desired_access")?;
        let share_access = applicable(&mut r, is_create, "share_access")?;
        let path_at = r.offset();
        let path_units = r.u16()? as usize;
        let volume_at = r.offset();
        let volume_units = r.u16()? as usize;
        if path_units > MAX_PATH_UNITS {
            return Err(DecodeError {
                kind: DecodeErrorKind::TooLong {
                    declared: path_units as u64,
                    limit: MAX_PATH_UNITS as u64,
                },
                offset: path_at,
            });
        }
        if volume_units > MAX_VOLUME_UNITS {
            return Err(DecodeError {
                kind: DecodeErrorKind::TooLong {
                    declared: volume_units as u64,
                    limit: MAX_VOLUME_UNITS as u64,
                },
                offset: volume_at,
            });
        }
        let target_at = r.offset();
        let target_units = r.u16()? as usize;
        if target_units != 0 && !operation.has_target() {
            return Err(DecodeError {
                kind: DecodeErrorKind::FieldNotApplicable {
                    field: "target_units",
                },
                offset: target_at,
            });
        }
        if target_units > MAX_TARGET_UNITS {
            return Err(DecodeError {
                kind: DecodeErrorKind::TooLong {
                    declared: target_units as u64,
                    limit: MAX_TARGET_UNITS as u64,
                },
                offset: target_at,
            });
        }
        let reserved_at = r.offset();
        if r.u16()? != 0 {
            return Err(DecodeError {
                kind: DecodeErrorKind::NonZeroReserved {
                    field: "record reserved",
                },
                offset: reserved_at,
            });
        }
        let expected = RECORD_HEADER_LEN + 2 * (path_units + volume_units + target_units);
        if expected != record_len as usize {
            return Err(DecodeError {
                kind: DecodeErrorKind::LengthMismatch {
                    declared: record_len.into(),
                    actual: expected as u64,
                },
                offset: base,
            });
        }
        let path = Utf16Path(r.take(path_units * 2)?);
        let volume = Utf16Path(r.take(volume_units * 2)?);
        let target = Utf16Path(r.take(target_units * 2)?);
        r.finish()?;
        Ok((
            Self {
                sequence,
                timestamp,
                operation,
                flags,
                pid,
                tid,
                process_create_time,
                status,
                information,
                create_disposition,
                create_options,
                desired_access,
                share_access,
                write_offset,
                write_length,
                path,
                volume,
                target,
            },
            record_len as usize,
        ))
    }

    /// Decodes exactly one record that fills `src`.
    pub fn decode(src: &'a [u8]) -> Result<Self, DecodeError> {
        let (rec, used) = Self::decode_prefix(src, 0)?;
        if used != src.len() {
            return Err(DecodeError {
                kind: DecodeErrorKind::TrailingBytes(src.len() - used),
                offset: used,
            });
        }
        Ok(rec)
    }
}

/// Copies `bytes` into the header at a constant offset (inlined: the checks fold away).
#[inline(always)]
fn put<const N: usize>(h: &mut [u8; RECORD_HEADER_LEN], at: usize, bytes: &[u8; N]) {
    if let Some(dst) = h.get_mut(at..at + N) {
        dst.copy_from_slice(bytes);
    }
}

/// Reads a u32 that must be zero unless it applies to the record's operation.
fn applicable(r: &mut Reader<'_>, applies: bool, field: &'static str) -> Result<u32, DecodeError> {
    let at = r.offset();
    let v = r.u32()?;
    if !applies && v != 0 {
        return Err(DecodeError {
            kind: DecodeErrorKind::FieldNotApplicable { field },
            offset: at,
        });
    }
    Ok(v)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
