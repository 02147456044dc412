//! The fanotify event parser on arbitrary bytes: never a panic, events stay inside the buffer,
//! the iterator stops after an error.
#![no_main]

use fsense::source::fanotify::parse::FanEvents;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut after_error = false;
    for item in FanEvents::new(data) {
        assert!(!after_error, "an event after an error");
        match item {
            Ok(ev) => {
                assert!(ev.offset < data.len());
                for d in [ev.dir_fid_name, ev.old_dir_fid_name, ev.new_dir_fid_name]
                    .into_iter()
                    .flatten()
                {
                    assert!(d.handle.len() + d.name.len() <= data.len());
                    assert!(!d.name.contains(&0));
                }
                if let Some(fid) = ev.fid {
                    assert!(fid.handle.len() <= data.len());
                }
                assert_eq!(ev.owned_pidfd().is_some(), ev.pidfd.is_some_and(|fd| fd >= 0));
            }
            Err(e) => {
                assert!(e.offset <= data.len());
                after_error = true;
            }
        }
    }
});
