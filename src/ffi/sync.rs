//! Synchronisation: spin lock, kernel event, system time and interrupt time.

use super::*;

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn KeAcquireSpinLockRaiseToDpc(spin_lock: *mut usize) -> Kirql;
    fn KeReleaseSpinLock(spin_lock: *mut usize, new_irql: Kirql);
    fn KeInitializeEvent(event: *mut KEVENT, event_type: i32, state: u8);
    fn KeSetEvent(event: *mut KEVENT, increment: i32, wait: u8) -> i32;
    pub(super) fn KeWaitForSingleObject(
        object: *const c_void,
        wait_reason: i32,
        wait_mode: i8,
        alertable: u8,
        timeout: *const i64,
    ) -> NTSTATUS;
    fn KeQuerySystemTimePrecise(current_time: *mut i64);
    fn KeQueryUnbiasedInterruptTime() -> u64;
}

/// A `KSPIN_LOCK` guarding a `T`. Holding it raises IRQL to DISPATCH_LEVEL, so the guarded code
/// must not touch paged memory or wait: keep critical sections to a few copies.
///
/// Ordering: the `T` is plain data, ordered by the lock alone. A spin lock "protect[s] shared
/// data ... from simultaneous access" (`kernel/introduction-to-spin-locks`): the kernel's acquire
/// has acquire semantics and its release has release semantics (`kernel/acquire-and-release-
/// semantics` defines both), on ARM64 as on x64, so each holder sees every write of the holders
/// before it. The simulator's lock is a compare-exchange with Acquire and a swap with Release:
/// the same contract, which Miri checks (tests/ordering.rs).
pub struct SpinLock<T> {
    lock: UnsafeCell<usize>,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reachable through a guard, which exists only while the kernel spin
// lock is held, so at most one thread touches it at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A released lock (`KeInitializeSpinLock` only zeroes it).
    pub const fn new(value: T) -> Self {
        Self {
            lock: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        // SAFETY: `lock` is a valid KSPIN_LOCK for as long as self lives.
        let old_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinGuard {
            owner: self,
            old_irql,
        }
    }
}

/// Proof that the spin lock is held; releases it (restoring IRQL) when dropped.
pub struct SpinGuard<'a, T> {
    owner: &'a SpinLock<T>,
    old_irql: Kirql,
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held: exclusive access.
        unsafe { &*self.owner.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard acquired the lock and has not released it; old_irql is what the
        // acquire returned.
        unsafe { KeReleaseSpinLock(self.owner.lock.get(), self.old_irql) };
    }
}

/// A synchronization `KEVENT` in static storage.
///
/// Invariant: [`KernelEvent::init`] runs (in DriverEntry) before any `set` or `wait`.
pub struct KernelEvent {
    event: UnsafeCell<KEVENT>,
    /// Release store after `KeInitializeEvent`, Acquire load before each set or wait: it
    /// publishes the initialised KEVENT to the processors that signal it (I/O callbacks) or wait
    /// on it (the worker), whatever else orders DriverEntry before them.
    ready: AtomicBool,
}

// SAFETY: KEVENT is designed for concurrent use through the Ke* functions, which synchronize.
unsafe impl Sync for KernelEvent {}

impl Default for KernelEvent {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelEvent {
    pub const fn new() -> Self {
        Self {
            // SAFETY: KEVENT is plain data (a dispatcher header); all-zero is a valid bit pattern
            // and it is initialised by KeInitializeEvent before use.
            event: UnsafeCell::new(unsafe { core::mem::MaybeUninit::zeroed().assume_init() }),
            ready: AtomicBool::new(false),
        }
    }

    pub fn init(&self) {
        // SAFETY: the event lives in static storage; DriverEntry calls this before any waiter.
        unsafe { KeInitializeEvent(self.event.get(), SYNCHRONIZATION_EVENT, 0) };
        self.ready.store(true, Ordering::Release);
    }

    /// Signals the event. Callable at IRQL <= DISPATCH_LEVEL; never waits.
    pub fn set(&self) {
        if self.ready.load(Ordering::Acquire) {
            // SAFETY: initialised (ready); Wait = FALSE so this may run at DISPATCH_LEVEL.
            unsafe { KeSetEvent(self.event.get(), 0, 0) };
        }
    }

    /// Waits up to `ms` milliseconds (PASSIVE_LEVEL, worker thread only). True if signalled.
    pub fn wait(&self, ms: u32) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            return false;
        }
        let timeout = relative_timeout(ms);
        // SAFETY: initialised; the timeout is non-null and bounded.
        let st = unsafe {
            KeWaitForSingleObject(
                self.event.get().cast::<c_void>().cast_const(),
                EXECUTIVE,
                KERNEL_MODE,
                0,
                &timeout,
            )
        };
        st == status::SUCCESS
    }
}

/// System time in 100 ns ticks since 1601: for record timestamps only. It can be set, and step
/// back (`nf-wdm-kequeryinterrupttime`: only interrupt time is unaffected by setting the time),
/// so no interval is measured on it.
pub fn system_time() -> u64 {
    let mut t: i64 = 0;
    // SAFETY: writes one i64 to a valid local.
    unsafe { KeQuerySystemTimePrecise(&mut t) };
    t.max(0) as u64
}

/// Running time since boot in 100 ns ticks, for intervals (health period, drain deadline, idle
/// waits): `KeQueryUnbiasedInterruptTime` is "not affected by operations that set or reset the
/// system time", pauses while the machine sleeps, and may be called at any IRQL
/// (`nf-wdm-kequeryunbiasedinterrupttime`; Windows 7 and later).
pub fn interval_time() -> u64 {
    // SAFETY: no arguments, callable at any IRQL; returns a count.
    unsafe { KeQueryUnbiasedInterruptTime() }
}
