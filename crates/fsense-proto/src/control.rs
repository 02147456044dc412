//! Control messages: fixed-size, range-checked structures in both directions.
//!
//! User mode to kernel, only two shapes exist, both fixed-size: [`Hello`] (the connection context
//! of `FilterConnectCommunicationPort`, captured by the Filter Manager) and [`ControlReply`] (the
//! reply to a [`Health`] message, captured by the Filter Manager into the driver's reply buffer).
//! The driver parses nothing else from user mode.

use crate::bytes::{Reader, Writer, ensure_capacity};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::{
    CONTENT_VERSION_SINCE, LOAD_ID_SINCE, MAX_PATH_UNITS, MIN_PROTOCOL_VERSION,
    NAMESPACE_OPS_SINCE, PROTOCOL_VERSION,
};

fn expect_magic(r: &mut Reader<'_>, magic: u32) -> Result<(), DecodeError> {
    let found = r.u32()?;
    if found == magic {
        Ok(())
    } else {
        Err(r.error_at(0, DecodeErrorKind::BadMagic(found)))
    }
}

fn expect_exact_len(src: &[u8], len: usize) -> Result<(), DecodeError> {
    if src.len() == len {
        Ok(())
    } else {
        Err(DecodeError {
            kind: DecodeErrorKind::LengthMismatch {
                declared: len as u64,
                actual: src.len() as u64,
            },
            offset: 0,
        })
    }
}

fn zero_u32(r: &mut Reader<'_>, field: &'static str) -> Result<(), DecodeError> {
    let at = r.offset();
    if r.u32()? == 0 {
        Ok(())
    } else {
        Err(DecodeError {
            kind: DecodeErrorKind::NonZeroReserved { field },
            offset: at,
        })
    }
}

/// The consumer's greeting, sent as the connection context. Offers a range of protocol versions.
///
/// Layout (16 bytes): magic `FSHI`, u16 min version, u16 max version, u32 flags (0), u32 reserved (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub min_version: u16,
    pub max_version: u16,
}

impl Hello {
    pub const MAGIC: u32 = u32::from_le_bytes(*b"FSHI");
    pub const LEN: usize = 16;

    /// The hello this build sends.
    pub const fn current() -> Self {
        Self {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
        }
    }

    /// The highest version both sides speak, or `None` if the ranges do not meet.
    pub fn negotiate(&self) -> Option<u16> {
        let high = self.max_version.min(PROTOCOL_VERSION);
        let low = self.min_version.max(MIN_PROTOCOL_VERSION);
        (low <= high).then_some(high)
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let mut w = Writer::new(&mut out);
        // The array has exactly LEN bytes: these writes cannot fail.
        let _ = w.u32(Self::MAGIC);
        let _ = w.u16(self.min_version);
        let _ = w.u16(self.max_version);
        out
    }

    pub fn decode(src: &[u8]) -> Result<Self, DecodeError> {
        expect_exact_len(src, Self::LEN)?;
        let mut r = Reader::new(src, 0);
        expect_magic(&mut r, Self::MAGIC)?;
        let min_version = r.u16()?;
        let max_version = r.u16()?;
        if min_version > max_version {
            return Err(r.error_at(
                4,
                DecodeErrorKind::OutOfRange {
                    field: "hello min_version above max_version",
                    value: min_version.into(),
                },
            ));
        }
        zero_u32(&mut r, "hello flags")?;
        zero_u32(&mut r, "hello reserved")?;
        Ok(Self {
            min_version,
            max_version,
        })
    }
}

/// The sensor's configuration: the only content-derived data that ever reaches the kernel, and it
/// is a fixed-size struct of range-checked numbers.
///
/// Layout (16 bytes): u32 config version, u32 flags, u32 max path units (1..=32767), u32 reserved (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorConfig {
    pub config_version: u32,
    pub flags: u32,
    pub max_path_units: u32,
}

impl SensorConfig {
    pub const LEN: usize = 16;
    /// Report creates.
    pub const REPORT_CREATES: u32 = 1 << 0;
    /// Report writes.
    pub const REPORT_WRITES: u32 = 1 << 1;
    /// Report paging-I/O writes too. Off by default: most repeat cached writes already reported,
    /// but writes through a mapped view reach the file system *only* as paging I/O, so without
    /// this flag they are not reported at all.
    pub const REPORT_PAGING_IO: u32 = 1 << 2;
    /// Report creates that failed.
    pub const REPORT_FAILED_CREATES: u32 = 1 << 3;
    pub const ALL_FLAGS: u32 = 0b1111;

