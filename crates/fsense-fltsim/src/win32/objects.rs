//! The handle table and the kernel objects behind user-mode handles: events, I/O completion
//! ports, port connections, processes and tokens; and the thread's last error.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::IO::OVERLAPPED;

/// A connection to the driver's port, as the handle table holds it: fltlib's `Connection`,
/// which only fltlib looks into (`fltlib::as_connection`), so this module needs no part of it.
pub type PortConnection = Arc<dyn std::any::Any + Send + Sync>;

/// What a handle refers to.
#[derive(Clone)]
pub enum Object {
    Event(Arc<Event>),
    CompletionPort(Arc<CompletionPort>),
    Port(PortConnection),
    Process(u32),
    Token(u32),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Event(_) => "event",
            Self::CompletionPort(_) => "I/O completion port",
            Self::Port(_) => "communication port",
            Self::Process(_) => "process",
            Self::Token(_) => "token",
        }
    }
}

struct Table {
    next: usize,
    objects: HashMap<usize, Object>,
}

static HANDLES: Mutex<Option<Table>> = Mutex::new(None);

/// Locks a mutex whose holder may have panicked (the data stays usable: every update is whole).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until `deadline` (None: forever); returns the guard.
pub fn wait_until<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> MutexGuard<'a, T> {
    match deadline {
        None => cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            match cv.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            }
        }
    }
}

/// `INFINITE` is no deadline; anything else is that many milliseconds from now.
pub fn deadline_after(ms: u32) -> Option<Instant> {
    (ms != u32::MAX).then(|| Instant::now() + Duration::from_millis(u64::from(ms)))
}

/// Forgets every handle (a new simulated machine).
pub fn reset() {
    *lock(&HANDLES) = None;
}

/// A new handle for `object`. Handle values are small multiples of 4, as on Windows; they carry
/// no provenance and are never dereferenced.
pub fn insert(object: Object) -> HANDLE {
    let mut guard = lock(&HANDLES);
    let table = guard.get_or_insert_with(|| Table {
        next: 0x1000,
        objects: HashMap::new(),
    });
    let value = table.next;
    table.next += 4;
    table.objects.insert(value, object);
    std::ptr::without_provenance_mut::<c_void>(value)
}

/// The object behind `handle`, if it is open.
pub fn get(handle: HANDLE) -> Option<Object> {
    lock(&HANDLES)
        .as_ref()?
        .objects
        .get(&handle.addr())
        .cloned()
}

/// Closes `handle`: the object it referred to.
pub fn remove(handle: HANDLE) -> Option<Object> {
    lock(&HANDLES).as_mut()?.objects.remove(&handle.addr())
}

/// How many handles of each kind are still open (a leak report for tests).
pub fn open_handles() -> Vec<&'static str> {
    lock(&HANDLES)
        .as_ref()
        .map(|t| t.objects.values().map(Object::kind).collect())
        .unwrap_or_default()
}

thread_local! {
    static LAST_ERROR: Cell<u32> = const { Cell::new(0) };
}

pub fn set_last_error(code: u32) {
    LAST_ERROR.with(|e| e.set(code));
}

pub fn last_error() -> u32 {
    LAST_ERROR.with(Cell::get)
}

/// An event object (`CreateEventW`).
pub struct Event {
    signalled: Mutex<bool>,
    cv: Condvar,
    manual_reset: bool,
}

impl Event {
    pub fn new(manual_reset: bool, signalled: bool) -> Self {
        Self {
            signalled: Mutex::new(signalled),
            cv: Condvar::new(),
            manual_reset,
        }
    }

    pub fn set(&self) {
        *lock(&self.signalled) = true;
        self.cv.notify_all();
    }

    pub fn reset(&self) {
        *lock(&self.signalled) = false;
    }

    /// Waits until signalled or `deadline`; an auto-reset event is reset by a satisfied wait.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut s = lock(&self.signalled);
        loop {
            if *s {
                if !self.manual_reset {
                    *s = false;
                }
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            s = wait_until(&self.cv, s, deadline);
        }
    }
}

/// The address of a caller's `OVERLAPPED`, which the simulated kernel writes when the operation
/// completes, exactly as Windows writes the caller's memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OverlappedPtr(pub *mut OVERLAPPED);

// SAFETY: the pointer is only an address handed across threads; it is written by the simulated
// kernel while the operation is pending, which the caller guarantees keeps it valid (the contract
// of every overlapped call).
unsafe impl Send for OverlappedPtr {}

/// One completion packet.
pub struct Packet {
    pub bytes: u32,
    pub key: usize,
    pub overlapped: OverlappedPtr,
    /// The Win32 error of the operation (0: success).
    pub error: u32,
}

/// An I/O completion port (`CreateIoCompletionPort`).
#[derive(Default)]
pub struct CompletionPort {
    queue: Mutex<VecDeque<Packet>>,
    cv: Condvar,
}

impl CompletionPort {
    pub fn post(&self, packet: Packet) {
        lock(&self.queue).push_back(packet);
        self.cv.notify_one();
    }

    /// The oldest packet, waiting until `deadline`.
    pub fn dequeue(&self, deadline: Option<Instant>) -> Option<Packet> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(p) = q.pop_front() {
                return Some(p);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            q = wait_until(&self.cv, q, deadline);
        }
    }
}
