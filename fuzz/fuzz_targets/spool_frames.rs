//! The NATS sink's spool reader on hostile segment files: never a panic, only intact frames are
//! returned, and what is returned re-encodes to exactly the bytes it was read from; the search
//! for intact frames past damage (`frame::resync`) finds only intact, non-overlapping frames.
#![no_main]

use fsense::output::sink::frame::{self, MAX_ID, MAX_PAYLOAD};
use fsense::output::sink::spool::check_segment_header;
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let mut again = Vec::new();
    let mut frames = 0u64;
    let scan = frame::scan(bytes, |f| {
        assert!(!f.id.is_empty() && f.id.len() <= MAX_ID);
        assert!(f.payload.len() <= MAX_PAYLOAD);
        frame::encode(&mut again, f.id, f.payload).expect("a parsed frame re-encodes");
        frames += 1;
    });
    assert_eq!(scan.frames, frames);
    assert!(scan.good_len <= bytes.len());
    assert_eq!(&again[..], &bytes[..scan.good_len]);
    let mut end = 0;
    frame::resync(bytes, |at, len| {
        assert!(at >= end && at + len <= bytes.len());
        assert!(matches!(
            frame::parse(&bytes[at..]),
            Ok(frame::Parsed::Frame { len: l, .. }) if l == len
        ));
        end = at + len;
    });
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(body) = check_segment_header(data) {
        check(body);
    }
});
