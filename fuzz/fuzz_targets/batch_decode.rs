//! Any driver message (batch or health): decoding is total, and canonical: whatever decodes
//! re-encodes to exactly the input.
#![no_main]
use fsense_proto::{BatchWriter, EventRecord, Health, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let mut again = vec![0u8; data.len()];
    match message {
        Message::Batch(view) => {
            let mut w = BatchWriter::new(&mut again).expect("a valid batch holds a header");
            for record in view.records() {
                // Each record also decodes alone, to itself.
                let mut alone = vec![0u8; record.encoded_len()];
                record.encode(&mut alone).expect("exact size");
                assert_eq!(EventRecord::decode(&alone), Ok(record));
                w.push(&record)
                    .expect("the records fit the bytes they came from");
            }
            assert_eq!(w.record_count(), view.header().record_count);
            let len = w.finish(view.header().dropped_before).expect("header fits");
            assert_eq!(len, data.len());
        }
        Message::Health(health) => {
            // 136 bytes up to protocol 2, 144 with the load id (protocol 3).
            assert_eq!(health.encode(&mut again), Ok(Health::len_for(health.protocol_version)));
        }
    }
    assert_eq!(again, data, "decoded message re-encodes differently");
});
