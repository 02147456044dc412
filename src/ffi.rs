//! The driver's only `unsafe` code: kernel declarations, the Filter Manager entry points, and safe
//! wrappers over the structures the kernel hands us.
//!
//! Written in the manner of Rust-for-Linux's `rust/kernel`: each wrapper type states its invariant,
//! its constructor is the only place that establishes it (checking null, alignment and every length
//! before anything is read), and every `unsafe` block names the invariant that makes it sound.
//! Everything outside this module is safe Rust that cannot reach a raw pointer.
//!
//! ## Choices recorded here
//! - **No user-mode memory is ever dereferenced.** The driver registers no message-notify callback.
//!   User mode reaches the driver in exactly two ways, both captured into kernel memory by the
//!   system before we see them: the connection context of `FilterConnectCommunicationPort` (passed
//!   as the extended-attribute buffer of the port's create, which the I/O manager copies) and the
//!   reply to `FltSendMessage` (copied by the Filter Manager into our non-paged reply buffer). Both
//!   are fixed-size and range-checked by `fsense-proto`. No SEH shim is needed.
//! - **Instances:** we attach to local disk file systems (NTFS, ReFS, FAT, exFAT) and decline
//!   everything else (network redirectors, named pipes, mailslots, CD/UDF, RAW): the sensor watches
//!   the machine's own files, and name queries on redirectors can block on the network.
//! - **Names for writes** come from a stream context set in post-create (for handles opened with
//!   write access only), fetched in pre-write (IRQL <= APC_LEVEL) and handed to post-write, which may
//!   run at DISPATCH_LEVEL and so only reads that non-paged context. No name query ever runs on the
//!   write path, so paging I/O cannot deadlock on it.
//! - **Imports:** Filter Manager functions come from windows-sys (`FLTMGR.SYS`); the handful of
//!   ntoskrnl functions are declared below, because windows-sys attributes some (Zw*) to ntdll.dll
//!   (and for the same reason handles are closed with `ObCloseHandle`, not `ZwClose`).

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, Ordering};

use windows_sys::Wdk::Foundation::{
    DRIVER_OBJECT, FILE_OBJECT, IO_SECURITY_CONTEXT, KEVENT, OBJECT_ATTRIBUTES,
};
use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
    FLT_CALLBACK_DATA, FLT_CONTEXT_END, FLT_CONTEXT_REGISTRATION, FLT_FILE_NAME_INFORMATION,
    FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED, FLT_FILE_NAME_QUERY_DEFAULT,
    FLT_IO_PARAMETER_BLOCK, FLT_OPERATION_REGISTRATION, FLT_POSTOP_CALLBACK_STATUS,
    FLT_POSTOP_FINISHED_PROCESSING, FLT_PREOP_CALLBACK_STATUS, FLT_PREOP_SUCCESS_NO_CALLBACK,
    FLT_PREOP_SUCCESS_WITH_CALLBACK, FLT_REGISTRATION, FLT_REGISTRATION_VERSION,
    FLT_RELATED_OBJECTS, FLT_SET_CONTEXT_KEEP_IF_EXISTS, FLT_STREAM_CONTEXT,
    FLTFL_POST_OPERATION_DRAINING, FltAllocateContext, FltBuildDefaultSecurityDescriptor,
    FltCloseClientPort, FltCloseCommunicationPort, FltCreateCommunicationPort,
    FltFreeSecurityDescriptor, FltGetFileNameInformation, FltGetRequestorProcess,
    FltGetRequestorProcessId, FltGetStreamContext, FltParseFileNameInformation, FltRegisterFilter,
    FltReleaseContext, FltReleaseFileNameInformation, FltSendMessage, FltSetStreamContext,
    FltStartFiltering, FltUnregisterFilter, IRP_MJ_OPERATION_END, PFLT_CONTEXT, PFLT_PORT,
};
use windows_sys::Wdk::System::SystemServices::{IRP_MJ_CREATE, IRP_MJ_WRITE, IRP_PAGING_IO};
use windows_sys::Win32::Foundation::{HANDLE, NTSTATUS, UNICODE_STRING};
use windows_sys::Win32::Security::PSECURITY_DESCRIPTOR;
use windows_sys::Win32::Storage::InstallableFileSystems::{
    FLT_FILESYSTEM_TYPE, FLT_FSTYPE_EXFAT, FLT_FSTYPE_FAT, FLT_FSTYPE_NTFS, FLT_FSTYPE_REFS,
};

use crate::{delivery, sensor};

// ---------------------------------------------------------------------------------------------
// Kernel declarations (ntoskrnl.exe). On the host these resolve to the simulator's definitions.
// ---------------------------------------------------------------------------------------------

type Kirql = u8;
type KStartRoutine = unsafe extern "system" fn(context: *mut c_void);

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn ExAllocatePool2(flags: u64, number_of_bytes: usize, tag: u32) -> *mut c_void;
    fn ExFreePoolWithTag(p: *mut c_void, tag: u32);
    fn KeAcquireSpinLockRaiseToDpc(spin_lock: *mut usize) -> Kirql;
    fn KeReleaseSpinLock(spin_lock: *mut usize, new_irql: Kirql);
    fn KeInitializeEvent(event: *mut KEVENT, event_type: i32, state: u8);
    fn KeSetEvent(event: *mut KEVENT, increment: i32, wait: u8) -> i32;
    fn KeWaitForSingleObject(
        object: *const c_void,
        wait_reason: i32,
        wait_mode: i8,
        alertable: u8,
        timeout: *const i64,
    ) -> NTSTATUS;
    fn KeQuerySystemTimePrecise(current_time: *mut i64);
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
    fn PsGetCurrentProcessId() -> HANDLE;
    fn PsGetThreadId(thread: isize) -> HANDLE;
    fn PsGetProcessCreateTimeQuadPart(process: isize) -> i64;
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
    fn ObCloseHandle(handle: HANDLE, previous_mode: i8) -> NTSTATUS;
    fn ZwOpenKey(
        key_handle: *mut HANDLE,
        desired_access: u32,
        object_attributes: *const OBJECT_ATTRIBUTES,
    ) -> NTSTATUS;
    fn ZwQueryValueKey(
        key_handle: HANDLE,
        value_name: *const UNICODE_STRING,
        information_class: i32,
        information: *mut c_void,
        length: u32,
        result_length: *mut u32,
    ) -> NTSTATUS;
}

