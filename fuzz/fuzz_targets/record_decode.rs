//! One event record, alone (`decode`) and as a prefix (`decode_prefix`): total and canonical.
#![no_main]
use fsense_proto::EventRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = EventRecord::decode(data);
    match EventRecord::decode_prefix(data, 7) {
        Ok((record, used)) => {
            assert!(used <= data.len());
            assert_eq!(used, record.encoded_len());
            let mut again = vec![0u8; used];
            assert_eq!(record.encode(&mut again), Ok(used));
            assert_eq!(
                again,
                &data[..used],
                "decoded record re-encodes differently"
            );
            // Issue 27: only a rename, link or clone carries a target; any other record is
            // laid out as protocols 1..3 laid it out (bytes 84..88 zero, two strings).
            if !record.operation.has_target() {
                assert!(record.target.is_empty());
                assert_eq!(&data[84..88], &[0u8; 4]);
            }
            assert_eq!(&data[86..88], &[0u8; 2]);
            // `decode` accepts exactly when the record fills the input.
            assert_eq!(whole.is_ok(), used == data.len());
        }
        Err(e) => {
            // Errors name an offset inside the input (shifted by the base given).
            assert!(e.offset >= 7 && e.offset - 7 <= data.len(), "{e}");
            assert!(whole.is_err());
        }
    }
    if let Err(e) = whole {
        assert!(e.offset <= data.len(), "{e}");
    }
});
