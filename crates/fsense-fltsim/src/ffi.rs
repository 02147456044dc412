//! The simulator's only `unsafe` code: the kernel and Filter Manager functions the driver
//! imports (defined here, with the exact signatures the driver declares, so its unchanged FFI
//! layer links against them on the host), and the calls into the driver's callbacks with
//! structures built the way the Filter Manager builds them.
//!
//! Every export checks the rules Driver Verifier would (IRQL, pairing, leaks) and records a
//! violation instead of crashing when the driver breaks one.
//!
//! # Safety
//! Each export is `unsafe` with the contract of the kernel function it stands in for (pointers
//! valid as that function's documentation requires); only the driver calls them.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Wdk::Foundation::{
    DRIVER_OBJECT, FILE_OBJECT, IO_SECURITY_CONTEXT, KEVENT, OBJECT_ATTRIBUTES,
};
use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
    FLT_CALLBACK_DATA, FLT_CONTEXT_END, FLT_FILE_NAME_INFORMATION, FLT_IO_PARAMETER_BLOCK,
    FLT_OPERATION_REGISTRATION, FLT_REGISTRATION, FLT_RELATED_OBJECTS, FLT_STREAM_CONTEXT,
    FLTFL_POST_OPERATION_DRAINING, IRP_MJ_OPERATION_END, PFLT_CONNECT_NOTIFY, PFLT_CONTEXT,
    PFLT_DISCONNECT_NOTIFY, PFLT_MESSAGE_NOTIFY, PFLT_PORT,
};
use windows_sys::Wdk::System::SystemServices::{IRP_MJ_CREATE, IRP_MJ_WRITE, IRP_PAGING_IO};
use windows_sys::Win32::Foundation::{HANDLE, NTSTATUS, UNICODE_STRING};
use windows_sys::Win32::Security::PSECURITY_DESCRIPTOR;
use windows_sys::Win32::Storage::InstallableFileSystems::FLT_FILESYSTEM_TYPE;

use crate::FailPoint;
use crate::plan::{CreateOp, NameShape, WriteOp};
use crate::port::{PORT, SendResult};
use crate::verifier::{self, APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL, violation};
use crate::world::{
    self, Allocation, Context, HandleKind, Registration, ServerPort, SimEvent, SimThread,
};
use fsense_driver::ffi::{CreateParameters, WriteParameters};

const STATUS_SUCCESS: NTSTATUS = 0;
const STATUS_TIMEOUT: NTSTATUS = 0x102;
const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;
const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as i32;
const STATUS_PORT_DISCONNECTED: NTSTATUS = 0xC000_0037_u32 as i32;
const STATUS_NOT_FOUND: NTSTATUS = 0xC000_0225_u32 as i32;
const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = 0xC000_0034_u32 as i32;
const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC000_0023_u32 as i32;
const STATUS_FLT_CONTEXT_ALREADY_DEFINED: NTSTATUS = 0xC01C_0002_u32 as i32;
const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
const POOL_FLAG_NON_PAGED: u64 = 0x40;
const POOL_FLAG_PAGED: u64 = 0x100;
const FLT_PORT_ALL_ACCESS: u32 = 0x001F_0001;
const KEY_VALUE_PARTIAL_INFORMATION: i32 = 2;
/// Fake kernel object addresses: recognisable, never dereferenced by the driver.
const EPROCESS_BASE: isize = 0x7E00_0000_0000;
const ETHREAD_BASE: isize = 0x7F00_0000_0000;

/// The volume name every simulated path starts with.
pub const VOLUME: &str = "\\Device\\HarddiskVolume3";

// ---------------------------------------------------------------------------------------------
// Per-operation context the Filter Manager functions consult
// ---------------------------------------------------------------------------------------------

struct CurrentOp {
    pid: u32,
    path: Arc<Vec<u16>>,
    shape: NameShape,
}

thread_local! {
    static CURRENT_OP: RefCell<Option<CurrentOp>> = const { RefCell::new(None) };
}

/// A process's creation time, deterministic per pid (so pid + create time names a process).
pub fn process_create_time(pid: u32) -> i64 {
    133_000_000_000_000_000 + i64::from(pid) * 1_000
}

/// Name information handed to the driver: the structure and the buffers its strings point
/// into, held as raw pointers (moving a `Box` would invalidate the pointers the driver holds).
pub struct NameInfoStorage {
    info: *mut FLT_FILE_NAME_INFORMATION,
    name: *mut [u16],
    volume: *mut [u16],
}

// SAFETY: the pointers are uniquely owned by this value (from Box::into_raw); the world's mutex
// serialises access to the map that holds them.
unsafe impl Send for NameInfoStorage {}

impl Drop for NameInfoStorage {
    fn drop(&mut self) {
        // SAFETY: each pointer came from Box::into_raw in FltGetFileNameInformation and is freed
        // exactly once, here.
        unsafe {
            drop(Box::from_raw(self.info));
            drop(Box::from_raw(self.name));
            drop(Box::from_raw(self.volume));
        }
    }
}

/// Whether the run asked this kernel call to fail (load-failure tests).
fn fails(point: FailPoint) -> bool {
    world::with_world(|w| w.fail_point == Some(point)).unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// ntoskrnl
// ---------------------------------------------------------------------------------------------

fn pool_layout(size: usize) -> Option<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(size.max(1), 16).ok()
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAllocatePool2(
    flags: u64,
    number_of_bytes: usize,
    tag: u32,
) -> *mut c_void {
    if tag == 0 {
        violation("POOL_TAG_ZERO", "ExAllocatePool2 with tag 0");
    }
    if flags & POOL_FLAG_PAGED != 0 && verifier::irql() > APC_LEVEL {
        violation("IRQL_PAGED_POOL", "paged pool allocated at DISPATCH_LEVEL");
    }
    if flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED) == 0 {
        violation(
            "POOL_FLAGS",
            format!("ExAllocatePool2 flags {flags:#x} name no pool"),
        );
    }
    let injected = world::with_world(|w| {
        w.pool_allocations += 1;
        matches!(
            (w.fail_point, w.pool_allocations),
            (Some(FailPoint::FirstPoolAllocation), 1) | (Some(FailPoint::SecondPoolAllocation), 2)
        )
    })
    .unwrap_or(false);
    if injected {
        return std::ptr::null_mut();
    }
    let Some(layout) = pool_layout(number_of_bytes) else {
        return std::ptr::null_mut();
    };
    // SAFETY: layout has non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if !p.is_null() {
        world::with_world(|w| {
            w.allocations.insert(
                p as usize,
                Allocation {
                    size: number_of_bytes,
                    tag,
                },
            )
        });
    }
    p.cast()
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExFreePoolWithTag(p: *mut c_void, tag: u32) {
    if verifier::irql() > DISPATCH_LEVEL {
        violation("IRQL_FREE", "pool freed above DISPATCH_LEVEL");
    }
    let entry = world::with_world(|w| w.allocations.remove(&(p as usize))).flatten();
    match entry {
        None => violation(
            "POOL_FREE_UNKNOWN",
            format!(
                "freeing {p:p}, which the pool never returned or already freed (double free or foreign pointer)"
            ),
        ),
        Some(a) => {
            if a.tag != tag {
                violation(
                    "POOL_TAG_MISMATCH",
                    format!("freed with tag {tag:#x}, allocated with {:#x}", a.tag),
                );
            }
            if let Some(layout) = pool_layout(a.size) {
                // SAFETY: p was allocated by ExAllocatePool2 above with this layout and is
                // removed from the map, so it is freed exactly once.
                unsafe { std::alloc::dealloc(p.cast(), layout) };
            }
        }
    }
}

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

