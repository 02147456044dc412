//! Windows source: the fsense driver's communication port.
//!
//! Connect with the `Hello` as the connection context, receive batches and health messages,
//! answer every health message with a `ControlReply` ack (the driver counts replies it rejects),
//! and reconnect when the port goes away (driver unloaded or reloaded): a new connection is a
//! new driver load, whose sequence numbers start over.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fsense_proto::{Health, Hello, Message};
use serde::Serialize;

use crate::ffi::windows::{Port, is_connection_limit};
use crate::pipeline::{Handled, Pipeline};
use crate::port_framing::{ack, message_slice};
use crate::status_line::StatusLine;
use crate::time::now_ticks;

/// The driver's port name.
pub const PORT_NAME: &str = "\\fsensePort";

/// What the port connection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PortStats {
    pub connects: u64,
    pub disconnects: u64,
    pub messages: u64,
    pub replies: u64,
    pub reply_failures: u64,
}

/// Receives until `stop` is set.
pub fn run(pipeline: &mut Pipeline, stop: &AtomicBool) -> io::Result<PortStats> {
    let mut stats = PortStats::default();
    let mut status = StatusLine::new();
    let mut said_waiting = false;
    while !stop.load(Ordering::SeqCst) {
        let mut port = match Port::connect(PORT_NAME, &Hello::current().encode()) {
            Ok(p) => p,
            Err(e) => {
                if !said_waiting {
                    eprintln!("fsense: waiting for the driver's port {PORT_NAME}: {e}");
                    said_waiting = true;
                }
                sleep_unless(stop, Duration::from_secs(1));
                continue;
            }
        };
        said_waiting = false;
        if stats.connects > 0 {
            pipeline.new_session();
        }
        stats.connects += 1;
        eprintln!("fsense: connected to {PORT_NAME}");
        while !stop.load(Ordering::SeqCst) {
            let received = match port.receive(Duration::from_millis(200)) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    pipeline.flush()?;
                    let s = pipeline.stats();
                    let hw = pipeline.last_health().map_or(0, |h| h.queue_high_water);
                    status.tick(&s, hw.into());
                    continue;
                }
                Err(e) => {
                    eprintln!("fsense: port disconnected ({e}); reconnecting");
                    stats.disconnects += 1;
                    break;
                }
            };
            stats.messages += 1;
            let (message_id, reply_length) = (received.message_id, received.reply_length);
            let bytes = message_slice(received.body, received.transferred);
            let handled = pipeline.handle_message(bytes, now_ticks())?;
            if let Ok(Handled::Health(h)) = handled
                && reply_length != 0
            {
                let reply = ack(&h, pipeline.last_sequence());
                match port.reply(message_id, &reply) {
                    Ok(()) => stats.replies += 1,
                    Err(_) => stats.reply_failures += 1,
                }
            }
        }
    }
    status.clear();
    Ok(stats)
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects, waits for the first health message, acknowledges it and returns it.
pub fn first_health(timeout: Duration) -> Result<Health, String> {
    let mut port = Port::connect(PORT_NAME, &Hello::current().encode()).map_err(|e| {
        if is_connection_limit(&e) {
            format!("the driver's port {PORT_NAME} already has its one consumer (is fsense watch running?)")
        } else {
            format!("cannot connect to the driver's port {PORT_NAME} (is fsense.sys loaded, and are you an administrator?): {e}")
        }
    })?;
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        let received = port
            .receive(Duration::from_millis(500))
            .map_err(|e| format!("port closed while waiting for health: {e}"))?;
        let Some(r) = received else { continue };
        let (id, reply_length) = (r.message_id, r.reply_length);
        let bytes = message_slice(r.body, r.transferred);
        if let Ok(Message::Health(h)) = Message::decode(bytes) {
            if reply_length != 0 {
                // Best effort: the driver counts a missing reply, and status only reads.
                let _ = port.reply(id, &ack(&h, 0));
            }
            return Ok(h);
        }
    }
    Err(format!(
        "no health message from the driver within {} s",
        timeout.as_secs()
    ))
}
