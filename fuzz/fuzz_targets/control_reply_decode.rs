//! The consumer's reply to a health message (parsed by the driver): total, canonical, in range.
#![no_main]
use fsense_proto::{ControlReply, MAX_PATH_UNITS, ReplyKind, SensorConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ControlReply::decode(data) {
        Ok(reply) => {
            assert_eq!(reply.encode(), data, "decoded reply re-encodes differently");
            match (reply.kind, reply.config) {
                (ReplyKind::Ack, None) => {}
                (ReplyKind::SetConfig, Some(c)) => {
                    assert_eq!(c.flags & !SensorConfig::ALL_FLAGS, 0);
                    assert!((1..=MAX_PATH_UNITS as u32).contains(&c.max_path_units));
                }
                other => panic!("kind and config disagree: {other:?}"),
            }
            if reply.content_version.is_some() {
                assert_eq!(reply.kind, ReplyKind::Ack, "content version on a set-config");
            }
        }
        Err(e) => assert!(e.offset <= data.len(), "{e}"),
    }
});