// The code generator emits calls to these for copies and fills; in a driver they come from the
// kernel's own exports (there is no C runtime). Declared so the import library provides them.
#[cfg(target_os = "windows")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
#[allow(dead_code, reason = "called by generated code, not by name")]
unsafe extern "C" {
    fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    fn memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    fn memset(dst: *mut c_void, c: i32, n: usize) -> *mut c_void;
    fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> i32;
}

/// NTSTATUS values the driver uses.
pub mod status {
    use windows_sys::Win32::Foundation::NTSTATUS;
    pub const SUCCESS: NTSTATUS = 0;
    pub const TIMEOUT: NTSTATUS = 0x0000_0102;
    pub const INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;
    pub const INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as i32;
    pub const PORT_DISCONNECTED: NTSTATUS = 0xC000_0037_u32 as i32;
    pub const CONNECTION_REFUSED: NTSTATUS = 0xC000_0236_u32 as i32;
    pub const FLT_DO_NOT_ATTACH: NTSTATUS = 0xC01C_000F_u32 as i32;
    pub const FLT_CONTEXT_ALREADY_DEFINED: NTSTATUS = 0xC01C_0002_u32 as i32;

    /// NT_SUCCESS: success and informational codes (STATUS_TIMEOUT is one: check it first).
    pub const fn is_success(status: NTSTATUS) -> bool {
        status >= 0
    }
}

/// Pool tag `Fsns` on every allocation (shows in poolmon and Driver Verifier's pool tracking).
pub const POOL_TAG: u32 = u32::from_le_bytes(*b"Fsns");
const POOL_FLAG_NON_PAGED: u64 = 0x40;
const SYNCHRONIZATION_EVENT: i32 = 1;
const EXECUTIVE: i32 = 0;
const KERNEL_MODE: i8 = 0;
const SYNCHRONIZE: u32 = 0x0010_0000;
const THREAD_ALL_ACCESS: u32 = 0x001F_FFFF;
const OBJ_CASE_INSENSITIVE: u32 = 0x40;
const OBJ_KERNEL_HANDLE: u32 = 0x200;
const FLT_PORT_ALL_ACCESS: u32 = 0x001F_0001;
/// `FLT_VARIABLE_SIZED_CONTEXTS`: contexts of this type have per-allocation sizes.
const FLT_VARIABLE_SIZED_CONTEXTS: usize = usize::MAX;
const FILE_DEVICE_DISK_FILE_SYSTEM: u32 = 0x08;
const NON_PAGED_POOL_NX: i32 = 512;

/// Relative timeout in 100 ns units, as the kernel wants it (negative = relative).
const fn relative_timeout(ms: u32) -> i64 {
    -(ms as i64) * 10_000
}

// ---------------------------------------------------------------------------------------------
// UNICODE_STRING: the incident's kind of bug lives here.
// ---------------------------------------------------------------------------------------------

/// Why a `UNICODE_STRING` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadUnicodeString {
    /// `Length` is odd: not a whole number of UTF-16 units.
    OddLength,
    /// `Length` exceeds `MaximumLength`.
    LengthAboveMaximum,
    /// `Buffer` is null while `Length` is not zero.
    NullBuffer,
    /// `Buffer` is not aligned for u16.
    Misaligned,
}

/// Reads a `UNICODE_STRING` as UTF-16LE bytes after checking every field: even `Length`, not above
/// `MaximumLength`, non-null and aligned `Buffer`.
///
/// # Safety
/// `us` must be a string the system handed us (inside a structure it keeps alive for the borrow),
/// so that when its fields pass the checks, `Buffer` points to `Length` readable bytes. The
/// checks catch a malformed string; they cannot make up for a dangling one.
pub unsafe fn unicode_string_bytes(us: &UNICODE_STRING) -> Result<&[u8], BadUnicodeString> {
    let len = usize::from(us.Length);
    if len == 0 {
        return Ok(&[]);
    }
    if len % 2 != 0 {
        return Err(BadUnicodeString::OddLength);
    }
    if us.Length > us.MaximumLength {
        return Err(BadUnicodeString::LengthAboveMaximum);
    }
    if us.Buffer.is_null() {
        return Err(BadUnicodeString::NullBuffer);
    }
    if !us.Buffer.is_aligned() {
        return Err(BadUnicodeString::Misaligned);
    }
    // SAFETY: Buffer is non-null and aligned, Length is even and <= MaximumLength (<= 65,534
    // bytes, so within isize), and the caller guarantees Length bytes at Buffer stay readable
    // for the borrow.
    Ok(unsafe { core::slice::from_raw_parts(us.Buffer.cast::<u8>(), len) })
}

// ---------------------------------------------------------------------------------------------
// Pool memory
// ---------------------------------------------------------------------------------------------

/// One non-paged allocation held in a static for the driver's lifetime.
///
/// Invariant: when `ptr` is non-null it is a live (not freed) allocation from `ExAllocatePool2`
/// with [`POOL_TAG`], exclusively owned through the slice [`PoolSlot::allocate`] returned until
/// [`PoolSlot::free`].
pub struct PoolSlot {
    ptr: AtomicPtr<u8>,
}

