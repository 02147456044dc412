//! The rules compiler (validator == interpreter compile step) on arbitrary input: it must never
//! panic, every rejection is one line, and whatever it accepts the engine can run.
#![no_main]

use fsense_content::{Engine, EventFacts, Operation, compile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match compile(text) {
        Err(err) => assert!(!err.to_string().contains('\n'), "multi-line error: {err}"),
        Ok(rules) => {
            let ids: std::collections::HashSet<&str> = rules.rules().iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids.len(), rules.len(), "duplicate ids accepted");
            let mut engine = Engine::new(rules);
            // Paths derived from the input itself exercise the globs it defined.
            for (i, path) in [text, r"C:\Users\a\b.docm", ""].into_iter().enumerate() {
                for operation in [Operation::Create, Operation::Write] {
                    let event = EventFacts { operation, path, pid: i as u32, time_ms: i as u64 };
                    for matched in engine.evaluate(&event) {
                        assert!(!matched.id.is_empty());
                    }
                }
            }
        }
    }
});
