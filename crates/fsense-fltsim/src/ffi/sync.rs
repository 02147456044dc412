//! Synchronisation: spin locks, events, waits, system time, interrupt time.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeAcquireSpinLockRaiseToDpc(spin_lock: *mut usize) -> u8 {
    let old = verifier::irql();
    if old > DISPATCH_LEVEL {
        violation("IRQL_SPIN_LOCK", "spin lock acquired above DISPATCH_LEVEL");
    }
    if spin_lock.is_null() || !spin_lock.is_aligned() {
        violation("SPIN_LOCK_POINTER", "null or misaligned KSPIN_LOCK");
        return old;
    }
    // SAFETY: non-null and aligned; the driver's KSPIN_LOCK lives in its static storage for the
    // whole run and is only accessed atomically (here and in release).
    let lock = unsafe { AtomicUsize::from_ptr(spin_lock) };
    let mut spins = 0u32;
    let spin_start = Instant::now();
    while lock
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins.is_multiple_of(64) {
            std::thread::yield_now(); // host threads can be preempted while "at DISPATCH"
        } else {
            std::hint::spin_loop();
        }
    }
    if spins != 0 {
        verifier::add_host_only_time(spin_start.elapsed());
    }
    verifier::set_irql(DISPATCH_LEVEL);
    verifier::lock_acquired();
    old
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReleaseSpinLock(spin_lock: *mut usize, new_irql: u8) {
    if !verifier::lock_released() {
        violation(
            "SPIN_LOCK_UNPAIRED",
            "KeReleaseSpinLock without a matching acquire",
        );
    }
    if spin_lock.is_null() || !spin_lock.is_aligned() {
        violation("SPIN_LOCK_POINTER", "null or misaligned KSPIN_LOCK");
        return;
    }
    // SAFETY: as in acquire.
    let lock = unsafe { AtomicUsize::from_ptr(spin_lock) };
    if lock.swap(0, Ordering::Release) != 1 {
        violation(
            "SPIN_LOCK_UNPAIRED",
            "released a spin lock that was not held",
        );
    }
    verifier::set_irql(new_irql);
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInitializeEvent(event: *mut KEVENT, _event_type: i32, state: u8) {
    let e = Arc::new(SimEvent::default());
    if state != 0 {
        e.set();
    }
    world::with_world(|w| w.events.insert(event as usize, e));
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeSetEvent(event: *mut KEVENT, _increment: i32, wait: u8) -> i32 {
    if verifier::irql() > DISPATCH_LEVEL {
        violation("IRQL_SET_EVENT", "KeSetEvent above DISPATCH_LEVEL");
    }
    if wait != 0 {
        violation("SET_EVENT_WAIT", "KeSetEvent with Wait = TRUE");
    }
    let e = world::with_world(|w| w.events.get(&(event as usize)).cloned()).flatten();
    match e {
        Some(e) => e.set(),
        None => violation(
            "EVENT_UNINITIALISED",
            "KeSetEvent on an event never initialised",
        ),
    }
    0
}

pub(super) fn timeout_from(timeout: *const i64) -> Option<Duration> {
    if timeout.is_null() {
        return None;
    }
    // SAFETY: non-null pointer to the caller's LARGE_INTEGER (an aligned i64 local or static).
    let t = unsafe { timeout.read() };
    // Negative = relative, in 100 ns units. Absolute times are not used by the driver.
    Some(Duration::from_nanos(t.unsigned_abs().saturating_mul(100)))
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeWaitForSingleObject(
    object: *const c_void,
    _wait_reason: i32,
    _wait_mode: i8,
    _alertable: u8,
    timeout: *const i64,
) -> NTSTATUS {
    let timeout = timeout_from(timeout);
    let nonzero_wait = timeout != Some(Duration::ZERO);
    if nonzero_wait && verifier::irql() >= DISPATCH_LEVEL {
        violation(
            "IRQL_WAIT",
            "KeWaitForSingleObject with a timeout at DISPATCH_LEVEL",
        );
    }
    if nonzero_wait && verifier::spin_locks_held() > 0 {
        violation(
            "WAIT_HOLDING_SPIN_LOCK",
            "waiting while holding a spin lock",
        );
    }
    if let Some(cb) = verifier::in_callback() {
        violation(
            "WAIT_IN_IO_CALLBACK",
            format!("KeWaitForSingleObject in {cb}"),
        );
    }
    let key = object as usize;
    let event = world::with_world(|w| w.events.get(&key).cloned()).flatten();
    if let Some(e) = event {
        return if e.wait(timeout) {
            STATUS_SUCCESS
        } else {
            EVENT_WAIT_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            STATUS_TIMEOUT
        };
    }
    let join = world::with_world(|w| w.threads.get_mut(&key).and_then(|t| t.join.take())).flatten();
    match join {
        Some(j) => {
            if timeout.is_some() {
                violation(
                    "THREAD_WAIT_TIMEOUT",
                    "the simulator joins threads only without a timeout",
                );
            }
            threads::join_system_thread(j, "KeWaitForSingleObject");
            STATUS_SUCCESS
        }
        None => {
            violation(
                "WAIT_UNKNOWN_OBJECT",
                format!("waiting on {object:p}, not an event or live thread"),
            );
            STATUS_INVALID_PARAMETER
        }
    }
}

/// Event waits that ended by their timeout, not by a signal (an idle worker that polls shows
/// here: see [`take_event_wait_timeouts`]).
static EVENT_WAIT_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Event waits that timed out since the last call (run start resets it).
pub fn take_event_wait_timeouts() -> u64 {
    EVENT_WAIT_TIMEOUTS.swap(0, Ordering::Relaxed)
}

/// The monotonic clock both simulated clocks run on: time since the first call.
fn since_start() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// How far the simulated system clock was set back, in 100 ns ticks (rule S5).
static SYSTEM_CLOCK_SET_BACK: AtomicU64 = AtomicU64::new(0);

/// Sets the simulated system time back by `by` (rule S5 of docs/simulator.md): system time can
/// be set by the user or the time service, and only interrupt time is unaffected
/// (`nf-wdm-kequeryinterrupttime`, `nf-wdm-kequeryunbiasedinterrupttime`). Cumulative until
/// [`reset_system_clock`].
pub fn set_system_clock_back(by: Duration) {
    let ticks = u64::try_from(by.as_nanos() / 100).unwrap_or(u64::MAX);
    SYSTEM_CLOCK_SET_BACK.fetch_add(ticks, Ordering::Relaxed);
}

/// Undoes [`set_system_clock_back`] (every run starts with the clock right).
pub fn reset_system_clock() {
    SYSTEM_CLOCK_SET_BACK.store(0, Ordering::Relaxed);
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeQuerySystemTimePrecise(current_time: *mut i64) {
    // A fixed base (2026-01-01 UTC in 100 ns ticks since 1601) plus the monotonic time since the
    // first call, minus what the clock was set back: deterministic enough for tests, and
    // available under Miri's isolation.
    const BASE: i64 = 134_116_128_000_000_000;
    let back = i64::try_from(SYSTEM_CLOCK_SET_BACK.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let ticks = (BASE + (since_start().as_nanos() / 100) as i64).saturating_sub(back);
    if !current_time.is_null() {
        // SAFETY: the caller's out pointer to an i64.
        unsafe { current_time.write(ticks) };
    }
}

/// Reference: `nf-wdm-kequeryunbiasedinterrupttime` (any IRQL; never affected by setting the
/// system time). Time since boot: here, a boot a minute before the first call.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeQueryUnbiasedInterruptTime() -> u64 {
    const BOOT_TICKS: u64 = 600_000_000;
    BOOT_TICKS + (since_start().as_nanos() / 100) as u64
}
