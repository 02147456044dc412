//! The delivery worker: a system thread, never the I/O path, that drains the queue into batches
//! and sends them over the communication port with bounded timeouts.
//!
//! No consumer, a slow one or a dead one changes nothing for file I/O: the callbacks only ever
//! touch the queue. A batch the port does not take within [`SEND_TIMEOUT_MS`] is counted as
//! dropped (its sequence numbers become gaps the consumer sees). Batches are sent without waiting
//! for a reply, so a timeout always means "not delivered". Health snapshots go out periodically
//! and right after a consumer connects; the consumer's fixed-size reply (ack, config) is the only
//! data that travels from user mode to the driver.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fsense_proto::{BatchWriter, ControlReply};

use crate::ffi::{self, SendOutcome, SpinLock};
use crate::sensor::SENSOR;

/// Longest wait for the consumer to take one batch.
pub const SEND_TIMEOUT_MS: u32 = 100;
/// Longest wait per batch while draining at unload.
pub const FINAL_SEND_TIMEOUT_MS: u32 = 20;
/// Longest time the final drain sends batches at unload (then the final health, at most
/// [`FINAL_SEND_TIMEOUT_MS`] more): unload never waits long on a stalled consumer, whatever the
/// queue capacity or `BatchRecords`. What is still queued then is counted as dropped.
pub const FINAL_DRAIN_MS: u32 = 1_500;
/// Health period, in 100 ns ticks of interrupt time (1 s).
const HEALTH_PERIOD_TICKS: u64 = 10_000_000;
/// Longest idle wait: until the next health is due. The worker sleeps on the wake-up event,
/// which the queue signals on empty -> non-empty (and stop and connect signal too), so an idle
/// worker wakes once per health period, not to poll.
pub const IDLE_WAIT_MAX_MS: u32 = (HEALTH_PERIOD_TICKS / 10_000) as u32;
/// Batches sent per wake-up before checking for stop and health again.
const MAX_BATCHES_PER_ROUND: u32 = 64;

/// The ordering of the store that publishes a connect to the worker ([`wake_for_health`]):
/// Release, weakened to Relaxed only by the test feature `ordering-probe`.
#[cfg(not(feature = "ordering-probe"))]
const PUBLISH_CONNECT: Ordering = Ordering::Release;
#[cfg(feature = "ordering-probe")]
const PUBLISH_CONNECT: Ordering = Ordering::Relaxed;

/// Unload (or a failed load) asks the worker to stop. Relaxed: it publishes nothing (the worker
/// reads no data the stopper wrote). A sleeping worker is woken by the event, whose set/wait
/// orders this store before its next check; a busy one sees it at its next check. The stopper
/// then waits for the thread to exit, which orders all the worker did before what follows.
static STOP: AtomicBool = AtomicBool::new(false);
/// A consumer connected: send a health now. Release store in [`wake_for_health`], Acquire swap
/// in [`take_health_request`]: it publishes the connect's negotiated protocol to the worker,
/// which builds the answer with it (tests/ordering.rs; `ordering-probe` weakens it).
static HEALTH_NOW: AtomicBool = AtomicBool::new(false);
/// Relaxed: the worker alone touches it.
static POLL_ID: AtomicU64 = AtomicU64::new(0);
/// Events lost (failed sends, or queue drops taken with no record to send) that no batch header
/// has reported yet. Relaxed: the worker alone touches it (DriverEntry zeroes it before the
/// worker thread exists).
static UNREPORTED_SEND_DROPS: AtomicU64 = AtomicU64::new(0);
/// The batch buffer, allocated at load; the worker takes it when it starts.
static BATCH_BUFFER: SpinLock<Option<&'static mut [u8]>> = SpinLock::new(None);

pub fn install_batch_buffer(buf: &'static mut [u8]) {
    // DriverEntry, before the worker thread exists: creating it orders these.
    STOP.store(false, Ordering::Relaxed);
    HEALTH_NOW.store(false, Ordering::Relaxed);
    UNREPORTED_SEND_DROPS.store(0, Ordering::Relaxed);
    *BATCH_BUFFER.lock() = Some(buf);
}

/// Drops the buffer if the worker never took it (load failed before the worker started).
pub fn remove_batch_buffer() {
    *BATCH_BUFFER.lock() = None;
}

pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
    SENSOR.worker_wake.set();
}

/// Asks for a health snapshot now (a consumer just connected: it doubles as the hello's answer).
/// Release: everything the connect stored before (the negotiated protocol) is visible to the
/// worker once [`take_health_request`] sees the request.
pub fn wake_for_health() {
    HEALTH_NOW.store(true, PUBLISH_CONNECT);
    SENSOR.worker_wake.set();
}

/// Takes a pending health request (a consumer connected since the last one). Worker only.
/// Acquire: pairs with [`wake_for_health`]'s Release, so the health built next sees the
/// connect's protocol.
pub fn take_health_request() -> bool {
    HEALTH_NOW.swap(false, Ordering::Acquire)
}

