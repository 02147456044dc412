//! Host simulator of the Filter Manager and of the kernel calls fsense.sys makes.
//!
//! No Windows machine can load fsense.sys here, so the driver's own code, its FFI layer
//! included, runs on the host against this crate, which defines every kernel and Filter Manager
//! function the driver imports ([`ffi`]) and is stricter than Driver Verifier about the rules
//! that matter for a sensor ([`verifier`]): pool and name-reference leaks, IRQL per call, spin
//! locks paired and never held across a wait, no `FltSendMessage` from an I/O callback or with a
//! NULL timeout, valid callback return values, port security, a clean unload under load.
//!
//! A run ([`run`]) loads the driver (DriverEntry), connects a simulated consumer in one of
//! [`ConsumerMode`]'s behaviours, drives creates and writes from many threads through the driver's
//! own registration table (hostile name shapes included), unloads it while I/O is still going,
//! and checks every invariant: each delivered record matches the operation that caused it,
//! `generated == delivered + dropped`, and the sequence gaps the consumer saw are the drops.
//!
//! The final counters come from the driver's last health message, which the simulated Filter
//! Manager reads from `FltSendMessage` whether or not a consumer took it (as a kernel debugger
//! would see it).

// `unsafe` is allowed only in the FFI module (the exported kernel functions and the calls into
// the driver's callbacks).
#![deny(unsafe_code)]

pub mod changes;
mod client;
mod client_changes;
#[allow(unsafe_code)]
pub mod ffi;
mod plan;
mod port;
mod report;
mod sessions;
pub mod verifier;
#[allow(unsafe_code)]
pub mod win32;
mod world;

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use plan::{CONSUMER_PID, NameShape};
pub use report::{CALLBACK_WAIT_THRESHOLD_US, SimReport};
pub use sessions::op_mix;

pub use fsense_proto::Health;

/// How the simulated consumer at the other end of the communication port behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerMode {
    /// Nobody connects.
    Absent,
    /// Connects with the real hello and receives everything promptly.
    Normal,
    /// Sleeps a little before taking each message.
    Slow,
    /// Connects, then never takes a message nor replies.
    Stalled,
    /// Disconnects mid-stream and reconnects.
    Crash,
    /// Garbage replies, wrong protocol version, oversized and truncated replies.
    Malicious,
}

impl ConsumerMode {
    pub const ALL: [ConsumerMode; 6] = [
        Self::Absent,
        Self::Normal,
        Self::Slow,
        Self::Stalled,
        Self::Crash,
        Self::Malicious,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Normal => "normal",
            Self::Slow => "slow",
            Self::Stalled => "stalled",
            Self::Crash => "crash",
            Self::Malicious => "malicious",
        }
    }
}

impl fmt::Display for ConsumerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsumerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown consumer mode '{s}' (absent, normal, slow, stalled, crash, malicious)"
                )
            })
    }
}

/// One simulation run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// File operations to generate (each yields one create or write event, or none when filtered).
    pub events: u64,
    /// I/O threads calling the driver's callbacks at once.
    pub threads: u32,
    /// The driver's queue capacity, in records.
    pub queue_capacity: u32,
    pub consumer: ConsumerMode,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            events: 10_000,
            threads: 4,
            queue_capacity: 4096,
            consumer: ConsumerMode::Normal,
            seed: 1,
        }
    }
}

/// One run at a time per process: the driver and the simulated kernel are process-wide state.
static RUN_LOCK: Mutex<()> = Mutex::new(());

/// Runs the real driver code against the simulated Filter Manager. `on_message` receives every
/// message the driver sent with `FltSendMessage` that the simulated consumer took, exactly as
/// sent, in order, from one thread at a time.
pub fn run(config: &SimConfig, on_message: &mut (dyn FnMut(&[u8]) + Send)) -> SimReport {
    run_tuned(config, &Tuning::default(), on_message)
}

/// Driver settings a run can change beyond [`SimConfig`] (they reach the driver through the
/// service key, as on Windows), and a kernel call to fail during load.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// `BatchRecords`: most records per message; 0 = unset (as many as fit), 1 = one per event.
    pub batch_records: u32,
    /// Make this kernel call fail while DriverEntry runs, to check that the load unwinds exactly.
    pub fail_during_load: Option<FailPoint>,
    /// File operations per second over all I/O threads; 0 = as fast as they go.
    pub rate_per_s: u64,
    /// `FltSendMessage` fails every nth batch message it is handed for a connected consumer with
    /// STATUS_INSUFFICIENT_RESOURCES, a documented return (a pool allocation failure); 0 = never.
    /// Health messages always go through: the run's reply checks count on them.
    pub fail_every_nth_batch: u32,
}