impl Default for PoolSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolSlot {
    pub const fn new() -> Self {
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Allocates `len` non-paged bytes. Returns the memory for the caller to own until `free`.
    /// Only called from DriverEntry, before any callback can run.
    pub fn allocate(&self, len: usize) -> Option<&'static mut [u8]> {
        if len == 0 || !self.ptr.load(Ordering::Acquire).is_null() {
            return None;
        }
        // SAFETY: plain allocation call; a null return is handled below.
        let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, len, POOL_TAG) }.cast::<u8>();
        if p.is_null() {
            return None;
        }
        self.ptr.store(p, Ordering::Release);
        // SAFETY: p is a fresh, zero-initialised, non-paged allocation of len bytes that nothing
        // else references; it stays valid until `free`, which the owner calls only after dropping
        // every use of this slice (unload, after the worker has been joined).
        Some(unsafe { core::slice::from_raw_parts_mut(p, len) })
    }

    /// Frees the allocation, if any. The caller must hold no borrow of it any more.
    pub fn free(&self) {
        let p = self.ptr.swap(ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: p came from ExAllocatePool2 with POOL_TAG and was not freed (swap makes
            // this the only free); the caller has dropped every borrow (see allocate).
            unsafe { ExFreePoolWithTag(p.cast(), POOL_TAG) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Spin lock, event, time
// ---------------------------------------------------------------------------------------------

/// A `KSPIN_LOCK` guarding a `T`. Holding it raises IRQL to DISPATCH_LEVEL, so the guarded code
/// must not touch paged memory or wait: keep critical sections to a few copies.
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

/// System time in 100 ns ticks since 1601.
pub fn system_time() -> u64 {
    let mut t: i64 = 0;
    // SAFETY: writes one i64 to a valid local.
    unsafe { KeQuerySystemTimePrecise(&mut t) };
    t.max(0) as u64
}

// ---------------------------------------------------------------------------------------------
// Callback data
// ---------------------------------------------------------------------------------------------

/// `FLT_PARAMETERS.Create` as the WDK lays it out on x64.
///
/// windows-sys 0.61 declares this union member `packed(4)` and drops the headers'
/// `POINTER_ALIGNMENT` (8 on x64) on `FileAttributes` and `EaLength`, which puts `ShareAccess` at
/// 14 instead of 18 (upstream: microsoft/windows-rs#3525). The padding fields reproduce the
/// alignment; `tests/layout.rs` checks every offset against the mingw-w64 and Wine DDK headers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CreateParameters {
    pub security_context: *mut IO_SECURITY_CONTEXT,
    pub options: u32,
    pub _align_file_attributes: u32,
    pub file_attributes: u16,
    pub share_access: u16,
    pub _align_ea_length: u32,
    pub ea_length: u32,
    pub _align_ea_buffer: u32,
    pub ea_buffer: *mut c_void,
    pub allocation_size: i64,
}

/// `FLT_PARAMETERS.Write` as the WDK lays it out on x64 (windows-sys puts `ByteOffset` at 8
/// instead of 16: `Key` is `POINTER_ALIGNMENT`; see [`CreateParameters`]).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WriteParameters {
    pub length: u32,
    pub _align_key: u32,
    pub key: u32,
    pub _align_byte_offset: u32,
    pub byte_offset: i64,
    pub write_buffer: *mut c_void,
    pub mdl_address: *mut c_void,
}

const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(CreateParameters, options) == 8);
    assert!(offset_of!(CreateParameters, file_attributes) == 16);
    assert!(offset_of!(CreateParameters, share_access) == 18);
    assert!(offset_of!(CreateParameters, ea_length) == 24);
    assert!(offset_of!(CreateParameters, ea_buffer) == 32);
    assert!(size_of::<CreateParameters>() == 48);
    assert!(offset_of!(WriteParameters, key) == 8);
    assert!(offset_of!(WriteParameters, byte_offset) == 16);
    assert!(size_of::<WriteParameters>() == 40);
    // Both fit inside, and are no more aligned than, the FLT_PARAMETERS union they are read from.
    assert!(
        size_of::<CreateParameters>()
            <= size_of::<windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_PARAMETERS>()
    );
    assert!(
        size_of::<WriteParameters>()
            <= size_of::<windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_PARAMETERS>()
    );
    assert!(
        align_of::<CreateParameters>()
            <= align_of::<windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_PARAMETERS>()
    );
};

/// Who asked for an I/O operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requestor {
    pub pid: u32,
    pub tid: u32,
    pub process_create_time: u64,
    pub kernel_mode: bool,
}

/// A validated view of `FLT_CALLBACK_DATA` and its parameter block.
///
/// Invariant: `data` and `iopb` are non-null, aligned, and valid for the callback's duration (the
/// Filter Manager guarantees that for the pointers it passes; the constructor checks the rest).
pub struct CallbackData<'a> {
    data: &'a FLT_CALLBACK_DATA,
    iopb: &'a FLT_IO_PARAMETER_BLOCK,
    raw: *const FLT_CALLBACK_DATA,
}

/// Why callback data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCallbackData {
    Null,
    Misaligned,
    NullParameterBlock,
    WrongMajorFunction(u8),
}

/// Create parameters, read from the parameter block and its security context.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateParams {
    pub disposition: u32,
    pub options: u32,
    pub share_access: u32,
    pub desired_access: u32,
}

/// Write parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteParams {
    pub offset: u64,
    pub length: u32,
    pub paging_io: bool,
}

const FILE_DIRECTORY_FILE: u32 = 0x1;

impl<'a> CallbackData<'a> {
    /// Checks the pointer and the parameter block and that the major function is `expected`.
    ///
    /// # Safety
    /// `raw` must be null or point to callback data (and parameter block) that stay valid for
    /// `'a`, as the Filter Manager guarantees for the pointer it passes to a callback.
    pub unsafe fn from_raw(
        raw: *const FLT_CALLBACK_DATA,
        expected: u32,
    ) -> Result<Self, BadCallbackData> {
        if raw.is_null() {
            return Err(BadCallbackData::Null);
        }
        if !raw.is_aligned() {
            return Err(BadCallbackData::Misaligned);
        }
        // SAFETY: non-null and aligned; valid for 'a by the caller's contract.
        let data = unsafe { &*raw };
        let iopb_ptr = data.Iopb;
        if iopb_ptr.is_null() {
            return Err(BadCallbackData::NullParameterBlock);
        }
        if !iopb_ptr.is_aligned() {
            return Err(BadCallbackData::Misaligned);
        }
        // SAFETY: non-null, aligned, and valid for 'a by the caller's contract.
        let iopb = unsafe { &*iopb_ptr };
        if u32::from(iopb.MajorFunction) != expected {
            return Err(BadCallbackData::WrongMajorFunction(iopb.MajorFunction));
        }
        Ok(Self { data, iopb, raw })
    }

    pub fn file_object(&self) -> *const FILE_OBJECT {
        self.iopb.TargetFileObject
    }

    pub fn instance(&self) -> isize {
        self.iopb.TargetInstance
    }

    /// Final status (post-operation only).
    pub fn status(&self) -> NTSTATUS {
        // SAFETY: IO_STATUS_BLOCK's union holds Status for completed operations; reading an i32
        // from it is a plain read of initialised memory either way.
        unsafe { self.data.IoStatus.Anonymous.Status }
    }

    pub fn information(&self) -> u64 {
        self.data.IoStatus.Information as u64
    }