/// The worker's body. Returns when stopped, after the final drain and the final health.
pub fn run_worker() {
    let Some(buf) = BATCH_BUFFER.lock().take() else {
        return;
    };
    // Intervals run on interrupt time (N4): a system clock set back does not delay health.
    let mut last_health: Option<u64> = None;
    loop {
        let stopping = STOP.load(Ordering::Relaxed);
        if stopping {
            break;
        }
        let emptied = deliver(buf, SEND_TIMEOUT_MS, MAX_BATCHES_PER_ROUND, true);
        let now = ffi::interval_time();
        let due = last_health.is_none_or(|t| now.saturating_sub(t) >= HEALTH_PERIOD_TICKS);
        if take_health_request() || due {
            send_health(buf, SEND_TIMEOUT_MS);
            last_health = Some(ffi::interval_time());
        }
        // Sleep only once the queue is empty: the wake-up signal fires on empty -> non-empty.
        if emptied {
            let since = last_health.map_or(0, |t| ffi::interval_time().saturating_sub(t));
            SENSOR.worker_wake.wait(idle_wait_ms(since));
        }
    }
    // Final drain: from here no event gets a sequence number, so after this loop every number
    // handed out was delivered or counted as dropped, and the last health says so.
    SENSOR.stop_accepting();
    let capacity_bound = SENSOR.health(0).queue_capacity.saturating_add(1);
    let deadline = ffi::interval_time().saturating_add(u64::from(FINAL_DRAIN_MS) * 10_000);
    let emptied = deliver_until(buf, FINAL_SEND_TIMEOUT_MS, capacity_bound, false, deadline);
    if !emptied {
        discard_queued(buf, capacity_bound);
    }
    send_health(buf, FINAL_SEND_TIMEOUT_MS);
}

/// How long an idle worker sleeps when the last health went out `since_health` ticks ago: until
/// the next one is due, at least 1 ms, at most [`IDLE_WAIT_MAX_MS`].
pub fn idle_wait_ms(since_health: u64) -> u32 {
    let left = HEALTH_PERIOD_TICKS.saturating_sub(since_health) / 10_000;
    u32::try_from(left)
        .unwrap_or(IDLE_WAIT_MAX_MS)
        .clamp(1, IDLE_WAIT_MAX_MS)
}

/// Sends up to `max_batches` batches; stops early when the queue is empty (and, if
/// `stop_aware`, when a stop is requested, so unload never waits out a round of timeouts).
/// Returns whether it found the queue empty.
fn deliver(buf: &mut [u8], timeout_ms: u32, max_batches: u32, stop_aware: bool) -> bool {
    deliver_until(buf, timeout_ms, max_batches, stop_aware, u64::MAX)
}

/// [`deliver`], stopping (not empty) once the interrupt time reaches `deadline`.
fn deliver_until(
    buf: &mut [u8],
    timeout_ms: u32,
    max_batches: u32,
    stop_aware: bool,
    deadline: u64,
) -> bool {
    for _ in 0..max_batches {
        if stop_aware && STOP.load(Ordering::Relaxed) {
            return false;
        }
        if deadline != u64::MAX && ffi::interval_time() >= deadline {
            return false;
        }
        let Ok(mut batch) = BatchWriter::new(buf) else {
            return true;
        };
        let protocol = SENSOR.negotiated_protocol();
        let (moved, queue_drops) = SENSOR.drain_into_for(&mut batch, protocol);
        if moved == 0 {
            // Drops taken from the queue still need a batch header to report them.
            UNREPORTED_SEND_DROPS.fetch_add(queue_drops, Ordering::Relaxed);
            return true;
        }
        let dropped_before =
            queue_drops.saturating_add(UNREPORTED_SEND_DROPS.swap(0, Ordering::Relaxed));
        let Ok(len) = batch.finish(dropped_before) else {
            return true;
        };
        // A consumer of another protocol connected since the drain (issue 27): the batch may
        // hold records it cannot decode, so it is not sent; its records count as lost.
        let outcome = if SENSOR.negotiated_protocol() != protocol {
            SendOutcome::Failed
        } else {
            buf.get(..len).map_or(SendOutcome::Failed, |msg| {
                ffi::send_message(msg, timeout_ms)
            })
        };
        let c = &SENSOR.counters;
        let moved = u64::from(moved);
        match outcome {
            SendOutcome::Delivered => {
                c.events_sent.fetch_add(moved, Ordering::Relaxed);
                c.batches_sent.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                c.dropped_send.fetch_add(moved, Ordering::Relaxed);
                // Not reported: this batch's header never arrived, so the next one carries it.
                UNREPORTED_SEND_DROPS
                    .fetch_add(dropped_before.saturating_add(moved), Ordering::Relaxed);
                match other {
                    SendOutcome::TimedOut => c.send_timeouts.fetch_add(1, Ordering::Relaxed),
                    SendOutcome::Failed => c.send_failures.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        }
    }
    false
}

/// Takes what is still queued at the end of the final drain and counts it as dropped (it will
/// never be sent), so the last health still says generated = sent + dropped. Memory copies only,
/// at most `max_batches` batches.
fn discard_queued(buf: &mut [u8], max_batches: u32) {
    for _ in 0..max_batches {
        let Ok(mut batch) = BatchWriter::new(buf) else {
            return;
        };
        let (moved, queue_drops) = SENSOR.drain_into(&mut batch);
        UNREPORTED_SEND_DROPS.fetch_add(queue_drops, Ordering::Relaxed);
        if moved == 0 {
            return;
        }
        SENSOR
            .counters
            .dropped_send
            .fetch_add(u64::from(moved), Ordering::Relaxed);
    }
}

/// Sends a health snapshot and applies the consumer's reply.
fn send_health(buf: &mut [u8], timeout_ms: u32) {
    let poll_id = POLL_ID.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    let health = SENSOR.health(poll_id);
    let Ok(len) = health.encode(buf) else {
        return;
    };
    // The layout of the negotiated protocol: 136 bytes, or 144 with the load id.
    let Some(msg) = buf.get_mut(..len) else {
        return;
    };
    let mut reply = [0u8; ControlReply::LEN];
    let (outcome, reply_len) = ffi::send_health(msg, &mut reply, timeout_ms);
    if outcome == SendOutcome::Delivered {
        SENSOR.apply_reply(reply.get(..reply_len).unwrap_or(&[]), poll_id);
    }
}