/// A consumer that is real code: it runs on the consumer thread, reaches the driver through the
/// simulated user-mode API ([`win32`]), and returns once `stop` is set (after the unload).
pub type ExternalConsumer<'a> = &'a mut (dyn FnMut(&AtomicBool) + Send);

enum Consumer<'a> {
    Simulated(&'a mut (dyn FnMut(&[u8]) + Send)),
    External(ExternalConsumer<'a>),
}

/// [`run_tuned`] with a real consumer instead of the simulated one: "delivered" is then every
/// record the simulated Filter Manager put into the consumer's receive buffers.
/// `config.consumer` only names the behaviour in the report.
pub fn run_external(
    config: &SimConfig,
    tuning: &Tuning,
    consumer: ExternalConsumer<'_>,
) -> SimReport {
    run_with(config, tuning, Consumer::External(consumer), 1)
}

/// [`run_external`] with the driver loaded `loads` times in a row while the consumer keeps
/// running: each load is entered, runs the plan's I/O and is unloaded under load, so the
/// consumer sees its port go away and must connect to the next load. Counts are summed over
/// the loads (each load's sequence numbers are accounted against its own last health);
/// `health` is the last load's.
pub fn run_external_reloading(
    config: &SimConfig,
    tuning: &Tuning,
    loads: u32,
    consumer: ExternalConsumer<'_>,
) -> SimReport {
    run_with(config, tuning, Consumer::External(consumer), loads)
}

/// Kernel calls the simulator can fail during DriverEntry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// The first pool allocation (queue storage).
    FirstPoolAllocation,
    /// The second pool allocation (batch buffer).
    SecondPoolAllocation,
    RegisterFilter,
    BuildSecurityDescriptor,
    CreatePort,
    CreateThread,
    /// `ObReferenceObjectByHandle` on the new worker thread's handle.
    ReferenceThread,
    StartFiltering,
}

impl FailPoint {
    pub const ALL: [FailPoint; 8] = [
        Self::FirstPoolAllocation,
        Self::SecondPoolAllocation,
        Self::RegisterFilter,
        Self::BuildSecurityDescriptor,
        Self::CreatePort,
        Self::CreateThread,
        Self::ReferenceThread,
        Self::StartFiltering,
    ];
}

/// What a load that was made to fail left behind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailedLoad {
    /// DriverEntry's status (must be an error).
    pub status: i32,
    /// Everything still held: allocations, registration, ports, threads, handles. Empty = clean.
    pub leftovers: Vec<String>,
    pub verifier_violations: Vec<String>,
}

/// Runs `f` against a fresh simulated kernel (no driver loaded) and returns the violations it
/// caused: lets tests show that each verifier rule fires.
pub fn violations_of(f: impl FnOnce()) -> Vec<String> {
    let _one_at_a_time = RUN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    world::reset(64, 0);
    port::PORT.reset();
    let _ = verifier::take_violations();
    f();
    let _ = world::take();
    verifier::take_violations()
}

/// Loads the driver with one kernel call failing and reports what the failed load left behind.
pub fn load_with_failure(point: FailPoint) -> FailedLoad {
    let _one_at_a_time = RUN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    world::reset(64, 0);
    world::with_world(|w| w.fail_point = Some(point));
    port::PORT.reset();
    let _ = verifier::take_violations();
    let status = ffi::call_driver_entry();
    let world = world::take().unwrap_or_default();
    FailedLoad {
        status,
        leftovers: leftovers(&world),
        verifier_violations: verifier::take_violations(),
    }
}

/// Everything a driver must have given back once it is unloaded (or failed to load).
fn leftovers(world: &world::World) -> Vec<String> {
    let mut out = Vec::new();
    let mut leak = |rule: &str, n: usize, what: &str| {
        if n != 0 {
            out.push(format!("{rule}: {n} {what}"));
        }
    };
    leak(
        "POOL_LEAK",
        world.allocations.len(),
        "pool allocations still outstanding",
    );
    leak(
        "NAME_REFERENCE_LEAK",
        world.name_infos.len(),
        "file name references not released",
    );
    leak("CONTEXT_LEAK", world.contexts.len(), "contexts not freed");
    leak(
        "WORKER_NOT_JOINED",
        world.threads.values().filter(|t| t.join.is_some()).count(),
        "system threads not waited for",
    );
    leak(
        "THREAD_OBJECT_LEAK",
        world
            .threads
            .values()
            .filter(|t| t.object_refs != 0)
            .count(),
        "thread object references held",
    );
    leak("HANDLE_LEAK", world.open_handles.len(), "handles open");
    leak(
        "SD_LEAK",
        world.security_descriptors.len(),
        "security descriptors not freed",
    );
    leak(
        "SERVER_PORT_NOT_CLOSED",
        usize::from(world.server_port.is_some_and(|p| p.open)),
        "server port open",
    );
    leak(
        "CLIENT_PORT_NOT_CLOSED",
        usize::from(port::PORT.is_connected()),
        "client port open",
    );
    leak(
        "FILTER_NOT_UNREGISTERED",
        usize::from(world.registration.is_some()),
        "filter registration",
    );
    out
}