    pub fn requestor(&self) -> Requestor {
        // SAFETY: `raw` is the valid callback data of this callback (type invariant).
        let pid = unsafe { FltGetRequestorProcessId(self.raw) };
        // SAFETY: as above; the returned process is referenced by the operation.
        let process = unsafe { FltGetRequestorProcess(self.raw) };
        let process_create_time = if process == 0 {
            0
        } else {
            // SAFETY: `process` is a non-null EPROCESS kept alive by the I/O operation.
            unsafe { PsGetProcessCreateTimeQuadPart(process) }.max(0) as u64
        };
        let tid = if self.data.Thread == 0 {
            0
        } else {
            // SAFETY: Thread is the non-null ETHREAD that issued the operation.
            unsafe { PsGetThreadId(self.data.Thread) as usize as u32 }
        };
        Requestor {
            pid,
            tid,
            process_create_time,
            kernel_mode: self.data.RequestorMode == KERNEL_MODE,
        }
    }

    /// Parameters of a create. Fails if the security context pointer is null or misaligned.
    pub fn create_params(&self) -> Option<CreateParams> {
        let create = ptr::addr_of!(self.iopb.Parameters).cast::<CreateParameters>();
        // SAFETY: the major function is IRP_MJ_CREATE, so the union holds the Create member and
        // CreateParameters is its exact WDK layout, inside the union and no more aligned than it
        // (compile-time checks above). Only the fields we need are read, through raw-pointer
        // projections: padding is never read.
        let (sc, options, share_access) = unsafe {
            (
                ptr::addr_of!((*create).security_context).read(),
                ptr::addr_of!((*create).options).read(),
                ptr::addr_of!((*create).share_access).read(),
            )
        };
        if sc.is_null() || !sc.is_aligned() {
            return None;
        }
        // SAFETY: non-null, aligned; the I/O manager keeps the security context alive for the
        // create operation, post-create included.
        let desired_access = unsafe { (*sc).DesiredAccess };
        Some(CreateParams {
            disposition: options >> 24,
            options: options & 0x00FF_FFFF,
            share_access: u32::from(share_access),
            desired_access,
        })
    }

    pub fn is_directory_open(&self) -> bool {
        self.create_params()
            .is_some_and(|p| p.options & FILE_DIRECTORY_FILE != 0)
    }

