//! Typed errors for encoding and decoding.

use core::fmt;

/// Why a byte string was rejected, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// Byte offset, from the start of the buffer handed to the decoder, of the field at fault.
    pub offset: usize,
}

/// What was wrong with a byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The buffer ends before the structure does.
    Truncated { needed: usize, available: usize },
    /// A magic number does not name a known message.
    BadMagic(u32),
    /// A version this build does not speak.
    UnsupportedVersion(u16),
    /// A header length field disagrees with the fixed layout.
    BadHeaderLength(u32),
    /// A length field disagrees with the data it frames.
    LengthMismatch { declared: u64, actual: u64 },
    /// A length field exceeds the protocol's limit.
    TooLong { declared: u64, limit: u64 },
    /// An enumeration field holds a value with no meaning.
    BadEnum { field: &'static str, value: u32 },
    /// Reserved bits or bytes are not zero.
    NonZeroReserved { field: &'static str },
    /// A field that does not apply to this record's operation is not zero.
    FieldNotApplicable { field: &'static str },
    /// Sequence numbers inside a batch are not strictly increasing, or disagree with the header.
    BadSequence { expected_above: u64, found: u64 },
    /// A value outside its documented range.
    OutOfRange { field: &'static str, value: u64 },
    /// Bytes follow the last structure inside its enclosing length.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte offset {}", self.kind, self.offset)
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: needed {needed} bytes, {available} available")
            }
            Self::BadMagic(m) => write!(f, "unknown magic {m:#010x}"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            Self::BadHeaderLength(l) => write!(f, "bad header length {l}"),
            Self::LengthMismatch { declared, actual } => {
                write!(f, "length field says {declared} but the data is {actual}")
            }
            Self::TooLong { declared, limit } => {
                write!(f, "length {declared} exceeds the limit {limit}")
            }
            Self::BadEnum { field, value } => write!(f, "invalid {field} value {value}"),
            Self::NonZeroReserved { field } => write!(f, "reserved {field} is not zero"),
            Self::FieldNotApplicable { field } => {
                write!(f, "{field} is set on an operation it does not apply to")
            }
            Self::BadSequence {
                expected_above,
                found,
            } => write!(
                f,
                "sequence number {found} does not follow {expected_above}"
            ),
            Self::OutOfRange { field, value } => write!(f, "{field} value {value} out of range"),
            Self::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why an encoder could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The destination buffer is too small for the value.
    BufferTooSmall { needed: usize, available: usize },
    /// A value exceeds a protocol limit (e.g. a path longer than [`crate::MAX_PATH_UNITS`]).
    TooLong { len: usize, limit: usize },
    /// UTF-16 bytes of odd length: not a whole number of units.
    OddUtf16Length(usize),
    /// A record's sequence number does not follow the previous one in the batch.
    SequenceNotIncreasing { previous: u64, found: u64 },
    /// A field set that the message's protocol version has no place for.
    FieldNotInVersion { field: &'static str, version: u16 },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed, available } => {
                write!(f, "buffer too small: need {needed} bytes, have {available}")
            }
            Self::TooLong { len, limit } => write!(f, "length {len} exceeds the limit {limit}"),
            Self::OddUtf16Length(n) => write!(f, "UTF-16 string of odd byte length {n}"),
            Self::SequenceNotIncreasing { previous, found } => {
                write!(f, "sequence number {found} does not follow {previous}")
            }
            Self::FieldNotInVersion { field, version } => {
                write!(f, "{field} is set but protocol {version} does not carry it")
            }
        }
    }
}

impl core::error::Error for EncodeError {}
