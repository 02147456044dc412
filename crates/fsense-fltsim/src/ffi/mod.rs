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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Wdk::Foundation::{
    DRIVER_OBJECT, FILE_OBJECT, IO_SECURITY_CONTEXT, KEVENT, OBJECT_ATTRIBUTES,
};
use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
    FLT_CALLBACK_DATA, FLT_CONTEXT_END, FLT_FILE_NAME_INFORMATION, FLT_IO_PARAMETER_BLOCK,
    FLT_OPERATION_REGISTRATION, FLT_PARAMETERS, FLT_REGISTRATION, FLT_RELATED_OBJECTS,
    FLT_STREAM_CONTEXT, FLTFL_POST_OPERATION_DRAINING, IRP_MJ_OPERATION_END, PFLT_CONNECT_NOTIFY,
    PFLT_CONTEXT, PFLT_DISCONNECT_NOTIFY, PFLT_MESSAGE_NOTIFY, PFLT_PORT,
};
use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
    IRP_MJ_PREPARE_MDL_WRITE, PFLT_POST_OPERATION_CALLBACK, PFLT_PRE_OPERATION_CALLBACK,
};
use windows_sys::Wdk::System::SystemServices::{
    IRP_MJ_CLEANUP, IRP_MJ_CREATE, IRP_MJ_FILE_SYSTEM_CONTROL, IRP_MJ_SET_INFORMATION,
    IRP_MJ_WRITE, IRP_PAGING_IO,
};
use windows_sys::Win32::Foundation::{HANDLE, NTSTATUS, UNICODE_STRING};
use windows_sys::Win32::Security::PSECURITY_DESCRIPTOR;
use windows_sys::Win32::Storage::InstallableFileSystems::FLT_FILESYSTEM_TYPE;

use crate::FailPoint;
use crate::changes::FILE_DELETE_ON_CLOSE;
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
const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = 0xC000_0024_u32 as i32;
const STATUS_FLT_INVALID_NAME_REQUEST: NTSTATUS = 0xC01C_0005_u32 as i32;
const STATUS_FLT_DISALLOW_FAST_IO: NTSTATUS = 0xC01C_0004_u32 as i32;
const STATUS_FILE_DELETED: NTSTATUS = 0xC000_0123_u32 as i32;
const STATUS_INFO_LENGTH_MISMATCH: NTSTATUS = 0xC000_0004_u32 as i32;
const SL_OPEN_TARGET_DIRECTORY: u8 = 0x04;
/// `FLT_FILE_NAME_ALLOW_QUERY_ON_REPARSE`.
const FLT_FILE_NAME_ALLOW_QUERY_ON_REPARSE: u32 = 0x0400_0000;
const FLT_FILE_NAME_OPENED: u32 = 0x02;
const FLT_FILE_NAME_SHORT: u32 = 0x04;
const POOL_FLAG_NON_PAGED: u64 = 0x40;
const POOL_FLAG_PAGED: u64 = 0x100;
const FLT_PORT_ALL_ACCESS: u32 = 0x001F_0001;
const KEY_VALUE_PARTIAL_INFORMATION: i32 = 2;
/// Fake kernel object addresses: recognisable, never dereferenced by the driver.
const EPROCESS_BASE: isize = 0x7E00_0000_0000;
const ETHREAD_BASE: isize = 0x7F00_0000_0000;

pub use crate::plan::VOLUME;

mod callback_data;
mod contexts;
pub(crate) mod cpu_clock;
mod files;
mod irp;
mod mdl_fsctl;
pub(crate) mod name_storage;
mod names;
mod operations;
mod planted;
mod pool;
mod port;
mod registration;
mod registry;
pub mod set_info;
mod sync;
mod threads;

pub use callback_data::*;
pub use contexts::*;
pub use files::*;
pub use mdl_fsctl::*;
pub use names::*;
pub use operations::*;
pub use planted::{Step, planted_instance, run_planted};
pub use pool::*;
pub use port::*;
pub use registration::*;
pub use registry::*;
pub use set_info::{as_if_in_set_info, run_set_info};
pub use sync::*;
pub use threads::*;

