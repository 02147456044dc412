//! The INF parser and lint, the minimum-Windows text check and the script checks on arbitrary
//! text: findings or an error, never a panic.
#![no_main]

use fsense_pkgcheck::{floor, inf, scripts};
use libfuzzer_sys::fuzz_target;

const SHIPPED_INF: &str = include_str!("../../inf/fsense.inf");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = inf::parse(text) {
        let _ = inf::lint_parsed(&parsed);
    }
    let _ = floor::check_text("fuzz", text, true);
    // The same text as the module and as a script, against the shipped INF.
    let kit = [
        (scripts::MODULE.to_string(), text.to_string()),
        ("Install-Fsense.ps1".to_string(), text.to_string()),
    ];
    let _ = scripts::check_scripts(&kit, SHIPPED_INF);
});
