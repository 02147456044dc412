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
            // Every operation, with and without a second name (renames, links, clones).
            let paths = [text, r"C:\Users\a\b.docm", ""];
            for (i, path) in paths.into_iter().enumerate() {
                for operation in Operation::ALL {
                    for target in [None, Some(text), Some(r"C:\Users\a\b.docm.locked")] {
                        let event = EventFacts { operation, path, pid: i as u32, time_ms: i as u64 };
                        for matched in engine.evaluate_named(&event, target) {
                            assert!(!matched.id.is_empty());
                        }
                    }
                }
            }
        }
    }
});
