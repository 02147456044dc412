//! Encode then decode is the identity, for single records and whole batches, paths included.

mod common;

use common::*;
use fsense_proto::batch::BATCH_HEADER_LEN;
use fsense_proto::record::RECORD_HEADER_LEN;
use fsense_proto::{
    BatchView, BatchWriter, EncodeError, EventRecord, MAX_BATCH_BYTES, MAX_PATH_UNITS,
    MAX_RECORD_BYTES, Message, Operation, Utf16Path,
};
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn record_round_trips(rec in record_with(path_units(300), path_units(40))) {
        let mut buf = vec![0u8; rec.view().encoded_len()];
        let n = rec.view().encode(&mut buf).unwrap();
        let expected = rec.expected();
        prop_assert_eq!(
            n,
            RECORD_HEADER_LEN + rec.path.len() + rec.volume.len() + expected.target.as_le_bytes().len()
        );
        let back = EventRecord::decode(&buf).unwrap();
        prop_assert_eq!(back, expected);
        // Units survive bit for bit, unpaired surrogates included.
        prop_assert_eq!(back.path.as_le_bytes(), &rec.path[..]);
        prop_assert_eq!(back.volume.as_le_bytes(), &rec.volume[..]);
        // Canonical: the decoded record re-encodes to the same bytes.
        prop_assert_eq!(reencode_record(&back), buf);
    }

    /// Issue 27: a create or write record of protocol 4 is byte for byte the record protocols
    /// 1..3 wrote: no target (whatever the caller left in the field), bytes 84..88 zero, the
    /// length the old formula gives. An old decoder reads it unchanged.
    #[test]
    fn old_operations_encode_as_before(
        rec in record_of(old_operation(), path_units(200), short_path_units(30), short_path_units(30)),
    ) {
        let mut buf = vec![0u8; rec.view().encoded_len()];
        let n = rec.view().encode(&mut buf).unwrap();
        prop_assert_eq!(n, RECORD_HEADER_LEN + rec.path.len() + rec.volume.len());
        prop_assert_eq!(&buf[84..88], &[0u8; 4][..]);
        prop_assert_eq!(&buf[RECORD_HEADER_LEN + rec.path.len()..], &rec.volume[..]);
        let back = EventRecord::decode(&buf).unwrap();
        prop_assert!(back.target.is_empty());
    }

    /// Issue 27: a rename, link or clone carries its target after the volume, with its unit
    /// count at 84; a delete carries none.
    #[test]
    fn targets_travel_after_the_volume(
        rec in record_of(operation(), short_path_units(40), short_path_units(20), path_units(100)),
    ) {
        let view = rec.view();
        let mut buf = vec![0u8; view.encoded_len()];
        view.encode(&mut buf).unwrap();
        let carried = view.operation.has_target();
        let target_len = if carried { rec.target.len() } else { 0 };
        prop_assert_eq!(buf.len(), RECORD_HEADER_LEN + rec.path.len() + rec.volume.len() + target_len);
        prop_assert_eq!(u16::from_le_bytes([buf[84], buf[85]]) as usize, target_len / 2);
        prop_assert_eq!(&buf[86..88], &[0u8; 2][..]);
        prop_assert_eq!(&buf[buf.len() - target_len..], &rec.target[..target_len]);
        let back = EventRecord::decode(&buf).unwrap();
        prop_assert_eq!(back, rec.expected());
    }

    #[test]
    fn path_units_survive_unchanged(units in vec(any::<u16>(), 0..=600)) {
        let bytes = le_bytes(&units);
        let path = Utf16Path::from_le_bytes(&bytes).unwrap();
        let mut buf = vec![0u8; RECORD_HEADER_LEN + bytes.len()];
        EventRecord::create(path, Utf16Path::EMPTY).encode(&mut buf).unwrap();
        let back = EventRecord::decode(&buf).unwrap();
        prop_assert_eq!(back.path.iter_units().collect::<Vec<_>>(), units.clone());
        // chars() is a lossless view: well-formed pairs give chars, lone surrogates give Err(unit).
        let expected: Vec<_> = char::decode_utf16(units.iter().copied())
            .map(|r| r.map_err(|e| e.unpaired_surrogate()))
            .collect();
        prop_assert_eq!(back.path.chars().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn encode_into_a_short_buffer_fails_and_writes_nothing(
        rec in small_record(40),
        short_by in 1usize..=RECORD_HEADER_LEN,
    ) {
        let len = rec.view().encoded_len();
        let mut buf = vec![0xA5u8; len - short_by.min(len)];
        let err = rec.view().encode(&mut buf).unwrap_err();
        prop_assert_eq!(err, EncodeError::BufferTooSmall { needed: len, available: buf.len() });
        prop_assert!(buf.iter().all(|&b| b == 0xA5));
    }

    #[test]
    #[cfg_attr(miri, ignore = "maximal batch buffers: minutes per case under Miri")]
    fn batch_round_trips(
        recs in sequenced(vec(record_with(path_units(200), path_units(30)), 0..24)),
        dropped_before in any::<u64>(),
    ) {
        let mut buf = vec![0u8; MAX_BATCH_BYTES];
        let mut w = BatchWriter::new(&mut buf).unwrap();
        let mut kept = Vec::new();
        for r in &recs {
            let before = (w.remaining(), w.record_count());
            match w.push(&r.view()) {
                Ok(()) => {
                    kept.push(r);
                    // The writer's count is what a sender uses to cap a batch (synth, the driver).
                    prop_assert_eq!(w.record_count() as usize, kept.len());
                }
                Err(EncodeError::BufferTooSmall { needed, available }) => {
                    // Only a record that does not fit is refused, and refusing changes nothing.
                    prop_assert_eq!(needed, r.view().encoded_len());
                    prop_assert!(needed > available);
                    prop_assert_eq!((w.remaining(), w.record_count()), before);
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
        let len = w.finish(dropped_before).unwrap();
        let expected_len = BATCH_HEADER_LEN + kept.iter().map(|r| r.view().encoded_len()).sum::<usize>();
        prop_assert_eq!(len, expected_len);
        let bytes = &buf[..len];
        let view = match Message::decode(bytes).unwrap() {
            Message::Batch(v) => v,
            Message::Health(_) => panic!("a batch decoded as health"),
        };
        let h = *view.header();
        prop_assert_eq!(h.protocol_version, fsense_proto::batch::BATCH_VERSION);
        prop_assert_eq!(h.batch_len as usize, len);
        prop_assert_eq!(h.record_count as usize, kept.len());
        prop_assert_eq!(h.first_sequence, kept.first().map_or(0, |r| r.sequence));
        prop_assert_eq!(h.dropped_before, dropped_before);
        let decoded: Vec<_> = view.records().collect();
        let expected: Vec<_> = kept.iter().map(|r| r.expected()).collect();
        prop_assert_eq!(&decoded, &expected);
        prop_assert_eq!(view.last_sequence(), kept.last().map(|r| r.sequence));
        prop_assert_eq!(reencode_batch(&view), bytes.to_vec());
    }

    #[test]
    fn batch_writer_refuses_non_increasing_sequences(
        a in small_record(8),
        b in small_record(8),
    ) {
        let mut buf = vec![0u8; 4096];
        let mut w = BatchWriter::new(&mut buf).unwrap();
        w.push(&a.view()).unwrap();
        let result = w.push(&b.view());
        if b.sequence <= a.sequence {
            prop_assert_eq!(
                result,
                Err(EncodeError::SequenceNotIncreasing { previous: a.sequence, found: b.sequence })
            );
            prop_assert_eq!(w.record_count(), 1);
        } else {
            prop_assert_eq!(result, Ok(()));
        }
        let len = w.finish(0).unwrap();
        prop_assert!(BatchView::parse(&buf[..len]).is_ok());
    }

    #[test]
    fn batch_writer_respects_a_small_buffer(
        recs in sequenced(vec(small_record(30), 1..20)),
        size in BATCH_HEADER_LEN..2048,
    ) {
        let mut buf = vec![0u8; size];
        let mut w = BatchWriter::new(&mut buf).unwrap();
        let mut pushed = 0;
        for r in &recs {
            if w.push(&r.view()).is_ok() {
                pushed += 1;
            }
        }
        let len = w.finish(3).unwrap();
        prop_assert!(len <= size);
        let view = BatchView::parse(&buf[..len]).unwrap();
        prop_assert_eq!(view.records().count(), pushed);
    }
}

#[test]
fn utf16_path_limits() {
    let max = vec![0u8; 2 * MAX_PATH_UNITS];
    assert_eq!(
        Utf16Path::from_le_bytes(&max).map(|p| p.units()),
        Ok(MAX_PATH_UNITS)
    );
    let over = vec![0u8; 2 * (MAX_PATH_UNITS + 1)];
    assert_eq!(
        Utf16Path::from_le_bytes(&over),
        Err(EncodeError::TooLong {
            len: MAX_PATH_UNITS + 1,
            limit: MAX_PATH_UNITS
        })
    );
    assert_eq!(
        Utf16Path::from_le_bytes(&[0; 5]),
        Err(EncodeError::OddUtf16Length(5))
    );
    let (p, cut) = Utf16Path::truncating(&over, usize::MAX);
    assert_eq!((p.units(), cut), (MAX_PATH_UNITS, true));
    let (p, cut) = Utf16Path::truncating(&max[..20], 10);
    assert_eq!((p.units(), cut), (10, false));
    let (p, cut) = Utf16Path::truncating(&max[..20], 4);
    assert_eq!((p.units(), cut), (4, true));
    assert!(Utf16Path::truncating(&[], 0).0.is_empty());
}

/// The largest record (all three strings at the limit) fits a batch and round-trips.
#[test]
#[cfg_attr(miri, ignore = "256 KiB buffers through Miri take minutes")]
fn maximal_record_fits_a_batch() {
    let units: Vec<u16> = (0..MAX_PATH_UNITS as u32)
        .map(|i| (i * 7919) as u16)
        .collect();
    let bytes = le_bytes(&units);
    let path = Utf16Path::from_le_bytes(&bytes).unwrap();
    let mut rec = EventRecord::blank(Operation::Rename, path, path);
    rec.target = path;
    rec.sequence = 42;
    assert_eq!(rec.encoded_len(), MAX_RECORD_BYTES);
    let mut buf = vec![0u8; MAX_BATCH_BYTES];
    let mut w = BatchWriter::new(&mut buf).unwrap();
    w.push(&rec).unwrap();
    let len = w.finish(0).unwrap();
    let view = BatchView::parse(&buf[..len]).unwrap();
    let back: Vec<_> = view.records().collect();
    assert_eq!(back, vec![rec]);
}

#[test]
fn empty_batch_round_trips() {
    let bytes = encode_batch(&[], 17);
    assert_eq!(bytes.len(), BATCH_HEADER_LEN);
    let view = BatchView::parse(&bytes).unwrap();
    assert_eq!(view.records().count(), 0);
    assert_eq!(view.header().first_sequence, 0);
    assert_eq!(view.header().dropped_before, 17);
    assert_eq!(view.last_sequence(), None);
}

#[test]
fn batch_writer_needs_room_for_a_header() {
    let mut buf = [0u8; BATCH_HEADER_LEN - 1];
    assert!(matches!(
        BatchWriter::new(&mut buf),
        Err(EncodeError::BufferTooSmall {
            needed: BATCH_HEADER_LEN,
            ..
        })
    ));
}
