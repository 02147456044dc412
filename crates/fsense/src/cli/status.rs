//! `fsense status`: what the sensor says about itself.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use fsense_proto::{Health, Message, PROTOCOL_VERSION};
use serde_json::json;

use super::{Failure, StatusArgs};
use crate::output::report::{health_json, health_text};
use crate::source::capture::CaptureReader;

pub fn run(args: StatusArgs) -> Result<ExitCode, Failure> {
    let (health, origin) = match &args.capture {
        Some(path) => (last_health_in(path)?, format!("capture {}", path.display())),
        None => (live_health()?, "live sensor".to_string()),
    };
    let consumer = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_version": PROTOCOL_VERSION,
    });
    if args.json {
        let v = json!({"consumer": consumer, "source": origin, "sensor": health_json(&health)});
        println!("{v:#}");
    } else {
        println!(
            "fsense {} (protocol {PROTOCOL_VERSION})\nsensor health from {origin}:\n{}",
            env!("CARGO_PKG_VERSION"),
            health_text(&health).trim_end()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The last health snapshot in a capture. Damage after it does not hide it, but is reported.
fn last_health_in(path: &std::path::Path) -> Result<Health, Failure> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader =
        CaptureReader::new(BufReader::new(f)).map_err(|e| Failure::new(e.to_string()))?;
    let mut last = None;
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                if let Message::Health(h) = frame.message {
                    last = Some(h);
                }
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("warning: {}", super::one_line(&e.to_string()));
                break;
            }
        }
    }
    last.ok_or_else(|| Failure::new(format!("{} holds no health message", path.display())))
}

#[cfg(windows)]
fn live_health() -> Result<Health, Failure> {
    crate::source::winport::first_health(std::time::Duration::from_secs(15)).map_err(Failure::new)
}

#[cfg(not(windows))]
fn live_health() -> Result<Health, Failure> {
    Err(Failure::new(
        "no fsense sensor on this machine: the driver runs on Windows (here `fsense watch` uses \
         fanotify directly); `fsense status --capture FILE` shows the last health a capture recorded",
    ))
}
