//! Behaviour the round-trip and totality properties do not pin down: flag-set algebra, the exact
//! limits (a value at the limit is accepted, one past it refused), strictly increasing sequence
//! numbers, and error messages that name what was wrong. Found by mutation testing
//! (`scripts/mutants.sh`): each of these was a change of the code that no test noticed.

mod common;

use common::*;
use fsense_proto::batch::BATCH_HEADER_LEN;
use fsense_proto::record::RECORD_HEADER_LEN;
use fsense_proto::{
    BatchView, BatchWriter, DecodeError, DecodeErrorKind, EncodeError, EventRecord,
    MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, MAX_PATH_UNITS, Message, Operation, RecordFlags, Utf16Path,
};

const EACH_FLAG: [RecordFlags; 14] = [
    RecordFlags::PATH_TRUNCATED,
    RecordFlags::NAME_QUERY_FAILED,
    RecordFlags::PAGING_IO,
    RecordFlags::NAME_FROM_CONTEXT,
    RecordFlags::DIRECTORY,
    RecordFlags::KERNEL_REQUESTOR,
    RecordFlags::NO_NAME_CONTEXT,
    RecordFlags::RENAMED,
    RecordFlags::PROCESS_EXITED,
    RecordFlags::TARGET_TRUNCATED,
    RecordFlags::TARGET_NAME_FAILED,
    RecordFlags::MDL_WRITE,
    RecordFlags::POSIX_DELETE,
    RecordFlags::REPLACE_EXISTING,
];

#[test]
fn flag_sets_contain_exactly_their_bits() {
    let empty = RecordFlags::empty();
    assert_eq!(empty.bits(), 0);
    assert_eq!(RecordFlags::default(), empty);
    for (i, &flag) in EACH_FLAG.iter().enumerate() {
        assert_eq!(flag.bits(), 1 << i, "flag {i} is bit {i} on the wire");
        assert!(flag.contains(flag));
        assert!(flag.contains(empty), "every set contains the empty set");
        assert!(!empty.contains(flag));
        assert!(RecordFlags::ALL.contains(flag));
        for (j, &other) in EACH_FLAG.iter().enumerate() {
            assert_eq!(flag.contains(other), i == j, "{i} contains {j}?");
            let both = flag.union(other);
            assert!(both.contains(flag) && both.contains(other));
            assert_eq!(both.bits(), flag.bits() | other.bits());
            // A set with one of two bits does not contain both.
            assert_eq!(flag.contains(both), i == j);
        }
    }
    let all = EACH_FLAG.iter().fold(empty, |acc, &f| acc.union(f));
    assert_eq!(all, RecordFlags::ALL);
}

#[test]
fn insert_adds_bits_and_keeps_the_others() {
    let mut f = RecordFlags::PAGING_IO;
    f.insert(RecordFlags::DIRECTORY);
    assert_eq!(f, RecordFlags::PAGING_IO.union(RecordFlags::DIRECTORY));
    f.insert(RecordFlags::DIRECTORY);
    assert_eq!(f.bits(), (1 << 2) | (1 << 4));
    assert!(!f.contains(RecordFlags::PATH_TRUNCATED));
}

#[test]
fn raw_bits_are_checked_or_truncated() {
    for bits in 0..=u16::MAX {
        let known = bits & RecordFlags::ALL.bits();
        match RecordFlags::from_bits(bits) {
            Some(f) => {
                assert_eq!(known, bits);
                assert_eq!(f.bits(), bits);
            }
            None => assert_ne!(known, bits, "{bits:#x} has only known bits"),
        }
        assert_eq!(RecordFlags::from_bits_truncate(bits).bits(), known);
    }
}

#[test]
fn operations_have_their_output_names() {
    assert_eq!(Operation::Create.as_str(), "create");
    assert_eq!(Operation::Write.as_str(), "write");
    assert_eq!(Operation::Delete.as_str(), "delete");
    assert_eq!(Operation::Rename.as_str(), "rename");
    assert_eq!(Operation::Link.as_str(), "link");
    assert_eq!(Operation::Clone.as_str(), "clone");
    // `ALL` is in wire order (the queue's protocol filter indexes it by the operation byte).
    for (i, op) in Operation::ALL.iter().enumerate() {
        assert_eq!(*op as usize, i + 1);
    }
    let since: Vec<u16> = Operation::ALL
        .iter()
        .map(|op| op.since_protocol())
        .collect();
    assert_eq!(since, [1, 1, 4, 4, 4, 4]);
}

