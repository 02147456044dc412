//! ARM64 unwind data: where each function begins and ends and how much stack its prologue takes.
//!
//! As "ARM64 exception handling" documents it
//! (<https://learn.microsoft.com/cpp/build/arm64-exception-handling>): each `.pdata` record is 8
//! bytes, the function's start RVA then a word whose low two bits (Flag) say what the rest is.
//! Flag 0: the RVA of an `.xdata` record (header word with Function Length in 4-byte units, bits
//! 0-17; Epilog Count, bits 22-26; Code Words, bits 27-31; both zero: an extension word with 16
//! and 8 bits of them; E, bit 21: one epilog packed in the header, no scope words; then the epilog
//! scopes, then the unwind code bytes). Flag 1 (packed, with prolog and epilog) and Flag 2
//! (packed, a fragment without either): Function Length in bits 2-12 (4-byte units) and Frame
//! Size in bits 23-31 (16-byte units), "the number of bytes of stack that is allocated for this
//! function ... local variable area, outgoing parameter area, callee-saved Int and FP area, and
//! home parameter area, but excluding dynamic allocation area".
//!
//! The prolog's unwind codes start at byte 0 and run to the first `end` (0xe4), each epilog's
//! from its start index (the prolog and the epilogs may share codes); after an `end_c`
//! (0xe5) come the codes of the parent's "phantom" prolog up to the real `end`, so a fragment's
//! frame includes its parent's. What each code allocates: `alloc_s` x*16, `alloc_m` x*16,
//! `alloc_l` x*16, the pre-indexed saves `save_r19r20_x` Z*8, `save_fplr_x`, `save_regp_x`,
//! `save_reg_x`, `save_fregp_x`, `save_freg_x` (Z+1)*8, `save_any_reg` with its X bit (o+1)*16;
//! the other saves store into space already allocated.

use super::super::finding::CodeError;
use super::super::unwind::Function;
use super::super::view::ImageView;

const RUNTIME_FUNCTION_LEN: u32 = 8;
/// Unwind code bytes read per record before giving up (255 is the most an index can reach).
const MAX_CODE_BYTES: usize = 4 * 255;

fn bad(reason: impl Into<String>) -> CodeError {
    CodeError::Malformed {
        table: "ARM64 unwind data",
        reason: reason.into(),
    }
}

/// Stack bytes the prolog codes in `codes` allocate (up to the final `end`).
pub fn frame_of_codes(codes: &[u8]) -> Result<u32, CodeError> {
    let mut frame: u32 = 0;
    let mut at = 0;
    let byte = |index: usize| -> Result<u32, CodeError> {
        codes
            .get(index)
            .map(|&b| u32::from(b))
            .ok_or_else(|| bad("an unwind code runs past the code bytes"))
    };
    loop {
        let first = byte(at)?;
        let (bytes, length) = match first {
            0x00..=0x1f => ((first & 0x1f) * 16, 1),
            0x20..=0x3f => ((first & 0x1f) * 8, 1),
            0x40..=0x7f => (0, 1),
            0x80..=0xbf => (((first & 0x3f) + 1) * 8, 1),
            0xc0..=0xc7 => ((((first & 0x7) << 8) | byte(at + 1)?) * 16, 2),
            0xc8..=0xcb => (0, 2),
            0xcc..=0xcf => (((byte(at + 1)? & 0x3f) + 1) * 8, 2),
            0xd0..=0xd3 => (0, 2),
            0xd4 | 0xd5 => (((byte(at + 1)? & 0x1f) + 1) * 8, 2),
            0xd6 | 0xd7 => (0, 2),
            0xd8 | 0xd9 => (0, 2),
            0xda | 0xdb => (((byte(at + 1)? & 0x3f) + 1) * 8, 2),
            0xdc | 0xdd => (0, 2),
            0xde => (((byte(at + 1)? & 0x1f) + 1) * 8, 2),
            0xe0 => (
                ((byte(at + 1)? << 16) | (byte(at + 2)? << 8) | byte(at + 3)?) * 16,
                4,
            ),
            0xe1 | 0xe3 | 0xe6 | 0xfc => (0, 1),
            0xe2 => (0, 2),
            0xe4 => return Ok(frame),
            // end_c: the parent's phantom prolog follows, up to the real end.
            0xe5 => (0, 1),
            // save_any_reg: 11100111'0pxrrrrr'ffoooooo; X (pre-indexed) allocates (o+1)*16.
            0xe7 => {
                let second = byte(at + 1)?;
                let third = byte(at + 2)?;
                let bytes = if second & 0x20 != 0 {
                    ((third & 0x3f) + 1) * 16
                } else {
                    0
                };
                (bytes, 3)
            }
            _ => {
                return Err(bad(format!(
                    "unwind code {first:#04x} at byte {at} is a custom stack or reserved code"
                )));
            }
        };
        frame = frame
            .checked_add(bytes)
            .ok_or_else(|| bad("frame size overflows"))?;
        at += length;
        if at > MAX_CODE_BYTES {
            return Err(bad("the unwind codes do not end"));
        }
    }
}