    /// Parameters of a write.
    pub fn write_params(&self) -> WriteParams {
        let write = ptr::addr_of!(self.iopb.Parameters).cast::<WriteParameters>();
        // SAFETY: the major function is IRP_MJ_WRITE, so the union holds the Write member and
        // WriteParameters is its exact WDK layout, inside the union (checked above); only the two
        // fields we need are read, through raw-pointer projections.
        let (length, byte_offset) = unsafe {
            (
                ptr::addr_of!((*write).length).read(),
                ptr::addr_of!((*write).byte_offset).read(),
            )
        };
        WriteParams {
            offset: byte_offset as u64,
            length,
            paging_io: self.iopb.IrpFlags & IRP_PAGING_IO != 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// File names
// ---------------------------------------------------------------------------------------------

/// A referenced `FLT_FILE_NAME_INFORMATION`, released exactly once when dropped.
///
/// Invariant: `info` is non-null, aligned, returned by a successful `FltGetFileNameInformation`
/// and not yet released.
pub struct NameInfo {
    info: *const FLT_FILE_NAME_INFORMATION,
}

/// The name query failed or returned something unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Query(NTSTATUS),
    NullInfo,
    Misaligned,
    BadString(BadUnicodeString),
}

impl NameInfo {
    /// Queries the normalized name (or the opened name, for a create that failed). Post-create
    /// only (PASSIVE_LEVEL).
    fn query(data: &CallbackData<'_>, opened_name: bool) -> Result<Self, NameError> {
        let format = if opened_name {
            FLT_FILE_NAME_OPENED
        } else {
            FLT_FILE_NAME_NORMALIZED
        };
        let mut info: *mut FLT_FILE_NAME_INFORMATION = ptr::null_mut();
        // SAFETY: `data.raw` is this callback's valid callback data; `info` is a valid out pointer.
        let st = unsafe {
            FltGetFileNameInformation(data.raw, format | FLT_FILE_NAME_QUERY_DEFAULT, &mut info)
        };
        if !status::is_success(st) {
            return Err(NameError::Query(st));
        }
        Self::adopt(info)
    }

    /// Takes ownership of a reference; releases it even when refusing it.
    fn adopt(info: *mut FLT_FILE_NAME_INFORMATION) -> Result<Self, NameError> {
        if info.is_null() {
            return Err(NameError::NullInfo);
        }
        if !info.is_aligned() {
            // Still ours to release, even though we will not read it.
            // SAFETY: a successful query returned this reference; released exactly once here.
            unsafe { FltReleaseFileNameInformation(info) };
            return Err(NameError::Misaligned);
        }
        // SAFETY: non-null, aligned, referenced; FltParseFileNameInformation fills the component
        // strings (Volume among them) inside the same structure.
        unsafe { FltParseFileNameInformation(info) };
        Ok(Self { info })
    }

    fn info(&self) -> &FLT_FILE_NAME_INFORMATION {
        // SAFETY: type invariant: non-null, aligned, referenced until drop.
        unsafe { &*self.info }
    }

    /// The full name (volume included), as UTF-16LE bytes, validated.
    pub fn name(&self) -> Result<&[u8], NameError> {
        // SAFETY: the strings live in the referenced name information (type invariant).
        unsafe { unicode_string_bytes(&self.info().Name) }.map_err(NameError::BadString)
    }

    /// The volume component, validated; empty if unusable (the path still names it).
    pub fn volume(&self) -> &[u8] {
        // SAFETY: as in `name`.
        unsafe { unicode_string_bytes(&self.info().Volume) }.unwrap_or(&[])
    }
}

impl Drop for NameInfo {
    fn drop(&mut self) {
        // SAFETY: type invariant: a live reference, released exactly once (here).
        unsafe { FltReleaseFileNameInformation(self.info) };
    }
}

// ---------------------------------------------------------------------------------------------
// Stream contexts: the name a later write reports
// ---------------------------------------------------------------------------------------------

/// Header of our stream context; the path and volume bytes follow it.
#[repr(C)]
struct StreamNameHeader {
    magic: u32,
    capacity: u32,
    path_len: u32,
    volume_len: u32,
    truncated: u32,
}

const STREAM_NAME_MAGIC: u32 = u32::from_le_bytes(*b"FsSc");
const STREAM_NAME_HEADER: usize = core::mem::size_of::<StreamNameHeader>();

/// A referenced stream context holding a name. Released (one reference) when dropped.
///
/// Invariant: `ctx` is non-null, aligned, a referenced context of ours whose header we wrote
/// (magic checked) and whose `capacity` bytes after the header are readable.
pub struct StreamName {
    ctx: PFLT_CONTEXT,
}

impl StreamName {
    /// Allocates and attaches a context holding `path` and `volume` to the file's stream, unless
    /// one is already there. Post-create only.
    fn attach(
        data: &CallbackData<'_>,
        filter: isize,
        path: &[u8],
        volume: &[u8],
        truncated: bool,
    ) -> bool {
        let payload = path.len().saturating_add(volume.len());
        let Some(size) = STREAM_NAME_HEADER.checked_add(payload) else {
            return false;
        };
        let Ok(capacity) = u32::try_from(payload) else {
            return false;
        };
        let mut ctx: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: valid filter handle and out pointer; the context type was registered.
        let st = unsafe {
            FltAllocateContext(
                filter,
                FLT_STREAM_CONTEXT as u16,
                size,
                NON_PAGED_POOL_NX,
                &mut ctx,
            )
        };
        if !status::is_success(st) || ctx.is_null() || !ctx.cast::<StreamNameHeader>().is_aligned()
        {
            if !ctx.is_null() {
                // SAFETY: a context we allocated and own one reference of.
                unsafe { FltReleaseContext(ctx) };
            }
            return false;
        }
        // SAFETY: ctx points to `size` writable, exclusively owned bytes (just allocated, not yet
        // published), aligned for the header; the copies stay inside those bytes.
        unsafe {
            ctx.cast::<StreamNameHeader>().write(StreamNameHeader {
                magic: STREAM_NAME_MAGIC,
                capacity,
                path_len: path.len() as u32,
                volume_len: volume.len() as u32,
                truncated: u32::from(truncated),
            });
            let body = ctx.cast::<u8>().add(STREAM_NAME_HEADER);
            ptr::copy_nonoverlapping(path.as_ptr(), body, path.len());
            ptr::copy_nonoverlapping(volume.as_ptr(), body.add(path.len()), volume.len());
        }
        let mut old: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: instance and file object come from this create's parameter block; ctx is ours.
        let st = unsafe {
            FltSetStreamContext(
                data.instance(),
                data.file_object(),
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                ctx,
                &mut old,
            )
        };
        if st == status::FLT_CONTEXT_ALREADY_DEFINED && !old.is_null() {
            // SAFETY: on ALREADY_DEFINED the Filter Manager returns the existing context
            // referenced for us; we drop that reference.
            unsafe { FltReleaseContext(old) };
        }
        // SAFETY: we drop our allocation reference; when attached, the stream holds its own.
        unsafe { FltReleaseContext(ctx) };
        status::is_success(st)
    }

    /// The stream's name context, if one was attached. Pre-write (IRQL <= APC_LEVEL).
    fn get(data: &CallbackData<'_>) -> Option<Self> {
        let mut ctx: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: instance and file object come from this write's parameter block.
        let st = unsafe { FltGetStreamContext(data.instance(), data.file_object(), &mut ctx) };
        if !status::is_success(st) || ctx.is_null() {
            return None;
        }
        let candidate = Self { ctx };
        if !ctx.cast::<StreamNameHeader>().is_aligned() || candidate.header().is_none() {
            return None; // dropped: the reference is released
        }
        Some(candidate)
    }

    fn header(&self) -> Option<&StreamNameHeader> {
        // SAFETY: ctx is a referenced, aligned context of ours (allocated with at least the header).
        let h = unsafe { &*self.ctx.cast::<StreamNameHeader>() };
        let fits = (h.path_len as u64 + h.volume_len as u64) <= u64::from(h.capacity);
        (h.magic == STREAM_NAME_MAGIC && fits && h.path_len % 2 == 0 && h.volume_len % 2 == 0)
            .then_some(h)
    }

    /// The path bytes, the volume bytes and whether the path was truncated.
    pub fn parts(&self) -> (&[u8], &[u8], bool) {
        let Some(h) = self.header() else {
            return (&[], &[], false);
        };
        // SAFETY: header() checked magic and that path_len + volume_len <= capacity, and the
        // context holds `capacity` bytes after the header, written once in `attach` and never
        // changed; the context stays referenced while self lives.
        unsafe {
            let body = self.ctx.cast::<u8>().add(STREAM_NAME_HEADER);
            let path = core::slice::from_raw_parts(body, h.path_len as usize);
            let volume =
                core::slice::from_raw_parts(body.add(h.path_len as usize), h.volume_len as usize);
            (path, volume, h.truncated != 0)
        }
    }

    /// Hands the reference to post-write through the completion context.
    fn into_raw(self) -> *mut c_void {
        let ctx = self.ctx;
        core::mem::forget(self);
        ctx
    }

    /// Takes back a reference handed over by `into_raw`.
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and be taken back exactly once.
    unsafe fn from_raw(raw: *const c_void) -> Option<Self> {
        // `then`, not `then_some`: an eagerly built value would be dropped (released) when null.
        (!raw.is_null()).then(|| Self {
            ctx: raw.cast_mut(),
        })
    }
}

impl Drop for StreamName {
    fn drop(&mut self) {
        // SAFETY: type invariant: one reference of ours, released exactly once (here). Callable
        // at DISPATCH_LEVEL.
        unsafe { FltReleaseContext(self.ctx) };
    }
}

// ---------------------------------------------------------------------------------------------
// Communication port
// ---------------------------------------------------------------------------------------------

/// The filter handle, the server port and the connected client's port.
struct Handles {
    filter: AtomicIsize,
    server_port: AtomicIsize,
    /// Read by the Filter Manager through the pointer we pass to `FltSendMessage`, which is why
    /// it is an atomic in static storage: FltCloseClientPort zeroes it under the Filter Manager's
    /// own synchronisation.
    client_port: AtomicIsize,
}

static HANDLES: Handles = Handles {
    filter: AtomicIsize::new(0),
    server_port: AtomicIsize::new(0),
    client_port: AtomicIsize::new(0),
};

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Delivered,
    TimedOut,
    NoConsumer,
    Failed,
}

/// Sends `message` to the consumer, waiting at most `timeout_ms` for it to be taken. Worker
/// thread only (PASSIVE_LEVEL), never from an I/O callback.
pub fn send_message(message: &[u8], timeout_ms: u32) -> SendOutcome {
    send(message, None, timeout_ms).0
}

/// Sends a health message and waits at most `timeout_ms` for a reply of at most `reply.len()`
/// bytes; returns the outcome and the reply's length. Unlike batches, health is handed to the
/// Filter Manager even with no consumer connected (it fails at once), so a kernel debugger, or the
/// simulator, sees the driver's final counters.
pub fn send_health(message: &[u8], reply: &mut [u8], timeout_ms: u32) -> (SendOutcome, usize) {
    send(message, Some(reply), timeout_ms)
}

fn send(message: &[u8], reply: Option<&mut [u8]>, timeout_ms: u32) -> (SendOutcome, usize) {
    if reply.is_none() && HANDLES.client_port.load(Ordering::Acquire) == 0 {
        return (SendOutcome::NoConsumer, 0);
    }
    let Ok(len) = u32::try_from(message.len()) else {
        return (SendOutcome::Failed, 0);
    };
    let timeout = relative_timeout(timeout_ms);
    let (reply_ptr, mut reply_len) = match reply {
        Some(buf) => (buf.as_mut_ptr().cast::<c_void>(), buf.len() as u32),
        None => (ptr::null_mut(), 0),
    };
    let reply_len_ptr = if reply_ptr.is_null() {
        ptr::null_mut()
    } else {
        &mut reply_len as *mut u32
    };
    // SAFETY: the filter handle is live while the worker runs; the client port pointer is our
    // static atomic (same layout as PFLT_PORT); message and reply point to `len` / `reply_len`
    // valid bytes; the timeout is non-null and bounded.
    let st = unsafe {
        FltSendMessage(
            HANDLES.filter.load(Ordering::Acquire),
            HANDLES.client_port.as_ptr().cast_const(),
            message.as_ptr().cast(),
            len,
            reply_ptr,
            reply_len_ptr,
            &timeout,
        )
    };
    match st {
        status::SUCCESS => (SendOutcome::Delivered, reply_len as usize),
        status::TIMEOUT => (SendOutcome::TimedOut, 0),
        status::PORT_DISCONNECTED => (SendOutcome::NoConsumer, 0),
        _ => (SendOutcome::Failed, 0),
    }
}

/// The process id of the caller (used in the connect callback to learn the consumer's pid).
fn current_process_id() -> u32 {
    // SAFETY: no preconditions.
    unsafe { PsGetCurrentProcessId() as usize as u32 }
}

// ---------------------------------------------------------------------------------------------
// Worker thread
// ---------------------------------------------------------------------------------------------

/// The referenced thread object of the delivery worker, for the join at unload.
static WORKER_THREAD: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

fn start_worker() -> NTSTATUS {
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
    // SAFETY: handle is the kernel handle just created; object is a valid out pointer.
    let st = unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            ptr::null_mut(),
            KERNEL_MODE,
            &mut object,
            ptr::null_mut(),
        )
    };
    // SAFETY: we own the handle; the thread keeps running without it.
    unsafe { ObCloseHandle(handle, KERNEL_MODE) };
    if !status::is_success(st) {
        // The thread runs but cannot be joined: stop it and fail the load. It exits within one
        // wait period; the caller unwinds only after `stop_worker` found nothing to join, so we
        // wait for it here through the stop flag and the event.
        delivery::request_stop();
        return st;
    }
    WORKER_THREAD.store(object, Ordering::Release);
    status::SUCCESS
}

