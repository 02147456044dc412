//! Decoding is total and canonical: any bytes give a value or a typed error (never a panic, and
//! the error names an offset inside the input), anything accepted re-encodes to exactly the input,
//! and so every single-bit flip of a valid message is either rejected or is itself that message.

mod common;

use common::*;
use fsense_proto::batch::BATCH_HEADER_LEN;
use fsense_proto::{
    BatchView, ControlReply, DecodeError, DecodeErrorKind, EventRecord, Health, Hello,
    MAX_BATCH_BYTES, Message, PROTOCOL_VERSION, ReplyKind, SensorConfig,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Runs every decoder on `src`; checks error offsets and canonical re-encoding of successes.
fn check_all_decoders(src: &[u8]) -> Result<(), TestCaseError> {
    let in_bounds = |e: &DecodeError| -> Result<(), TestCaseError> {
        prop_assert!(e.offset <= src.len(), "{e} is outside {} bytes", src.len());
        Ok(())
    };
    match Message::decode(src) {
        Ok(m) => prop_assert_eq!(reencode_message(&m), src.to_vec()),
        Err(e) => in_bounds(&e)?,
    }
    match BatchView::parse(src) {
        Ok(v) => prop_assert_eq!(reencode_batch(&v), src.to_vec()),
        Err(e) => in_bounds(&e)?,
    }
    match EventRecord::decode(src) {
        Ok(r) => prop_assert_eq!(reencode_record(&r), src.to_vec()),
        Err(e) => in_bounds(&e)?,
    }
    match EventRecord::decode_prefix(src, 0) {
        Ok((r, used)) => {
            prop_assert!(used <= src.len());
            prop_assert_eq!(reencode_record(&r), src[..used].to_vec());
        }
        Err(e) => in_bounds(&e)?,
    }
    match Hello::decode(src) {
        Ok(h) => prop_assert_eq!(h.encode().to_vec(), src.to_vec()),
        Err(e) => in_bounds(&e)?,
    }
    match ControlReply::decode(src) {
        Ok(r) => prop_assert_eq!(r.encode().to_vec(), src.to_vec()),
        Err(e) => in_bounds(&e)?,
    }
    match Health::decode(src) {
        Ok(h) => {
            let mut buf = [0u8; Health::LEN];
            let n = h.encode(&mut buf).unwrap();
            prop_assert_eq!(buf[..n].to_vec(), src.to_vec());
        }
        Err(e) => in_bounds(&e)?,
    }
    Ok(())
}

/// Flips every bit of `valid` in turn and checks each result with every decoder. Returns how many
/// flips were accepted by `Message::decode` (so a test can check it is not vacuous).
fn check_every_bit_flip(valid: &[u8]) -> Result<usize, TestCaseError> {
    let mut accepted = 0;
    let mut flipped = valid.to_vec();
    for bit in 0..valid.len() * 8 {
        flipped[bit / 8] ^= 1 << (bit % 8);
        if Message::decode(&flipped).is_ok() {
            accepted += 1;
        }
        check_all_decoders(&flipped)?;
        flipped[bit / 8] ^= 1 << (bit % 8);
    }
    Ok(accepted)
}

/// A valid batch with some bytes overwritten, some removed or some appended.
fn mutated_batch() -> impl Strategy<Value = Vec<u8>> {
    (
        sequenced(vec(small_record(12), 0..6)),
        any::<u64>(),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some),],
        vec(any::<u8>(), 0..3),
    )
        .prop_map(|(recs, dropped, writes, cut, extra)| {
            let mut bytes = encode_batch(&recs, dropped);
            for (at, v) in writes {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes.extend(extra);
            bytes
        })
}

