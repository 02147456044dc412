//! x64 unwind data: where each function begins and ends (`.pdata`, one `RUNTIME_FUNCTION` per
//! function or fragment) and how much stack its prologue takes (`.xdata`, the `UNWIND_INFO` codes).
//!
//! Layouts and codes as "x64 exception handling" documents them
//! (<https://learn.microsoft.com/cpp/build/exception-handling-x64>): `UWOP_PUSH_NONVOL` pushes
//! 8 bytes, `UWOP_ALLOC_SMALL` allocates `info * 8 + 8`, `UWOP_ALLOC_LARGE` takes the size from the
//! next one (scaled by 8) or two (unscaled) slots, `UWOP_PUSH_MACHFRAME` pushes 40 or 48 bytes;
//! the save codes store into space already allocated. `UNW_FLAG_CHAININFO` makes an entry a
//! fragment of the function its chained `RUNTIME_FUNCTION` describes: its frame adds to that one.
//! A function without an entry is a leaf: it allocates no stack and calls nothing.

use super::finding::CodeError;
use super::view::ImageView;

const RUNTIME_FUNCTION_LEN: u32 = 12;
const UNW_FLAG_CHAININFO: u8 = 0x4;
/// Chains deeper than this are treated as malformed (compilers emit one level).
const MAX_CHAIN: usize = 32;

const UWOP_PUSH_NONVOL: u8 = 0;
const UWOP_ALLOC_LARGE: u8 = 1;
const UWOP_ALLOC_SMALL: u8 = 2;
const UWOP_SET_FPREG: u8 = 3;
const UWOP_SAVE_NONVOL: u8 = 4;
const UWOP_SAVE_NONVOL_FAR: u8 = 5;
/// Version 2 only: describes an epilogue, allocates nothing.
const UWOP_EPILOG: u8 = 6;
const UWOP_SPARE_CODE: u8 = 7;
const UWOP_SAVE_XMM128: u8 = 8;
const UWOP_SAVE_XMM128_FAR: u8 = 9;
const UWOP_PUSH_MACHFRAME: u8 = 10;

/// One `.pdata` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    pub begin: u32,
    pub end: u32,
    /// Bytes the prologue pushes and allocates, chained parents included (not the return address).
    pub frame: u32,
    /// For a chained fragment: the `begin` of the function it belongs to.
    pub parent: Option<u32>,
}

impl Function {
    pub fn contains(&self, rva: u32) -> bool {
        rva >= self.begin && rva < self.end
    }
}

fn bad(reason: impl Into<String>) -> CodeError {
    CodeError::Malformed {
        table: "unwind data",
        reason: reason.into(),
    }
}

