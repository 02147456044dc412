use super::*;
use crate::source::synth::{self, SynthEvent};
use fsense_proto::{Health, Operation};
use proptest::prelude::*;

/// A capture of `batches` (and a health message after the first), with the frame offsets.
fn capture_of(batches: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
    let mut w = CaptureWriter::new(Vec::new(), SourceKind::Simulator, 7).unwrap();
    let mut offsets = Vec::new();
    let mut pos = FILE_HEADER_LEN as u64;
    let health = synth::health(&Health {
        protocol_version: PROTOCOL_VERSION,
        events_generated: 3,
        ..Health::default()
    });
    for (i, b) in batches.iter().enumerate() {
        offsets.push(pos);
        w.write_message(b, 100 + i as u64).unwrap();
        pos += (FRAME_HEADER_LEN + b.len()) as u64;
        if i == 0 {
            offsets.push(pos);
            w.write_message(&health, 1).unwrap();
            pos += (FRAME_HEADER_LEN + health.len()) as u64;
        }
    }
    offsets.push(pos); // the end frame
    (w.finish(9).unwrap(), offsets)
}

fn sample_batches() -> Vec<Vec<u8>> {
    let events: Vec<_> = (0..7)
        .map(|i| {
            let op = if i % 2 == 0 {
                Operation::Create
            } else {
                Operation::Write
            };
            SynthEvent::new(op, &format!("\\Device\\HarddiskVolume1\\d\\f{i}.txt"))
        })
        .collect();
    synth::batches(&events, 1, 3, &[])
}

/// Reads everything; returns (records per complete frame, the error if any).
fn read_all(bytes: &[u8]) -> (Vec<u64>, Vec<u64>, Option<CaptureError>) {
    let mut sequences = Vec::new();
    let mut frame_offsets = Vec::new();
    let mut reader = match CaptureReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (sequences, frame_offsets, Some(e)),
    };
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                frame_offsets.push(frame.offset);
                if let Message::Batch(b) = frame.message {
                    sequences.extend(b.records().map(|r| r.sequence));
                }
            }
            Ok(None) => return (sequences, frame_offsets, None),
            Err(e) => return (sequences, frame_offsets, Some(e)),
        }
    }
}

#[test]
fn a_capture_round_trips() {
    let batches = sample_batches();
    let (bytes, offsets) = capture_of(&batches);
    let mut reader = CaptureReader::new(&bytes[..]).unwrap();
    assert_eq!(reader.header().source, SourceKind::Simulator);
    assert_eq!(reader.header().created, 7);
    let (seqs, frames, err) = read_all(&bytes);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!(frames, offsets[..offsets.len() - 1]);
    let first = reader.next_frame().unwrap().unwrap();
    assert_eq!(first.bytes, &batches[0][..]);
    assert_eq!(first.received_at, 100);
}

#[test]
fn truncation_at_every_offset_keeps_the_prefix_and_names_the_offset() {
    let (bytes, offsets) = capture_of(&sample_batches());
    for cut in 0..bytes.len() {
        let (_, frames, err) = read_all(&bytes[..cut]);
        let err = err.unwrap_or_else(|| panic!("cut at {cut} went unnoticed"));
        // Frames wholly before the cut were read; the error names the first incomplete frame.
        let complete: Vec<u64> = offsets
            .windows(2)
            .filter(|w| w[1] <= cut as u64)
            .map(|w| w[0])
            .collect();
        if cut < FILE_HEADER_LEN {
            assert_eq!(err.offset(), 0, "cut {cut}: {err}");
            continue;
        }
        assert_eq!(frames, complete, "cut {cut}");
        // A cut on a frame boundary is a missing end frame there; inside a frame, the frame is
        // truncated and named by its start.
        let expected = offsets
            .iter()
            .copied()
            .filter(|&o| o <= cut as u64)
            .max()
            .unwrap();
        assert_eq!(err.offset(), expected, "cut {cut}: {err}");
    }
}

