//! The PE image checksum (the `CheckSum` field of the optional header).
//!
//! The kernel loader refuses a driver whose stored checksum differs from this one, and lld writes 0
//! unless asked (`/RELEASE`), so the package step verifies it and can repair it.
//!
//! The algorithm (the one `imagehlp!CheckSumMappedFile` implements): add the file as little-endian
//! 16-bit words with end-around carry, treating the checksum field itself as zero and padding an odd
//! final byte with zero; fold to 16 bits; add the file length.

use thiserror::Error;

/// Offset of `CheckSum` inside the optional header (same for PE32 and PE32+).
const CHECKSUM_OFFSET_IN_OPTIONAL_HEADER: usize = 64;
/// `e_lfanew`: where the DOS header stores the offset of the NT headers.
const NT_HEADERS_POINTER_OFFSET: usize = 0x3c;
/// "PE\0\0" signature plus the COFF file header.
const SIGNATURE_AND_FILE_HEADER_LEN: usize = 4 + 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChecksumError {
    #[error("file is too short to hold a PE header ({len} bytes)")]
    TooShort { len: usize },
    #[error("file has no MZ/PE signature")]
    NotPe,
    #[error("file is larger than 4 GiB, which a PE checksum cannot describe")]
    TooLarge,
    #[error("NT headers at offset {offset:#x} are not 4-byte aligned")]
    MisalignedHeaders { offset: usize },
}

/// Byte offset of the `CheckSum` field in `image`, after checking the MZ and PE signatures.
pub fn checksum_field_offset(image: &[u8]) -> Result<usize, ChecksumError> {
    let too_short = ChecksumError::TooShort { len: image.len() };
    if image.get(..2) != Some(b"MZ".as_slice()) {
        return Err(if image.len() < 2 {
            too_short
        } else {
            ChecksumError::NotPe
        });
    }
    let pointer = image
        .get(NT_HEADERS_POINTER_OFFSET..NT_HEADERS_POINTER_OFFSET + 4)
        .ok_or(ChecksumError::TooShort { len: image.len() })?;
    let nt_headers = u32::from_le_bytes([pointer[0], pointer[1], pointer[2], pointer[3]]) as usize;
    // Linkers align them and the loader requires it; at an odd offset the checksum field would
    // also straddle the 16-bit words the sum is made of, so no stored value could be right.
    if !nt_headers.is_multiple_of(4) {
        return Err(ChecksumError::MisalignedHeaders { offset: nt_headers });
    }
    match image.get(nt_headers..nt_headers.saturating_add(4)) {
        Some(b"PE\0\0") => {}
        Some(_) => return Err(ChecksumError::NotPe),
        None => return Err(too_short),
    }
    let field = nt_headers
        .checked_add(SIGNATURE_AND_FILE_HEADER_LEN + CHECKSUM_OFFSET_IN_OPTIONAL_HEADER)
        .ok_or(ChecksumError::NotPe)?;
    if field.checked_add(4).is_none_or(|end| end > image.len()) {
        return Err(too_short);
    }
    Ok(field)
}