    /// What the driver runs with until a consumer sends something else.
    pub const DEFAULT: Self = Self {
        config_version: 0,
        flags: Self::REPORT_CREATES | Self::REPORT_WRITES | Self::REPORT_FAILED_CREATES,
        max_path_units: MAX_PATH_UNITS as u32,
    };

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }

    fn encode_into(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(self.config_version)?;
        w.u32(self.flags)?;
        w.u32(self.max_path_units)?;
        w.u32(0)
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let config_version = r.u32()?;
        let flags_at = r.offset();
        let flags = r.u32()?;
        if flags & !Self::ALL_FLAGS != 0 {
            return Err(DecodeError {
                kind: DecodeErrorKind::NonZeroReserved {
                    field: "config flags",
                },
                offset: flags_at,
            });
        }
        let units_at = r.offset();
        let max_path_units = r.u32()?;
        if !(1..=MAX_PATH_UNITS as u32).contains(&max_path_units) {
            return Err(DecodeError {
                kind: DecodeErrorKind::OutOfRange {
                    field: "max_path_units",
                    value: max_path_units.into(),
                },
                offset: units_at,
            });
        }
        zero_u32(r, "config reserved")?;
        Ok(Self {
            config_version,
            flags,
            max_path_units,
        })
    }
}

/// What a [`ControlReply`] asks of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ReplyKind {
    /// Acknowledge events up to `acked_sequence`; nothing else.
    Ack = 1,
    /// Acknowledge, and switch to the attached configuration.
    SetConfig = 2,
}

/// The consumer's answer to a [`Health`] message.
///
/// Layout (40 bytes): magic `FSRP`, u16 kind, u16 flags, u64 poll id (echoed), u64 acked
/// sequence, then 16 bytes: a [`SensorConfig`] when kind is SetConfig; on an Ack with flag
/// [`ControlReply::FLAG_CONTENT_VERSION`] (protocol 2), the u64 content version and 8 zero
/// bytes; otherwise all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlReply {
    pub kind: ReplyKind,
    pub poll_id: u64,
    pub acked_sequence: u64,
    pub config: Option<SensorConfig>,
    /// The version of the content (rules) the consumer runs; acks only. Send it only to a
    /// driver whose health says protocol [`CONTENT_VERSION_SINCE`] or later: an older driver
    /// refuses the flag.
    pub content_version: Option<u64>,
}