fn record_with_units(sequence: u64, path_units: usize, volume_units: usize) -> OwnedRecord {
    let path = vec![0x61u16; path_units];
    let volume = vec![0x43u16; volume_units];
    OwnedRecord {
        sequence,
        timestamp: 1,
        operation: Operation::Write,
        flags: RecordFlags::empty(),
        pid: 2,
        tid: 3,
        process_create_time: 4,
        status: 0,
        information: 5,
        create_disposition: 0,
        create_options: 0,
        desired_access: 0,
        share_access: 0,
        write_offset: 6,
        write_length: 7,
        path: le_bytes(&path),
        volume: le_bytes(&volume),
        target: Vec::new(),
    }
}

/// Two records whose batch is exactly [`MAX_BATCH_BYTES`] long.
fn maximal_batch() -> Vec<u8> {
    let units_total = (MAX_BATCH_BYTES - BATCH_HEADER_LEN - 2 * RECORD_HEADER_LEN) / 2;
    let first = record_with_units(10, MAX_PATH_UNITS, MAX_PATH_UNITS);
    let second = record_with_units(11, MAX_PATH_UNITS, units_total - 3 * MAX_PATH_UNITS);
    let batch = encode_batch(&[first, second], 0);
    assert_eq!(batch.len(), MAX_BATCH_BYTES);
    batch
}

#[test]
#[cfg_attr(miri, ignore = "256 KiB buffers through Miri take minutes")]
fn a_batch_of_exactly_the_limit_is_accepted() {
    let batch = maximal_batch();
    let view = BatchView::parse(&batch).expect("a batch at the limit is valid");
    assert_eq!(view.records().count(), 2);
    assert_eq!(view.last_sequence(), Some(11));
    assert!(matches!(Message::decode(&batch), Ok(Message::Batch(_))));
    assert_eq!(MAX_MESSAGE_BYTES, MAX_BATCH_BYTES);
}

#[test]
#[cfg_attr(miri, ignore = "256 KiB buffers through Miri take minutes")]
fn a_writer_never_uses_more_than_the_limit() {
    let mut buf = vec![0u8; MAX_BATCH_BYTES + 4096];
    let mut w = BatchWriter::new(&mut buf).unwrap();
    assert_eq!(w.remaining(), MAX_BATCH_BYTES - BATCH_HEADER_LEN);
    let big = record_with_units(1, MAX_PATH_UNITS, MAX_PATH_UNITS);
    w.push(&big.view()).unwrap();
    let mut second = big.clone();
    second.sequence = 2;
    // The second maximal record would fit the buffer, but not the protocol's limit.
    assert!(matches!(
        w.push(&second.view()),
        Err(EncodeError::BufferTooSmall { .. })
    ));
    let mut encoded = vec![0u8; second.view().encoded_len()];
    second.view().encode(&mut encoded).unwrap();
    assert!(matches!(
        w.push_encoded(2, &encoded),
        Err(EncodeError::BufferTooSmall { .. })
    ));
    assert_eq!(w.record_count(), 1);
    let len = w.finish(0).unwrap();
    assert_eq!(len, BATCH_HEADER_LEN + big.view().encoded_len());
}

#[test]
fn a_record_that_fills_the_writer_exactly_fits() {
    let rec = record_with_units(3, 5, 1);
    let len = rec.view().encoded_len();
    let mut buf = vec![0u8; BATCH_HEADER_LEN + len];
    let mut w = BatchWriter::new(&mut buf).unwrap();
    assert!(w.is_empty());
    w.push(&rec.view()).unwrap();
    assert!(!w.is_empty());
    assert_eq!(w.remaining(), 0);
    let n = w.finish(0).unwrap();
    assert_eq!(n, buf.len());

    // The same through push_encoded, as the queue drains.
    let mut encoded = vec![0u8; len];
    rec.view().encode(&mut encoded).unwrap();
    let mut buf2 = vec![0u8; BATCH_HEADER_LEN + len];
    let mut w = BatchWriter::new(&mut buf2).unwrap();
    w.push_encoded(3, &encoded).unwrap();
    assert_eq!((w.record_count(), w.last_sequence()), (1, Some(3)));
    let n = w.finish(0).unwrap();
    assert_eq!(buf2[..n], buf[..]);
}