/// Tells the worker to stop and waits for its thread to exit.
fn stop_worker() {
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

// ---------------------------------------------------------------------------------------------
// Registration and entry points
// ---------------------------------------------------------------------------------------------

/// `FLT_REGISTRATION` holds raw pointers, so it is not `Sync`; ours points only to other statics.
#[repr(transparent)]
struct StaticRegistration(FLT_REGISTRATION);
// SAFETY: the pointed-to tables are immutable statics; the Filter Manager only reads them.
unsafe impl Sync for StaticRegistration {}

#[repr(transparent)]
struct StaticOperations([FLT_OPERATION_REGISTRATION; 3]);
// SAFETY: immutable table of function pointers and integers.
unsafe impl Sync for StaticOperations {}

#[repr(transparent)]
struct StaticContexts([FLT_CONTEXT_REGISTRATION; 2]);
// SAFETY: immutable table of integers and null pointers.
unsafe impl Sync for StaticContexts {}

static OPERATIONS: StaticOperations = StaticOperations([
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_CREATE as u8,
        Flags: 0,
        PreOperation: Some(pre_create),
        PostOperation: Some(post_create),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_WRITE as u8,
        Flags: 0,
        PreOperation: Some(pre_write),
        PostOperation: Some(post_write),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_OPERATION_END as u8,
        Flags: 0,
        PreOperation: None,
        PostOperation: None,
        Reserved1: ptr::null_mut(),
    },
]);

static CONTEXTS: StaticContexts = StaticContexts([
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_STREAM_CONTEXT as u16,
        Flags: 0,
        ContextCleanupCallback: None,
        Size: FLT_VARIABLE_SIZED_CONTEXTS,
        PoolTag: POOL_TAG,
        ContextAllocateCallback: None,
        ContextFreeCallback: None,
        Reserved1: ptr::null_mut(),
    },
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_CONTEXT_END as u16,
        Flags: 0,
        ContextCleanupCallback: None,
        Size: 0,
        PoolTag: 0,
        ContextAllocateCallback: None,
        ContextFreeCallback: None,
        Reserved1: ptr::null_mut(),
    },
]);

static REGISTRATION: StaticRegistration = StaticRegistration(FLT_REGISTRATION {
    Size: core::mem::size_of::<FLT_REGISTRATION>() as u16,
    Version: FLT_REGISTRATION_VERSION as u16,
    Flags: 0,
    ContextRegistration: CONTEXTS.0.as_ptr(),
    OperationRegistration: OPERATIONS.0.as_ptr(),
    FilterUnloadCallback: Some(filter_unload),
    InstanceSetupCallback: Some(instance_setup),
    InstanceQueryTeardownCallback: Some(instance_query_teardown),
    InstanceTeardownStartCallback: None,
    InstanceTeardownCompleteCallback: None,
    GenerateFileNameCallback: None,
    NormalizeNameComponentCallback: None,
    NormalizeContextCleanupCallback: None,
    TransactionNotificationCallback: None,
    NormalizeNameComponentExCallback: None,
    SectionNotificationCallback: None,
});

/// Name of the REG_DWORD under the service key that sets the queue capacity (records).
static QUEUE_CAPACITY_VALUE: [u16; 13] = ascii_utf16(b"QueueCapacity");
/// Name of the REG_DWORD that caps records per batch (1 = one message per event).
static BATCH_RECORDS_VALUE: [u16; 12] = ascii_utf16(b"BatchRecords");
const KEY_READ: u32 = 0x0002_0019;
const KEY_VALUE_PARTIAL_INFORMATION: i32 = 2;
const REG_DWORD: u32 = 4;