/// (function length in bytes, frame) of the `.xdata` record at `rva`. The frame is the largest
/// of what the prolog's codes and each epilog's codes allocate: when the prolog sets up x29
/// first, LLVM allocates the locals after it, outside the described prolog (the unwinder
/// restores `sp` from x29), and only the epilog's codes (`alloc_m` before the restores) say how
/// much that was.
fn xdata(view: &ImageView, rva: u32) -> Result<(u32, u32), CodeError> {
    let header = view
        .u32_at(rva)
        .ok_or_else(|| bad(format!(".xdata record at {rva:#x} lies outside the image")))?;
    let length = (header & 0x3_ffff) * 4;
    let version = (header >> 18) & 0x3;
    if version != 0 {
        return Err(bad(format!(
            ".xdata record at {rva:#x} has version {version}"
        )));
    }
    let single_epilog = header & (1 << 21) != 0;
    let (mut epilogs, mut words, mut at) = ((header >> 22) & 0x1f, header >> 27, rva + 4);
    if epilogs == 0 && words == 0 {
        let extension = view.u32_at(at).ok_or_else(|| {
            bad(format!(
                ".xdata extension at {at:#x} lies outside the image"
            ))
        })?;
        epilogs = extension & 0xffff;
        words = (extension >> 16) & 0xff;
        at += 4;
    }
    // Where each epilog's codes start: the header's field itself with E, else the scopes.
    let mut epilog_starts = Vec::new();
    if single_epilog {
        epilog_starts.push(epilogs as usize);
    } else {
        for scope in 0..epilogs {
            let word = view.u32_at(at + 4 * scope).ok_or_else(|| {
                bad(format!(
                    "epilog scope at {:#x} lies outside the image",
                    at + 4 * scope
                ))
            })?;
            epilog_starts.push((word >> 22) as usize);
        }
        at = at.wrapping_add(4 * epilogs);
    }
    let codes = view
        .bytes(at, 4 * words as usize)
        .ok_or_else(|| bad(format!("unwind codes at {at:#x} lie outside the image")))?;
    let mut frame = frame_of_codes(codes)?;
    for start in epilog_starts {
        let epilog = codes.get(start..).ok_or_else(|| {
            bad(format!(
                ".xdata record at {rva:#x}: an epilog starts past its codes"
            ))
        })?;
        frame = frame.max(frame_of_codes(epilog)?);
    }
    Ok((length, frame))
}

