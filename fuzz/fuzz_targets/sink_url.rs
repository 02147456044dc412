//! `--sink` URLs from anywhere: parsing and the redaction of their user information never panic,
//! what is shown of a parsed URL carries no secret before its `@` (only `***`), and redacting
//! twice changes nothing more.
#![no_main]

use fsense::output::sink::config::{parse_url, redact_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let shown = redact_url(text);
    assert_eq!(redact_url(&shown), shown);
    if let Ok(url) = parse_url(text) {
        if let Some(at) = url.shown.rfind('@') {
            assert!(url.shown[..at].ends_with("***"), "{text:?} -> {}", url.shown);
        }
        if let Some(at) = url.server.rfind('@') {
            assert!(!url.shown.contains(&url.server[..at]), "{text:?} -> {}", url.shown);
        }
    }
});