/// Reads a REG_DWORD value of the service key. Any failure reads as "not set".
fn read_dword_value(key_path: &UNICODE_STRING, name: &[u16]) -> Option<u32> {
    // SAFETY: the I/O manager's registry path, valid during DriverEntry (our only caller).
    unsafe { unicode_string_bytes(key_path) }.ok()?;
    let oa = OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: ptr::null_mut(),
        ObjectName: key_path,
        Attributes: OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
        SecurityDescriptor: ptr::null(),
        SecurityQualityOfService: ptr::null(),
    };
    let mut key: HANDLE = ptr::null_mut();
    // SAFETY: valid out pointer; the attributes name a checked UNICODE_STRING.
    let st = unsafe { ZwOpenKey(&mut key, KEY_READ, &oa) };
    if !status::is_success(st) {
        return None;
    }
    let value_name = UNICODE_STRING {
        Length: (name.len() * 2) as u16,
        MaximumLength: (name.len() * 2) as u16,
        Buffer: name.as_ptr().cast_mut(),
    };
    // KEY_VALUE_PARTIAL_INFORMATION: TitleIndex, Type, DataLength, then the data.
    let mut info = [0u32; 5];
    let mut returned: u32 = 0;
    // SAFETY: key is open; the buffer is 20 writable, 4-aligned bytes and its size is passed.
    let st = unsafe {
        ZwQueryValueKey(
            key,
            &value_name,
            KEY_VALUE_PARTIAL_INFORMATION,
            info.as_mut_ptr().cast(),
            core::mem::size_of_val(&info) as u32,
            &mut returned,
        )
    };
    // SAFETY: we opened this handle above and close it once.
    unsafe { ObCloseHandle(key, KERNEL_MODE) };
    let [_, value_type, data_len, data, _] = info;
    (status::is_success(st) && returned >= 16 && value_type == REG_DWORD && data_len == 4)
        .then_some(data)
}

/// `\fsensePort` as UTF-16.
static PORT_NAME: [u16; 11] = ascii_utf16(b"\\fsensePort");

const fn ascii_utf16<const N: usize>(s: &[u8; N]) -> [u16; N] {
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        out[i] = s[i] as u16;
        i += 1;
    }
    out
}

/// Storage the driver allocates at load and frees at unload.
static QUEUE_STORAGE: PoolSlot = PoolSlot::new();
static BATCH_BUFFER: PoolSlot = PoolSlot::new();

/// The driver's entry point: allocate everything, register, open the port, start filtering. Any
/// failure unwinds exactly what was set up.
///
/// # Safety
/// Called by the I/O manager with a valid driver object.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    if driver.is_null() {
        return status::INVALID_PARAMETER;
    }
    #[cfg(feature = "panic-probe")]
    if crate::panic::planted(driver as usize) == 7 {
        return status::INVALID_PARAMETER;
    }
    // SAFETY: the I/O manager passes the service key's path, valid during DriverEntry.
    let registry_path = unsafe { _registry_path.as_ref() };
    let read = |name: &[u16]| registry_path.and_then(|path| read_dword_value(path, name));
    let config = sensor::LoadConfig::from_registry_value(read(&QUEUE_CAPACITY_VALUE))
        .with_batch_records(read(&BATCH_RECORDS_VALUE));
    let Some(storage) = QUEUE_STORAGE.allocate(config.queue_bytes()) else {
        return status::INSUFFICIENT_RESOURCES;
    };
    let Some(batch) = BATCH_BUFFER.allocate(fsense_proto::MAX_BATCH_BYTES) else {
        QUEUE_STORAGE.free();
        return status::INSUFFICIENT_RESOURCES;
    };
    sensor::SENSOR.install_queue(storage, &config);
    delivery::install_batch_buffer(batch);
    sensor::SENSOR.worker_wake.init();

    let mut filter: isize = 0;
    // SAFETY: driver is the non-null driver object the I/O manager passed; the registration
    // points to statics that live forever.
    let st = unsafe { FltRegisterFilter(driver, &REGISTRATION.0, &mut filter) };
    if !status::is_success(st) {
        release_storage();
        return st;
    }
    HANDLES.filter.store(filter, Ordering::Release);

    let st = create_port(filter);
    if !status::is_success(st) {
        // SAFETY: registered above and not started: unregistering is the exact inverse.
        unsafe { FltUnregisterFilter(filter) };
        HANDLES.filter.store(0, Ordering::Release);
        release_storage();
        return st;
    }

    let st = start_worker();
    if !status::is_success(st) {
        close_server_port();
        // SAFETY: as above.
        unsafe { FltUnregisterFilter(filter) };
        HANDLES.filter.store(0, Ordering::Release);
        release_storage();
        return st;
    }

    // SAFETY: filter is registered and fully set up.
    let st = unsafe { FltStartFiltering(filter) };
    if !status::is_success(st) {
        close_server_port();
        stop_worker();
        // SAFETY: as above.
        unsafe { FltUnregisterFilter(filter) };
        HANDLES.filter.store(0, Ordering::Release);
        release_storage();
        return st;
    }
    status::SUCCESS
}

fn create_port(filter: isize) -> NTSTATUS {
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: valid out pointer. FLT_PORT_ALL_ACCESS gives administrators and SYSTEM only; never
    // a NULL DACL.
    let st = unsafe { FltBuildDefaultSecurityDescriptor(&mut sd, FLT_PORT_ALL_ACCESS) };
    if !status::is_success(st) {
        return st;
    }
    let name = UNICODE_STRING {
        Length: (PORT_NAME.len() * 2) as u16,
        MaximumLength: (PORT_NAME.len() * 2) as u16,
        Buffer: PORT_NAME.as_ptr().cast_mut(),
    };
    let oa = OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: ptr::null_mut(),
        ObjectName: &name,
        Attributes: OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
        SecurityDescriptor: sd.cast_const().cast(),
        SecurityQualityOfService: ptr::null(),
    };
    let mut port: PFLT_PORT = 0;
    // SAFETY: all pointers are valid for the call; callbacks match their prototypes; no
    // message-notify callback (see module docs); one connection at most.
    let st = unsafe {
        FltCreateCommunicationPort(
            filter,
            &mut port,
            &oa,
            ptr::null(),
            Some(port_connect),
            Some(port_disconnect),
            None,
            1,
        )
    };
    // SAFETY: sd came from FltBuildDefaultSecurityDescriptor; the port keeps its own copy.
    unsafe { FltFreeSecurityDescriptor(sd) };
    if status::is_success(st) {
        HANDLES.server_port.store(port, Ordering::Release);
    }
    st
}

