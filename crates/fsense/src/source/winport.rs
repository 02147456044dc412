//! Windows source: the fsense driver's communication port.
//!
//! Connect with the `Hello` as the connection context, receive batches and health messages,
//! answer every health message with a `ControlReply` ack (the driver counts replies it rejects),
//! and reconnect when the port goes away (driver unloaded or reloaded): a new connection is a
//! new driver load, whose sequence numbers start over.
//!
//! The driver waits at most 100 ms for a posted receive before it drops a batch, so receiving
//! never waits on anything slow: several receives stay posted, a health message is answered as
//! soon as it is decoded, and process and account lookups run off this thread (the pipeline's
//! [`crate::pipeline::enrich::Background`] cache). The same code runs on Linux against the simulated
//! Win32 functions (`fsense simulate --client win32`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fsense_proto::{Health, Hello, Message};
use serde::Serialize;

use crate::ffi::windows::{DEFAULT_RECEIVES, Port, Received, is_connection_limit};
use crate::output::status_line::StatusLine;
use crate::pipeline::{Handled, Pipeline};
use crate::source::port_framing::{ACK_REPLY_LEN, ack, message_slice};
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
    /// Receives kept posted.
    pub receives: usize,
    /// Messages that did not decode (each skipped; the pipeline counts them too).
    pub undecodable: u64,
    /// Health messages not answered because the driver's reply buffer cannot hold an ack.
    pub replies_skipped: u64,
    /// Connections the consumer itself closed and reopened (`AfterMessage::Reconnect`).
    pub reconnects: u64,
}

/// What to do after a message (lets the simulator make this client behave like a slow or a
/// crashing consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterMessage {
    Continue,
    /// Close the port (as a crashing consumer's handle is closed) and connect again.
    Reconnect,
}

/// How the client receives.
pub struct Options<'a> {
    /// Receives kept posted (1 is the old single-receive loop).
    pub receives: usize,
    /// Called after each message with the messages received so far.
    pub after_message: Option<&'a mut (dyn FnMut(u64) -> AfterMessage + Send)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            receives: DEFAULT_RECEIVES,
            after_message: None,
        }
    }
}

/// Receives until `stop` is set.
pub fn run(pipeline: &mut Pipeline, stop: &AtomicBool) -> io::Result<PortStats> {
    run_with(pipeline, stop, Options::default())
}

