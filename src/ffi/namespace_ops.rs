//! The I/O callbacks of issue 27: set-information (rename, link, disposition), cleanup (where a
//! delete becomes real), the fast-I/O MDL write, and block-clone FSCTLs.
//!
//! References:
//! - Microsoft's `delete` minifilter sample (microsoft/Windows-driver-samples,
//!   `filesys/miniFilter/delete`): a minifilter cannot know in advance that a file will be
//!   deleted; it notes the operations that may delete it (a create with `FILE_DELETE_ON_CLOSE`,
//!   a disposition set on a handle) and decides after cleanup, by querying the file: a query that
//!   returns `STATUS_FILE_DELETED` means it is gone. Its pre-cleanup synchronizes so the query
//!   runs at PASSIVE_LEVEL. This driver decides the same way (and, like the sample, reports a
//!   delete only once per stream).
//! - `nf-fltkernel-fltgetdestinationfilenameinformation`: the destination name of a rename or a
//!   link, from a pre-set-information callback.
//! - `nc-fltkernel-pflt_pre_operation_callback`: `FLT_PREOP_SYNCHRONIZE` runs the post-operation
//!   callback in the same thread at the pre-operation's IRQL (PASSIVE_LEVEL for
//!   set-information and cleanup), where contexts may be allocated and set.
//! - `ifs/flt-parameters-for-irp-mj-set-information`, `ifs/flt-parameters-for-irp-mj-file-system-control`:
//!   the parameter blocks read through [`CallbackData::set_info`] / [`CallbackData::fs_control`].

use core::sync::atomic::AtomicU8;

use fsense_proto::Operation;
use windows_sys::Wdk::Storage::FileSystem::{
    FileDispositionInformation, FileDispositionInformationEx, FileLinkInformation,
    FileLinkInformationEx, FileLinkInformationExBypassAccessCheck, FileRenameInformation,
    FileRenameInformationEx, FileRenameInformationExBypassAccessCheck, FileStandardInformation,
};

use super::*;
use crate::sensor::{CloneRange, NamespaceFacts, OpNames, SENSOR};

/// What a set-information request is, for this driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetInfoKind {
    Rename { ex: bool },
    Link { ex: bool },
    Disposition { ex: bool },
}

/// The classes the driver looks at; every other class is let through at once.
#[allow(
    non_upper_case_globals,
    reason = "the WDK names of FILE_INFORMATION_CLASS values"
)]
pub fn set_info_kind(class: i32) -> Option<SetInfoKind> {
    match class {
        FileRenameInformation => Some(SetInfoKind::Rename { ex: false }),
        FileRenameInformationEx | FileRenameInformationExBypassAccessCheck => {
            Some(SetInfoKind::Rename { ex: true })
        }
        FileLinkInformation => Some(SetInfoKind::Link { ex: false }),
        FileLinkInformationEx | FileLinkInformationExBypassAccessCheck => {
            Some(SetInfoKind::Link { ex: true })
        }
        FileDispositionInformation => Some(SetInfoKind::Disposition { ex: false }),
        FileDispositionInformationEx => Some(SetInfoKind::Disposition { ex: true }),
        _ => None,
    }
}

// --- the names a rename or link hands from pre- to post-operation -------------------------

/// Two name references (the source, the destination) in flight between a pre- and a
/// post-set-information. A fixed table in non-paged static storage: no allocation per event.
struct PendingNames {
    /// 0 free, 1 taken.
    busy: AtomicU8,
    source: AtomicPtr<c_void>,
    destination: AtomicPtr<c_void>,
}

const PENDING_SLOTS: usize = 64;

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "array initialiser only"
)]
const FREE_SLOT: PendingNames = PendingNames {
    busy: AtomicU8::new(0),
    source: AtomicPtr::new(ptr::null_mut()),
    destination: AtomicPtr::new(ptr::null_mut()),
};

static PENDING: [PendingNames; PENDING_SLOTS] = [FREE_SLOT; PENDING_SLOTS];