#[test]
fn push_encoded_appends_after_the_previous_record() {
    let recs = [record_with_units(4, 2, 1), record_with_units(9, 3, 0)];
    let mut buf = vec![0u8; 1024];
    let mut w = BatchWriter::new(&mut buf).unwrap();
    for r in &recs {
        let mut enc = vec![0u8; r.view().encoded_len()];
        r.view().encode(&mut enc).unwrap();
        w.push_encoded(r.sequence, &enc).unwrap();
    }
    // Same sequence number again: refused, nothing written.
    let mut enc = vec![0u8; recs[1].view().encoded_len()];
    recs[1].view().encode(&mut enc).unwrap();
    assert_eq!(
        w.push_encoded(9, &enc),
        Err(EncodeError::SequenceNotIncreasing {
            previous: 9,
            found: 9
        })
    );
    let n = w.finish(0).unwrap();
    assert_eq!(buf[..n], encode_batch(&recs, 0)[..]);
}

/// A batch whose second record repeats the first one's sequence number, built by hand (the
/// writer refuses to make one).
#[test]
fn a_repeated_sequence_number_in_a_batch_is_rejected() {
    let first = record_with_units(5, 1, 0);
    let second = record_with_units(6, 1, 0);
    let mut batch = encode_batch(&[first.clone(), second], 0);
    let second_at = BATCH_HEADER_LEN + first.view().encoded_len();
    batch[second_at + 8..second_at + 16].copy_from_slice(&5u64.to_le_bytes());
    let err = BatchView::parse(&batch).unwrap_err();
    assert_eq!(
        err,
        DecodeError {
            kind: DecodeErrorKind::BadSequence {
                expected_above: 5,
                found: 5
            },
            offset: second_at + 8,
        }
    );
    // And one going backwards.
    batch[second_at + 8..second_at + 16].copy_from_slice(&4u64.to_le_bytes());
    assert!(matches!(
        BatchView::parse(&batch).unwrap_err().kind,
        DecodeErrorKind::BadSequence { found: 4, .. }
    ));
}

/// An error in a later record names its absolute offset in the message.
#[test]
fn errors_in_a_later_record_name_its_absolute_offset() {
    let first = record_with_units(5, 2, 0);
    let second = record_with_units(6, 1, 0);
    let mut batch = encode_batch(&[first.clone(), second], 0);
    let second_at = BATCH_HEADER_LEN + first.view().encoded_len();
    batch[second_at + 5] = 9; // operation
    assert_eq!(
        BatchView::parse(&batch).unwrap_err(),
        DecodeError {
            kind: DecodeErrorKind::BadEnum {
                field: "operation",
                value: 9
            },
            offset: second_at + 5,
        }
    );
}

#[test]
fn a_batch_reports_its_header_and_records() {
    let recs = [record_with_units(7, 1, 1), record_with_units(8, 0, 2)];
    let batch = encode_batch(&recs, 3);
    let view = BatchView::parse(&batch).unwrap();
    let h = view.header();
    assert_eq!(
        (h.batch_len as usize, h.record_count, h.first_sequence),
        (batch.len(), 2, 7)
    );
    assert_eq!(h.dropped_before, 3);
    let seqs: Vec<u64> = view.records().map(|r| r.sequence).collect();
    assert_eq!(seqs, [7, 8]);
    assert_eq!(view.last_sequence(), Some(8));
}