// ---------------------------------------------------------------------------------------------
// Per-operation context the Filter Manager functions consult
// ---------------------------------------------------------------------------------------------

struct CurrentOp {
    pid: u32,
    path: Arc<Vec<u16>>,
    shape: NameShape,
    /// The stream is a directory (what FltIsDirectory reports once it is open).
    directory: bool,
    /// The create opened something (for FltIsDirectory and the post-create name rules).
    opened: bool,
    /// The create asked for FILE_DELETE_ON_CLOSE (a directory may then get a context: its
    /// delete is reported at cleanup).
    delete_on_close: bool,
    /// A set-information in progress: what FltGetDestinationFileNameInformation may answer.
    set_info: Option<set_info::SetInfoContext>,
}

thread_local! {
    static CURRENT_OP: RefCell<Option<CurrentOp>> = const { RefCell::new(None) };
}

/// A process's creation time, deterministic per pid (so pid + create time names a process).
pub fn process_create_time(pid: u32) -> i64 {
    133_000_000_000_000_000 + i64::from(pid) * 1_000
}

/// Whether the run asked this kernel call to fail (load-failure tests).
fn fails(point: FailPoint) -> bool {
    world::with_world(|w| w.fail_point == Some(point)).unwrap_or(false)
}

/// Checks the filter handle passed to `function`. Every Filter Manager routine that takes one
/// documents it as required and never NULL (`nf-fltkernel-fltcloseclientport`,
/// `nf-fltkernel-fltallocatecontext`, `nf-fltkernel-fltsendmessage`,
/// `nf-fltkernel-fltcreatecommunicationport`: "This parameter is required and cannot be NULL"),
/// and it must be the registered filter: once `FltUnregisterFilter` returned, the filter object
/// is gone (`nf-fltkernel-fltunregisterfilter`) and the handle is stale.
fn filter_is_valid(filter: isize, function: &str) -> bool {
    if filter == 0 {
        violation(
            "FILTER_NULL",
            format!("{function} with a NULL filter (required, cannot be NULL)"),
        );
        return false;
    }
    let (current, retired) =
        world::with_world(|w| (w.filter_handle, w.retired_filters.contains(&filter)))
            .unwrap_or((0, false));
    if filter == current {
        return true;
    }
    if retired {
        violation(
            "FILTER_STALE",
            format!("{function} with a filter FltUnregisterFilter already released"),
        );
    } else {
        violation(
            "FILTER_UNKNOWN",
            format!("{function} with {filter:#x}, not a registered filter"),
        );
    }
    false
}

/// Checks the instance handle passed to `function`: required and never NULL
/// (`nf-fltkernel-fltsetstreamcontext`, `nf-fltkernel-fltgetstreamcontext`: "Instance: Opaque
/// instance pointer for the caller. This parameter is required and cannot be NULL."), and an
/// instance the Filter Manager attached (not one it declined or already tore down).
fn instance_is_valid(instance: isize, function: &str) -> bool {
    let attached = world::with_world(|w| {
        w.instances
            .iter()
            .any(|&(i, attached)| attached && i == instance)
    })
    .unwrap_or(false);
    if !attached {
        violation(
            "INSTANCE_INVALID",
            format!("{function} with instance {instance:#x}, not an attached instance"),
        );
    }
    attached
}

/// Checks the documented IRQL ceiling of `function` (its page's Requirements table, "IRQL").
fn require_irql(max: u8, function: &str) {
    if verifier::irql() > max {
        let level = ["PASSIVE_LEVEL", "APC_LEVEL", "DISPATCH_LEVEL"]
            .get(usize::from(max))
            .copied()
            .unwrap_or("?");
        violation("IRQL", format!("{function} above {level}"));
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