/// [`run`] with explicit options.
pub fn run_with(
    pipeline: &mut Pipeline,
    stop: &AtomicBool,
    mut options: Options<'_>,
) -> io::Result<PortStats> {
    let mut stats = PortStats {
        receives: options.receives.max(1),
        ..PortStats::default()
    };
    let mut status = StatusLine::new();
    let mut said_waiting = false;
    let mut session = Session {
        check_load: false,
        renewed: false,
        known_load: None,
    };
    let mut body = Vec::with_capacity(fsense_proto::MAX_MESSAGE_BYTES);
    let mut quiet_connect = false;
    while !stop.load(Ordering::SeqCst) {
        let mut port = match Port::connect(PORT_NAME, &Hello::current().encode(), stats.receives) {
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
        // After a reconnect the first message tells whether the driver was reloaded.
        session.check_load = stats.connects > 0;
        session.renewed = false;
        stats.connects += 1;
        if !quiet_connect {
            eprintln!("fsense: connected to {PORT_NAME}");
        }
        quiet_connect = false;
        while !stop.load(Ordering::SeqCst) {
            let received = match port.receive(Duration::from_millis(200), &mut body) {
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
            handle(
                pipeline,
                &mut port,
                received,
                &body,
                &mut stats,
                &mut session,
            )?;
            if let Some(after) = options.after_message.as_mut()
                && after(stats.messages) == AfterMessage::Reconnect
            {
                stats.reconnects += 1;
                quiet_connect = true;
                break;
            }
        }
        // Messages that completed before the cancellation were counted as delivered by the
        // driver: process them before the port closes.
        for (received, bytes) in port.cancel_all(Duration::from_secs(5)) {
            handle(
                pipeline,
                &mut port,
                received,
                &bytes,
                &mut stats,
                &mut session,
            )?;
        }
    }
    pipeline.flush()?;
    status.clear();
    Ok(stats)
}

/// What the client knows of the driver load behind the port.
struct Session {
    /// Whether the driver behind this (re)connection may be a new load.
    check_load: bool,
    /// Whether this connection already started a new pipeline session.
    renewed: bool,
    /// The load id of the last health that carried one (protocol 3), across connections.
    known_load: Option<u64>,
}

/// Whether a message of a reconnection comes from a new driver load, whose sequence numbers
/// start over. A health with a load id (protocol 3) says it outright when a load id is known:
/// another id is another load, whatever its counters (N6: a busy new load may already have
/// counted past the last number seen). Otherwise the counters tell: a batch starting at or
/// below the last number seen, or a health counting fewer events than that. `None`: the message
/// does not say.
fn starts_new_load(bytes: &[u8], last_sequence: u64, known_load: Option<u64>) -> Option<bool> {
    match Message::decode(bytes).ok()? {
        Message::Batch(batch) => batch
            .records()
            .next()
            .map(|first| first.sequence <= last_sequence),
        Message::Health(h) => match known_load {
            Some(known) if h.load_id != 0 => Some(h.load_id != known),
            _ => Some(h.events_generated < last_sequence),
        },
    }
}

/// One message: decoded and processed; a health message is acknowledged at once.
fn handle(
    pipeline: &mut Pipeline,
    port: &mut Port,
    received: Received,
    body: &[u8],
    stats: &mut PortStats,
    session: &mut Session,
) -> io::Result<()> {
    stats.messages += 1;
    let bytes = message_slice(body, received.transferred);
    let health_load = match Message::decode(bytes) {
        Ok(Message::Health(h)) if h.load_id != 0 => Some(h.load_id),
        _ => None,
    };
    // A batch can precede the connection's first health; if the counters took a new load for
    // the old one, the load id of that health still starts the new session.
    let load_changed =
        health_load.is_some() && session.known_load.is_some() && health_load != session.known_load;
    if (session.check_load || load_changed)
        && !session.renewed
        && let Some(new_load) = starts_new_load(bytes, pipeline.last_sequence(), session.known_load)
    {
        session.check_load = false;
        if new_load {
            session.renewed = true;
            pipeline.new_session();
        }
    }
    if health_load.is_some() {
        session.known_load = health_load;
    }
    match pipeline.handle_message(bytes, now_ticks())? {
        Ok(Handled::Health(h)) if received.reply_length != 0 => {
            if (received.reply_length as usize) < ACK_REPLY_LEN {
                stats.replies_skipped += 1;
                if stats.replies_skipped == 1 {
                    eprintln!(
                        "fsense: the driver waits for a {}-byte reply, an ack takes {ACK_REPLY_LEN} with its header: not answering (counted)",
                        received.reply_length,
                    );
                }
                return Ok(());
            }
            match port.reply(
                received.message_id,
                &ack(&h, pipeline.last_sequence(), pipeline.content_version()),
            ) {
                Ok(()) => stats.replies += 1,
                Err(_) => stats.reply_failures += 1,
            }
        }
        Ok(_) => {}
        Err(e) => {
            stats.undecodable += 1;
            if stats.undecodable == 1 {
                eprintln!(
                    "fsense: a message from the driver did not decode ({e}); skipped and counted"
                );
            }
        }
    }
    Ok(())
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects, waits for the first health message, acknowledges it and returns it.
pub fn first_health(timeout: Duration) -> Result<Health, String> {
    let mut port = Port::connect(PORT_NAME, &Hello::current().encode(), 1).map_err(|e| {
        if is_connection_limit(&e) {
            format!("the driver's port {PORT_NAME} already has its one consumer (is fsense watch running?)")
        } else {
            format!("cannot connect to the driver's port {PORT_NAME} (is fsense.sys loaded, and are you an administrator?): {e}")
        }
    })?;
    let end = Instant::now() + timeout;
    let mut body = Vec::new();
    while Instant::now() < end {
        let received = port
            .receive(Duration::from_millis(500), &mut body)
            .map_err(|e| format!("port closed while waiting for health: {e}"))?;
        let Some(r) = received else { continue };
        let bytes = message_slice(&body, r.transferred);
        if let Ok(Message::Health(h)) = Message::decode(bytes) {
            if r.reply_length as usize >= ACK_REPLY_LEN {
                // Best effort: the driver counts a missing reply, and status only reads.
                let _ = port.reply(r.message_id, &ack(&h, 0, None));
            }
            return Ok(h);
        }
    }
    Err(format!(
        "no health message from the driver within {} s",
        timeout.as_secs()
    ))
}

/// The client loop against the simulated port and the real driver, with hostile driver-side
/// input put in front of it.
#[cfg(all(test, not(windows)))]
mod tests {
    use std::sync::atomic::AtomicBool;

    use fsense_fltsim::win32;
    use fsense_fltsim::{ConsumerMode, SimConfig, Tuning};
    use fsense_proto::{Operation, PROTOCOL_VERSION};

    use super::*;
    use crate::pipeline::enrich::{Offline, ProcessCache};
    use crate::pipeline::filter::Filter;
    use crate::pipeline::paths::DosDeviceMap;
    use crate::source::synth::{self, SynthEvent};

    fn pipeline() -> Pipeline {
        Pipeline::new(
            ProcessCache::new(Box::new(Offline), 16),
            Filter::new(None, &[], None).unwrap(),
            DosDeviceMap::default(),
            Box::new(io::sink()),
            None,
        )
    }

    /// Small under Miri (`-Zmiri-disable-isolation`: the pipeline reads the real clock), where
    /// it runs the receive buffers, header and batch parsing and the reply along the real client
    /// loop; not in scripts/test.sh's Miri stages (too slow there).
    #[test]
    fn hostile_messages_and_a_short_reply_buffer_are_counted_not_fatal() {
        let batch =
            synth::batches(&[SynthEvent::new(Operation::Create, "C:\\x")], 1, 1, &[]).remove(0);
        let mut truncated = batch.clone();
        truncated.truncate(batch.len() / 2);
        let mut garbage = batch.clone();
        garbage[..4].copy_from_slice(b"JUNK");
        let health = synth::health(&Health {
            protocol_version: PROTOCOL_VERSION,
            ..Health::default()
        });
        let mut pipeline = pipeline();
        let mut stats = None;
        let mut taken = Vec::new();
        // A 5 s run: the three injections must all reach the client before the unload, and on a
        // loaded host (the test script runs Miri and builds beside it) 1 s was not always enough,
        // nor 3 s at load average 8 (the second injection was still waiting at the unload).
        let (events, rate_per_s) = if cfg!(miri) { (24, 400) } else { (15000, 3000) };
        let config = SimConfig {
            events,
            threads: 2,
            queue_capacity: 64,
            consumer: ConsumerMode::Normal,
            seed: 11,
        };
        // Paced, so the driver stays loaded while the hostile messages go in.
        let tuning = Tuning {
            rate_per_s,
            ..Tuning::default()
        };
        let report = fsense_fltsim::run_external(&config, &tuning, &mut |stop: &AtomicBool| {
            let late_stop = AtomicBool::new(false);
            std::thread::scope(|scope| {
                let injector = scope.spawn(|| {
                    [
                        (truncated.clone(), 0),
                        (garbage.clone(), 0),
                        // A driver reply buffer of 34 bytes: ReplyLength says 50 with the
                        // reply header (N5), and an ack takes 56. A client that compared
                        // ReplyLength with the ack alone (40) replied, and the reply overflowed.
                        (health.clone(), 34),
                    ]
                    .into_iter()
                    .map(|(bytes, reply)| {
                        win32::inject_message(bytes, reply, Duration::from_secs(5))
                    })
                    .collect::<Vec<bool>>()
                });
                // Keep receiving a little after the run's stop, so the port's closing at
                // unload is seen by the client rather than raced by the stop.
                let late_stop = &late_stop;
                scope.spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    // Miri, on the real clock here, interprets far slower.
                    let linger = if cfg!(miri) { 10_000 } else { 500 };
                    std::thread::sleep(Duration::from_millis(linger));
                    late_stop.store(true, std::sync::atomic::Ordering::Release);
                });
                stats = Some(run_with(&mut pipeline, late_stop, Options::default()));
                taken = injector.join().unwrap();
            });
        });
        let stats = stats.unwrap().unwrap();
        // Each hostile message reached the client (the simulated Filter Manager says so) and
        // was counted exactly once.
        assert_eq!(taken, [true, true, true], "{stats:?}");
        assert_eq!(stats.undecodable, 2, "{stats:?}");
        assert_eq!(pipeline.stats().decode_errors, 2);
        // The ack does not fit the driver's 34-byte reply buffer: not sent, counted. (Sending it
        // is a REPLY_TOO_LARGE finding of the simulated FilterReplyMessage.)
        assert_eq!(stats.replies_skipped, 1, "{stats:?}");
        assert_eq!(report.verifier_violations, Vec::<String>::new());
        // The unload closed the port under the posted receives: a counted disconnect.
        assert!(stats.disconnects >= 1, "{stats:?}");
        assert!(report.delivered > 0);
        assert_eq!(pipeline.stats().events, report.delivered);
    }

    #[test]
    fn a_batch_at_or_below_the_last_sequence_is_a_new_driver_load() {
        let batch = |first| {
            synth::batches(
                &[SynthEvent::new(Operation::Create, "C:\\x")],
                first,
                1,
                &[],
            )
            .remove(0)
        };
        assert_eq!(starts_new_load(&batch(1), 50, None), Some(true));
        assert_eq!(starts_new_load(&batch(51), 50, None), Some(false));
        let health = |generated, load_id| {
            synth::health(&Health {
                protocol_version: PROTOCOL_VERSION,
                events_generated: generated,
                load_id,
                ..Health::default()
            })
        };
        assert_eq!(starts_new_load(&health(10, 0), 50, None), Some(true));
        assert_eq!(starts_new_load(&health(60, 0), 50, None), Some(false));
        assert_eq!(starts_new_load(b"junk", 50, None), None);
        // The first load id seen: nothing to compare it with, the counters decide.
        assert_eq!(starts_new_load(&health(60, 9), 50, None), Some(false));
    }

    /// N6 (third driver review): a reloaded driver that counted past the last sequence number
    /// seen before the client reconnected is still a new load: its health's load id differs.
    /// The counters alone took it for the old load.
    #[test]
    fn a_health_from_another_load_is_a_new_load_whatever_its_counters() {
        let health = |generated, load_id| {
            synth::health(&Health {
                protocol_version: PROTOCOL_VERSION,
                events_generated: generated,
                load_id,
                ..Health::default()
            })
        };
        assert_eq!(starts_new_load(&health(60, 2), 50, Some(1)), Some(true));
        assert_eq!(starts_new_load(&health(60, 1), 50, Some(1)), Some(false));
        // A protocol-2 driver sends no id: the counters decide.
        assert_eq!(starts_new_load(&health(60, 0), 50, Some(1)), Some(false));
    }
}
