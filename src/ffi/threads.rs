//! Threads: the delivery worker's system thread, its start and its join.

use super::*;

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn PsCreateSystemThread(
        thread_handle: *mut HANDLE,
        desired_access: u32,
        object_attributes: *const OBJECT_ATTRIBUTES,
        process_handle: HANDLE,
        client_id: *mut c_void,
        start_routine: KStartRoutine,
        start_context: *mut c_void,
    ) -> NTSTATUS;
    fn PsTerminateSystemThread(exit_status: NTSTATUS) -> NTSTATUS;
    fn ObReferenceObjectByHandle(
        handle: HANDLE,
        desired_access: u32,
        object_type: *mut c_void,
        access_mode: i8,
        object: *mut *mut c_void,
        handle_information: *mut c_void,
    ) -> NTSTATUS;
    fn ObfDereferenceObject(object: *mut c_void) -> isize;
    /// Not ZwClose: windows-sys declares that one as an ntdll.dll import, and the linker would
    /// take its declaration over ours.
    pub(super) fn ObCloseHandle(handle: HANDLE, previous_mode: i8) -> NTSTATUS;
    /// Waits on a handle (here: the worker thread's, when no object reference could be taken).
    fn ZwWaitForSingleObject(handle: HANDLE, alertable: u8, timeout: *const i64) -> NTSTATUS;
}

// `PsThreadType` is data. Inside ntoskrnl it is the variable `POBJECT_TYPE PsThreadType`; C
// drivers see it through the import slot as `extern POBJECT_TYPE *PsThreadType` and pass
// `*PsThreadType` (`nf-wdm-obreferenceobjectbyhandle`, ObjectType). rustc marks an extern static
// of a raw-dylib block dllimport, so this Rust static *is* the kernel variable: reading it loads
// the import slot, then the variable (two loads, as C's `*PsThreadType`), and gives the
// POBJECT_TYPE itself. It must not be dereferenced again. Miri cannot resolve an extern static,
// so under Miri the type check is skipped (NULL is documented as "no check").
#[cfg(not(miri))]
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    static PsThreadType: *mut c_void;
}

/// `*PsThreadType` in C terms: makes `ObReferenceObjectByHandle` check that the handle names a
/// thread.
fn thread_object_type() -> *mut c_void {
    #[cfg(not(miri))]
    {
        // SAFETY: PsThreadType is an ntoskrnl export initialised before any driver loads; its
        // value is the thread object type, which lives as long as the system. Reading it is one
        // load through the import slot; the value is passed on, never dereferenced here.
        unsafe { PsThreadType }
    }
    #[cfg(miri)]
    ptr::null_mut()
}

/// The referenced thread object of the delivery worker, for the join at unload. Release store
/// (DriverEntry), AcqRel swap (unload, on another thread, or DriverEntry's own unwinding): a
/// published pointer, whose object the reference taken before the store keeps alive. The swap
/// makes the dereference and the wait happen once.
static WORKER_THREAD: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

pub(super) fn start_worker() -> NTSTATUS {
    let oa = OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: ptr::null_mut(),
        ObjectName: ptr::null(),
        Attributes: OBJ_KERNEL_HANDLE,
        SecurityDescriptor: ptr::null(),
        SecurityQualityOfService: ptr::null(),
    };
    let mut handle: HANDLE = ptr::null_mut();
    // SAFETY: valid out pointer and attributes; worker_main matches KSTART_ROUTINE.
    let st = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            &oa,
            ptr::null_mut(),
            ptr::null_mut(),
            worker_main,
            ptr::null_mut(),
        )
    };
    if !status::is_success(st) {
        return st;
    }
    let mut object: *mut c_void = ptr::null_mut();
    // SAFETY: handle is the kernel handle just created; object is a valid out pointer; the type
    // is the thread type (or NULL, which skips the type check).
    let st = unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            thread_object_type(),
            KERNEL_MODE,
            &mut object,
            ptr::null_mut(),
        )
    };
    if !status::is_success(st) {
        // The thread runs but cannot be joined through an object: stop it and wait on the handle
        // before closing it, so DriverEntry frees nothing (and the image is not unmapped) while
        // the thread still runs. It exits within one bounded wait.
        delivery::request_stop();
        // SAFETY: our open kernel handle to our own thread, at PASSIVE_LEVEL in DriverEntry with
        // no lock held; the thread exits on its own (stop flag), so the wait ends.
        unsafe { ZwWaitForSingleObject(handle, 0, ptr::null()) };
        // SAFETY: we own the handle and close it once.
        unsafe { ObCloseHandle(handle, KERNEL_MODE) };
        return st;
    }
    // SAFETY: we own the handle; the referenced object keeps the thread joinable without it.
    unsafe { ObCloseHandle(handle, KERNEL_MODE) };
    WORKER_THREAD.store(object, Ordering::Release);
    status::SUCCESS
}

/// Tells the worker to stop and waits for its thread to exit.
pub(super) fn stop_worker() {
    delivery::request_stop();
    let object = WORKER_THREAD.swap(ptr::null_mut(), Ordering::AcqRel);
    if object.is_null() {
        return;
    }
    // SAFETY: `object` is the referenced thread object; waiting for our own worker (not for user
    // mode) at PASSIVE_LEVEL in unload, with no lock held; it exits within one bounded send.
    unsafe {
        KeWaitForSingleObject(object, EXECUTIVE, KERNEL_MODE, 0, ptr::null());
        ObfDereferenceObject(object);
    }
}

unsafe extern "system" fn worker_main(_context: *mut c_void) {
    delivery::run_worker();
    // SAFETY: called on our own system thread as its last action.
    unsafe { PsTerminateSystemThread(status::SUCCESS) };
}