impl ControlReply {
    pub const MAGIC: u32 = u32::from_le_bytes(*b"FSRP");
    pub const LEN: usize = 40;
    /// Flag: the ack carries a content version.
    pub const FLAG_CONTENT_VERSION: u16 = 1;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let mut w = Writer::new(&mut out);
        let flags = if self.content_version.is_some() {
            Self::FLAG_CONTENT_VERSION
        } else {
            0
        };
        // The array has exactly LEN bytes: these writes cannot fail.
        let _ = w.u32(Self::MAGIC);
        let _ = w.u16(self.kind as u16);
        let _ = w.u16(flags);
        let _ = w.u64(self.poll_id);
        let _ = w.u64(self.acked_sequence);
        if let Some(config) = &self.config {
            let _ = config.encode_into(&mut w);
        } else if let Some(version) = self.content_version {
            let _ = w.u64(version);
        }
        out
    }

    /// The ack for `health`: echoes its poll id, acknowledges up to `acked_sequence`, and
    /// carries `content_version` when the driver's protocol version accepts it.
    pub fn ack_for(health: &Health, acked_sequence: u64, content_version: Option<u64>) -> Self {
        Self {
            kind: ReplyKind::Ack,
            poll_id: health.poll_id,
            acked_sequence,
            config: None,
            content_version: content_version
                .filter(|_| health.protocol_version >= CONTENT_VERSION_SINCE),
        }
    }

    pub fn decode(src: &[u8]) -> Result<Self, DecodeError> {
        expect_exact_len(src, Self::LEN)?;
        let mut r = Reader::new(src, 0);
        expect_magic(&mut r, Self::MAGIC)?;
        let kind_raw = r.u16()?;
        let kind = match kind_raw {
            1 => ReplyKind::Ack,
            2 => ReplyKind::SetConfig,
            v => {
                return Err(r.error_at(
                    4,
                    DecodeErrorKind::BadEnum {
                        field: "reply kind",
                        value: v.into(),
                    },
                ));
            }
        };
        let flags = r.u16()?;
        if flags & !Self::FLAG_CONTENT_VERSION != 0 {
            return Err(r.error_at(
                6,
                DecodeErrorKind::NonZeroReserved {
                    field: "reply flags",
                },
            ));
        }
        let has_content_version = flags & Self::FLAG_CONTENT_VERSION != 0;
        if has_content_version && kind != ReplyKind::Ack {
            return Err(r.error_at(
                6,
                DecodeErrorKind::FieldNotApplicable {
                    field: "content version on a set-config reply",
                },
            ));
        }
        let poll_id = r.u64()?;
        let acked_sequence = r.u64()?;
        let (config, content_version) = match kind {
            ReplyKind::SetConfig => (Some(SensorConfig::decode_from(&mut r)?), None),
            ReplyKind::Ack => {
                let (content_version, unused_at) = if has_content_version {
                    (Some(r.u64()?), 32)
                } else {
                    (None, 24)
                };
                let rest = r.take(Self::LEN - unused_at)?;
                if rest.iter().any(|&b| b != 0) {
                    return Err(r.error_at(
                        unused_at,
                        DecodeErrorKind::FieldNotApplicable {
                            field: "config on an ack",
                        },
                    ));
                }
                (None, content_version)
            }
        };
        r.finish()?;
        Ok(Self {
            kind,
            poll_id,
            acked_sequence,
            config,
            content_version,
        })
    }
}

/// The driver's health snapshot, sent in-band periodically; the consumer answers each with a
/// [`ControlReply`] echoing `poll_id`.
///
/// Layout (protocol 1 and 2: [`Health::LEN_BEFORE_LOAD_ID`] = 136 bytes): magic `FSHL`, u16
/// protocol version, u16 length (136), u32 driver version (major << 16 | minor << 8 | patch),
/// u32 config version, 16-byte build id, then the u64 counters in field order, u32 queue
/// high-water, u32 queue capacity, u32 active sensor flags, u32 reserved (0). Protocol
/// [`LOAD_ID_SINCE`] (3): [`Health::LEN_BEFORE_NAMESPACE_OPS`] = 144 bytes, length field 144,
/// the same followed by the u64 load id (a driver never sends 0). Protocol
/// [`NAMESPACE_OPS_SINCE`] (4) and later: [`Health::LEN`] = 160 bytes, length field 160, the same
/// followed by the u64 [`Health::withheld_old_protocol`] and the u64 [`Health::buffers_rejected`].
///
/// `sensor_flags` holds the active [`SensorConfig`] flags, and [`Health::WITHHELD_KINDS`] when
/// the driver has withheld records the connected consumer's protocol cannot carry: the one way
/// an older consumer (which has no room for the counter) learns why it sees no deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    pub protocol_version: u16,
    pub driver_version: u32,
    pub config_version: u32,
    pub build_id: [u8; 16],
    pub poll_id: u64,
    /// Sequence numbers assigned (every event the sensor saw and kept or dropped).
    pub events_generated: u64,
    /// Events in batches the port accepted.
    pub events_sent: u64,
    /// Events dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Events lost in batches the port did not accept (timeout, no consumer, disconnect).
    pub dropped_send: u64,
    pub send_timeouts: u64,
    pub send_failures: u64,
    pub batches_sent: u64,
    /// Replies the driver rejected as malformed.
    pub replies_rejected: u64,
    pub acked_sequence: u64,
    /// Events not reported because the connected consumer itself did the I/O.
    pub self_excluded: u64,
    pub queue_high_water: u32,
    pub queue_capacity: u32,
    pub sensor_flags: u32,
    /// Which load of the driver sent this (protocol [`LOAD_ID_SINCE`] and later; 0 before).
    /// Two loads never share one within a boot: a reloaded driver is a new load, whatever its
    /// counters say, and its sequence numbers and losses are its own.
    pub load_id: u64,
    /// Records of operations the consumer's protocol cannot carry (delete, rename, link, clone
    /// to a consumer below protocol [`NAMESPACE_OPS_SINCE`]), not sent, since load. Protocol 4
    /// and later (0 before; an older consumer sees [`Health::WITHHELD_KINDS`] instead).
    pub withheld_old_protocol: u64,
    /// Requests whose variable-length buffers were malformed or hostile (a name length past
    /// the buffer, a short FSCTL input, an unknown structure version): rejected unread and not
    /// reported, since load. Protocol 4 and later (0 before).
    pub buffers_rejected: u64,
}