/// [`run`] with extra driver settings.
pub fn run_tuned(
    config: &SimConfig,
    tuning: &Tuning,
    on_message: &mut (dyn FnMut(&[u8]) + Send),
) -> SimReport {
    run_with(config, tuning, Consumer::Simulated(on_message), 1)
}

/// What one load of the driver left to check once it was unloaded.
struct Load {
    /// The simulated kernel after the unload.
    world: world::World,
    unload_status: Option<i32>,
    unload_ms: u64,
    attached: bool,
    declined: usize,
    /// See [`sessions::ThreadOutcome`]: the changes that must have arrived, and the malformed
    /// buffers (rejected before unload, issued).
    changes: Vec<u32>,
    hostile: (u64, u64),
    unwatched: u64,
}

fn run_with(config: &SimConfig, tuning: &Tuning, consumer: Consumer<'_>, loads: u32) -> SimReport {
    let external = matches!(consumer, Consumer::External(_));
    let _one_at_a_time = RUN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // Only under the lock: a run in progress owns the user-mode side too.
    win32::reset();
    let _ = verifier::take_violations();
    let _ = ffi::null_timeouts_seen();
    let _ = ffi::take_event_wait_timeouts();
    ffi::reset_system_clock();
    let plan = &plan::Plan::generate(config.events, config.threads, config.seed);
    let mut report = SimReport::default();
    let mut violations = Vec::new();
    let mut finished: Vec<Load> = Vec::new();

    let stop_client = AtomicBool::new(false);
    let settle_client = AtomicBool::new(false);
    let connected = AtomicBool::new(false);
    let client_done = AtomicBool::new(config.consumer == ConsumerMode::Absent);
    let max_callback_ns = AtomicU64::new(0);
    let mut client_outcome = None;
    // Whether a failed DriverEntry gave back what it allocated (`None`: every load entered).
    let mut failed_entry_clean = None;

    // Started at the first load that entered, then kept across loads.
    let mut unstarted = (config.consumer != ConsumerMode::Absent).then_some(consumer);
    std::thread::scope(|scope| {
        let mut client_thread = None;
        let loads = loads.max(1);
        for number in 1..=loads {
            world::reset(config.queue_capacity, tuning.batch_records);
            world::with_world(|w| w.fail_every_nth_batch = tuning.fail_every_nth_batch);
            port::PORT.reset();
            win32::begin_load();
            let entry = ffi::call_driver_entry();
            if entry < 0 {
                violations.push(format!(
                    "DRIVER_ENTRY: DriverEntry failed with {entry:#010x}"
                ));
                failed_entry_clean = Some(world::take().is_some_and(|w| w.allocations.is_empty()));
                break;
            }
            if let Some(mut consumer) = unstarted.take() {
                let stop = &stop_client;
                let settle = &settle_client;
                let connected = &connected;
                let done = &client_done;
                let mode = config.consumer;
                client_thread = Some(scope.spawn(move || match &mut consumer {
                    Consumer::Simulated(on_message) => {
                        let mut c = client::Client::new(mode, plan, stop, connected, done);
                        c.settle = Some(settle);
                        c.run(&mut **on_message);
                        c.outcome
                    }
                    Consumer::External(run) => {
                        verifier::set_thread_role("consumer");
                        verifier::set_current_pid(CONSUMER_PID);
                        done.store(true, Ordering::Release);
                        run(stop);
                        client::ClientOutcome::default()
                    }
                }));
            }
            let load = run_load(
                config,
                tuning,
                plan,
                external,
                number == loads,
                client_thread.is_some(),
                &LoadSignals {
                    settle_client: &settle_client,
                    connected: &connected,
                    client_done: &client_done,
                    max_callback_ns: &max_callback_ns,
                },
            );
            finished.push(load);
        }
        stop_client.store(true, Ordering::Release);
        port::PORT.shutdown();
        if let Some(c) = client_thread {
            client_outcome = c.join().ok();
        }
    });
    // The last load's kernel is taken only now, after the consumer stopped, as a single-load run
    // always did.
    if let Some(last) = finished.last_mut() {
        last.world = world::take().unwrap_or_default();
    }
    violations.splice(0..0, verifier::take_violations());

    let mut outcome = client_outcome.unwrap_or_default();
    let reported = std::mem::take(&mut outcome.reported);
    for load in &finished {
        report.changes_expected += load.changes.len() as u64;
        report.hostile_buffers_issued += load.hostile.1;
        report.hostile_buffers_watched += load.hostile.0;
        report.changes_unwatched += load.unwatched;
        if !external && config.consumer != ConsumerMode::Absent {
            report.changes_missing += load
                .changes
                .iter()
                .filter(|id| !reported.contains(&(**id as usize)))
                .count() as u64;
        }
    }
    let mut simulated_tracker = Some(outcome.tracker);
    report.unload_clean = failed_entry_clean.unwrap_or(true);
    for (index, load) in finished.iter().enumerate() {
        let (tracker, learned) = if external {
            let load = index as u64 + 1;
            (win32::take_delivered(load), Some(win32::take_learned(load)))
        } else {
            // The simulated consumer serves one load.
            (simulated_tracker.take().unwrap_or_default(), None)
        };
        account_load(
            &mut report,
            &mut violations,
            load,
            tracker,
            learned,
            config,
            outcome.bad_replies,
        );
    }
    report.max_callback_us = max_callback_ns.load(Ordering::Relaxed) / 1000;
    report.verifier_violations = violations;
    report
}

