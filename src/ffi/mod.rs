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
//!
//! ## Layout: one file per contract area (the simulator's `ffi/` is split the same way)
//! - [`registration`]: the registration tables, `DriverEntry`, unload, instance callbacks;
//! - [`operations`]: the create and write callbacks; [`namespace_ops`]: set-information,
//!   cleanup, prepare-MDL-write and block-clone FSCTL callbacks (issue 27); [`callback_data`]:
//!   the views of their callback data; [`infobuf`]: bounds-checked parsers of the caller
//!   buffers those requests carry;
//! - [`names`]: `UNICODE_STRING` and file name information; [`contexts`]: stream contexts;
//! - [`port`]: the communication port; [`pool`] and [`sync`]: pool memory, spin lock, event, time;
//! - [`threads`]: the worker thread; [`registry`]: load-time settings.
//!
//! Each file declares the ntoskrnl functions of its own area.

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
    FLT_PREOP_SUCCESS_WITH_CALLBACK, FLT_PREOP_SYNCHRONIZE, FLT_REGISTRATION,
    FLT_REGISTRATION_VERSION, FLT_RELATED_OBJECTS, FLT_SET_CONTEXT_KEEP_IF_EXISTS,
    FLT_SET_CONTEXT_REPLACE_IF_EXISTS, FLT_STREAM_CONTEXT, FLTFL_CALLBACK_DATA_FAST_IO_OPERATION,
    FLTFL_POST_OPERATION_DRAINING, FltAllocateContext, FltBuildDefaultSecurityDescriptor,
    FltCloseClientPort, FltCloseCommunicationPort, FltCreateCommunicationPort,
    FltFreeSecurityDescriptor, FltGetDestinationFileNameInformation, FltGetFileNameInformation,
    FltGetRequestorProcess, FltGetRequestorProcessId, FltGetStreamContext, FltIsDirectory,
    FltParseFileNameInformation, FltQueryInformationFile, FltRegisterFilter, FltReleaseContext,
    FltReleaseFileNameInformation, FltSendMessage, FltSetStreamContext, FltStartFiltering,
    FltUnregisterFilter, IRP_MJ_OPERATION_END, IRP_MJ_PREPARE_MDL_WRITE, PFLT_CONTEXT, PFLT_PORT,
};
use windows_sys::Wdk::System::SystemServices::{
    DriverRegKeyParameters, IRP_MJ_CLEANUP, IRP_MJ_CREATE, IRP_MJ_FILE_SYSTEM_CONTROL,
    IRP_MJ_SET_INFORMATION, IRP_MJ_WRITE, IRP_PAGING_IO, IoOpenDriverRegistryKey,
};
use windows_sys::Win32::Foundation::{HANDLE, NTSTATUS, UNICODE_STRING};
use windows_sys::Win32::Security::PSECURITY_DESCRIPTOR;
use windows_sys::Win32::Storage::InstallableFileSystems::{
    FLT_FILESYSTEM_TYPE, FLT_FSTYPE_EXFAT, FLT_FSTYPE_FAT, FLT_FSTYPE_NTFS, FLT_FSTYPE_REFS,
};

use crate::{delivery, sensor};

mod callback_data;
mod contexts;
// Test only: code that breaks what fsense-pkgcheck reads in the image (see the file).
#[cfg(all(feature = "image-probe", target_os = "windows"))]
mod image_probe;
mod infobuf;
mod names;
mod namespace_ops;
mod operations;
mod pool;
mod port;
mod registration;
mod registry;
mod sync;
mod threads;

pub use callback_data::*;
pub use contexts::*;
pub use infobuf::*;
pub use names::*;
use namespace_ops::*;
pub use namespace_ops::{
    FSCTL_DUPLICATE_EXTENTS_TO_FILE, FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX, SetInfoKind,
    classify_set_information, is_clone_fsctl, set_info_kind,
};
use operations::*;
pub use pool::*;
pub use port::*;
pub use registration::*;
use registry::*;
pub use sync::*;
use threads::*;

type Kirql = u8;
type KStartRoutine = unsafe extern "system" fn(context: *mut c_void);

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
    /// The status a fast I/O operation's post-operation callbacks see when a filter below
    /// disallowed the fast path; the I/O manager may reissue it as an IRP
    /// (`ifs/disallowing-a-fast-i-o-operation-in-a-preoperation-callback-routine`).
    pub const FLT_DISALLOW_FAST_IO: NTSTATUS = 0xC01C_0004_u32 as i32;
    /// A success code that means the open was not done and must be reissued (a symbolic link,
    /// junction or mount point was traversed): `nf-fltkernel-fltcancelfileopen`, Note.
    pub const REPARSE: NTSTATUS = 0x0000_0104;
    /// `STATUS_FILE_DELETED`: what a query on a file whose delete took effect returns; the
    /// `delete` minifilter sample decides "the file is gone" on it in post-cleanup.
    pub const FILE_DELETED: NTSTATUS = 0xC000_0123_u32 as i32;

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

const fn ascii_utf16<const N: usize>(s: &[u8; N]) -> [u16; N] {
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        out[i] = s[i] as u16;
        i += 1;
    }
    out
}