/// The value `CheckSum` must hold for `image`.
pub fn compute(image: &[u8]) -> Result<u32, ChecksumError> {
    let field = checksum_field_offset(image)?;
    let length = u32::try_from(image.len()).map_err(|_| ChecksumError::TooLarge)?;
    let mut sum: u32 = 0;
    for (index, word) in image.chunks(2).enumerate() {
        let offset = index * 2;
        if offset == field || offset == field + 2 {
            continue;
        }
        let low = u32::from(word[0]);
        let high = word.get(1).map_or(0, |&byte| u32::from(byte));
        sum += low | (high << 8);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    Ok(sum.wrapping_add(length))
}

/// The value stored in `CheckSum`.
pub fn stored(image: &[u8]) -> Result<u32, ChecksumError> {
    let field = checksum_field_offset(image)?;
    let bytes = &image[field..field + 4];
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Writes the correct checksum into `image`; returns (old, new).
pub fn fix(image: &mut [u8]) -> Result<(u32, u32), ChecksumError> {
    let old = stored(image)?;
    let new = compute(image)?;
    let field = checksum_field_offset(image)?;
    image[field..field + 4].copy_from_slice(&new.to_le_bytes());
    Ok((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal header: MZ, e_lfanew = 0x40, "PE\0\0", zeroed file and optional headers.
    fn skeleton(len: usize) -> Vec<u8> {
        let mut image = vec![0u8; len];
        image[..2].copy_from_slice(b"MZ");
        image[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        image[0x40..0x44].copy_from_slice(b"PE\0\0");
        image
    }

    const FIELD: usize = 0x40 + 24 + 64;

    #[test]
    fn known_answer_by_hand() {
        // Words: 0x5a4d ("MZ") + 0x0040 (e_lfanew) + 0x4550 ("PE") = 0x9fdd; length 0x100.
        let image = skeleton(0x100);
        assert_eq!(compute(&image), Ok(0x9fdd + 0x100));
    }

    #[test]
    fn carries_wrap_around() {
        let mut image = skeleton(0x100);
        // Two 0xffff words after the field: 0x9fdd + 0xffff = 0x19fdc -> 0x9fdd; again -> 0x9fdd.
        image[0xf0..0xf4].copy_from_slice(&[0xff; 4]);
        assert_eq!(compute(&image), Ok(0x9fdd + 0x100));
        // One 0x6023 word: 0x9fdd + 0x6023 = 0x10000 -> 0x0001.
        image[0xf0..0xf4].copy_from_slice(&[0x23, 0x60, 0, 0]);
        assert_eq!(compute(&image), Ok(0x0001 + 0x100));
    }

    #[test]
    fn odd_length_pads_the_last_byte_with_zero() {
        let mut image = skeleton(0x101);
        image[0x100] = 0x07;
        assert_eq!(compute(&image), Ok(0x9fdd + 0x07 + 0x101));
    }

    #[test]
    fn the_field_itself_is_ignored() {
        let mut image = skeleton(0x100);
        let before = compute(&image);
        image[FIELD..FIELD + 4].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        assert_eq!(compute(&image), before);
        assert_eq!(stored(&image), Ok(0xdead_beef));
    }

    #[test]
    fn fix_writes_what_compute_says() {
        let mut image = skeleton(0x200);
        image[0x180] = 0x42;
        let expected = compute(&image).unwrap();
        assert_eq!(fix(&mut image), Ok((0, expected)));
        assert_eq!(stored(&image), Ok(expected));
    }

    #[test]
    fn rejects_what_is_not_pe() {
        assert_eq!(compute(b"M"), Err(ChecksumError::TooShort { len: 1 }));
        assert_eq!(compute(&[0u8; 0x100]), Err(ChecksumError::NotPe));
        let mut image = skeleton(0x100);
        image[0x40] = b'X';
        assert_eq!(compute(&image), Err(ChecksumError::NotPe));
        // The checksum field would lie past the end of the file.
        assert_eq!(
            compute(&skeleton(FIELD + 2)),
            Err(ChecksumError::TooShort { len: FIELD + 2 })
        );
        let mut far = skeleton(0x100);
        far[0x3c..0x40].copy_from_slice(&0xffff_fffcu32.to_le_bytes());
        assert_eq!(compute(&far), Err(ChecksumError::TooShort { len: 0x100 }));
        // Found by the fuzz target: at an odd offset no stored checksum can be right.
        let mut odd = skeleton(0x100);
        odd[0x3c..0x40].copy_from_slice(&0x41u32.to_le_bytes());
        odd[0x41..0x45].copy_from_slice(b"PE\0\0");
        assert_eq!(
            fix(&mut odd),
            Err(ChecksumError::MisalignedHeaders { offset: 0x41 })
        );
    }

    proptest! {
        /// Changing any 16-bit word outside the field changes the checksum, unless the change is
        /// between the two one's-complement zeros (0x0000 <-> 0xffff), which the sum cannot see.
        #[test]
        fn any_word_change_is_detected(
            body in proptest::collection::vec(any::<u8>(), 0x100..0x400),
            position in any::<prop::sample::Index>(),
            new_word in any::<u16>(),
        ) {
            let mut image = skeleton(0xa0);
            image.extend_from_slice(&body);
            if image.len() % 2 == 1 { image.push(0); }
            let word_count = (image.len() - 0xa0) / 2;
            let offset = 0xa0 + position.index(word_count) * 2;
            let old_word = u16::from_le_bytes([image[offset], image[offset + 1]]);
            let before = compute(&image).unwrap();
            image[offset..offset + 2].copy_from_slice(&new_word.to_le_bytes());
            let after = compute(&image).unwrap();
            let invisible = old_word == new_word
                || (old_word == 0 && new_word == 0xffff)
                || (old_word == 0xffff && new_word == 0);
            prop_assert_eq!(before == after, invisible);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = compute(&data);
            let mut copy = data.clone();
            let _ = fix(&mut copy);
        }

        /// Whatever `e_lfanew` says, a fixed image checks out (the fuzz target's property).
        #[test]
        fn a_fixed_image_checks_out(
            nt_headers in 0x40usize..0x60,
            body in proptest::collection::vec(any::<u8>(), 0x100..0x200),
        ) {
            let mut image = body;
            image[..2].copy_from_slice(b"MZ");
            image[0x3c..0x40].copy_from_slice(&(nt_headers as u32).to_le_bytes());
            image[nt_headers..nt_headers + 4].copy_from_slice(b"PE\0\0");
            match fix(&mut image) {
                Ok((_, new)) => {
                    prop_assert!(nt_headers.is_multiple_of(4));
                    prop_assert_eq!(stored(&image), Ok(new));
                    prop_assert_eq!(compute(&image), Ok(new));
                }
                Err(e) => {
                    prop_assert_eq!(e, ChecksumError::MisalignedHeaders { offset: nt_headers })
                }
            }
        }
    }
}