/// What the runner and the consumer thread tell each other during a load.
struct LoadSignals<'a> {
    settle_client: &'a AtomicBool,
    connected: &'a AtomicBool,
    client_done: &'a AtomicBool,
    max_callback_ns: &'a AtomicU64,
}

/// One load of the (already entered) driver: waits for the consumer, runs the plan's I/O, and
/// unloads while the last tenth of it is still running.
fn run_load(
    config: &SimConfig,
    tuning: &Tuning,
    plan: &plan::Plan,
    external: bool,
    last: bool,
    has_client: bool,
    signals: &LoadSignals<'_>,
) -> Load {
    let attached = world::with_world(|w| {
        w.instances
            .iter()
            .find(|(_, attached)| *attached)
            .map(|(i, _)| *i)
    })
    .flatten();
    let filter = world::with_world(|w| w.filter_handle).unwrap_or(0);
    let declined =
        world::with_world(|w| w.instances.iter().filter(|(_, a)| !*a).count()).unwrap_or(0);
    let ops_done = AtomicU64::new(0);
    let total_ops = plan.total_ops();
    let mut unload_status = None;
    let mut unload_ms = 0;
    let mut changes = Vec::new();
    let mut hostile = (0, 0);
    let mut unwatched = 0;
    std::thread::scope(|scope| {
        if has_client {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !(signals.connected.load(Ordering::Acquire)
                || external && port::PORT.is_connected())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let io_threads: Vec<_> = plan
            .threads
            .iter()
            .map(|sessions| {
                let ops_done = &ops_done;
                let max_ns = signals.max_callback_ns;
                let instance = attached.unwrap_or(0x4000);
                let pace = Pace::new(tuning.rate_per_s, config.threads);
                scope.spawn(move || {
                    verifier::set_thread_role("I/O");
                    sessions::run_thread(
                        sessions,
                        plan,
                        instance,
                        filter,
                        &|n| pace.wait(n),
                        ops_done,
                        max_ns,
                    )
                })
            })
            .collect();
        // Unload under load: once 90 % of the I/O is issued, while the rest is still running.
        let threshold = total_ops - total_ops / 10;
        while ops_done.load(Ordering::Relaxed) < threshold
            && io_threads.iter().any(|t| !t.is_finished())
        {
            std::thread::sleep(Duration::from_micros(500));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !signals.client_done.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(500));
        }
        // Every mode with a consumer unloads with it connected: the Filter Manager disconnects
        // it inside FltUnregisterFilter, after the unload callback closed the server port.
        // An external consumer (the real Windows client) decides itself when it connects.
        if config.consumer != ConsumerMode::Absent && !external {
            signals.settle_client.store(true, Ordering::Release);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !port::PORT.is_connected() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(500));
            }
            if !port::PORT.is_connected() {
                verifier::violation(
                    "SIM_NO_CONSUMER_AT_UNLOAD",
                    "the simulated consumer was not connected when unload began",
                );
            }
        }
        verifier::set_thread_role("unload");
        let unload_started = Instant::now();
        unload_status = ffi::call_unload();
        unload_ms = unload_started.elapsed().as_millis() as u64;
        for t in io_threads {
            if let Ok(outcome) = t.join() {
                changes.extend(outcome.changes_before_unload);
                hostile.0 += outcome.hostile_before_unload;
                hostile.1 += outcome.hostile_issued;
                unwatched += outcome.changes_unwatched;
            }
        }
    });
    Load {
        // The last load's kernel is taken by the caller once the consumer has stopped.
        world: if last {
            world::World::default()
        } else {
            world::take().unwrap_or_default()
        },
        unload_status,
        unload_ms,
        attached: attached.is_some(),
        declined,
        changes,
        hostile,
        unwatched,
    }
}