impl Health {
    pub const MAGIC: u32 = u32::from_le_bytes(*b"FSHL");
    /// The largest health message (protocol [`NAMESPACE_OPS_SINCE`] and later): size buffers by it.
    pub const LEN: usize = 160;
    /// A health message of protocol 3 (load id, no protocol-4 counters).
    pub const LEN_BEFORE_NAMESPACE_OPS: usize = 144;
    /// A health message of protocol 1 or 2 (no load id).
    pub const LEN_BEFORE_LOAD_ID: usize = 136;
    /// Sensor flag: records were withheld from this consumer because its protocol cannot carry
    /// them (above every [`SensorConfig`] flag).
    pub const WITHHELD_KINDS: u32 = 1 << 31;

    /// The encoded size of a health message of `protocol_version`.
    pub const fn len_for(protocol_version: u16) -> usize {
        if protocol_version >= NAMESPACE_OPS_SINCE {
            Self::LEN
        } else if protocol_version >= LOAD_ID_SINCE {
            Self::LEN_BEFORE_NAMESPACE_OPS
        } else {
            Self::LEN_BEFORE_LOAD_ID
        }
    }

    /// Total events lost, for any reason (records withheld from an older consumer included:
    /// they had sequence numbers).
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            .saturating_add(self.dropped_send)
            .saturating_add(self.withheld_old_protocol)
    }

    /// `major.minor.patch` of `driver_version`.
    pub fn driver_version_parts(&self) -> (u32, u32, u32) {
        let v = self.driver_version;
        (v >> 16, (v >> 8) & 0xff, v & 0xff)
    }

    /// Writes the layout of `protocol_version`; a load id needs protocol [`LOAD_ID_SINCE`].
    pub fn encode(&self, dst: &mut [u8]) -> Result<usize, EncodeError> {
        let len = Self::len_for(self.protocol_version);
        let with_load_id = len >= Self::LEN_BEFORE_NAMESPACE_OPS;
        let with_v4 = len == Self::LEN;
        let absent = [
            (with_load_id, self.load_id, "health load id"),
            (with_v4, self.withheld_old_protocol, "health withheld count"),
            (with_v4, self.buffers_rejected, "health rejected buffers"),
        ];
        for (present, value, field) in absent {
            if !present && value != 0 {
                return Err(EncodeError::FieldNotInVersion {
                    field,
                    version: self.protocol_version,
                });
            }
        }
        ensure_capacity(dst, len)?;
        let mut w = Writer::new(dst);
        w.u32(Self::MAGIC)?;
        w.u16(self.protocol_version)?;
        w.u16(len as u16)?;
        w.u32(self.driver_version)?;
        w.u32(self.config_version)?;
        w.put(&self.build_id)?;
        for v in self.counters() {
            w.u64(v)?;
        }
        w.u32(self.queue_high_water)?;
        w.u32(self.queue_capacity)?;
        w.u32(self.sensor_flags)?;
        w.u32(0)?;
        if with_load_id {
            w.u64(self.load_id)?;
        }
        if with_v4 {
            w.u64(self.withheld_old_protocol)?;
            w.u64(self.buffers_rejected)?;
        }
        Ok(w.position())
    }

    fn counters(&self) -> [u64; 11] {
        [
            self.poll_id,
            self.events_generated,
            self.events_sent,
            self.dropped_queue_full,
            self.dropped_send,
            self.send_timeouts,
            self.send_failures,
            self.batches_sent,
            self.replies_rejected,
            self.acked_sequence,
            self.self_excluded,
        ]
    }

    pub fn decode(src: &[u8]) -> Result<Self, DecodeError> {
        if src.len() != Self::LEN_BEFORE_LOAD_ID && src.len() != Self::LEN_BEFORE_NAMESPACE_OPS {
            expect_exact_len(src, Self::LEN)?;
        }
        let mut r = Reader::new(src, 0);
        expect_magic(&mut r, Self::MAGIC)?;
        let protocol_version = r.u16()?;
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol_version) {
            return Err(r.error_at(4, DecodeErrorKind::UnsupportedVersion(protocol_version)));
        }
        let expected = Self::len_for(protocol_version);
        let len = r.u16()?;
        if usize::from(len) != expected {
            return Err(r.error_at(6, DecodeErrorKind::BadHeaderLength(len.into())));
        }
        expect_exact_len(src, expected)?;
        let driver_version = r.u32()?;
        let config_version = r.u32()?;
        let build_id = r.bytes16()?;
        let mut c = [0u64; 11];
        for v in &mut c {
            *v = r.u64()?;
        }
        let queue_high_water = r.u32()?;
        let queue_capacity = r.u32()?;
        let sensor_flags = r.u32()?;
        zero_u32(&mut r, "health reserved")?;
        let load_id = if expected >= Self::LEN_BEFORE_NAMESPACE_OPS {
            r.u64()?
        } else {
            0
        };
        let (withheld_old_protocol, buffers_rejected) = if expected == Self::LEN {
            (r.u64()?, r.u64()?)
        } else {
            (0, 0)
        };
        r.finish()?;
        let [
            poll_id,
            events_generated,
            events_sent,
            dropped_queue_full,
            dropped_send,
            send_timeouts,
            send_failures,
            batches_sent,
            replies_rejected,
            acked_sequence,
            self_excluded,
        ] = c;
        Ok(Self {
            protocol_version,
            driver_version,
            config_version,
            build_id,
            poll_id,
            events_generated,
            events_sent,
            dropped_queue_full,
            dropped_send,
            send_timeouts,
            send_failures,
            batches_sent,
            replies_rejected,
            acked_sequence,
            self_excluded,
            queue_high_water,
            queue_capacity,
            sensor_flags,
            load_id,
            withheld_old_protocol,
            buffers_rejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_negotiates_the_highest_common_version() {
        assert_eq!(Hello::current().negotiate(), Some(PROTOCOL_VERSION));
        let future = Hello {
            min_version: PROTOCOL_VERSION + 1,
            max_version: PROTOCOL_VERSION + 5,
        };
        assert_eq!(future.negotiate(), None);
        let bytes = Hello::current().encode();
        assert_eq!(Hello::decode(&bytes), Ok(Hello::current()));
        assert!(Hello::decode(&bytes[..15]).is_err());
    }

    #[test]
    fn config_out_of_range_is_rejected() {
        let mut bytes = ControlReply {
            kind: ReplyKind::SetConfig,
            poll_id: 1,
            acked_sequence: 2,
            config: Some(SensorConfig::DEFAULT),
            content_version: None,
        }
        .encode();
        assert!(ControlReply::decode(&bytes).is_ok());
        bytes[32..36].copy_from_slice(&0u32.to_le_bytes()); // max_path_units = 0
        let err = ControlReply::decode(&bytes).unwrap_err();
        assert_eq!(err.offset, 32);
        assert!(matches!(err.kind, DecodeErrorKind::OutOfRange { .. }));
    }

    #[test]
    fn ack_with_config_bytes_is_rejected() {
        let mut bytes = ControlReply {
            kind: ReplyKind::Ack,
            poll_id: 1,
            acked_sequence: 2,
            config: None,
            content_version: None,
        }
        .encode();
        bytes[30] = 1;
        assert!(ControlReply::decode(&bytes).is_err());
    }

    #[test]
    fn health_round_trips() {
        let h = Health {
            protocol_version: PROTOCOL_VERSION,
            load_id: 7,
            driver_version: 0x0001_0200,
            events_generated: 10,
            dropped_send: 3,
            queue_capacity: 4096,
            ..Health::default()
        };
        let mut buf = [0u8; Health::LEN];
        assert_eq!(h.encode(&mut buf), Ok(Health::LEN));
        assert_eq!(Health::decode(&buf), Ok(h));
        assert_eq!(h.driver_version_parts(), (1, 2, 0));
    }
}