/// Takes a free slot (at most [`PENDING_SLOTS`] tries), or `None` when every slot is in use.
fn take_slot() -> Option<&'static PendingNames> {
    PENDING.iter().find(|slot| {
        slot.busy
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })
}

/// The completion-context tag of a rename or link that got no slot: names are then missing.
const NO_SLOT: usize = 1;

/// Empties a slot and frees it; returns the two references it held.
fn release_slot(slot: &PendingNames) -> (Option<NameInfo>, Option<NameInfo>) {
    let source = slot.source.swap(ptr::null_mut(), Ordering::AcqRel);
    let destination = slot.destination.swap(ptr::null_mut(), Ordering::AcqRel);
    slot.busy.store(0, Ordering::Release);
    // SAFETY: each pointer is null or a reference from `NameInfo::into_raw` stored by
    // pre_set_information and swapped out exactly once here.
    unsafe { (NameInfo::from_raw(source), NameInfo::from_raw(destination)) }
}

/// The slot a completion context names, if it is one of ours.
fn slot_of(raw: *const c_void) -> Option<&'static PendingNames> {
    PENDING
        .iter()
        .find(|slot| ptr::eq(ptr::from_ref(*slot).cast::<c_void>(), raw))
}

// --- set information --------------------------------------------------------------------

/// What pre-set-information looks at first: the class, and the request if it is one of the
/// six the driver reports. For every other class this is all the callback does (a major
/// function check and one parameter read), then `FLT_PREOP_SUCCESS_NO_CALLBACK`; the driver
/// bench measures it (`set_information_not_reported`).
pub fn classify_set_information(data: &CallbackData<'_>) -> Option<(SetInfoKind, SetInfo)> {
    let info = data.set_info()?;
    set_info_kind(info.class).map(|kind| (kind, info))
}

pub(super) unsafe extern "system" fn pre_set_information(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_SET_INFORMATION) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    // Every class but six leaves here, before anything else is read (the cheap path).
    let Some((kind, info)) = classify_set_information(&data) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if completion.is_null() || !completion.is_aligned() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if !SENSOR.wants_namespace(&data.requestor()) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    let context = match kind {
        SetInfoKind::Rename { ex } | SetInfoKind::Link { ex } => {
            // SAFETY: the set-information buffer the Filter Manager passed, `length` bytes.
            let parsed = unsafe { info_buffer(info.buffer, info.length, NAME_CHANGE_ALIGN) }
                .and_then(|buf| parse_name_change(buf, ex));
            let Ok(change) = parsed else {
                SENSOR.buffer_rejected();
                return FLT_PREOP_SUCCESS_NO_CALLBACK;
            };
            match take_slot() {
                Some(slot) => {
                    let source =
                        NameInfo::query(&data, false).map_or(ptr::null_mut(), NameInfo::into_raw);
                    let destination =
                        NameInfo::destination(&data, change.root_directory, change.file_name)
                            .map_or(ptr::null_mut(), NameInfo::into_raw);
                    slot.source.store(source, Ordering::Release);
                    slot.destination.store(destination, Ordering::Release);
                    ptr::from_ref(slot).cast_mut().cast::<c_void>()
                }
                None => ptr::without_provenance_mut(NO_SLOT),
            }
        }
        SetInfoKind::Disposition { ex } => {
            // SAFETY: as above; a disposition structure is at most 4-byte aligned.
            let parsed = unsafe { info_buffer(info.buffer, info.length, if ex { 4 } else { 1 }) }
                .and_then(|buf| parse_disposition(buf, ex));
            let Ok(disposition) = parsed else {
                SENSOR.buffer_rejected();
                return FLT_PREOP_SUCCESS_NO_CALLBACK;
            };
            // A delete needs the name before the file is gone: from the stream context if the
            // stream has one, else queried now (post-set-information keeps it in a new one).
            if disposition.delete && StreamName::get(&data).is_none() {
                NameInfo::query(&data, false).map_or(ptr::null_mut(), NameInfo::into_raw)
            } else {
                ptr::null_mut()
            }
        }
    };
    // SAFETY: non-null, aligned out pointer; post_set_information takes it back exactly once.
    unsafe { *completion = context };
    FLT_PREOP_SYNCHRONIZE
}

