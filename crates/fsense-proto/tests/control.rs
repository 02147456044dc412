//! Control messages round-trip, and every out-of-range value is rejected at its own offset.

mod common;

use common::config;
use fsense_proto::{
    CONTENT_VERSION_SINCE, ControlReply, DecodeErrorKind, EncodeError, Health, Hello,
    LOAD_ID_SINCE, MIN_PROTOCOL_VERSION, NAMESPACE_OPS_SINCE, PROTOCOL_VERSION, ReplyKind,
    SensorConfig,
};
use proptest::prelude::*;

fn valid_config() -> impl Strategy<Value = SensorConfig> {
    (any::<u32>(), 0..=SensorConfig::ALL_FLAGS, 1u32..=32_767).prop_map(
        |(config_version, flags, max_path_units)| SensorConfig {
            config_version,
            flags,
            max_path_units,
        },
    )
}

/// A health of any protocol version this build speaks, with a load id where the version has one.
fn health() -> impl Strategy<Value = Health> {
    (
        (any::<u32>(), any::<u32>(), any::<[u8; 16]>()),
        any::<[u64; 11]>(),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION, any::<u64>()),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (driver_version, config_version, build_id),
                c,
                (high, cap, flags),
                (v, id),
                (w, b),
            )| Health {
                protocol_version: v,
                load_id: if v >= LOAD_ID_SINCE { id } else { 0 },
                withheld_old_protocol: if v >= NAMESPACE_OPS_SINCE { w } else { 0 },
                buffers_rejected: if v >= NAMESPACE_OPS_SINCE { b } else { 0 },
                driver_version,
                config_version,
                build_id,
                poll_id: c[0],
                events_generated: c[1],
                events_sent: c[2],
                dropped_queue_full: c[3],
                dropped_send: c[4],
                send_timeouts: c[5],
                send_failures: c[6],
                batches_sent: c[7],
                replies_rejected: c[8],
                acked_sequence: c[9],
                self_excluded: c[10],
                queue_high_water: high,
                queue_capacity: cap,
                sensor_flags: flags,
            },
        )
}

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A peer that speaks exactly one version (min == max) is a valid hello: the random pairs of the
/// property below almost never draw two equal versions.
#[test]
fn a_hello_for_a_single_version_round_trips() {
    for version in [0, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, u16::MAX] {
        let hello = Hello {
            min_version: version,
            max_version: version,
        };
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn hello_round_trips_when_ordered(a in any::<u16>(), b in any::<u16>()) {
        let hello = Hello { min_version: a.min(b), max_version: a.max(b) };
        let bytes = hello.encode();
        prop_assert_eq!(bytes.len(), Hello::LEN);
        prop_assert_eq!(&bytes[..4], b"FSHI");
        prop_assert_eq!(Hello::decode(&bytes), Ok(hello));
    }

    #[test]
    fn hello_with_min_above_max_is_rejected(a in any::<u16>(), b in any::<u16>()) {
        prop_assume!(a != b);
        let bytes = Hello { min_version: a.max(b), max_version: a.min(b) }.encode();
        let e = Hello::decode(&bytes).unwrap_err();
        prop_assert_eq!(e.offset, 4);
        let is_out_of_range = matches!(e.kind, DecodeErrorKind::OutOfRange { .. });
        prop_assert!(is_out_of_range);
    }

    #[test]
    fn hello_reserved_words_must_be_zero(at in 8usize..16, v in 1u8..) {
        let mut bytes = Hello::current().encode();
        bytes[at] = v;
        let e = Hello::decode(&bytes).unwrap_err();
        let is_reserved = matches!(e.kind, DecodeErrorKind::NonZeroReserved { .. });
        prop_assert!(is_reserved);
        prop_assert_eq!(e.offset, at / 4 * 4);
    }

    #[test]
    fn negotiation_picks_the_highest_common_version(a in any::<u16>(), b in any::<u16>()) {
        let hello = Hello { min_version: a.min(b), max_version: a.max(b) };
        let ours = MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION;
        let theirs = hello.min_version..=hello.max_version;
        let best = ours.clone().rev().find(|v| theirs.contains(v));
        prop_assert_eq!(hello.negotiate(), best);
    }

    #[test]
    fn ack_round_trips(poll_id in any::<u64>(), acked_sequence in any::<u64>()) {
        let reply = ControlReply { kind: ReplyKind::Ack, poll_id, acked_sequence, config: None, content_version: None };
        let bytes = reply.encode();
        prop_assert_eq!(&bytes[..4], b"FSRP");
        prop_assert!(bytes[24..].iter().all(|&b| b == 0));
        prop_assert_eq!(ControlReply::decode(&bytes), Ok(reply));
    }

    #[test]
    fn set_config_round_trips(
        poll_id in any::<u64>(),
        acked_sequence in any::<u64>(),
        config in valid_config(),
    ) {
        let reply = ControlReply {
            kind: ReplyKind::SetConfig,
            poll_id,
            acked_sequence,
            config: Some(config),
            content_version: None,
        };
        prop_assert_eq!(ControlReply::decode(&reply.encode()), Ok(reply));
    }

    #[test]
    fn config_with_unknown_flags_is_rejected(flags in any::<u32>(), config in valid_config()) {
        prop_assume!(flags & !SensorConfig::ALL_FLAGS != 0);
        let mut bytes = ControlReply {
            kind: ReplyKind::SetConfig,
            poll_id: 1,
            acked_sequence: 1,
            config: Some(config),
            content_version: None,
        }
        .encode();
        set_u32(&mut bytes, 28, flags);
        let e = ControlReply::decode(&bytes).unwrap_err();
        prop_assert_eq!(e.kind, DecodeErrorKind::NonZeroReserved { field: "config flags" });
        prop_assert_eq!(e.offset, 28);
    }

    #[test]
    fn config_max_path_units_is_range_checked(units in any::<u32>(), config in valid_config()) {
        let mut bytes = ControlReply {
            kind: ReplyKind::SetConfig,
            poll_id: 1,
            acked_sequence: 1,
            config: Some(config),
            content_version: None,
        }
        .encode();
        set_u32(&mut bytes, 32, units);
        let result = ControlReply::decode(&bytes);
        if (1..=32_767).contains(&units) {
            prop_assert_eq!(result.unwrap().config.unwrap().max_path_units, units);
        } else {
            let e = result.unwrap_err();
            prop_assert_eq!(
                e.kind,
                DecodeErrorKind::OutOfRange { field: "max_path_units", value: units.into() }
            );
            prop_assert_eq!(e.offset, 32);
        }
    }

    #[test]
    fn reply_kind_is_range_checked(kind in any::<u16>()) {
        let mut bytes = ControlReply {
            kind: ReplyKind::Ack,
            poll_id: 1,
            acked_sequence: 1,
            config: None,
            content_version: None,
        }
        .encode();
        bytes[4..6].copy_from_slice(&kind.to_le_bytes());
        let result = ControlReply::decode(&bytes);
        match kind {
            1 => prop_assert!(result.is_ok()),
            // A SetConfig with an all-zero config: max_path_units 0 is out of range.
            2 => prop_assert_eq!(result.unwrap_err().offset, 32),
            _ => {
                let e = result.unwrap_err();
                prop_assert_eq!(
                    e.kind,
                    DecodeErrorKind::BadEnum { field: "reply kind", value: kind.into() }
                );
                prop_assert_eq!(e.offset, 4);
            }
        }
    }

    #[test]
    fn ack_carrying_config_bytes_is_rejected(at in 24usize..40, v in 1u8..) {
        let mut bytes = ControlReply {
            kind: ReplyKind::Ack,
            poll_id: 1,
            acked_sequence: 1,
            config: None,
            content_version: None,
        }
        .encode();
        bytes[at] = v;
        let e = ControlReply::decode(&bytes).unwrap_err();
        prop_assert_eq!(e.kind, DecodeErrorKind::FieldNotApplicable { field: "config on an ack" });
        prop_assert_eq!(e.offset, 24);
    }

    #[test]
    fn reply_reserved_words_must_be_zero(
        at in prop::sample::select(vec![6usize, 7, 36, 37, 38, 39]),
        v in 1u8..,
    ) {
        let mut bytes = ControlReply {
            kind: ReplyKind::SetConfig,
            poll_id: 1,
            acked_sequence: 1,
            config: Some(SensorConfig::DEFAULT),
            content_version: None,
        }
        .encode();
        bytes[at] = v;
        let e = ControlReply::decode(&bytes).unwrap_err();
        if at == 6 && v == 1 {
            // The one defined flag (content version) does not apply to a set-config reply.
            let field = "content version on a set-config reply";
            prop_assert_eq!(e.kind, DecodeErrorKind::FieldNotApplicable { field });
        } else {
            let is_reserved = matches!(e.kind, DecodeErrorKind::NonZeroReserved { .. });
            prop_assert!(is_reserved);
        }
        prop_assert_eq!(e.offset, if at < 8 { 6 } else { 36 });
    }

    #[test]
    fn ack_with_content_version_round_trips(
        poll_id in any::<u64>(),
        acked_sequence in any::<u64>(),
        version in any::<u64>(),
    ) {
        let reply = ControlReply {
            kind: ReplyKind::Ack,
            poll_id,
            acked_sequence,
            config: None,
            content_version: Some(version),
        };
        let bytes = reply.encode();
        prop_assert_eq!(&bytes[6..8], &[1u8, 0][..]);
        prop_assert_eq!(&bytes[24..32], &version.to_le_bytes()[..]);
        prop_assert!(bytes[32..].iter().all(|&b| b == 0));
        prop_assert_eq!(ControlReply::decode(&bytes), Ok(reply));
    }

    #[test]
    fn content_version_ack_tail_must_be_zero(at in 32usize..40, v in 1u8..) {
        let mut bytes = ControlReply {
            kind: ReplyKind::Ack,
            poll_id: 1,
            acked_sequence: 1,
            config: None,
            content_version: Some(3),
        }
        .encode();
        bytes[at] = v;
        let e = ControlReply::decode(&bytes).unwrap_err();
        prop_assert_eq!(e.kind, DecodeErrorKind::FieldNotApplicable { field: "config on an ack" });
        prop_assert_eq!(e.offset, 32);
    }

    #[test]
    fn acks_carry_the_content_version_only_to_drivers_that_read_it(
        protocol_version in any::<u16>(),
        version in any::<u64>(),
    ) {
        let health = Health { protocol_version, poll_id: 9, ..Health::default() };
        let reply = ControlReply::ack_for(&health, 4, Some(version));
        let expected = (protocol_version >= CONTENT_VERSION_SINCE).then_some(version);
        prop_assert_eq!(reply.content_version, expected);
        prop_assert_eq!((reply.poll_id, reply.acked_sequence), (9, 4));
        prop_assert_eq!(ControlReply::decode(&reply.encode()), Ok(reply));
    }

    #[test]
    fn health_round_trips(h in health()) {
        let mut buf = [0u8; Health::LEN];
        let n = Health::len_for(h.protocol_version);
        prop_assert_eq!(h.encode(&mut buf), Ok(n));
        prop_assert_eq!(n == Health::LEN, h.protocol_version >= NAMESPACE_OPS_SINCE);
        prop_assert_eq!(n == Health::LEN_BEFORE_NAMESPACE_OPS, h.protocol_version == LOAD_ID_SINCE);
        prop_assert_eq!(&buf[..4], b"FSHL");
        prop_assert_eq!(Health::decode(&buf[..n]), Ok(h));
        prop_assert_eq!(
            h.dropped(),
            h.dropped_queue_full.saturating_add(h.dropped_send).saturating_add(h.withheld_old_protocol)
        );
    }

    #[test]
    fn health_version_length_and_reserved_are_checked(h in health(), v in any::<u16>()) {
        let mut whole = [0u8; Health::LEN];
        let n = h.encode(&mut whole).unwrap();
        let buf = &whole[..n];
        let mut b = buf.to_vec();
        b[4..6].copy_from_slice(&v.to_le_bytes());
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&v) {
            let e = Health::decode(&b).unwrap_err();
            prop_assert_eq!((e.kind, e.offset), (DecodeErrorKind::UnsupportedVersion(v), 4));
        }
        let mut b = buf.to_vec();
        b[6..8].copy_from_slice(&v.to_le_bytes());
        if usize::from(v) != n {
            let e = Health::decode(&b).unwrap_err();
            prop_assert_eq!((e.kind, e.offset), (DecodeErrorKind::BadHeaderLength(v.into()), 6));
        }
        // The reserved u32 sits at 132 in both layouts (the load id follows it in protocol 3).
        let mut b = buf.to_vec();
        b[135] = (v as u8) | 1;
        let e = Health::decode(&b).unwrap_err();
        prop_assert_eq!(e.offset, 132);
    }

    /// N6 (third driver review): the load id is data in protocol 3 (any value round-trips, and
    /// two loads' healths differ in it alone), and a protocol 1 or 2 health cannot carry one:
    /// an older consumer's decoder would refuse the bytes.
    #[test]
    fn the_load_id_is_carried_from_protocol_3_only(h in health(), id in 1u64.., v in MIN_PROTOCOL_VERSION..LOAD_ID_SINCE) {
        let mut buf = [0u8; Health::LEN];
        let new_load = Health {
            protocol_version: LOAD_ID_SINCE,
            load_id: id,
            withheld_old_protocol: 0,
            buffers_rejected: 0,
            ..h
        };
        let n = Health::LEN_BEFORE_NAMESPACE_OPS;
        prop_assert_eq!(new_load.encode(&mut buf), Ok(n));
        prop_assert_eq!(&buf[n - 8..n], &id.to_le_bytes()[..]);
        prop_assert_eq!(Health::decode(&buf[..n]).map(|d| d.load_id), Ok(id));
        let other_load = Health { load_id: id.wrapping_add(1), ..new_load };
        let mut other = [0u8; Health::LEN];
        other_load.encode(&mut other).unwrap();
        prop_assert_ne!(Health::decode(&other[..n]), Health::decode(&buf[..n]));
        let old = Health { protocol_version: v, load_id: id, ..h };
        prop_assert_eq!(
            old.encode(&mut buf),
            Err(EncodeError::FieldNotInVersion { field: "health load id", version: v })
        );
    }

    /// Issue 27: the protocol-4 counters are data in protocol 4 (they sit after the load id),
    /// and an older health cannot carry them.
    #[test]
    fn the_protocol_4_counters_are_carried_from_protocol_4_only(
        h in health(),
        w in 1u64..,
        b in 1u64..,
        v in MIN_PROTOCOL_VERSION..NAMESPACE_OPS_SINCE,
    ) {
        let mut buf = [0u8; Health::LEN];
        let new = Health {
            protocol_version: NAMESPACE_OPS_SINCE,
            load_id: h.load_id | 1,
            withheld_old_protocol: w,
            buffers_rejected: b,
            ..h
        };
        prop_assert_eq!(new.encode(&mut buf), Ok(Health::LEN));
        prop_assert_eq!(&buf[144..152], &w.to_le_bytes()[..]);
        prop_assert_eq!(&buf[152..160], &b.to_le_bytes()[..]);
        prop_assert_eq!(Health::decode(&buf), Ok(new));
        for (withheld, rejected) in [(w, 0), (0, b)] {
            let old = Health {
                protocol_version: v,
                load_id: 0,
                withheld_old_protocol: withheld,
                buffers_rejected: rejected,
                ..h
            };
            let refused = matches!(
                old.encode(&mut buf),
                Err(EncodeError::FieldNotInVersion { version, .. }) if version == v
            );
            prop_assert!(refused);
        }
    }

    #[test]
    fn fixed_size_messages_reject_any_other_length(len in 0usize..200) {
        let wrong = vec![0u8; len];
        let mismatch = |e: fsense_proto::DecodeError| {
            matches!(e.kind, DecodeErrorKind::LengthMismatch { .. }) && e.offset == 0
        };
        if len != Hello::LEN {
            prop_assert!(mismatch(Hello::decode(&wrong).unwrap_err()));
        }
        if len != ControlReply::LEN {
            prop_assert!(mismatch(ControlReply::decode(&wrong).unwrap_err()));
        }
        if ![Health::LEN, Health::LEN_BEFORE_NAMESPACE_OPS, Health::LEN_BEFORE_LOAD_ID].contains(&len) {
            prop_assert!(mismatch(Health::decode(&wrong).unwrap_err()));
        }
    }

    #[test]
    fn health_encode_needs_room(h in health(), len in 0usize..Health::LEN) {
        let mut buf = vec![0xEEu8; len];
        let needed = Health::len_for(h.protocol_version);
        prop_assert_eq!(h.encode(&mut buf).is_err(), len < needed);
        if len < needed {
            prop_assert!(buf.iter().all(|&b| b == 0xEE));
        }
    }
}

#[test]
fn default_config_is_valid_and_documented_flags_are_distinct() {
    let reply = ControlReply {
        kind: ReplyKind::SetConfig,
        poll_id: 0,
        acked_sequence: 0,
        config: Some(SensorConfig::DEFAULT),
        content_version: None,
    };
    assert_eq!(ControlReply::decode(&reply.encode()), Ok(reply));
    let flags = [
        SensorConfig::REPORT_CREATES,
        SensorConfig::REPORT_WRITES,
        SensorConfig::REPORT_PAGING_IO,
        SensorConfig::REPORT_FAILED_CREATES,
    ];
    assert_eq!(flags.iter().fold(0, |a, f| a | f), SensorConfig::ALL_FLAGS);
    assert_eq!(flags.iter().map(|f| f.count_ones()).sum::<u32>(), 4);
    assert!(SensorConfig::DEFAULT.has(SensorConfig::REPORT_WRITES));
    assert!(!SensorConfig::DEFAULT.has(SensorConfig::REPORT_PAGING_IO));
}
