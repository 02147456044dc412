//! The simulated file system's view of a file for delete semantics: open handles, the delete
//! disposition, delete-on-close, POSIX deletes; IRP_MJ_CLEANUP then close of a handle; and
//! `FltQueryInformationFile`, which is how Microsoft's `delete` sample tells, in post-cleanup,
//! that a file is really gone (FileStandardInformation answers STATUS_FILE_DELETED).
//!
//! Cleanup and close (`ifs/irp-mj-cleanup`, `ifs/irp-mj-close`): cleanup comes when the last
//! handle to a file object is closed, and is where a delete-pending file loses its name; close
//! comes after it, when the last reference goes, and then the stream's contexts go with the
//! stream (`ifs/managing-contexts`, a stream context lives as long as the stream).
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::irp::{self, OpSpec};
use super::*;
use crate::changes::CleanupOp;

/// `FileStandardInformation`, `FileInternalInformation`.
const FILE_STANDARD_INFORMATION: i32 = 5;
const FILE_INTERNAL_INFORMATION: i32 = 6;
/// `sizeof(FILE_STANDARD_INFORMATION)` on x64 (`ns-wdm-_file_standard_information`):
/// AllocationSize, EndOfFile (LARGE_INTEGER), NumberOfLinks (ULONG), DeletePending, Directory.
const FILE_STANDARD_INFORMATION_LEN: u32 = 24;

/// A handle to the stream was opened (after a successful create).
pub(super) fn handle_opened(stream: usize, delete_on_close: bool) {
    world::with_world(|w| {
        let f = w.files.entry(stream).or_default();
        f.open_handles += 1;
        f.delete_on_close |= delete_on_close;
    });
}

/// The file system's cleanup of one handle: a delete-on-close handle marks the file delete
/// pending; a delete-pending file loses its name when its last handle is cleaned up, or at once
/// with POSIX semantics (`ns-ntddk-_file_disposition_information_ex`,
/// FILE_DISPOSITION_POSIX_SEMANTICS). Returns whether the file is now gone.
fn cleanup_handle(stream: usize) -> bool {
    world::with_world(|w| {
        let f = w.files.entry(stream).or_default();
        f.open_handles = f.open_handles.saturating_sub(1);
        if f.delete_on_close {
            f.delete_pending = true;
            f.delete_on_close = false;
        }
        if f.delete_pending && (f.open_handles == 0 || f.posix) {
            f.deleted = true;
        }
        f.deleted
    })
    .unwrap_or(false)
}

/// The close after the last cleanup: the stream goes, and the stream context attached to it is
/// detached (its reference released) as the Filter Manager does when a stream is torn down.
fn close_stream(stream: usize) {
    let last = world::with_world(|w| {
        let gone = w.files.get(&stream).is_none_or(|f| f.open_handles == 0);
        if gone {
            w.files.remove(&stream);
            w.stream_contexts.remove(&stream)
        } else {
            None
        }
    })
    .flatten();
    if let Some(ctx) = last {
        contexts::release_context_ref(ctx, true);
    }
}

/// Runs IRP_MJ_CLEANUP of the session's handle through pre- and post-cleanup, then closes it.
pub fn run_cleanup(
    op: &CleanupOp,
    file: OpenFile,
    instance: isize,
    filter: isize,
) -> CallbackTiming {
    let iopb = irp::parameter_block(IRP_MJ_CLEANUP as u8, 0, &file, instance, [0u64; 4]);
    let mut data = irp::callback_data(&iopb, op.op_id, false);
    let objects = related_objects(filter, instance, &*file.file_object);
    let name: Vec<u16> = op
        .name_le
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    irp::begin_op(op.pid, Arc::new(name), None);
    let spec = OpSpec {
        pre_name: "PreCleanup",
        post_name: "PostCleanup",
        callbacks: |r| (r.pre_cleanup, r.post_cleanup),
        fast_io: false,
        post_at_dispatch: op.post_at_dispatch,
        pre_irql: PASSIVE_LEVEL,
    };
    let stream = file.file_object.FsContext as usize;
    let longest = irp::call_operation(&spec, &mut data, &objects, |data| {
        cleanup_handle(stream);
        data.IoStatus.Anonymous.Status = STATUS_SUCCESS;
        data.IoStatus.Information = 0;
    });
    irp::end_op();
    // IRP_MJ_CLOSE: the driver registers no close callback; the file object goes now.
    drop(file);
    close_stream(stream);
    CallbackTiming { longest }
}

/// Reference: `nf-fltkernel-fltqueryinformationfile`: IRQL PASSIVE_LEVEL; Instance and
/// FileObject required; the buffer at least the class's size (STATUS_INFO_LENGTH_MISMATCH
/// otherwise). A file whose last handle's cleanup deleted it answers STATUS_FILE_DELETED, which
/// the `delete` sample's post-cleanup takes as the proof of a delete.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltQueryInformationFile(
    instance: isize,
    file_object: *const FILE_OBJECT,
    file_information: *mut c_void,
    length: u32,
    file_information_class: i32,
    length_returned: *mut u32,
) -> NTSTATUS {
    require_irql(PASSIVE_LEVEL, "FltQueryInformationFile");
    verifier::require_safe_post_op("FltQueryInformationFile");
    if !instance_is_valid(instance, "FltQueryInformationFile") {
        return STATUS_INVALID_PARAMETER;
    }
    if file_object.is_null() || file_information.is_null() {
        violation(
            "QUERY_INFORMATION_ARGUMENTS",
            "FltQueryInformationFile with a NULL file object or buffer",
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null file object from the driver: the simulator's own FILE_OBJECT.
    let stream = unsafe { (*file_object).FsContext } as usize;
    let state = world::with_world(|w| w.files.get(&stream).cloned()).flatten();
    if state.as_ref().is_some_and(|f| f.deleted) {
        return STATUS_FILE_DELETED;
    }
    let state = state.unwrap_or_default();
    let bytes: Vec<u8> = match file_information_class {
        FILE_STANDARD_INFORMATION => {
            let mut b = vec![0u8; FILE_STANDARD_INFORMATION_LEN as usize];
            b[16..20].copy_from_slice(&1u32.to_le_bytes()); // NumberOfLinks
            b[20] = u8::from(state.delete_pending);
            b
        }
        FILE_INTERNAL_INFORMATION => (stream as u64).to_le_bytes().to_vec(),
        _ => return STATUS_INVALID_PARAMETER,
    };
    if (length as usize) < bytes.len() {
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    // SAFETY: the driver's buffer of `length` bytes (checked above to hold the class's size).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), file_information.cast::<u8>(), bytes.len())
    };
    if !length_returned.is_null() {
        // SAFETY: non-null out pointer from the driver.
        unsafe { length_returned.write(bytes.len() as u32) };
    }
    STATUS_SUCCESS
}