pub(super) unsafe extern "system" fn post_set_information(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let data = unsafe { CallbackData::from_raw(data, IRP_MJ_SET_INFORMATION) };
    let kind = data
        .as_ref()
        .ok()
        .and_then(CallbackData::set_info)
        .and_then(|i| set_info_kind(i.class).map(|k| (k, i)));
    // Take back whatever pre-operation handed over, on every path (draining included). What
    // it is follows from the value itself, not from the class: a slot of ours, the no-slot tag,
    // or a name reference (a disposition's).
    let (source, destination, disposition_name) = match slot_of(completion) {
        Some(slot) => {
            let (s, d) = release_slot(slot);
            (s, d, None)
        }
        None if completion.addr() == NO_SLOT => (None, None, None),
        // SAFETY: null or a reference from NameInfo::into_raw (pre-set-information stores
        // nothing else), taken back once here.
        None => (None, None, unsafe { NameInfo::from_raw(completion) }),
    };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    let (Ok(data), Some((kind, info))) = (data, kind) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let st = data.status();
    if !status::is_success(st) {
        return FLT_POSTOP_FINISHED_PROCESSING; // nothing changed: nothing to report or note
    }
    // SAFETY: the related objects the Filter Manager passed to this callback.
    let filter = unsafe { related_filter(objects) };
    match kind {
        SetInfoKind::Rename { ex } | SetInfoKind::Link { ex } => {
            // SAFETY: the same buffer pre-operation checked, still the request's.
            let change = unsafe { info_buffer(info.buffer, info.length, NAME_CHANGE_ALIGN) }
                .and_then(|buf| parse_name_change(buf, ex));
            let rename = matches!(kind, SetInfoKind::Rename { .. });
            let facts = NamespaceFacts {
                requestor: data.requestor(),
                status: st,
                information: data.information(),
                replace_existing: change.is_ok_and(|c| c.replace_if_exists),
                posix: false,
            };
            let (path, volume, path_failed) = name_parts(source.as_ref());
            let (target, target_volume, target_failed) = name_parts(destination.as_ref());
            let names = OpNames {
                path,
                volume,
                path_failed,
                target,
                target_failed,
                ..OpNames::default()
            };
            let op = if rename {
                Operation::Rename
            } else {
                Operation::Link
            };
            SENSOR.record_namespace(op, &facts, &names);
            // After a rename, the stream's saved name is the new one, so later writes report
            // it (N3). Only a stream that has a context gets a new one.
            if let (true, false, Some(old), Some(filter)) =
                (rename, target_failed, StreamName::get(&data), filter)
            {
                // attach_with cuts (and flags) a name too long for a context itself.
                StreamName::attach_with(
                    &data,
                    filter,
                    target,
                    target_volume,
                    false,
                    old.state(),
                    true,
                );
            }
        }
        SetInfoKind::Disposition { ex } => {
            // SAFETY: as above.
            let parsed = unsafe { info_buffer(info.buffer, info.length, if ex { 4 } else { 1 }) }
                .and_then(|buf| parse_disposition(buf, ex));
            let Ok(disposition) = parsed else {
                return FLT_POSTOP_FINISHED_PROCESSING;
            };
            let posix = if disposition.posix {
                StreamState::POSIX
            } else {
                0
            };
            // Files only: no stream context on a directory (as for delete-on-close).
            if disposition.delete && data.is_directory() == Some(false) {
                if let (Some(name), Some(filter)) = (disposition_name.as_ref(), filter) {
                    let (path, volume, failed) = name_parts(Some(name));
                    if !failed {
                        StreamName::attach_with(
                            &data,
                            filter,
                            path,
                            volume,
                            false,
                            StreamState::DELETE_CANDIDATE | posix,
                            false,
                        );
                    }
                }
                if let Some(ctx) = StreamName::get(&data) {
                    ctx.update_state(StreamState::DELETE_CANDIDATE | posix, 0);
                }
            } else if let Some(ctx) = StreamName::get(&data) {
                // "Do not delete": a delete asked for earlier is cancelled (the sample clears
                // its flag the same way); a cancelled delete is never reported.
                ctx.update_state(0, StreamState::DELETE_CANDIDATE | StreamState::POSIX);
            }
        }
    }
    drop(source);
    drop(destination);
    drop(disposition_name);
    FLT_POSTOP_FINISHED_PROCESSING
}