/// Every `.pdata` record, sorted by `begin`, with its frame.
pub fn functions(view: &ImageView) -> Result<Vec<Function>, CodeError> {
    let Some((rva, size)) = view.exception_directory else {
        return Ok(Vec::new());
    };
    let mut functions = Vec::new();
    for index in 0..size / RUNTIME_FUNCTION_LEN {
        let entry = rva.wrapping_add(index * RUNTIME_FUNCTION_LEN);
        let (Some(begin), Some(unwind)) = (view.u32_at(entry), view.u32_at(entry.wrapping_add(4)))
        else {
            return Err(bad(format!(
                "RUNTIME_FUNCTION at {entry:#x} lies outside the image"
            )));
        };
        if begin == 0 && unwind == 0 {
            continue;
        }
        let (length, frame) = match unwind & 0x3 {
            0 => xdata(view, unwind)?,
            1 | 2 => (((unwind >> 2) & 0x7ff) * 4, (unwind >> 23) * 16),
            _ => {
                return Err(bad(format!(
                    "RUNTIME_FUNCTION at {entry:#x} has the reserved flag 3"
                )));
            }
        };
        if length == 0 {
            return Err(bad(format!(
                "RUNTIME_FUNCTION at {entry:#x} describes an empty function"
            )));
        }
        functions.push(Function {
            begin,
            end: begin.saturating_add(length),
            frame,
            parent: None,
        });
    }
    functions.sort_by_key(|function| function.begin);
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prolog_codes_add_up_to_the_allocation() {
        // LLVM's usual prolog: sub sp, sp, #192 (alloc_s 12), six register pairs saved into it
        // (save_regp, save_fplr), set_fp, end.
        let codes = [0x0c, 0xc8, 0x0c, 0xc8, 0x4e, 0x4b, 0xe1, 0xe4];
        assert_eq!(frame_of_codes(&codes).unwrap(), 192);
        // stp x29, x30, [sp, #-16]! (save_fplr_x Z=1): 16; alloc_m 0x123*16.
        assert_eq!(
            frame_of_codes(&[0x81, 0xc1, 0x23, 0xe4]).unwrap(),
            16 + 0x123 * 16
        );
        // save_r19r20_x Z=4 (32), save_regp_x Z=3 (32), save_reg_x Z=1 (16).
        assert_eq!(
            frame_of_codes(&[0x24, 0xcc, 0x03, 0xd4, 0x01, 0xe4]).unwrap(),
            32 + 32 + 16
        );
        // alloc_l: 0x000400 * 16 = 16 KiB; save_fregp_x Z=7: 64.
        assert_eq!(
            frame_of_codes(&[0xe0, 0x00, 0x04, 0x00, 0xda, 0x07, 0xe4]).unwrap(),
            0x4000 + 64
        );
        // A fragment: its own codes, end_c, then the parent's phantom prolog.
        assert_eq!(
            frame_of_codes(&[0x02, 0xe5, 0x81, 0x04, 0xe4]).unwrap(),
            32 + 16 + 64
        );
        // The epilog's codes after the first end are not counted.
        assert_eq!(frame_of_codes(&[0x04, 0xe4, 0x1f, 0xe4]).unwrap(), 64);
    }

    #[test]
    fn an_epilog_that_frees_more_than_the_prolog_describes_sets_the_frame() {
        // What LLVM emits for the image probe's callback: the prolog's codes end at `add fp`
        // (the 3328 bytes of locals are allocated after it); the epilog's start with alloc_m.
        // Header: length 556/4, E (one epilog, its codes at byte 12), 6 code words.
        let prolog = [
            0xe2, 0x05, 0xd8, 0x89, 0xd8, 0x07, 0x45, 0xd2, 0x44, 0xe6, 0x2c, 0xe4,
        ];
        let epilog = [
            0xc0, 0xd0, 0xd8, 0x89, 0xd8, 0x07, 0x45, 0xd2, 0x44, 0xe6, 0x2c, 0xe4,
        ];
        assert_eq!(frame_of_codes(&prolog).unwrap(), 96);
        assert_eq!(frame_of_codes(&epilog).unwrap(), 3328 + 96);
        let header: u32 = (556 / 4) | (1 << 21) | (12 << 22) | (6 << 27);
        let mut record = header.to_le_bytes().to_vec();
        record.extend_from_slice(&prolog);
        record.extend_from_slice(&epilog);
        let view = ImageView {
            machine: object::pe::IMAGE_FILE_MACHINE_ARM64.0,
            image_base: 0x1_4000_0000,
            entry: 0x1000,
            sections: vec![super::super::super::view::Section {
                name: ".xdata".to_string(),
                rva: 0x5000,
                size: record.len() as u32,
                executable: false,
                bytes: record,
            }],
            slots: Default::default(),
            pointers: Default::default(),
            exports: Vec::new(),
            exception_directory: None,
        };
        assert_eq!(xdata(&view, 0x5000).unwrap(), (556, 3328 + 96));
    }

    #[test]
    fn unterminated_or_custom_codes_are_errors() {
        assert!(frame_of_codes(&[0x04]).is_err());
        assert!(frame_of_codes(&[0xc0]).is_err());
        assert!(frame_of_codes(&[0xe9, 0xe4]).is_err());
        assert!(frame_of_codes(&[0xf0, 0xe4]).is_err());
    }
}
