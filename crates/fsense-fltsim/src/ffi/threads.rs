//! Threads and objects: system threads, object references, handles.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

/// Longest the simulator lets the driver wait for one of its own system threads to exit. Once
/// asked to stop, the delivery worker finishes within one bounded send and the final drain
/// (`FINAL_DRAIN_MS`, 1.5 s, plus one 20 ms health): a join still waiting after ten times that
/// has hung, as the unload would on Windows (`sc stop` never returns, the image stays loaded).
pub const THREAD_JOIN_LIMIT: Duration = Duration::from_secs(15);

/// Waits for a driver system thread to exit, as a wait on its thread object without timeout
/// does. A hung join is reported (THREAD_JOIN_HUNG) and stops the process: the run cannot go
/// on, since returning would let the driver free what the thread still uses, and a test that
/// waits forever would only be killed by a timeout, with no finding.
pub(super) fn join_system_thread(join: std::thread::JoinHandle<()>, waiter: &str) {
    let started = Instant::now();
    // Under Miri time is simulated and the run is tiny: a plain join.
    while !cfg!(miri) && !join.is_finished() {
        if started.elapsed() >= THREAD_JOIN_LIMIT {
            use std::io::Write as _;
            // Straight to stderr: the test harness's output capture is lost with the process.
            let _ = writeln!(
                std::io::stderr(),
                "THREAD_JOIN_HUNG: {waiter} waited {} s for a driver system thread that never \
                 exited (unload would hang); stopping the process",
                THREAD_JOIN_LIMIT.as_secs()
            );
            std::process::abort();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = join.join();
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

/// The thread `OBJECT_TYPE`. Its layout is undocumented; on x64 Windows 10/11 it starts with
/// a `LIST_ENTRY TypeList`, which is populated when the global flag "Maintain a list of objects
/// for each type" (`otl`, `debugger/maintain-a-list-of-objects-for-each-type`) is set. The
/// simulator always models it populated (Flink points elsewhere), so a driver that reads the
/// type's first field instead of passing the type's address gets a mismatch, as on such a system.
#[repr(C, align(8))]
pub struct ObjectType {
    type_list_flink: *const c_void,
    type_list_blink: *const c_void,
}
// SAFETY: immutable statics only.
unsafe impl Sync for ObjectType {}

/// What the populated type list points at: an object's header information, not the type.
static LISTED_OBJECT_HEADER: [u64; 2] = [0; 2];

static THREAD_OBJECT_TYPE: ObjectType = ObjectType {
    type_list_flink: &LISTED_OBJECT_HEADER as *const [u64; 2] as *const c_void,
    type_list_blink: &LISTED_OBJECT_HEADER as *const [u64; 2] as *const c_void,
};

/// A `POBJECT_TYPE` variable.
#[repr(transparent)]
pub struct ObjectTypePointer(*const ObjectType);
// SAFETY: points to an immutable static only.
unsafe impl Sync for ObjectTypePointer {}

/// `PsThreadType` as ntoskrnl has it (rule S1 of docs/simulator.md): the exported symbol is the
/// variable `POBJECT_TYPE PsThreadType` itself (WRK `ntos.h`: "Outside of the kernel these are
/// exported by reference"), whose value is the thread type's address. A C driver reaches it
/// through its import slot (`extern POBJECT_TYPE *PsThreadType`) and passes `*PsThreadType`
/// (`nf-wdm-obreferenceobjectbyhandle`, ObjectType); a Rust extern static of a raw-dylib block
/// is dllimport, so it is this variable, and its value is the type.
#[allow(non_upper_case_globals, reason = "the kernel's export name")]
#[unsafe(no_mangle)]
pub static PsThreadType: ObjectTypePointer = ObjectTypePointer(&THREAD_OBJECT_TYPE);

/// Reference: `nf-wdm-obreferenceobjectbyhandle`. The handle must be open; when ObjectType is
/// given it must match the object's type (else STATUS_OBJECT_TYPE_MISMATCH); IRQL PASSIVE_LEVEL.
/// Passing NULL skips the type check: drivers pass the type (`*PsThreadType` for a thread), so
/// the simulator reports a NULL type as OBJECT_TYPE_UNCHECKED (a hardening rule, not a crash).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ObReferenceObjectByHandle(
    handle: HANDLE,
    _desired_access: u32,
    object_type: *mut c_void,
    _access_mode: i8,
    object: *mut *mut c_void,
    _handle_information: *mut c_void,
) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation(
            "IRQL_REFERENCE_HANDLE",
            "ObReferenceObjectByHandle above PASSIVE_LEVEL",
        );
    }
    if fails(FailPoint::ReferenceThread) {
        return STATUS_INVALID_HANDLE;
    }
    let thread_type = PsThreadType.0.cast::<c_void>().cast_mut();
    if object_type.is_null() {
        // Miri cannot import an extern static, so the driver passes NULL there on purpose.
        if !cfg!(miri) {
            violation(
                "OBJECT_TYPE_UNCHECKED",
                "ObReferenceObjectByHandle with a NULL object type (pass *PsThreadType)",
            );
        }
    } else if object_type != thread_type {
        violation(
            "OBJECT_TYPE_MISMATCH",
            format!(
                "ObReferenceObjectByHandle with type {object_type:p}, not *PsThreadType ({thread_type:p})"
            ),
        );
        return STATUS_OBJECT_TYPE_MISMATCH;
    }
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

/// Reference: `nf-ntifs-zwwaitforsingleobject`: PASSIVE_LEVEL, a handle with SYNCHRONIZE access.
/// The simulator supports waits on the driver's own thread handles (a join), without timeout.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwWaitForSingleObject(
    handle: HANDLE,
    _alertable: u8,
    timeout: *const i64,
) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_WAIT", "ZwWaitForSingleObject above PASSIVE_LEVEL");
    }
    if let Some(cb) = verifier::in_callback() {
        violation(
            "WAIT_IN_IO_CALLBACK",
            format!("ZwWaitForSingleObject in {cb}"),
        );
    }
    let join = world::with_world(|w| match w.open_handles.get(&(handle as usize)) {
        Some(HandleKind::Thread(obj)) => {
            let obj = *obj;
            w.threads.get_mut(&obj).and_then(|t| t.join.take())
        }
        _ => None,
    })
    .flatten();
    match join {
        Some(j) => {
            if !timeout.is_null() {
                violation(
                    "THREAD_WAIT_TIMEOUT",
                    "the simulator joins threads only without a timeout",
                );
            }
            join_system_thread(j, "ZwWaitForSingleObject");
            STATUS_SUCCESS
        }
        None => {
            violation(
                "WAIT_UNKNOWN_HANDLE",
                format!("ZwWaitForSingleObject on {handle:p}, not a live thread handle"),
            );
            STATUS_INVALID_HANDLE
        }
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