fn name_parts(info: Option<&NameInfo>) -> (&[u8], &[u8], bool) {
    match info.map(|i| (i.name(), i.volume())) {
        Some((Ok(path), volume)) => (path, volume, false),
        _ => (&[], &[], true),
    }
}

// --- cleanup: where a delete becomes real -----------------------------------------------

pub(super) unsafe extern "system" fn pre_cleanup(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_CLEANUP) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if completion.is_null() || !completion.is_aligned() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // Only a stream with a delete asked for needs post-cleanup (one context lookup otherwise).
    let Some(ctx) = StreamName::get(&data) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if ctx.state() & StreamState::DELETE_CANDIDATE == 0 {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // SAFETY: non-null, aligned out pointer; post_cleanup takes the reference back once.
    unsafe { *completion = ctx.into_raw() };
    FLT_PREOP_SYNCHRONIZE
}

pub(super) unsafe extern "system" fn post_cleanup(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // SAFETY: what pre_cleanup stored: a reference from into_raw, taken back once.
    let ctx = unsafe { StreamName::from_raw(completion) };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the Filter Manager's callback data for this callback.
    let (Some(ctx), Ok(data)) = (ctx, unsafe { CallbackData::from_raw(data, IRP_MJ_CLEANUP) })
    else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    if !file_is_gone(&data) {
        return FLT_POSTOP_FINISHED_PROCESSING; // other handles remain, or the delete was undone
    }
    // Whichever cleanup finds the file gone first reports it; the flag is cleared as it is read.
    let posix = ctx.state() & StreamState::POSIX != 0;
    if !ctx.take_state(StreamState::DELETE_CANDIDATE) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    let (path, volume, truncated) = ctx.parts();
    let facts = NamespaceFacts {
        requestor: data.requestor(),
        status: data.status(),
        information: 0,
        replace_existing: false,
        posix,
    };
    let names = OpNames {
        path,
        volume,
        path_from_context: true,
        path_truncated: truncated,
        ..OpNames::default()
    };
    SENSOR.record_namespace(Operation::Delete, &facts, &names);
    FLT_POSTOP_FINISHED_PROCESSING
}

/// Whether the file of this cleanup is gone: a standard-information query returns
/// `STATUS_FILE_DELETED` (the `delete` sample's test). PASSIVE_LEVEL (synchronized cleanup).
fn file_is_gone(data: &CallbackData<'_>) -> bool {
    // FILE_STANDARD_INFORMATION: 24 bytes on every platform; 8-aligned storage.
    let mut info = [0u64; 3];
    let mut returned = 0u32;
    // SAFETY: instance and file object of this cleanup (the file object is still valid until
    // close); `info` is 24 writable bytes, aligned for the structure; a valid out pointer.
    let st = unsafe {
        FltQueryInformationFile(
            data.instance(),
            data.file_object(),
            info.as_mut_ptr().cast(),
            24,
            FileStandardInformation,
            &mut returned,
        )
    };
    st == status::FILE_DELETED
}

// --- MDL writes and block clones ----------------------------------------------------------

pub(super) unsafe extern "system" fn pre_prepare_mdl_write(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) =
        (unsafe { CallbackData::from_raw(data, IRP_MJ_PREPARE_MDL_WRITE as u32 & 0xFF) })
    else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if completion.is_null() || !completion.is_aligned() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if !SENSOR.wants_write(&data.requestor(), false) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // SAFETY: `completion` was checked non-null and aligned above; post_prepare_mdl_write takes the name back.
    unsafe { StreamName::hand_to_post(&data, completion) }
}