fn config_strategy() -> impl Strategy<Value = SensorConfig> {
    (any::<u32>(), 0..=SensorConfig::ALL_FLAGS, 1u32..=32_767).prop_map(
        |(config_version, flags, max_path_units)| SensorConfig {
            config_version,
            flags,
            max_path_units,
        },
    )
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(src in vec(any::<u8>(), 0..600)) {
        check_all_decoders(&src)?;
    }

    /// Random bytes rarely get past a magic number; these start with each known one.
    #[test]
    fn arbitrary_bytes_behind_a_magic_never_panic(
        magic in prop::sample::select(vec![*b"FSNB", *b"FSHL", *b"FSHI", *b"FSRP"]),
        version in prop_oneof![Just(PROTOCOL_VERSION), any::<u16>()],
        rest in vec(any::<u8>(), 0..400),
    ) {
        let mut src = magic.to_vec();
        src.extend(version.to_le_bytes());
        src.extend(rest);
        check_all_decoders(&src)?;
    }

    #[test]
    fn mutated_batches_decode_canonically_or_fail(src in mutated_batch()) {
        check_all_decoders(&src)?;
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    #[cfg_attr(miri, ignore = "thousands of decodes per case")]
    fn every_bit_flip_of_a_batch_is_rejected_or_canonical(
        recs in sequenced(vec(small_record(10), 0..5)),
        dropped in any::<u64>(),
    ) {
        let valid = encode_batch(&recs, dropped);
        let accepted = check_every_bit_flip(&valid)?;
        // Flipping any bit of dropped_before (64 bits) always gives another valid batch: the
        // property above really ran on accepted inputs, not only on errors.
        prop_assert!(accepted >= 64);
    }

    #[test]
    #[cfg_attr(miri, ignore = "thousands of decodes per case")]
    fn every_bit_flip_of_a_control_message_is_rejected_or_canonical(
        hello in (any::<u16>(), any::<u16>()),
        poll_id in any::<u64>(),
        acked in any::<u64>(),
        config in config_strategy(),
        health_poll in any::<u64>(),
        build_id in any::<[u8; 16]>(),
    ) {
        let (a, b) = hello;
        let hello = Hello { min_version: a.min(b), max_version: a.max(b) };
        check_every_bit_flip(&hello.encode())?;
        let ack = ControlReply { kind: ReplyKind::Ack, poll_id, acked_sequence: acked, config: None, content_version: None };
        check_every_bit_flip(&ack.encode())?;
        let set = ControlReply { kind: ReplyKind::SetConfig, config: Some(config), ..ack };
        check_every_bit_flip(&set.encode())?;
        let health = Health {
            protocol_version: PROTOCOL_VERSION,
            poll_id: health_poll,
            build_id,
            events_generated: acked,
            load_id: poll_id | 1,
            ..Health::default()
        };
        let mut buf = [0u8; Health::LEN];
        health.encode(&mut buf).unwrap();
        let accepted = check_every_bit_flip(&buf)?;
        prop_assert!(accepted >= 64 * 12, "every counter bit and the load id are data");
    }

    /// Cutting a valid batch anywhere, or appending anything, is an error.
    #[test]
    fn truncated_or_extended_batches_are_rejected(
        recs in sequenced(vec(small_record(10), 1..5)),
        extra in vec(any::<u8>(), 1..8),
    ) {
        let valid = encode_batch(&recs, 0);
        for cut in 0..valid.len() {
            prop_assert!(Message::decode(&valid[..cut]).is_err(), "prefix of {cut} accepted");
        }
        let mut longer = valid.clone();
        longer.extend(&extra);
        prop_assert!(Message::decode(&longer).is_err());
    }
}

/// Hand-built malformed inputs, each with the exact error and offset the decoder must give.
mod malformed {
    use super::*;

    fn one_record_batch() -> Vec<u8> {
        let mut rec = small_record_fixed();
        rec.sequence = 5;
        encode_batch(&[rec], 0)
    }

    fn small_record_fixed() -> OwnedRecord {
        OwnedRecord {
            sequence: 1,
            timestamp: 2,
            operation: fsense_proto::Operation::Write,
            flags: fsense_proto::RecordFlags::PAGING_IO,
            pid: 4,
            tid: 8,
            process_create_time: 9,
            status: 0,
            information: 512,
            create_disposition: 0,
            create_options: 0,
            desired_access: 0,
            share_access: 0,
            write_offset: 4096,
            write_length: 512,
            path: le_bytes(&[0x5C, 0x61]),
            volume: le_bytes(&[0x43]),
            target: Vec::new(),
        }
    }

    fn err(src: &[u8]) -> DecodeError {
        Message::decode(src).unwrap_err()
    }

    #[test]
    fn header_fields() {
        let valid = one_record_batch();
        let mut b = valid.clone();
        b[0] ^= 0x20;
        assert!(matches!(err(&b).kind, DecodeErrorKind::BadMagic(_)));
        assert_eq!(err(&b).offset, 0);

        let mut b = valid.clone();
        b[4] = 9;
        assert_eq!(err(&b).kind, DecodeErrorKind::UnsupportedVersion(9));
        assert_eq!(err(&b).offset, 4);

        let mut b = valid.clone();
        b[6] = 33;
        assert_eq!(err(&b).kind, DecodeErrorKind::BadHeaderLength(33));
        assert_eq!(err(&b).offset, 6);

        let mut b = valid.clone();
        b[8..12].copy_from_slice(&(MAX_BATCH_BYTES as u32 + 1).to_le_bytes());
        assert!(matches!(err(&b).kind, DecodeErrorKind::TooLong { .. }));
        assert_eq!(err(&b).offset, 8);

        let mut b = valid.clone();
        b[12] = 2; // record count
        assert_eq!(
            err(&b).kind,
            DecodeErrorKind::LengthMismatch {
                declared: 2,
                actual: 1
            }
        );
        assert_eq!(err(&b).offset, 12);

        let mut b = valid.clone();
        b[16] = 4; // first sequence disagrees with the record's
        assert_eq!(
            err(&b).kind,
            DecodeErrorKind::BadSequence {
                expected_above: 4,
                found: 5
            }
        );
        assert_eq!(err(&b).offset, BATCH_HEADER_LEN + 8);
    }

    #[test]
    fn empty_batch_with_a_first_sequence() {
        let mut b = encode_batch(&[], 0);
        b[16] = 1;
        assert!(matches!(err(&b).kind, DecodeErrorKind::OutOfRange { .. }));
        assert_eq!(err(&b).offset, 16);
    }

    #[test]
    fn record_fields() {
        let valid = one_record_batch();
        let at = BATCH_HEADER_LEN;
        let cases: &[(usize, u8, DecodeErrorKind, usize)] = &[
            (4, 2, DecodeErrorKind::UnsupportedVersion(2), 4),
            (
                5,
                7, // 1-6 are operations (3-6: issue 27)
                DecodeErrorKind::BadEnum {
                    field: "operation",
                    value: 7,
                },
                5,
            ),
            (
                7,
                0x40, // bit 14: the first bit no flag uses (bits 9-13: issue 27)
                DecodeErrorKind::NonZeroReserved {
                    field: "flags bits",
                },
                6,
            ),
            (
                44,
                1,
                DecodeErrorKind::FieldNotApplicable {
                    field: "create_disposition",
                },
                44,
            ),
            (
                84,
                1,
                // A write carries no target (issue 27).
                DecodeErrorKind::FieldNotApplicable {
                    field: "target_units",
                },
                84,
            ),
            (
                86,
                1,
                DecodeErrorKind::NonZeroReserved {
                    field: "record reserved",
                },
                86,
            ),
            (
                81,
                0x80,
                DecodeErrorKind::TooLong {
                    declared: 0x8002,
                    limit: 32_767,
                },
                80,
            ),
        ];
        for &(field, value, kind, offset) in cases {
            let mut b = valid.clone();
            b[at + field] = value;
            let e = err(&b);
            assert_eq!((e.kind, e.offset), (kind, at + offset), "byte {field}");
        }
    }

    #[test]
    fn record_length_disagrees_with_its_strings() {
        let valid = one_record_batch();
        let mut b = valid.clone();
        b[BATCH_HEADER_LEN + 80] = 3; // path units 2 -> 3: the record would need 2 more bytes
        let e = err(&b);
        assert_eq!(
            e.kind,
            DecodeErrorKind::LengthMismatch {
                declared: 94,
                actual: 96
            }
        );
        assert_eq!(e.offset, BATCH_HEADER_LEN);
    }

    #[test]
    fn health_and_control_lengths() {
        let mut h = [0u8; Health::LEN];
        Health {
            protocol_version: PROTOCOL_VERSION,
            ..Health::default()
        }
        .encode(&mut h)
        .unwrap();
        assert!(matches!(
            Message::decode(&h[..Health::LEN - 1]).unwrap_err().kind,
            DecodeErrorKind::LengthMismatch { .. }
        ));
        assert!(matches!(Message::decode(&h), Ok(Message::Health(_))));
        assert!(Message::decode(&[]).is_err());
        assert!(Message::decode(&[0x46, 0x53, 0x4E]).is_err());
        let too_big = vec![0u8; MAX_BATCH_BYTES + 1];
        assert!(matches!(
            Message::decode(&too_big).unwrap_err().kind,
            DecodeErrorKind::TooLong { .. }
        ));
    }
}
