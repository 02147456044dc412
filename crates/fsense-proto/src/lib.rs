//! The fsense wire format: the one crate both sides of the kernel boundary share.
//!
//! Everything here is `no_std`, allocation-free and safe. The driver uses it to encode event records
//! into its pre-allocated queue and to pack them into batch messages; the consumer uses the same code
//! to decode them. Every length read from the other side is untrusted: decoding is total (any byte
//! string yields values or a typed [`DecodeError`], never a panic, never a read past the enclosing
//! length, never an allocation sized by an untrusted field) and canonical (anything that decodes
//! re-encodes to the same bytes, so a flipped bit is either data or an error, never a silent
//! reinterpretation).
//!
//! All integers are little-endian. Layouts are documented on each type and in `docs/wire-format.md`.
#![no_std]
#![forbid(unsafe_code)]

pub mod batch;
mod bytes;
pub mod control;
mod error;
pub mod message;
pub mod queue;
pub mod record;
pub mod seq;

pub use batch::{BatchHeader, BatchView, BatchWriter};
pub use control::{ControlReply, Health, Hello, ReplyKind, SensorConfig};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use message::Message;
pub use queue::{EventQueue, PushOutcome};
pub use record::{EventRecord, Operation, RecordFlags, Utf16Path};
pub use seq::{GapReport, SeqTracker};

/// The protocol version this build speaks. Bumped on any incompatible change of a layout below.
/// Version 2 adds the consumer's content version to its acks ([`ControlReply::content_version`]);
/// version 3 adds the driver's per-load identity to its health ([`Health::load_id`]); version 4
/// adds the delete, rename, link and clone records, the record's `target` string and the flags
/// that go with them, and two health counters ([`Health::withheld_old_protocol`],
/// [`Health::buffers_rejected`]). A driver
/// reports the version it negotiated with the connected consumer in its [`Health`], and lays the
/// health out for that version.
pub const PROTOCOL_VERSION: u16 = 4;
/// The oldest protocol version this build can still decode.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// The first protocol version whose driver accepts [`ControlReply::content_version`].
pub const CONTENT_VERSION_SINCE: u16 = 2;
/// The first protocol version whose [`Health`] carries [`Health::load_id`] (144 bytes, not 136).
pub const LOAD_ID_SINCE: u16 = 3;
/// The first protocol version with [`Operation::Delete`], `Rename`, `Link` and `Clone` records,
/// the record `target` and the protocol-4 health counters (160 bytes).
pub const NAMESPACE_OPS_SINCE: u16 = 4;

/// Longest path a record can carry, in UTF-16 units (the NT limit for a full path).
pub const MAX_PATH_UNITS: usize = 32_767;
/// Longest volume name a record can carry, in UTF-16 units.
pub const MAX_VOLUME_UNITS: usize = 32_767;
/// Longest target name a record can carry, in UTF-16 units.
pub const MAX_TARGET_UNITS: usize = 32_767;
/// Largest encoded record: the fixed header plus the longest path, volume and target.
pub const MAX_RECORD_BYTES: usize =
    record::RECORD_HEADER_LEN + 2 * (MAX_PATH_UNITS + MAX_VOLUME_UNITS + MAX_TARGET_UNITS);
/// Largest batch message either side will produce or accept. Always fits one maximal record.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Largest message of any kind on the port (batches are the largest).
pub const MAX_MESSAGE_BYTES: usize = MAX_BATCH_BYTES;

const _: () = assert!(batch::BATCH_HEADER_LEN + MAX_RECORD_BYTES <= MAX_BATCH_BYTES);