pub(super) unsafe extern "system" fn post_prepare_mdl_write(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // SAFETY: null or a reference from into_raw, taken back once.
    let name = unsafe { StreamName::from_raw(completion) };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) =
        (unsafe { CallbackData::from_raw(data, IRP_MJ_PREPARE_MDL_WRITE as u32 & 0xFF) })
    else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    // Fast path refused: the I/O manager falls back to an IRP_MJ_WRITE with IRP_MN_MDL, which
    // is reported by post-write (counted once).
    if data.status() == status::FLT_DISALLOW_FAST_IO {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    let Some(params) = data.prepare_mdl_write_params() else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let (path, volume, truncated) = name
        .as_ref()
        .map_or((&[][..], &[][..], false), StreamName::parts);
    let facts = crate::sensor::WriteFacts {
        requestor: data.requestor(),
        status: data.status(),
        bytes_written: data.information(),
        params,
        name_known: name.is_some(),
        truncated,
    };
    SENSOR.record_write(&facts, path, volume);
    FLT_POSTOP_FINISHED_PROCESSING
}

/// `CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 209, METHOD_BUFFERED, FILE_WRITE_DATA)` (winioctl.h;
/// windows-sys has it under a feature the driver does not otherwise need).
pub const FSCTL_DUPLICATE_EXTENTS_TO_FILE: u32 = 0x0009_8344;
/// `CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 250, METHOD_BUFFERED, FILE_WRITE_DATA)`.
pub const FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX: u32 = 0x0009_83E8;

/// Whether an FSCTL code is a block clone (`Some(ex)`).
pub fn is_clone_fsctl(code: u32) -> Option<bool> {
    match code {
        FSCTL_DUPLICATE_EXTENTS_TO_FILE => Some(false),
        FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX => Some(true),
        _ => None,
    }
}

fn clone_range(data: &CallbackData<'_>) -> Option<Result<Clone, BadBuffer>> {
    let fsctl = data.fs_control()?;
    let ex = is_clone_fsctl(fsctl.code)?;
    // SAFETY: both codes are METHOD_BUFFERED: the input is the I/O manager's system buffer of
    // InputBufferLength bytes.
    let parsed = unsafe { info_buffer(fsctl.input, fsctl.input_length, 8) }
        .and_then(|buf| parse_duplicate_extents(buf, ex));
    Some(parsed)
}

pub(super) unsafe extern "system" fn pre_fs_control(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_FILE_SYSTEM_CONTROL) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    let Some(parsed) = clone_range(&data) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK; // not a clone: every other FSCTL leaves here
    };
    if completion.is_null() || !completion.is_aligned() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if !SENSOR.wants_clone(&data.requestor()) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if parsed.is_err() {
        SENSOR.buffer_rejected();
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // SAFETY: `completion` was checked non-null and aligned above; post_fs_control takes the name back.
    unsafe { StreamName::hand_to_post(&data, completion) }
}

pub(super) unsafe extern "system" fn post_fs_control(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // SAFETY: null or a reference from into_raw, taken back once.
    let name = unsafe { StreamName::from_raw(completion) };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_FILE_SYSTEM_CONTROL) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    // The input is read again (an FSCTL with no output leaves its system buffer as it was);
    // post-FSCTL may run at DISPATCH_LEVEL: the buffer is non-paged, the name a context.
    let Some(Ok(range)) = clone_range(&data) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    if !status::is_success(data.status()) {
        return FLT_POSTOP_FINISHED_PROCESSING; // no data moved
    }
    let (path, volume, truncated) = name
        .as_ref()
        .map_or((&[][..], &[][..], false), StreamName::parts);
    let facts = NamespaceFacts {
        requestor: data.requestor(),
        status: data.status(),
        information: 0,
        replace_existing: false,
        posix: false,
    };
    let names = OpNames {
        path,
        volume,
        path_from_context: name.is_some(),
        path_failed: name.is_none(),
        path_truncated: truncated,
        target_failed: true, // the source is named by a handle: not at hand
        ..OpNames::default()
    };
    SENSOR.record_clone(
        &facts,
        &names,
        CloneRange {
            target_offset: range.target_offset,
            byte_count: range.byte_count,
        },
    );
    FLT_POSTOP_FINISHED_PROCESSING
}
