//! The driver's health snapshot, decoded directly: total and canonical.
#![no_main]
use fsense_proto::{Health, LOAD_ID_SINCE, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Health::decode(data) {
        Ok(health) => {
            assert!(
                (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&health.protocol_version),
                "a health of an unsupported protocol decoded"
            );
            // Both layouts: 136 bytes (protocol 1-2), 144 with the load id (protocol 3).
            assert_eq!(data.len(), Health::len_for(health.protocol_version));
            assert!(health.protocol_version >= LOAD_ID_SINCE || health.load_id == 0);
            let mut again = [0u8; Health::LEN];
            assert_eq!(health.encode(&mut again), Ok(data.len()));
            assert_eq!(&again[..data.len()], data, "decoded health re-encodes differently");
        }
        Err(e) => assert!(e.offset <= data.len(), "{e}"),
    }
});
