//! Unit tests of the record codec.

use super::*;

fn le(units: &[u16], out: &mut [u8]) -> usize {
    for (i, u) in units.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
    }
    units.len() * 2
}

#[test]
fn create_round_trips_with_unpaired_surrogate() {
    let mut pbuf = [0u8; 64];
    let n = le(&[0x5C, 0xD800, 0x61, 0xDC00], &mut pbuf);
    let path = Utf16Path::from_le_bytes(&pbuf[..n]).unwrap();
    let mut rec = EventRecord::create(path, Utf16Path::EMPTY);
    rec.desired_access = 0x12_0089;
    rec.write_offset = 99; // does not apply to a create: encoded as zero
    let mut out = [0u8; 256];
    let len = rec.encode_with_sequence(7, &mut out).unwrap();
    let back = EventRecord::decode(&out[..len]).unwrap();
    assert_eq!(back.sequence, 7);
    assert_eq!(back.write_offset, 0);
    assert_eq!(back.path.as_le_bytes(), &pbuf[..n]);
    assert_eq!(back.path.chars().nth(1), Some(Err(0xD800)));
}

#[test]
fn odd_path_bytes_are_refused() {
    assert!(Utf16Path::from_le_bytes(&[1, 2, 3]).is_err());
    let (p, cut) = Utf16Path::truncating(&[1, 2, 3], 10);
    assert_eq!((p.units(), cut), (1, true));
}

#[test]
fn short_record_len_is_rejected_before_reading_past_it() {
    let mut out = [0u8; 256];
    let len = EventRecord::write(Utf16Path::EMPTY, Utf16Path::EMPTY)
        .encode(&mut out)
        .unwrap();
    out[0] = 10;
    let err = EventRecord::decode(&out[..len]).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::LengthMismatch { .. }));
    assert_eq!(err.offset, 0);
}

#[test]
fn non_applicable_field_is_rejected() {
    let mut out = [0u8; 256];
    let len = EventRecord::write(Utf16Path::EMPTY, Utf16Path::EMPTY)
        .encode(&mut out)
        .unwrap();
    out[68] = 1; // create_options on a write
    let err = EventRecord::decode(&out[..len]).unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::FieldNotApplicable {
            field: "create_options"
        }
    );
    assert_eq!(err.offset, 68);
}

#[test]
fn a_target_on_an_operation_without_one_is_rejected() {
    let mut pbuf = [0u8; 8];
    let n = le(&[0x61, 0x62], &mut pbuf);
    let two = Utf16Path::from_le_bytes(&pbuf[..n]).unwrap();
    for op in [Operation::Create, Operation::Write, Operation::Delete] {
        let mut rec = EventRecord::blank(op, Utf16Path::EMPTY, Utf16Path::EMPTY);
        rec.target = two; // not encoded: the operation carries none
        let mut out = [0u8; 128];
        let len = rec.encode(&mut out).unwrap();
        assert_eq!(len, RECORD_HEADER_LEN);
        // Forge one: the target count set and the bytes appended.
        out[84] = 2;
        out[0] = (RECORD_HEADER_LEN + 4) as u8;
        let err = EventRecord::decode(&out[..RECORD_HEADER_LEN + 4]).unwrap_err();
        assert_eq!(
            (err.kind, err.offset),
            (
                DecodeErrorKind::FieldNotApplicable {
                    field: "target_units"
                },
                84
            )
        );
    }
}

#[test]
fn a_clone_keeps_its_range_and_a_rename_does_not() {
    let mut clone = EventRecord::blank(Operation::Clone, Utf16Path::EMPTY, Utf16Path::EMPTY);
    clone.write_offset = 1 << 40;
    clone.write_length = u32::MAX;
    clone.information = 1 << 33;
    clone.create_options = 5; // not a clone's field
    let mut out = [0u8; 128];
    let len = clone.encode(&mut out).unwrap();
    let back = EventRecord::decode(&out[..len]).unwrap();
    assert_eq!(
        (back.write_offset, back.write_length, back.information),
        (1 << 40, u32::MAX, 1 << 33)
    );
    assert_eq!(back.create_options, 0);
    let mut rename = clone;
    rename.operation = Operation::Rename;
    let len = rename.encode(&mut out).unwrap();
    let back = EventRecord::decode(&out[..len]).unwrap();
    assert_eq!((back.write_offset, back.write_length), (0, 0));
    out[64] = 1; // write_length on a rename
    assert!(EventRecord::decode(&out[..len]).is_err());
}

#[test]
fn an_oversized_target_count_is_rejected_before_the_length() {
    let mut out = [0u8; 128];
    let rec = EventRecord::blank(Operation::Link, Utf16Path::EMPTY, Utf16Path::EMPTY);
    let len = rec.encode(&mut out).unwrap();
    out[84..86].copy_from_slice(&0x8000u16.to_le_bytes());
    let err = EventRecord::decode(&out[..len]).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::TooLong { .. }));
    assert_eq!(err.offset, 84);
    out[84..86].copy_from_slice(&0u16.to_le_bytes());
    out[86] = 1;
    let err = EventRecord::decode(&out[..len]).unwrap_err();
    assert_eq!(err.offset, 86);
}
