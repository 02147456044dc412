//! The consumer's hello (the connection context the driver parses): total and canonical.
#![no_main]
use fsense_proto::{Hello, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Hello::decode(data) {
        Ok(hello) => {
            assert_eq!(hello.encode(), data, "decoded hello re-encodes differently");
            assert!(hello.min_version <= hello.max_version);
            if let Some(v) = hello.negotiate() {
                assert!((hello.min_version..=hello.max_version).contains(&v));
                assert!((MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&v));
            }
        }
        Err(e) => assert!(e.offset <= data.len(), "{e}"),
    }
});
