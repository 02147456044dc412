//! The INF parser and lint on arbitrary text: findings or an error, never a panic.
#![no_main]

use fsense_pkgcheck::inf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(parsed) = inf::parse(text)
    {
        let _ = inf::lint_parsed(&parsed);
    }
});
