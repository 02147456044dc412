//! The driver's health snapshot, decoded directly: total and canonical.
#![no_main]
use fsense_proto::{Health, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Health::decode(data) {
        Ok(health) => {
            assert!(
                (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&health.protocol_version),
                "a health of an unsupported protocol decoded"
            );
            let mut again = [0u8; Health::LEN];
            assert_eq!(health.encode(&mut again), Ok(Health::LEN));
            assert_eq!(again, data, "decoded health re-encodes differently");
        }
        Err(e) => assert!(e.offset <= data.len(), "{e}"),
    }
});