/// Adds one unloaded load's counts and findings to the run's report.
fn account_load(
    report: &mut SimReport,
    violations: &mut Vec<String>,
    load: &Load,
    mut tracker: fsense_proto::SeqTracker,
    learned: Option<u64>,
    config: &SimConfig,
    bad_replies: u64,
) {
    let world = &load.world;
    let mut clean = load.unload_status == Some(0);
    if load.unload_status.is_none() {
        violations.push("UNLOAD: the driver registered no unload callback".into());
    }
    let left = leftovers(world);
    clean &= left.is_empty();
    violations.extend(left.into_iter().map(|l| format!("{l} at unload")));
    if !load.attached {
        violations.push("INSTANCE: the driver attached to no volume".into());
    }
    if load.declined == 0 {
        violations.push("INSTANCE: the driver attached to network and pipe volumes too".into());
    }

    let health = world
        .last_health
        .as_deref()
        .and_then(|b| fsense_proto::Health::decode(b).ok());
    if health.is_none() {
        violations.push("HEALTH: the driver never reported its counters".into());
    }
    if let Some(h) = &health {
        report.generated += h.events_generated;
        report.buffers_rejected += h.buffers_rejected;
        // Only a protocol-4 health carries the counter (none is sent to an absent or older
        // consumer's protocol): the check needs every load's.
        let carries = world
            .last_health
            .as_deref()
            .is_some_and(|b| b.len() == fsense_proto::Health::LEN);
        report.buffers_rejected_unknown |= !carries;
        report.dropped += h.dropped();
        tracker.finish(h.events_generated);
        if config.consumer == ConsumerMode::Normal && h.replies_rejected != 0 {
            violations.push(format!(
                "REPLY_VALIDATION: the driver rejected {} well-formed replies",
                h.replies_rejected
            ));
        }
        if config.consumer == ConsumerMode::Malicious
            && bad_replies > 0
            // The reply to the final health cannot show in that health: allow one.
            && (h.replies_rejected + 1 < bad_replies || h.replies_rejected > bad_replies)
        {
            violations.push(format!(
                "REPLY_VALIDATION: {} malformed replies sent, the driver rejected {}",
                bad_replies, h.replies_rejected
            ));
        }
    }
    if tracker.out_of_order() != 0 {
        violations.push(format!(
            "SEQUENCE: {} records out of order or repeated",
            tracker.out_of_order()
        ));
    }
    let generated = health.as_ref().map_or(0, |h| h.events_generated);
    report
        .unseen_tail_per_load
        .push(learned.map_or(0, |known| generated.saturating_sub(known)));
    report.delivered += tracker.delivered();
    report.seq_gaps += tracker.lost();
    report.leaked_allocations += (world.allocations.len() + world.contexts.len()) as u64;
    report.unreleased_name_infos += world.name_infos.len() as u64;
    report.injected_send_failures += world.failed_batch_sends;
    report.unload_clean &= clean;
    report.unload_ms = report.unload_ms.max(load.unload_ms);
    report.health = health;
    report.event_wait_timeouts = ffi::take_event_wait_timeouts();
}

/// Spaces one I/O thread's operations so that all threads together issue `rate` per second.
#[derive(Clone, Copy)]
struct Pace {
    start: Instant,
    per_op: Option<Duration>,
}

impl Pace {
    fn new(rate: u64, threads: u32) -> Self {
        let per_thread = rate as f64 / f64::from(threads.max(1));
        Self {
            start: Instant::now(),
            per_op: (rate > 0).then(|| Duration::from_secs_f64(1.0 / per_thread)),
        }
    }

    /// Waits until operation `n` of this thread is due (sleeping only when 1 ms or more ahead).
    fn wait(&self, n: u64) {
        let Some(per_op) = self.per_op else { return };
        let due = self.start + per_op.mul_f64(n as f64);
        let ahead = due.saturating_duration_since(Instant::now());
        if ahead >= Duration::from_millis(1) {
            std::thread::sleep(ahead);
        }
    }
}