/// Stack bytes the unwind codes of one `UNWIND_INFO` allocate.
pub fn frame_of_codes(codes: &[u8]) -> Result<u32, CodeError> {
    let slot = |index: usize| -> Result<u16, CodeError> {
        codes
            .get(index * 2..index * 2 + 2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .ok_or_else(|| bad("an unwind code runs past the code array"))
    };
    let mut frame: u32 = 0;
    let mut index = 0;
    while index * 2 < codes.len() {
        let [_, op_and_info] = slot(index)?.to_le_bytes();
        let (op, info) = (op_and_info & 0x0f, op_and_info >> 4);
        let (bytes, slots) = match op {
            UWOP_PUSH_NONVOL => (8, 1),
            UWOP_ALLOC_SMALL => (u32::from(info) * 8 + 8, 1),
            UWOP_ALLOC_LARGE if info == 0 => (u32::from(slot(index + 1)?) * 8, 2),
            UWOP_ALLOC_LARGE if info == 1 => (
                u32::from(slot(index + 1)?) | u32::from(slot(index + 2)?) << 16,
                3,
            ),
            UWOP_SET_FPREG => (0, 1),
            UWOP_SAVE_NONVOL | UWOP_SAVE_XMM128 | UWOP_EPILOG => (0, 2),
            UWOP_SAVE_NONVOL_FAR | UWOP_SAVE_XMM128_FAR | UWOP_SPARE_CODE => (0, 3),
            UWOP_PUSH_MACHFRAME => (if info == 0 { 40 } else { 48 }, 1),
            _ => return Err(bad(format!("unknown unwind operation {op} (info {info})"))),
        };
        frame = frame
            .checked_add(bytes)
            .ok_or_else(|| bad("frame size overflows"))?;
        index += slots;
    }
    Ok(frame)
}

/// (own frame, chained RUNTIME_FUNCTION's begin and unwind RVA) of the UNWIND_INFO at `rva`.
fn unwind_info(view: &ImageView, rva: u32) -> Result<(u32, Option<(u32, u32)>), CodeError> {
    let header = view
        .bytes(rva, 4)
        .ok_or_else(|| bad(format!("UNWIND_INFO at {rva:#x} lies outside the image")))?;
    let (version, flags, count) = (header[0] & 0x7, header[0] >> 3, usize::from(header[2]));
    if !(1..=2).contains(&version) {
        return Err(bad(format!(
            "UNWIND_INFO at {rva:#x} has version {version}"
        )));
    }
    let codes = view
        .bytes(rva.wrapping_add(4), count * 2)
        .ok_or_else(|| bad(format!("unwind codes at {rva:#x} lie outside the image")))?;
    let frame = frame_of_codes(codes)?;
    if flags & UNW_FLAG_CHAININFO == 0 {
        return Ok((frame, None));
    }
    // The chained RUNTIME_FUNCTION follows the code array, padded to an even number of slots.
    let chained = rva
        .wrapping_add(4)
        .wrapping_add(2 * (count as u32).next_multiple_of(2));
    let begin = view.u32_at(chained);
    let unwind = view.u32_at(chained.wrapping_add(8));
    match (begin, unwind) {
        (Some(begin), Some(unwind)) => Ok((frame, Some((begin, unwind)))),
        _ => Err(bad(format!(
            "chained entry at {chained:#x} lies outside the image"
        ))),
    }
}

/// Every `.pdata` entry, sorted by `begin`, with its frame (chains followed).
pub fn functions(view: &ImageView) -> Result<Vec<Function>, CodeError> {
    let Some((rva, size)) = view.exception_directory else {
        return Ok(Vec::new());
    };
    let mut functions = Vec::new();
    for index in 0..size / RUNTIME_FUNCTION_LEN {
        let entry = rva.wrapping_add(index * RUNTIME_FUNCTION_LEN);
        let (Some(begin), Some(end), Some(unwind)) = (
            view.u32_at(entry),
            view.u32_at(entry.wrapping_add(4)),
            view.u32_at(entry.wrapping_add(8)),
        ) else {
            return Err(bad(format!(
                "RUNTIME_FUNCTION at {entry:#x} lies outside the image"
            )));
        };
        if begin == 0 && end == 0 {
            continue;
        }
        if end <= begin {
            return Err(bad(format!(
                "RUNTIME_FUNCTION at {entry:#x} ends before it begins"
            )));
        }
        let (mut frame, mut chained) = unwind_info(view, unwind)?;
        let mut parent = None;
        let mut depth = 0;
        while let Some((chained_begin, chained_unwind)) = chained {
            depth += 1;
            if depth > MAX_CHAIN {
                return Err(bad(format!("unwind chain from {begin:#x} does not end")));
            }
            parent = Some(chained_begin);
            let (more, next) = unwind_info(view, chained_unwind)?;
            frame = frame
                .checked_add(more)
                .ok_or_else(|| bad("frame size overflows"))?;
            chained = next;
        }
        functions.push(Function {
            begin,
            end,
            frame,
            parent,
        });
    }
    functions.sort_by_key(|function| function.begin);
    Ok(functions)
}

/// The entry whose extent holds `rva` (`functions` sorted by `begin`).
pub fn containing(functions: &[Function], rva: u32) -> Option<&Function> {
    let index = functions.partition_point(|function| function.begin <= rva);
    functions[..index]
        .last()
        .filter(|function| function.contains(rva))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(slots: &[(u8, u8, u8)]) -> Vec<u8> {
        // (offset in prologue, op, info) per slot; raw u16 slots are written as (lo, hi, 0xff).
        let mut bytes = Vec::new();
        for &(offset, op, info) in slots {
            if info == 0xff {
                bytes.extend_from_slice(&[offset, op]);
            } else {
                bytes.extend_from_slice(&[offset, op | info << 4]);
            }
        }
        bytes
    }

    #[test]
    fn pushes_and_allocations_add_up() {
        // sub rsp, 0x28 after push rbx, push rsi: ALLOC_SMALL info 4 = 40.
        let small = codes(&[
            (6, UWOP_ALLOC_SMALL, 4),
            (2, UWOP_PUSH_NONVOL, 6),
            (1, UWOP_PUSH_NONVOL, 3),
        ]);
        assert_eq!(frame_of_codes(&small).unwrap(), 40 + 8 + 8);
        // ALLOC_LARGE info 0: 0x2000 / 8 = 0x400 in the next slot.
        let large = codes(&[(7, UWOP_ALLOC_LARGE, 0), (0x00, 0x04, 0xff)]);
        assert_eq!(frame_of_codes(&large).unwrap(), 0x2000);
        // ALLOC_LARGE info 1: 0x12345 in two slots, unscaled.
        let larger = codes(&[
            (7, UWOP_ALLOC_LARGE, 1),
            (0x45, 0x23, 0xff),
            (0x01, 0x00, 0xff),
        ]);
        assert_eq!(frame_of_codes(&larger).unwrap(), 0x12345);
        // Saves and the frame pointer allocate nothing; the machine frame does.
        let saves = codes(&[
            (9, UWOP_SAVE_NONVOL, 3),
            (0x10, 0, 0xff),
            (4, UWOP_SET_FPREG, 0),
            (0, UWOP_PUSH_MACHFRAME, 1),
        ]);
        assert_eq!(frame_of_codes(&saves).unwrap(), 48);
    }

    #[test]
    fn truncated_or_unknown_codes_are_errors() {
        assert!(frame_of_codes(&codes(&[(7, UWOP_ALLOC_LARGE, 0)])).is_err());
        assert!(frame_of_codes(&codes(&[(7, 11, 0)])).is_err());
    }

    #[test]
    fn containing_finds_the_extent() {
        let functions = [
            Function {
                begin: 0x1000,
                end: 0x1010,
                frame: 0,
                parent: None,
            },
            Function {
                begin: 0x1020,
                end: 0x1040,
                frame: 8,
                parent: None,
            },
        ];
        assert_eq!(
            containing(&functions, 0x1020).map(|f| f.begin),
            Some(0x1020)
        );
        assert_eq!(
            containing(&functions, 0x103f).map(|f| f.begin),
            Some(0x1020)
        );
        assert_eq!(containing(&functions, 0x1010), None);
        assert_eq!(containing(&functions, 0x0fff), None);
    }
}