fn close_server_port() {
    let port = HANDLES.server_port.swap(0, Ordering::AcqRel);
    if port != 0 {
        // SAFETY: the server port we created, closed exactly once (swap).
        unsafe { FltCloseCommunicationPort(port) };
    }
}

fn release_storage() {
    sensor::SENSOR.remove_queue();
    delivery::remove_batch_buffer();
    QUEUE_STORAGE.free();
    BATCH_BUFFER.free();
}

unsafe extern "system" fn filter_unload(_flags: u32) -> NTSTATUS {
    close_server_port();
    stop_worker();
    let filter = HANDLES.filter.swap(0, Ordering::AcqRel);
    if filter != 0 {
        // SAFETY: our registered filter; this waits for callbacks in flight, disconnects the
        // client (our disconnect callback closes its port) and tears instances down.
        unsafe { FltUnregisterFilter(filter) };
    }
    release_storage();
    status::SUCCESS
}

unsafe extern "system" fn instance_setup(
    _objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
    volume_device_type: u32,
    file_system: FLT_FILESYSTEM_TYPE,
) -> NTSTATUS {
    let local_disk = volume_device_type == FILE_DEVICE_DISK_FILE_SYSTEM
        && matches!(
            file_system,
            FLT_FSTYPE_NTFS | FLT_FSTYPE_REFS | FLT_FSTYPE_FAT | FLT_FSTYPE_EXFAT
        );
    if local_disk {
        status::SUCCESS
    } else {
        status::FLT_DO_NOT_ATTACH
    }
}

unsafe extern "system" fn instance_query_teardown(
    _objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
) -> NTSTATUS {
    // Manual detach (fltmc detach) is allowed: the sensor holds nothing per instance but
    // stream contexts, which the Filter Manager tears down.
    status::SUCCESS
}

unsafe extern "system" fn port_connect(
    client_port: PFLT_PORT,
    _server_cookie: *const c_void,
    context: *const c_void,
    context_len: u32,
    connection_cookie: *mut *mut c_void,
) -> NTSTATUS {
    if !connection_cookie.is_null() && connection_cookie.is_aligned() {
        // SAFETY: non-null, aligned out pointer from the Filter Manager.
        unsafe { *connection_cookie = ptr::null_mut() };
    }
    let hello = if context.is_null() || context_len as usize != fsense_proto::Hello::LEN {
        None
    } else {
        // SAFETY: the connection context is the captured EA buffer of the port's create (kernel
        // memory, see module docs) of exactly `context_len` bytes; u8 needs no alignment.
        Some(unsafe { core::slice::from_raw_parts(context.cast::<u8>(), context_len as usize) })
    };
    match sensor::SENSOR.accept_consumer(hello, current_process_id()) {
        Ok(()) => {
            HANDLES.client_port.store(client_port, Ordering::Release);
            delivery::wake_for_health();
            status::SUCCESS
        }
        Err(sensor::RefusedHello) => status::CONNECTION_REFUSED,
    }
}

unsafe extern "system" fn port_disconnect(_connection_cookie: *const c_void) {
    sensor::SENSOR.consumer_gone();
    let filter = HANDLES.filter.load(Ordering::Acquire);
    // SAFETY: closes the connected client's port exactly once. We pass the same variable that
    // FltSendMessage reads, so the Filter Manager closes and zeroes it under the lock it also
    // takes in FltSendMessage: a send racing this disconnect sees either the open port or none,
    // never a closed handle.
    unsafe { FltCloseClientPort(filter, HANDLES.client_port.as_ptr()) };
}

unsafe extern "system" fn pre_create(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    _completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_CREATE) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if sensor::SENSOR.wants_create(&data.requestor()) {
        FLT_PREOP_SUCCESS_WITH_CALLBACK
    } else {
        FLT_PREOP_SUCCESS_NO_CALLBACK
    }
}

unsafe extern "system" fn post_create(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    _completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_CREATE) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let st = data.status();
    let succeeded = status::is_success(st);
    let params = data.create_params().unwrap_or_default();
    let name = NameInfo::query(&data, !succeeded);
    let (path, volume, name_failed) = match &name {
        Ok(info) => match info.name() {
            Ok(path) => (path, info.volume(), false),
            Err(_) => (&[][..], &[][..], true),
        },
        Err(_) => (&[][..], &[][..], true),
    };
    let facts = sensor::CreateFacts {
        requestor: data.requestor(),
        status: st,
        information: data.information(),
        params,
        directory: data.is_directory_open(),
        name_failed,
    };
    let stored = sensor::SENSOR.record_create(&facts, path, volume);
    if succeeded && stored.keep_name_for_writes {
        let filter = HANDLES.filter.load(Ordering::Acquire);
        StreamName::attach(
            &data,
            filter,
            stored.path.as_le_bytes(),
            stored.volume.as_le_bytes(),
            stored.truncated,
        );
    }
    drop(name); // released exactly once, after the last use of its strings
    FLT_POSTOP_FINISHED_PROCESSING
}

unsafe extern "system" fn pre_write(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_WRITE) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if completion.is_null() || !completion.is_aligned() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if !sensor::SENSOR.wants_write(&data.requestor(), data.write_params().paging_io) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    let raw = StreamName::get(&data).map_or(ptr::null_mut(), StreamName::into_raw);
    // SAFETY: non-null, aligned out pointer from the Filter Manager; post_write takes the
    // reference back exactly once (it is always called after WITH_CALLBACK).
    unsafe { *completion = raw };
    FLT_PREOP_SUCCESS_WITH_CALLBACK
}

unsafe extern "system" fn post_write(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // SAFETY: `completion` is what pre_write stored: null or a reference from into_raw, taken
    // back exactly once here.
    let name = unsafe { StreamName::from_raw(completion) };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING; // `name` is released on return
    }
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_WRITE) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let (path, volume, truncated) = name
        .as_ref()
        .map_or((&[][..], &[][..], false), StreamName::parts);
    let facts = sensor::WriteFacts {
        requestor: data.requestor(),
        status: data.status(),
        bytes_written: data.information(),
        params: data.write_params(),
        name_known: name.is_some(),
        truncated,
    };
    sensor::SENSOR.record_write(&facts, path, volume);
    FLT_POSTOP_FINISHED_PROCESSING
}
