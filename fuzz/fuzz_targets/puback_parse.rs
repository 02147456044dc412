//! The NATS sink's reading of JetStream's answers, on hostile replies: never a panic, a stored
//! answer has a sequence, and a reply subject's token is the decimal tail it was written as.
#![no_main]

use fsense::output::sink::puback::{self, PubAck};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let PubAck::Stored { seq, .. } = puback::parse(data) {
        assert!(seq > 0);
    }
    if let Ok(subject) = std::str::from_utf8(data) {
        if let Some(token) = puback::reply_token(subject, "_INBOX.x.") {
            assert_eq!(subject, format!("_INBOX.x.{token}"));
        }
    }
});