#[test]
fn decode_errors_say_what_and_where() {
    let cases: &[(DecodeErrorKind, &[&str])] = &[
        (
            DecodeErrorKind::Truncated {
                needed: 88,
                available: 12,
            },
            &["truncated", "88", "12"],
        ),
        (
            DecodeErrorKind::BadMagic(0x4253_4e46),
            &["magic", "0x42534e46"],
        ),
        (DecodeErrorKind::UnsupportedVersion(9), &["version", "9"]),
        (
            DecodeErrorKind::BadHeaderLength(33),
            &["header length", "33"],
        ),
        (
            DecodeErrorKind::LengthMismatch {
                declared: 94,
                actual: 96,
            },
            &["94", "96"],
        ),
        (
            DecodeErrorKind::TooLong {
                declared: 70_000,
                limit: 32_767,
            },
            &["70000", "32767"],
        ),
        (
            DecodeErrorKind::BadEnum {
                field: "operation",
                value: 3,
            },
            &["operation", "3"],
        ),
        (
            DecodeErrorKind::NonZeroReserved {
                field: "flags bits",
            },
            &["reserved", "flags bits"],
        ),
        (
            DecodeErrorKind::FieldNotApplicable {
                field: "write_offset",
            },
            &["write_offset"],
        ),
        (
            DecodeErrorKind::BadSequence {
                expected_above: 41,
                found: 40,
            },
            &["41", "40"],
        ),
        (
            DecodeErrorKind::OutOfRange {
                field: "max_path_units",
                value: 0,
            },
            &["max_path_units", "0", "range"],
        ),
        (DecodeErrorKind::TrailingBytes(7), &["7", "trailing"]),
    ];
    for &(kind, words) in cases {
        let text = DecodeError { kind, offset: 1234 }.to_string();
        assert!(text.contains("1234"), "{text}: no offset");
        for w in words {
            assert!(text.contains(w), "{text:?} does not say {w:?}");
        }
        assert_eq!(text, format!("{kind} at byte offset 1234"));
    }
}

#[test]
fn encode_errors_say_what() {
    let cases: &[(EncodeError, &[&str])] = &[
        (
            EncodeError::BufferTooSmall {
                needed: 120,
                available: 32,
            },
            &["too small", "120", "32"],
        ),
        (
            EncodeError::TooLong {
                len: 40_000,
                limit: 32_767,
            },
            &["40000", "32767"],
        ),
        (EncodeError::OddUtf16Length(5), &["odd", "5"]),
        (
            EncodeError::SequenceNotIncreasing {
                previous: 8,
                found: 3,
            },
            &["8", "3"],
        ),
    ];
    for (err, words) in cases {
        let text = err.to_string();
        for w in *words {
            assert!(text.contains(w), "{text:?} does not say {w:?}");
        }
    }
}

#[test]
fn a_decoded_path_keeps_its_units() {
    let bytes = le_bytes(&[0x5C, 0x61, 0xD800]);
    let path = Utf16Path::from_le_bytes(&bytes).unwrap();
    let mut buf = vec![0u8; RECORD_HEADER_LEN + bytes.len()];
    let n = EventRecord::create(path, Utf16Path::EMPTY)
        .encode(&mut buf)
        .unwrap();
    let back = EventRecord::decode(&buf[..n]).unwrap();
    assert_eq!(back.path.units(), 3);
    assert!(!back.path.is_empty());
    assert!(back.volume.is_empty());
}

#[test]
fn a_record_followed_or_cut_short_says_by_how_much() {
    let rec = record_with_units(1, 2, 0);
    let mut buf = vec![0u8; rec.view().encoded_len() + 3];
    let n = rec.view().encode(&mut buf).unwrap();
    assert_eq!(
        EventRecord::decode(&buf).unwrap_err(),
        DecodeError {
            kind: DecodeErrorKind::TrailingBytes(3),
            offset: n
        }
    );
    assert_eq!(
        EventRecord::decode(&buf[..n - 1]).unwrap_err(),
        DecodeError {
            kind: DecodeErrorKind::Truncated {
                needed: n,
                available: n - 1
            },
            offset: 0
        }
    );
    assert_eq!(
        EventRecord::decode(&buf[..2]).unwrap_err(),
        DecodeError {
            kind: DecodeErrorKind::Truncated {
                needed: 4,
                available: 2
            },
            offset: 0
        }
    );
}