fn timeout_from(timeout: *const i64) -> Option<Duration> {
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
            let _ = j.join();
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

#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeQuerySystemTimePrecise(current_time: *mut i64) {
    // A fixed base (2026-01-01 UTC in 100 ns ticks since 1601) plus the monotonic time since the
    // first call: deterministic enough for tests, and available under Miri's isolation.
    const BASE: i64 = 134_116_128_000_000_000;
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    let ticks = BASE + (elapsed.as_nanos() / 100) as i64;
    if !current_time.is_null() {
        // SAFETY: the caller's out pointer to an i64.
        unsafe { current_time.write(ticks) };
    }
}

/// The start routine and context of a system thread, made sendable for the host thread.
struct StartRoutine(unsafe extern "system" fn(*mut c_void), usize);

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsCreateSystemThread(
    thread_handle: *mut HANDLE,
    _desired_access: u32,
    _object_attributes: *const OBJECT_ATTRIBUTES,
    _process_handle: HANDLE,
    _client_id: *mut c_void,
    start_routine: unsafe extern "system" fn(*mut c_void),
    start_context: *mut c_void,
) -> NTSTATUS {
    if fails(FailPoint::CreateThread) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if verifier::irql() != PASSIVE_LEVEL {
        violation(
            "IRQL_CREATE_THREAD",
            "PsCreateSystemThread above PASSIVE_LEVEL",
        );
    }
    if thread_handle.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let start = StartRoutine(start_routine, start_context as usize);
    let spawned = std::thread::Builder::new()
        .name("fsense-worker".into())
        .spawn(move || {
            let start = start;
            verifier::set_thread_role("driver worker");
            verifier::set_current_pid(4);
            // SAFETY: calls the driver's start routine with its context, as the kernel does.
            unsafe { (start.0)(start.1 as *mut c_void) };
            if verifier::spin_locks_held() != 0 {
                violation(
                    "THREAD_EXIT_HOLDING_LOCK",
                    "system thread exited holding a spin lock",
                );
            }
        });
    let Ok(join) = spawned else {
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    let created = world::with_world(|w| {
        let handle = w.new_handle();
        let object = w.new_handle() | 0x7000_0000;
        w.threads.insert(
            object,
            SimThread {
                join: Some(join),
                object_refs: 0,
            },
        );
        w.open_handles.insert(handle, HandleKind::Thread(object));
        handle
    });
    match created {
        Some(handle) => {
            // SAFETY: non-null out pointer from the driver.
            unsafe { thread_handle.write(handle as HANDLE) };
            STATUS_SUCCESS
        }
        None => STATUS_INSUFFICIENT_RESOURCES,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsTerminateSystemThread(_exit_status: NTSTATUS) -> NTSTATUS {
    if verifier::spin_locks_held() != 0 {
        violation(
            "THREAD_EXIT_HOLDING_LOCK",
            "PsTerminateSystemThread holding a spin lock",
        );
    }
    STATUS_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsGetCurrentProcessId() -> HANDLE {
    verifier::current_pid() as usize as HANDLE
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsGetThreadId(thread: isize) -> HANDLE {
    (thread - ETHREAD_BASE) as usize as HANDLE
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsGetProcessCreateTimeQuadPart(process: isize) -> i64 {
    process_create_time((process - EPROCESS_BASE) as u32)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ObReferenceObjectByHandle(
    handle: HANDLE,
    _desired_access: u32,
    _object_type: *mut c_void,
    _access_mode: i8,
    object: *mut *mut c_void,
    _handle_information: *mut c_void,
) -> NTSTATUS {
    let found = world::with_world(|w| match w.open_handles.get(&(handle as usize)) {
        Some(HandleKind::Thread(obj)) => {
            let obj = *obj;
            if let Some(t) = w.threads.get_mut(&obj) {
                t.object_refs += 1;
            }
            Some(obj)
        }
        _ => None,
    })
    .flatten();
    match found {
        Some(obj) if !object.is_null() => {
            // SAFETY: non-null out pointer from the driver.
            unsafe { object.write(obj as *mut c_void) };
            STATUS_SUCCESS
        }
        _ => STATUS_INVALID_HANDLE,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ObfDereferenceObject(object: *mut c_void) -> isize {
    let ok = world::with_world(|w| match w.threads.get_mut(&(object as usize)) {
        Some(t) if t.object_refs > 0 => {
            t.object_refs -= 1;
            true
        }
        _ => false,
    })
    .unwrap_or(false);
    if !ok {
        violation(
            "OBJECT_DEREFERENCE",
            format!("dereferencing {object:p} without a reference"),
        );
    }
    0
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ObCloseHandle(handle: HANDLE, previous_mode: i8) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_CLOSE_HANDLE", "ObCloseHandle above PASSIVE_LEVEL");
    }
    if previous_mode != 0 {
        violation(
            "HANDLE_MODE",
            "closing a kernel handle with PreviousMode UserMode",
        );
    }
    let closed =
        world::with_world(|w| w.open_handles.remove(&(handle as usize)).is_some()).unwrap_or(false);
    if closed {
        STATUS_SUCCESS
    } else {
        violation(
            "HANDLE_CLOSE_UNKNOWN",
            format!("ObCloseHandle of {handle:p}, not an open handle"),
        );
        STATUS_INVALID_HANDLE
    }
}

/// Reads a `UNICODE_STRING` the driver passed in, bounds-checked.
fn read_unicode(us: *const UNICODE_STRING) -> Option<Vec<u16>> {
    if us.is_null() || !us.is_aligned() {
        return None;
    }
    // SAFETY: non-null, aligned pointer to the driver's UNICODE_STRING.
    let us = unsafe { &*us };
    if us.Length % 2 != 0
        || us.Length > us.MaximumLength
        || us.Buffer.is_null()
        || !us.Buffer.is_aligned()
    {
        return None;
    }
    // SAFETY: the driver's string: Length bytes at an aligned, non-null Buffer.
    Some(unsafe { std::slice::from_raw_parts(us.Buffer, usize::from(us.Length) / 2) }.to_vec())
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwOpenKey(
    key_handle: *mut HANDLE,
    _desired_access: u32,
    object_attributes: *const OBJECT_ATTRIBUTES,
) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_REGISTRY", "ZwOpenKey above PASSIVE_LEVEL");
    }
    if key_handle.is_null() || object_attributes.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null pointer to the driver's OBJECT_ATTRIBUTES.
    let oa = unsafe { &*object_attributes };
    let name = read_unicode(oa.ObjectName);
    let handle = world::with_world(|w| {
        (name.as_deref() == Some(w.registry_path.as_slice())).then(|| {
            let h = w.new_handle();
            w.open_handles.insert(h, HandleKind::RegistryKey);
            h
        })
    })
    .flatten();
    match handle {
        Some(h) => {
            // SAFETY: non-null out pointer.
            unsafe { key_handle.write(h as HANDLE) };
            STATUS_SUCCESS
        }
        None => STATUS_OBJECT_NAME_NOT_FOUND,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwQueryValueKey(
    key_handle: HANDLE,
    value_name: *const UNICODE_STRING,
    information_class: i32,
    information: *mut c_void,
    length: u32,
    result_length: *mut u32,
) -> NTSTATUS {
    let is_key = world::with_world(|w| {
        w.open_handles.get(&(key_handle as usize)) == Some(&HandleKind::RegistryKey)
    })
    .unwrap_or(false);
    if !is_key {
        return STATUS_INVALID_HANDLE;
    }
    let name = read_unicode(value_name).map(|u| String::from_utf16_lossy(&u));
    if information_class != KEY_VALUE_PARTIAL_INFORMATION {
        return STATUS_INVALID_PARAMETER;
    }
    let value = world::with_world(|w| match name.as_deref() {
        Some("QueueCapacity") => Some(w.queue_capacity),
        Some("BatchRecords") if w.batch_records != 0 => Some(w.batch_records),
        _ => None,
    })
    .flatten();
    let Some(capacity) = value else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    let mut bytes = Vec::with_capacity(16);
    for v in [0u32, 4 /* REG_DWORD */, 4, capacity] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    if !result_length.is_null() {
        // SAFETY: non-null out pointer.
        unsafe { result_length.write(bytes.len() as u32) };
    }
    if (length as usize) < bytes.len() || information.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    // SAFETY: the driver's buffer holds `length` >= 16 writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), information.cast::<u8>(), bytes.len()) };
    STATUS_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Filter Manager: registration
// ---------------------------------------------------------------------------------------------

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltRegisterFilter(
    _driver: *const DRIVER_OBJECT,
    registration: *const FLT_REGISTRATION,
    ret_filter: *mut isize,
) -> NTSTATUS {
    if fails(FailPoint::RegisterFilter) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if registration.is_null() || ret_filter.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null pointer to the driver's static registration.
    let reg = unsafe { &*registration };
    if usize::from(reg.Size) != std::mem::size_of::<FLT_REGISTRATION>() {
        violation(
            "REGISTRATION_SIZE",
            format!("FLT_REGISTRATION.Size {}", reg.Size),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let mut r = Registration {
        pre_create: None,
        post_create: None,
        pre_write: None,
        post_write: None,
        unload: reg.FilterUnloadCallback,
        instance_setup: reg.InstanceSetupCallback,
        stream_contexts_registered: false,
    };
    let mut ops: *const FLT_OPERATION_REGISTRATION = reg.OperationRegistration;
    let mut terminated = false;
    for _ in 0..64 {
        if ops.is_null() {
            break;
        }
        // SAFETY: within the driver's operation table, which ends with IRP_MJ_OPERATION_END
        // (checked: we stop there and give up after 64 entries).
        let op = unsafe { &*ops };
        if op.MajorFunction == IRP_MJ_OPERATION_END as u8 {
            terminated = true;
            break;
        }
        match u32::from(op.MajorFunction) {
            IRP_MJ_CREATE => (r.pre_create, r.post_create) = (op.PreOperation, op.PostOperation),
            IRP_MJ_WRITE => (r.pre_write, r.post_write) = (op.PreOperation, op.PostOperation),
            _ => {}
        }
        // SAFETY: the next entry exists because this one was not the terminator.
        ops = unsafe { ops.add(1) };
    }
    if !terminated {
        violation(
            "REGISTRATION_TABLE",
            "operation table not terminated by IRP_MJ_OPERATION_END",
        );
        return STATUS_INVALID_PARAMETER;
    }
    let mut ctx = reg.ContextRegistration;
    for _ in 0..16 {
        if ctx.is_null() {
            break;
        }
        // SAFETY: within the driver's context table, terminated by FLT_CONTEXT_END.
        let c = unsafe { &*ctx };
        if u32::from(c.ContextType) == FLT_CONTEXT_END {
            break;
        }
        if u32::from(c.ContextType) == FLT_STREAM_CONTEXT {
            r.stream_contexts_registered = true;
        }
        // SAFETY: as above.
        ctx = unsafe { ctx.add(1) };
    }
    let handle = world::with_world(|w| {
        w.registration = Some(r);
        w.filter_handle = w.new_handle() as isize;
        w.filter_handle
    });
    match handle {
        Some(h) => {
            // SAFETY: non-null out pointer.
            unsafe { ret_filter.write(h) };
            STATUS_SUCCESS
        }
        None => STATUS_INSUFFICIENT_RESOURCES,
    }
}

/// Volumes the simulated machine has: (device type, file system, name).
pub const VOLUMES: [(u32, FLT_FILESYSTEM_TYPE, &str); 3] = [
    (0x08, 2, "NTFS disk"), // FILE_DEVICE_DISK_FILE_SYSTEM, FLT_FSTYPE_NTFS
    (0x14, 6, "LANMAN redirector"), // FILE_DEVICE_NETWORK_FILE_SYSTEM, FLT_FSTYPE_LANMAN
    (0x11, 25, "named pipes"), // FILE_DEVICE_NAMED_PIPE, FLT_FSTYPE_NPFS
];

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltStartFiltering(filter: isize) -> NTSTATUS {
    if fails(FailPoint::StartFiltering) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let reg = world::with_world(|w| {
        (w.filter_handle == filter)
            .then_some(w.registration)
            .flatten()
    })
    .flatten();
    let Some(reg) = reg else {
        violation(
            "START_UNREGISTERED",
            "FltStartFiltering on a filter that is not registered",
        );
        return STATUS_INVALID_PARAMETER;
    };
    let mut instances = Vec::new();
    for (i, (device, fs, _)) in VOLUMES.iter().enumerate() {
        let instance = 0x4000 + i as isize;
        let objects = related_objects(filter, instance, std::ptr::null());
        let attach = match reg.instance_setup {
            // SAFETY: the driver's instance-setup callback, called at PASSIVE_LEVEL with a valid
            // related-objects structure, as the Filter Manager does.
            Some(cb) => (unsafe { cb(&objects, 0, *device, *fs) }) >= 0,
            None => true,
        };
        instances.push((instance, attach));
    }
    world::with_world(|w| {
        w.instances = instances;
        w.filter_started = true;
    });
    STATUS_SUCCESS
}

fn related_objects(
    filter: isize,
    instance: isize,
    file: *const FILE_OBJECT,
) -> FLT_RELATED_OBJECTS {
    FLT_RELATED_OBJECTS {
        Size: std::mem::size_of::<FLT_RELATED_OBJECTS>() as u16,
        TransactionContext: 0,
        Filter: filter,
        Volume: instance + 0x100,
        Instance: instance,
        FileObject: file,
        Transaction: std::ptr::null(),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltUnregisterFilter(filter: isize) {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_UNREGISTER", "FltUnregisterFilter above PASSIVE_LEVEL");
    }
    if let Some(cb) = verifier::in_callback() {
        violation(
            "UNREGISTER_IN_CALLBACK",
            format!("FltUnregisterFilter from {cb}"),
        );
    }
    let ok = world::with_world(|w| {
        let ok = w.filter_handle == filter && w.registration.is_some();
        w.unloading = true;
        ok
    })
    .unwrap_or(false);
    if !ok {
        violation(
            "UNREGISTER_UNKNOWN",
            "FltUnregisterFilter on a filter that is not registered",
        );
        return;
    }
    // A connected client is disconnected: the driver's disconnect callback must close its port.
    disconnect_client();
    // Wait for callbacks in flight (new operations no longer reach the driver).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let in_flight = world::with_world(|w| w.callbacks_in_flight).unwrap_or(0);
        if in_flight == 0 {
            break;
        }
        if Instant::now() > deadline {
            violation(
                "UNREGISTER_HANG",
                format!("{in_flight} callbacks still in flight after 10 s"),
            );
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Instance teardown: detach every stream context (the stream's reference goes away).
    let attached: Vec<usize> =
        world::with_world(|w| w.stream_contexts.drain().map(|(_, c)| c).collect())
            .unwrap_or_default();
    for ctx in attached {
        release_context_ref(ctx, true);
    }
    world::with_world(|w| {
        w.registration = None;
        w.filter_handle = 0;
    });
}

// ---------------------------------------------------------------------------------------------
// Filter Manager: names and contexts
// ---------------------------------------------------------------------------------------------

fn make_string(units: usize, buffer: *mut u16) -> UNICODE_STRING {
    let len = (units * 2).min(u16::MAX as usize - 1) as u16;
    UNICODE_STRING {
        Length: len,
        MaximumLength: len,
        Buffer: if units == 0 {
            std::ptr::null_mut()
        } else {
            buffer
        },
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetFileNameInformation(
    callback_data: *const FLT_CALLBACK_DATA,
    _name_options: u32,
    file_name_information: *mut *mut FLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation(
            "IRQL_NAME_QUERY",
            "FltGetFileNameInformation above APC_LEVEL",
        );
        return STATUS_INVALID_PARAMETER;
    }
    if verifier::spin_locks_held() > 0 {
        violation(
            "NAME_QUERY_HOLDING_SPIN_LOCK",
            "name query while holding a spin lock",
        );
    }
    if callback_data.is_null() || file_name_information.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let op = CURRENT_OP.with(|c| c.borrow().as_ref().map(|o| (o.path.clone(), o.shape)));
    let Some((path, shape)) = op else {
        violation(
            "NAME_QUERY_OUTSIDE_OPERATION",
            "name query with no operation in progress",
        );
        return STATUS_INVALID_PARAMETER;
    };
    if shape == NameShape::QueryFails {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    let name: *mut [u16] = Box::into_raw(Box::<[u16]>::from(path.as_slice()));
    let volume: *mut [u16] = Box::into_raw(VOLUME.encode_utf16().collect::<Box<[u16]>>());
    let (name_ptr, name_units) = (name.cast::<u16>(), name.len());
    let mut info = FLT_FILE_NAME_INFORMATION {
        Size: std::mem::size_of::<FLT_FILE_NAME_INFORMATION>() as u16,
        NamesParsed: 0,
        Format: 1,
        Name: make_string(name_units, name_ptr),
        // Volume stays empty until FltParseFileNameInformation, as on Windows.
        Volume: UNICODE_STRING::default(),
        Share: UNICODE_STRING::default(),
        Extension: UNICODE_STRING::default(),
        Stream: UNICODE_STRING::default(),
        FinalComponent: UNICODE_STRING::default(),
        ParentDir: UNICODE_STRING::default(),
    };
    match shape {
        NameShape::OddLength => info.Name.Length = info.Name.Length.saturating_sub(1) | 1,
        NameShape::LengthAboveMaximum => {
            info.Name.MaximumLength = info.Name.Length.saturating_sub(2);
            if info.Name.Length == 0 {
                info.Name.Length = 2;
            }
        }
        NameShape::NullBuffer => {
            info.Name.Buffer = std::ptr::null_mut();
            info.Name.Length = info.Name.Length.max(2);
            info.Name.MaximumLength = info.Name.Length;
        }
        NameShape::Valid | NameShape::QueryFails => {}
    }
    let ptr = Box::into_raw(Box::new(info));
    world::with_world(|w| {
        w.name_infos.insert(
            ptr as usize,
            NameInfoStorage {
                info: ptr,
                name,
                volume,
            },
        )
    });
    // SAFETY: non-null out pointer from the driver.
    unsafe { file_name_information.write(ptr) };
    STATUS_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltParseFileNameInformation(
    file_name_information: *mut FLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    world::with_world(
        |w| match w.name_infos.get_mut(&(file_name_information as usize)) {
            Some(s) => {
                // SAFETY: both pointers are live allocations owned by the storage entry, which
                // stays in the map (so alive) while we hold the world lock.
                unsafe {
                    (*s.info).Volume = make_string(s.volume.len(), s.volume.cast::<u16>());
                    (*s.info).NamesParsed = 1;
                }
                STATUS_SUCCESS
            }
            None => {
                violation(
                    "NAME_PARSE_UNKNOWN",
                    "parsing name information the Filter Manager did not hand out",
                );
                STATUS_INVALID_PARAMETER
            }
        },
    )
    .unwrap_or(STATUS_INVALID_PARAMETER)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltReleaseFileNameInformation(
    file_name_information: *const FLT_FILE_NAME_INFORMATION,
) {
    let removed =
        world::with_world(|w| w.name_infos.remove(&(file_name_information as usize))).flatten();
    if removed.is_none() {
        violation(
            "NAME_RELEASE_UNKNOWN",
            "FltReleaseFileNameInformation on a reference not held (double release or foreign pointer)",
        );
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltAllocateContext(
    _filter: isize,
    context_type: u16,
    context_size: usize,
    _pool_type: i32,
    returned_context: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_CONTEXT", "FltAllocateContext above APC_LEVEL");
    }
    let registered =
        world::with_world(|w| w.registration.is_some_and(|r| r.stream_contexts_registered))
            .unwrap_or(false);
    if u32::from(context_type) != FLT_STREAM_CONTEXT || !registered {
        violation(
            "CONTEXT_NOT_REGISTERED",
            format!("context type {context_type} was not registered"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if returned_context.is_null() || context_size == 0 || context_size > 1 << 20 {
        return STATUS_INVALID_PARAMETER;
    }
    let Some(layout) = pool_layout(context_size) else {
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    // SAFETY: non-zero layout.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    world::with_world(|w| {
        w.contexts.insert(
            p as usize,
            Context {
                refs: 1,
                size: context_size,
                attached_to: None,
            },
        )
    });
    // SAFETY: non-null out pointer.
    unsafe { returned_context.write(p.cast()) };
    STATUS_SUCCESS
}

fn stream_key(file_object: *const FILE_OBJECT) -> Option<usize> {
    if file_object.is_null() {
        return None;
    }
    // SAFETY: the file object the simulator built for this operation.
    Some(unsafe { (*file_object).FsContext } as usize)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltSetStreamContext(
    _instance: isize,
    file_object: *const FILE_OBJECT,
    operation: i32,
    new_context: PFLT_CONTEXT,
    old_context: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_CONTEXT", "FltSetStreamContext above APC_LEVEL");
    }
    let Some(stream) = stream_key(file_object) else {
        return STATUS_INVALID_PARAMETER;
    };
    world::with_world(|w| {
        if !w.contexts.contains_key(&(new_context as usize)) {
            violation(
                "CONTEXT_UNKNOWN",
                "FltSetStreamContext with a context never allocated",
            );
            return STATUS_INVALID_PARAMETER;
        }
        if let Some(&existing) = w.stream_contexts.get(&stream)
            && operation == 1
        {
            // KEEP_IF_EXISTS: hand back the existing one, referenced.
            if let Some(c) = w.contexts.get_mut(&existing) {
                c.refs += 1;
            }
            if !old_context.is_null() {
                // SAFETY: non-null out pointer.
                unsafe { old_context.write(existing as PFLT_CONTEXT) };
            }
            return STATUS_FLT_CONTEXT_ALREADY_DEFINED;
        }
        w.stream_contexts.insert(stream, new_context as usize);
        if let Some(c) = w.contexts.get_mut(&(new_context as usize)) {
            c.refs += 1;
            c.attached_to = Some(stream);
        }
        STATUS_SUCCESS
    })
    .unwrap_or(STATUS_INVALID_PARAMETER)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetStreamContext(
    _instance: isize,
    file_object: *const FILE_OBJECT,
    context: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_CONTEXT", "FltGetStreamContext above APC_LEVEL");
    }
    let Some(stream) = stream_key(file_object) else {
        return STATUS_INVALID_PARAMETER;
    };
    let found = world::with_world(|w| {
        let c = *w.stream_contexts.get(&stream)?;
        w.contexts.get_mut(&c)?.refs += 1;
        Some(c)
    })
    .flatten();
    match found {
        Some(c) if !context.is_null() => {
            // SAFETY: non-null out pointer.
            unsafe { context.write(c as PFLT_CONTEXT) };
            STATUS_SUCCESS
        }
        Some(c) => {
            release_context_ref(c, false);
            STATUS_INVALID_PARAMETER
        }
        None => STATUS_NOT_FOUND,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltReleaseContext(context: PFLT_CONTEXT) {
    if verifier::irql() > DISPATCH_LEVEL {
        violation("IRQL_CONTEXT", "FltReleaseContext above DISPATCH_LEVEL");
    }
    release_context_ref(context as usize, false);
}

fn release_context_ref(ctx: usize, detach: bool) {
    let free = world::with_world(|w| {
        let Some(c) = w.contexts.get_mut(&ctx) else {
            violation(
                "CONTEXT_RELEASE_UNKNOWN",
                format!(
                    "releasing a context reference not held ({ctx:#x}, {} live)",
                    w.contexts.len()
                ),
            );
            return None;
        };
        if c.refs == 0 {
            violation(
                "CONTEXT_OVER_RELEASE",
                "context released more often than referenced",
            );
            return None;
        }
        c.refs -= 1;
        if detach {
            c.attached_to = None;
        }
        (c.refs == 0)
            .then(|| w.contexts.remove(&ctx).map(|c| c.size))
            .flatten()
    })
    .flatten();
    if let Some(size) = free
        && let Some(layout) = pool_layout(size)
    {
        // SAFETY: allocated in FltAllocateContext with this layout; last reference gone.
        unsafe { std::alloc::dealloc(ctx as *mut u8, layout) };
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetRequestorProcessId(
    _callback_data: *const FLT_CALLBACK_DATA,
) -> u32 {
    CURRENT_OP.with(|c| c.borrow().as_ref().map_or(0, |o| o.pid))
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetRequestorProcess(
    _callback_data: *const FLT_CALLBACK_DATA,
) -> isize {
    CURRENT_OP.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(0, |o| EPROCESS_BASE + o.pid as isize)
    })
}

// ---------------------------------------------------------------------------------------------
// Filter Manager: communication port
// ---------------------------------------------------------------------------------------------

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltBuildDefaultSecurityDescriptor(
    security_descriptor: *mut PSECURITY_DESCRIPTOR,
    desired_access: u32,
) -> NTSTATUS {
    if fails(FailPoint::BuildSecurityDescriptor) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if security_descriptor.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let sd = Box::into_raw(Box::new([0u64; 4]));
    world::with_world(|w| w.security_descriptors.insert(sd as usize, desired_access));
    // SAFETY: non-null out pointer.
    unsafe { security_descriptor.write(sd.cast()) };
    STATUS_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltFreeSecurityDescriptor(security_descriptor: PSECURITY_DESCRIPTOR) {
    let known = world::with_world(|w| {
        w.security_descriptors
            .remove(&(security_descriptor as usize))
            .is_some()
    })
    .unwrap_or(false);
    if known {
        // SAFETY: created by Box::into_raw in FltBuildDefaultSecurityDescriptor, freed once.
        drop(unsafe { Box::from_raw(security_descriptor.cast::<[u64; 4]>()) });
    } else {
        violation(
            "SD_FREE_UNKNOWN",
            "FltFreeSecurityDescriptor on a descriptor not built by the Filter Manager",
        );
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltCreateCommunicationPort(
    filter: isize,
    server_port: *mut PFLT_PORT,
    object_attributes: *const OBJECT_ATTRIBUTES,
    server_port_cookie: *const c_void,
    connect_notify: PFLT_CONNECT_NOTIFY,
    disconnect_notify: PFLT_DISCONNECT_NOTIFY,
    message_notify: PFLT_MESSAGE_NOTIFY,
    max_connections: i32,
) -> NTSTATUS {
    if fails(FailPoint::CreatePort) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if server_port.is_null() || object_attributes.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null pointer to the driver's OBJECT_ATTRIBUTES.
    let oa = unsafe { &*object_attributes };
    let sd = oa.SecurityDescriptor as usize;
    let access = world::with_world(|w| w.security_descriptors.get(&sd).copied()).flatten();
    match access {
        None => violation(
            "PORT_SECURITY",
            "port created without a descriptor from FltBuildDefaultSecurityDescriptor (a NULL DACL lets any user read every file event)",
        ),
        Some(a) if a != FLT_PORT_ALL_ACCESS => violation(
            "PORT_SECURITY",
            format!("port descriptor built for access {a:#x}, not FLT_PORT_ALL_ACCESS"),
        ),
        Some(_) => {}
    }
    if oa.Attributes & 0x200 == 0 {
        violation(
            "PORT_KERNEL_HANDLE",
            "port object attributes lack OBJ_KERNEL_HANDLE",
        );
    }
    if max_connections != 1 {
        violation(
            "PORT_MAX_CONNECTIONS",
            format!("MaxConnections {max_connections}, expected 1"),
        );
    }
    if message_notify.is_some() {
        // Not a rule of the Filter Manager, but of this design: user memory is never read.
        violation(
            "PORT_MESSAGE_NOTIFY",
            "a message-notify callback would read user-mode buffers",
        );
    }
    let expected: Vec<u16> = "\\fsensePort".encode_utf16().collect();
    if read_unicode(oa.ObjectName).as_deref() != Some(expected.as_slice()) {
        violation("PORT_NAME", "port not named \\fsensePort");
    }
    let port = world::with_world(|w| {
        if w.filter_handle != filter {
            return None;
        }
        let handle = w.new_handle() as isize;
        w.server_port = Some(ServerPort {
            handle,
            connect: connect_notify,
            disconnect: disconnect_notify,
            cookie: server_port_cookie as usize,
            open: true,
        });
        Some(handle)
    })
    .flatten();
    match port {
        Some(p) => {
            // SAFETY: non-null out pointer.
            unsafe { server_port.write(p) };
            STATUS_SUCCESS
        }
        None => STATUS_INVALID_PARAMETER,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltCloseCommunicationPort(server_port: PFLT_PORT) {
    let ok = world::with_world(|w| match w.server_port.as_mut() {
        Some(p) if p.handle == server_port && p.open => {
            p.open = false;
            true
        }
        _ => false,
    })
    .unwrap_or(false);
    if !ok {
        violation(
            "PORT_CLOSE_UNKNOWN",
            "closing a server port that is not open",
        );
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltCloseClientPort(_filter: isize, client_port: *mut PFLT_PORT) {
    if client_port.is_null() || !client_port.is_aligned() {
        violation(
            "CLIENT_PORT_NULL",
            "FltCloseClientPort with a null or misaligned pointer",
        );
        return;
    }
    // SAFETY: non-null, aligned pointer to the driver's client-port variable, which the driver
    // reads concurrently (atomically) from its worker: access it atomically here too.
    let variable = unsafe { std::sync::atomic::AtomicIsize::from_ptr(client_port) };
    let value = variable.load(Ordering::Acquire);
    if value == 0 || value != PORT.client_port() {
        violation(
            "CLIENT_PORT_UNKNOWN",
            format!("closing client port {value:#x}, which is not connected"),
        );
    }
    // The Filter Manager zeroes the caller's variable.
    variable.store(0, Ordering::Release);
    PORT.set_disconnected();
}

static SEND_TIMEOUT_MISSING: AtomicUsize = AtomicUsize::new(0);

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltSendMessage(
    _filter: isize,
    client_port: *const PFLT_PORT,
    sender_buffer: *const c_void,
    sender_buffer_length: u32,
    reply_buffer: *mut c_void,
    reply_length: *mut u32,
    timeout: *const i64,
) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_SEND", "FltSendMessage above PASSIVE_LEVEL");
    }
    if let Some(cb) = verifier::in_callback() {
        violation(
            "SEND_IN_IO_CALLBACK",
            format!("FltSendMessage from {cb}: I/O would wait on user mode"),
        );
    }
    let wait = match timeout_from(timeout) {
        Some(t) => t,
        None => {
            SEND_TIMEOUT_MISSING.fetch_add(1, Ordering::Relaxed);
            violation(
                "SEND_NULL_TIMEOUT",
                "FltSendMessage with a NULL timeout waits forever on user mode",
            );
            Duration::from_secs(1)
        }
    };
    if sender_buffer.is_null() || sender_buffer_length as usize > fsense_proto::MAX_MESSAGE_BYTES {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the driver's buffer of sender_buffer_length bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(sender_buffer.cast::<u8>(), sender_buffer_length as usize)
    }
    .to_vec();
    if bytes.get(..4) == Some(&fsense_proto::Health::MAGIC.to_le_bytes()[..]) {
        world::with_world(|w| w.last_health = Some(bytes.clone()));
    }
    let port = if client_port.is_null() || !client_port.is_aligned() {
        0
    } else {
        // SAFETY: the driver's client-port variable, shared with FltCloseClientPort: atomic.
        unsafe { std::sync::atomic::AtomicIsize::from_ptr(client_port.cast_mut()) }
            .load(Ordering::Acquire)
    };
    if port == 0 || port != PORT.client_port() {
        return STATUS_PORT_DISCONNECTED;
    }
    let wants_reply = !reply_buffer.is_null() && !reply_length.is_null();
    // SAFETY: non-null when wants_reply; the driver's reply buffer size.
    let reply_capacity = if wants_reply {
        unsafe { reply_length.read() }
    } else {
        0
    };
    match PORT.send_with_reply_buffer(bytes, reply_capacity, wait) {
        SendResult::Disconnected => STATUS_PORT_DISCONNECTED,
        SendResult::TimedOut => STATUS_TIMEOUT,
        SendResult::Delivered(reply) => {
            if let Some(reply) = reply {
                // SAFETY: both non-null (wants_reply); reply_length holds the buffer's capacity.
                let capacity = unsafe { reply_length.read() } as usize;
                let n = reply.len().min(capacity);
                // SAFETY: copy n <= capacity bytes into the driver's reply buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(reply.as_ptr(), reply_buffer.cast::<u8>(), n);
                    reply_length.write(n as u32);
                }
            }
            STATUS_SUCCESS
        }
    }
}

/// Connects the simulated client with `hello` (as `FilterConnectCommunicationPort` would).
/// Returns whether the driver accepted.
pub fn connect_client(hello: &[u8], client_pid: u32) -> bool {
    let port = world::with_world(|w| w.server_port.filter(|p| p.open)).flatten();
    let Some(port) = port else {
        return false;
    };
    if PORT.is_connected() {
        return false; // MaxConnections 1
    }
    let handle = world::with_world(|w| w.new_handle() as isize).unwrap_or(0);
    // The Filter Manager captures the context into kernel memory before calling the driver.
    let captured: Vec<u8> = hello.to_vec();
    let mut cookie: *mut c_void = std::ptr::null_mut();
    let previous_pid = verifier::current_pid();
    verifier::set_current_pid(client_pid);
    let st = match port.connect {
        // SAFETY: the driver's connect callback, called at PASSIVE_LEVEL in the connecting
        // process's context with a captured context buffer of the stated length.
        Some(cb) => unsafe {
            cb(
                handle,
                port.cookie as *const c_void,
                captured.as_ptr().cast(),
                captured.len() as u32,
                &mut cookie,
            )
        },
        None => STATUS_SUCCESS,
    };
    verifier::set_current_pid(previous_pid);
    if st >= 0 {
        PORT.set_connected(handle);
        true
    } else {
        world::with_world(|w| w.refused_connections += 1);
        false
    }
}

/// Disconnects the client (its handle closed, or the filter unloading): calls the driver's
/// disconnect callback, which must close the client port.
pub fn disconnect_client() {
    if !PORT.is_connected() {
        return;
    }
    let port = world::with_world(|w| w.server_port).flatten();
    if let Some(ServerPort {
        disconnect: Some(cb),
        ..
    }) = port
    {
        // SAFETY: the driver's disconnect callback, at PASSIVE_LEVEL.
        unsafe { cb(std::ptr::null()) };
    }
    if PORT.is_connected() {
        violation(
            "CLIENT_PORT_NOT_CLOSED",
            "disconnect callback returned without FltCloseClientPort",
        );
        PORT.set_disconnected();
    }
}

// ---------------------------------------------------------------------------------------------
// I/O: calling the driver's callbacks as the Filter Manager does
// ---------------------------------------------------------------------------------------------

/// An open file object the simulator keeps for one create and its writes.
pub struct OpenFile {
    file_object: Box<FILE_OBJECT>,
}

// SAFETY: the raw pointers inside the FILE_OBJECT are fake stream keys, never dereferenced.
unsafe impl Send for OpenFile {}

/// Timing and outcome of one operation's callbacks.
pub struct CallbackTiming {
    pub longest: Duration,
}

fn enter_callback(name: &'static str) -> Option<Registration> {
    world::with_world(|w| {
        if w.unloading || w.registration.is_none() {
            return None;
        }
        w.callbacks_in_flight += 1;
        w.registration
    })
    .flatten()
    .inspect(|_r| {
        verifier::set_in_callback(Some(name));
    })
}

fn leave_callback() {
    verifier::set_in_callback(None);
    world::with_world(|w| w.callbacks_in_flight = w.callbacks_in_flight.saturating_sub(1));
}

fn check_pre_status(status: i32, callback: &str) {
    // Only SUCCESS_WITH_CALLBACK (0) and SUCCESS_NO_CALLBACK (1) fit a sensor that never pends.
    if !(0..=1).contains(&status) {
        violation("CALLBACK_RETURN", format!("{callback} returned {status}"));
    }
}

fn check_post_status(status: i32, callback: &str) {
    if status != 0 {
        violation(
            "CALLBACK_RETURN",
            format!("{callback} returned {status}, expected FLT_POSTOP_FINISHED_PROCESSING"),
        );
    }
    if verifier::spin_locks_held() != 0 {
        violation(
            "CALLBACK_HOLDS_LOCK",
            format!("{callback} returned holding a spin lock"),
        );
    }
}

/// Runs one create through pre-create, the "file system", and post-create.
pub fn run_create(
    op: &CreateOp,
    path: Arc<Vec<u16>>,
    instance: isize,
    filter: isize,
) -> (Option<OpenFile>, CallbackTiming) {
    let mut timing = CallbackTiming {
        longest: Duration::ZERO,
    };
    // SAFETY: FILE_OBJECT is plain data; all-zero is a valid (closed) file object shape.
    let mut file_object: Box<FILE_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    file_object.FsContext = op.stream_key as *mut c_void;
    let mut security = IO_SECURITY_CONTEXT {
        SecurityQos: std::ptr::null_mut(),
        AccessState: std::ptr::null_mut(),
        DesiredAccess: op.desired_access,
        FullCreateOptions: op.options,
    };
    // SAFETY: plain data; all-zero is a valid parameter block shape, filled in below.
    let mut iopb: FLT_IO_PARAMETER_BLOCK = unsafe { std::mem::zeroed() };
    iopb.MajorFunction = IRP_MJ_CREATE as u8;
    iopb.TargetFileObject = &mut *file_object;
    iopb.TargetInstance = instance;
    // The Create member in its real (WDK) layout; windows-sys's is misaligned on x64.
    let create = CreateParameters {
        security_context: &mut security,
        options: (op.disposition << 24) | (op.options & 0x00FF_FFFF),
        _align_file_attributes: 0,
        file_attributes: 0,
        share_access: op.share_access,
        _align_ea_length: 0,
        ea_length: 0,
        _align_ea_buffer: 0,
        ea_buffer: std::ptr::null_mut(),
        allocation_size: 0,
    };
    // SAFETY: CreateParameters fits inside the FLT_PARAMETERS union with no stricter alignment
    // (the driver checks both at compile time).
    unsafe {
        std::ptr::addr_of_mut!(iopb.Parameters)
            .cast::<CreateParameters>()
            .write(create)
    };
    // SAFETY: plain data; all-zero is valid, filled in below.
    let mut data: FLT_CALLBACK_DATA = unsafe { std::mem::zeroed() };
    data.Flags = 1; // FLTFL_CALLBACK_DATA_IRP_OPERATION
    data.Thread = ETHREAD_BASE + op.op_id as isize;
    data.Iopb = &iopb;
    data.RequestorMode = 1; // UserMode
    let objects = related_objects(filter, instance, &*file_object);

    CURRENT_OP.with(|c| {
        *c.borrow_mut() = Some(CurrentOp {
            pid: op.pid,
            path,
            shape: op.shape,
        })
    });
    verifier::set_current_pid(op.pid);
    verifier::set_irql(PASSIVE_LEVEL);

    let Some(reg) = enter_callback("PreCreate") else {
        return (None, timing);
    };
    let mut completion: *mut c_void = std::ptr::null_mut();
    let start = Instant::now();
    let pre = match reg.pre_create {
        // SAFETY: the driver's pre-create callback with callback data, related objects and a
        // completion-context slot that live for the whole operation, at PASSIVE_LEVEL.
        Some(cb) => unsafe { cb(&mut data, &objects, &mut completion) },
        None => 1,
    };
    timing.longest = timing.longest.max(start.elapsed());
    check_pre_status(pre, "PreCreate");
    leave_callback();

    // The file system completes the create.
    data.IoStatus.Anonymous.Status = op.status;
    data.IoStatus.Information = op.information as usize;

    if pre == 0 {
        let draining = world::with_world(|w| w.unloading).unwrap_or(true);
        verifier::set_in_callback(Some("PostCreate"));
        world::with_world(|w| w.callbacks_in_flight += 1);
        let flags = if draining {
            FLTFL_POST_OPERATION_DRAINING
        } else {
            0
        };
        let start = Instant::now();
        let post = match reg.post_create {
            // SAFETY: the driver's post-create callback, same structures, PASSIVE_LEVEL.
            Some(cb) => unsafe { cb(&mut data, &objects, completion, flags) },
            None => 0,
        };
        timing.longest = timing.longest.max(start.elapsed());
        check_post_status(post, "PostCreate");
        leave_callback();
    }
    CURRENT_OP.with(|c| *c.borrow_mut() = None);
    let open = (op.status >= 0).then_some(OpenFile { file_object });
    (open, timing)
}

/// Runs one write through pre-write, the "file system", and post-write (possibly at DISPATCH).
pub fn run_write(op: &WriteOp, file: &OpenFile, instance: isize, filter: isize) -> CallbackTiming {
    let mut timing = CallbackTiming {
        longest: Duration::ZERO,
    };
    // SAFETY: plain data, filled in below.
    let mut iopb: FLT_IO_PARAMETER_BLOCK = unsafe { std::mem::zeroed() };
    iopb.MajorFunction = IRP_MJ_WRITE as u8;
    iopb.IrpFlags = if op.paging_io { IRP_PAGING_IO } else { 0 };
    iopb.TargetFileObject = (&*file.file_object as *const FILE_OBJECT).cast_mut();
    iopb.TargetInstance = instance;
    let write = WriteParameters {
        length: op.length,
        _align_key: 0,
        key: 0,
        _align_byte_offset: 0,
        byte_offset: op.offset as i64,
        write_buffer: std::ptr::null_mut(),
        mdl_address: std::ptr::null_mut(),
    };
    // SAFETY: WriteParameters fits inside the FLT_PARAMETERS union (checked by the driver).
    unsafe {
        std::ptr::addr_of_mut!(iopb.Parameters)
            .cast::<WriteParameters>()
            .write(write)
    };
    // SAFETY: plain data, filled in below.
    let mut data: FLT_CALLBACK_DATA = unsafe { std::mem::zeroed() };
    data.Flags = 1;
    data.Thread = ETHREAD_BASE + op.op_id as isize;
    data.Iopb = &iopb;
    data.RequestorMode = if op.paging_io { 0 } else { 1 };
    let objects = related_objects(filter, instance, &*file.file_object);
    CURRENT_OP.with(|c| {
        *c.borrow_mut() = Some(CurrentOp {
            pid: op.pid,
            path: Arc::new(Vec::new()),
            shape: NameShape::QueryFails,
        })
    });
    verifier::set_current_pid(op.pid);
    verifier::set_irql(if op.paging_io {
        APC_LEVEL
    } else {
        PASSIVE_LEVEL
    });

    let Some(reg) = enter_callback("PreWrite") else {
        CURRENT_OP.with(|c| *c.borrow_mut() = None);
        return timing;
    };
    let mut completion: *mut c_void = std::ptr::null_mut();
    let start = Instant::now();
    let pre = match reg.pre_write {
        // SAFETY: the driver's pre-write callback with structures valid for the operation.
        Some(cb) => unsafe { cb(&mut data, &objects, &mut completion) },
        None => 1,
    };
    timing.longest = timing.longest.max(start.elapsed());
    check_pre_status(pre, "PreWrite");
    leave_callback();

    data.IoStatus.Anonymous.Status = op.status;
    data.IoStatus.Information = op.bytes_written as usize;

    if pre == 0 {
        let draining = world::with_world(|w| w.unloading).unwrap_or(true);
        verifier::set_in_callback(Some("PostWrite"));
        world::with_world(|w| w.callbacks_in_flight += 1);
        // Post-write may run at DISPATCH_LEVEL (completion in an arbitrary context).
        verifier::set_irql(if op.post_at_dispatch {
            DISPATCH_LEVEL
        } else {
            PASSIVE_LEVEL
        });
        let flags = if draining {
            FLTFL_POST_OPERATION_DRAINING
        } else {
            0
        };
        let start = Instant::now();
        let post = match reg.post_write {
            // SAFETY: the driver's post-write callback, same structures.
            Some(cb) => unsafe { cb(&mut data, &objects, completion, flags) },
            None => 0,
        };
        timing.longest = timing.longest.max(start.elapsed());
        check_post_status(post, "PostWrite");
        leave_callback();
        verifier::set_irql(PASSIVE_LEVEL);
    } else if !completion.is_null() {
        violation(
            "COMPLETION_CONTEXT_LEAK",
            "PreWrite set a completion context but asked for no post-operation callback",
        );
    }
    CURRENT_OP.with(|c| *c.borrow_mut() = None);
    timing
}

/// Calls the driver's entry point with a fake driver object and the service key path.
pub fn call_driver_entry() -> NTSTATUS {
    // SAFETY: DRIVER_OBJECT is plain data; the driver only passes its address to
    // FltRegisterFilter, which the simulator does not dereference.
    let mut driver: Box<DRIVER_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    let mut path = world::with_world(|w| w.registry_path.clone()).unwrap_or_default();
    let registry_path = UNICODE_STRING {
        Length: (path.len() * 2) as u16,
        MaximumLength: (path.len() * 2) as u16,
        Buffer: path.as_mut_ptr(),
    };
    verifier::set_irql(PASSIVE_LEVEL);
    // SAFETY: the driver's entry point, called once per load at PASSIVE_LEVEL with a driver
    // object and registry path that outlive the call.
    unsafe { fsense_driver::ffi::DriverEntry(&mut *driver, &registry_path) }
}

/// Unloads the driver as `fltmc unload` would: calls its unload callback at PASSIVE_LEVEL.
pub fn call_unload() -> Option<NTSTATUS> {
    let unload = world::with_world(|w| w.registration.and_then(|r| r.unload)).flatten()?;
    verifier::set_irql(PASSIVE_LEVEL);
    // SAFETY: the driver's unload callback, at PASSIVE_LEVEL, outside any I/O callback.
    Some(unsafe { unload(0) })
}

/// Whether the simulator ever saw a NULL send timeout (reported separately from violations).
pub fn null_timeouts_seen() -> usize {
    SEND_TIMEOUT_MISSING.swap(0, Ordering::Relaxed)
}
