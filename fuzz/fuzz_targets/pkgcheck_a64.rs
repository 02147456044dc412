//! The ARM64 code reader on arbitrary bytes: every word decodes, lists and names the registers
//! it writes; unwind code bytes give a frame or an error; never a panic.
#![no_main]

use fsense_pkgcheck::code::a64::{decode, unwind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for word in data.chunks_exact(4) {
        let insn = decode::decode(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        let _ = insn.text(0x1000, 0x1_4000_0000);
        assert!(insn.written().iter().all(|register| *register < 31));
    }
    let _ = unwind::frame_of_codes(data);
});
