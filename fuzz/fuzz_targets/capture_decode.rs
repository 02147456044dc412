//! `fsense decode` on hostile capture files: never a panic, every error names an offset inside
//! the input, and frames are only returned while the input is intact.
#![no_main]

use fsense::source::capture::CaptureReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else {
        return;
    };
    let mut last_offset = 0u64;
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                // Frames advance, and each lies wholly inside the input.
                assert!(frame.offset >= last_offset);
                assert!(frame.offset as usize + frame.bytes.len() <= data.len());
                last_offset = frame.offset + 1;
            }
            Ok(None) => break,
            Err(e) => {
                assert!(e.offset() <= data.len() as u64, "{e}");
                break;
            }
        }
    }
    // Done stays done.
    assert!(matches!(reader.next_frame(), Ok(None)));
});
