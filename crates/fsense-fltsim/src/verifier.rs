//! Verifier-style bookkeeping: per-thread IRQL and lock state, and the rule violations found.
//!
//! Every violation names its rule, what happened, and the call site: the driver function (from
//! a backtrace) and the callback or thread it ran in.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// IRQL levels the simulator models.
pub const PASSIVE_LEVEL: u8 = 0;
pub const APC_LEVEL: u8 = 1;
pub const DISPATCH_LEVEL: u8 = 2;

thread_local! {
    static IRQL: Cell<u8> = const { Cell::new(PASSIVE_LEVEL) };
    static SPIN_LOCKS_HELD: Cell<u32> = const { Cell::new(0) };
    /// The driver callback running on this thread, if any.
    static IN_CALLBACK: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Process id the kernel would report as current on this thread.
    static CURRENT_PID: Cell<u32> = const { Cell::new(4) };
    static THREAD_ROLE: Cell<&'static str> = const { Cell::new("simulator") };
    /// In a post-operation callback: whether the Filter Manager guarantees IRQL <= APC_LEVEL
    /// there (synchronized with FLT_PREOP_SYNCHRONIZE, a fast I/O or create operation) or it
    /// may run at DISPATCH_LEVEL (`ifs/writing-postoperation-callback-routines`).
    static POST_OP_SAFE: Cell<Option<bool>> = const { Cell::new(None) };
    /// Time this thread spent where Windows would not have spent it (see [`callback_time`]).
    static NOT_WINDOWS_TIME: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// A running callback's clock.
pub struct CallbackClock {
    wall: Instant,
    cpu: Option<Duration>,
}

/// Starts timing a driver callback.
pub fn callback_clock() -> CallbackClock {
    NOT_WINDOWS_TIME.with(|c| c.set(Duration::ZERO));
    CallbackClock {
        wall: Instant::now(),
        cpu: crate::ffi::cpu_clock::thread_cpu_time(),
    }
}

/// How long a callback took, counting only what Windows would count. The driver cannot wait
/// without calling a kernel function, and every waiting function flags a wait in an I/O callback
/// by rule (WAIT_IN_IO_CALLBACK, SEND_IN_IO_CALLBACK); this duration catches work that is too
/// long. So it is the thread's CPU time where the host has it: on a loaded host (2 cores, many
/// builds) a thread is preempted for tens of milliseconds, or waits for a std mutex of the
/// simulator whose holder was preempted, and that is not the driver's doing. Also left out:
/// spinning for a simulated spin lock whose holder the host preempted (impossible at
/// DISPATCH_LEVEL on Windows), and capturing a violation's backtrace (symbolising the first one
/// takes 50-100 ms, which is what made a callback in `cargo bench --bench driver` "wait" 70-87 ms
/// after CONTEXT_NOT_REGISTERED; the violation is reported anyway).
pub fn callback_time(clock: CallbackClock) -> Duration {
    let spent = match (clock.cpu, crate::ffi::cpu_clock::thread_cpu_time()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => clock.wall.elapsed(),
    };
    spent.saturating_sub(NOT_WINDOWS_TIME.with(Cell::get))
}

/// Adds host-only time to the running callback's clock (see [`callback_time`]).
pub fn add_host_only_time(d: Duration) {
    NOT_WINDOWS_TIME.with(|c| c.set(c.get().saturating_add(d)));
}

pub fn irql() -> u8 {
    IRQL.with(Cell::get)
}
pub fn set_irql(level: u8) {
    IRQL.with(|c| c.set(level));
}
pub fn spin_locks_held() -> u32 {
    SPIN_LOCKS_HELD.with(Cell::get)
}
pub fn lock_acquired() {
    SPIN_LOCKS_HELD.with(|c| c.set(c.get() + 1));
}
/// Returns false if no lock was held (an unpaired release).
pub fn lock_released() -> bool {
    SPIN_LOCKS_HELD.with(|c| {
        let n = c.get();
        c.set(n.saturating_sub(1));
        n > 0
    })
}
pub fn in_callback() -> Option<&'static str> {
    IN_CALLBACK.with(Cell::get)
}
pub fn set_in_callback(name: Option<&'static str>) {
    IN_CALLBACK.with(|c| c.set(name));
}
/// See `POST_OP_SAFE`: `None` outside a post-operation callback.
pub fn post_op_safe() -> Option<bool> {
    POST_OP_SAFE.with(Cell::get)
}
pub fn set_post_op_safe(state: Option<bool>) {
    POST_OP_SAFE.with(|c| c.set(state));
}
/// Checks a routine whose ceiling is `max` (<= APC_LEVEL) called from a post-operation callback
/// that may run at DISPATCH_LEVEL: on Windows it is a bug whichever IRQL this run happened to
/// use (`ifs/writing-postoperation-callback-routines`: such a callback "cannot call kernel-mode
/// routines that must be called at a lower IRQL"; `ifs/returning-flt-preop-synchronize` and
/// `ifs/ensuring-that-completion-processing-is-performed-at-safe-irql` for the ways out).
pub fn require_safe_post_op(function: &str) {
    if post_op_safe() == Some(false) {
        violation(
            "POST_OP_MAY_BE_DISPATCH",
            format!(
                "{function} (IRQL <= APC_LEVEL) in a post-operation callback that was not \
                 synchronized and may run at DISPATCH_LEVEL"
            ),
        );
    }
}
pub fn current_pid() -> u32 {
    CURRENT_PID.with(Cell::get)
}
pub fn set_current_pid(pid: u32) {
    CURRENT_PID.with(|c| c.set(pid));
}
pub fn set_thread_role(role: &'static str) {
    THREAD_ROLE.with(|c| c.set(role));
}

static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records a violation of `rule`, naming the call site.
pub fn violation(rule: &str, detail: impl std::fmt::Display) {
    let started = Instant::now();
    let context = in_callback()
        .map(|c| format!("in {c} callback"))
        .unwrap_or_else(|| format!("on the {} thread", THREAD_ROLE.with(Cell::get)));
    let site = driver_call_site();
    let line = format!("{rule}: {detail} ({context}, at {site})");
    if let Ok(mut v) = VIOLATIONS.lock()
        && v.len() < 1000
        && !v.contains(&line)
    {
        v.push(line);
    }
    add_host_only_time(started.elapsed());
}

pub fn take_violations() -> Vec<String> {
    VIOLATIONS
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// The innermost frame of the driver's code on the current stack, from a backtrace.
fn driver_call_site() -> String {
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let mut lines = bt.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if let Some(pos) = line.find("fsense_driver::") {
            let func = line.get(pos..).unwrap_or(line);
            let func = func.rsplit_once("::h").map_or(func, |(f, _)| f);
            let location = lines
                .next()
                .map(str::trim)
                .and_then(|l| l.strip_prefix("at "))
                .unwrap_or("");
            return if location.is_empty() {
                func.to_string()
            } else {
                format!("{func} {location}")
            };
        }
    }
    "unknown driver frame".to_string()
}