#[test]
fn every_single_bit_flip_is_caught_at_its_frame() {
    let (bytes, offsets) = capture_of(&sample_batches());
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 1 << bit;
            let (_, frames, err) = read_all(&damaged);
            let err = err.unwrap_or_else(|| panic!("flip {byte}.{bit} went unnoticed"));
            let at = byte as u64;
            if at < FILE_HEADER_LEN as u64 {
                assert!(err.offset() < FILE_HEADER_LEN as u64, "{err}");
                continue;
            }
            let frame = *offsets.iter().filter(|&&o| o <= at).max().unwrap();
            let before: Vec<u64> = offsets.iter().copied().filter(|&o| o < frame).collect();
            assert_eq!(frames, before, "flip {byte}.{bit}: {err}");
            let off = err.offset();
            assert!(
                off >= frame && off < frame + FRAME_HEADER_LEN as u64,
                "flip {byte}.{bit} reported at {off}, frame {frame}: {err}"
            );
        }
    }
}

#[test]
fn trailing_bytes_and_wrong_end_counts_are_errors() {
    let (mut bytes, offsets) = capture_of(&sample_batches());
    bytes.extend_from_slice(b"junk");
    let (_, _, err) = read_all(&bytes);
    let err = err.unwrap();
    assert!(
        matches!(err, CaptureError::TrailingData { trailing: 4, .. }),
        "{err}"
    );
    assert_eq!(err.offset(), bytes.len() as u64 - 4);
    let end = *offsets.last().unwrap() as usize;
    assert!(matches!(
        read_all(&bytes[..end]).2,
        Some(CaptureError::MissingEnd { .. })
    ));
}

#[test]
fn a_huge_declared_length_is_refused_before_reading() {
    let (bytes, offsets) = capture_of(&sample_batches());
    let mut damaged = bytes[..offsets[1] as usize].to_vec();
    let at = offsets[0] as usize;
    damaged[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (_, _, err) = read_all(&damaged);
    let err = err.unwrap();
    assert!(matches!(err, CaptureError::FrameTooLong { .. }), "{err}");
    assert_eq!(err.offset(), offsets[0]);
}

#[test]
fn a_valid_frame_with_a_bad_message_names_the_offset_inside_it() {
    let mut w = CaptureWriter::new(Vec::new(), SourceKind::Replay, 0).unwrap();
    let mut batch = sample_batches().remove(0);
    batch[32 + 5] = 9; // first record's operation
    w.write_message(&batch, 0).unwrap();
    let bytes = w.finish(0).unwrap();
    let (_, _, err) = read_all(&bytes);
    let err = err.unwrap();
    assert!(matches!(err, CaptureError::Message { .. }), "{err}");
    assert_eq!(
        err.offset(),
        (FILE_HEADER_LEN + FRAME_HEADER_LEN + 32 + 5) as u64
    );
    assert!(
        err.to_string()
            .ends_with(&format!("at byte offset {}", err.offset()))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_captures_round_trip(
        paths in proptest::collection::vec(proptest::collection::vec(any::<u16>(), 0..40), 1..30),
        per_batch in 1usize..8,
    ) {
        let events: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| SynthEvent::with_units(if i % 3 == 0 { Operation::Write } else { Operation::Create }, p))
            .collect();
        let batches = synth::batches(&events, 10, per_batch, &[]);
        let (bytes, _) = capture_of(&batches);
        let mut reader = CaptureReader::new(&bytes[..]).unwrap();
        let mut got = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            if let Message::Batch(b) = frame.message {
                for r in b.records() {
                    got.push(r.path.iter_units().collect::<Vec<_>>());
                }
            }
        }
        prop_assert_eq!(got, paths);
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048), with_header in any::<bool>()) {
        let mut bytes = if with_header {
            CaptureWriter::new(Vec::new(), SourceKind::Fanotify, 1).unwrap().out
        } else {
            Vec::new()
        };
        bytes.extend_from_slice(&tail);
        let (_, _, err) = read_all(&bytes);
        if let Some(e) = err {
            prop_assert!(e.offset() <= bytes.len() as u64);
        }
    }
}
