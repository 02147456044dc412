//! IRP_MJ_SET_INFORMATION: renames, hard links, delete dispositions and the classes a sensor
//! lets pass, with the parameters the Filter Manager gives a filter, and the rules of
//! `FltGetDestinationFileNameInformation`.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::irp::{self, ExactBuffer, OpSpec};
use super::*;
use crate::changes::{
    FILE_DISPOSITION_DELETE, FILE_DISPOSITION_ON_CLOSE, FILE_DISPOSITION_POSIX_SEMANTICS,
    FILE_LINK_INFORMATION, FILE_LINK_INFORMATION_EX, FILE_RENAME_INFORMATION,
    FILE_RENAME_INFORMATION_EX, Hostile, SetInfoKind, SetInfoOp,
};

/// `FLT_PARAMETERS.SetFileInformation` in its WDK layout on x64
/// (`ifs/flt-parameters-for-irp-mj-set-information`): `FileInformationClass` is
/// `POINTER_ALIGNMENT`, so it sits at 8, not 4 (windows-sys's `FLT_PARAMETERS_6` puts it at 4).
#[repr(C)]
pub struct SetInformationParameters {
    pub length: u32,
    pub _align_class: u32,
    pub file_information_class: u32,
    pub _align_parent: u32,
    pub parent_of_target: *mut FILE_OBJECT,
    /// `ReplaceIfExists`/`AdvanceOnly` (two BOOLEANs), `ClusterCount` or `DeleteHandle`.
    pub replace_or_handle: usize,
    pub info_buffer: *mut c_void,
}

const _: () = {
    assert!(std::mem::offset_of!(SetInformationParameters, file_information_class) == 8);
    assert!(std::mem::offset_of!(SetInformationParameters, parent_of_target) == 16);
    assert!(std::mem::offset_of!(SetInformationParameters, replace_or_handle) == 24);
    assert!(std::mem::offset_of!(SetInformationParameters, info_buffer) == 32);
};

/// What `FltGetDestinationFileNameInformation` may answer during one set-information.
#[derive(Clone)]
pub struct SetInfoContext {
    pub class: u32,
    pub target: Option<Arc<Vec<u16>>>,
    /// `Data->Iopb->TargetFileObject` (also `FltObjects->FileObject`).
    pub file_object: usize,
    /// `Parameters.SetFileInformation.ParentOfTarget`: not a valid argument.
    pub parent_of_target: usize,
}

/// The rules of `nf-fltkernel-fltgetdestinationfilenameinformation`, and the destination it
/// names. For the export of that routine: build the FLT_FILE_NAME_INFORMATION from the path
/// this returns.
/// - IRQL <= APC_LEVEL (the page's requirements); so never from a post-operation that may run at
///   DISPATCH_LEVEL (POST_OP_MAY_BE_DISPATCH).
/// - Only for a rename or a hard link: "constructs a full destination path name for a file or
///   directory that is being renamed or for which an NTFS hard link is being created".
/// - `FileObject` "must be either the FileObject member of the FLT_RELATED_OBJECTS structure for
///   the operation or the Data->Iopb->TargetFileObject pointer ... cannot be the
///   Data->Iopb->Parameters.SetFileInformation.FileObject member"; required, never NULL.
/// - FLT_FILE_NAME_SHORT "is not a valid flag value for this parameter".
pub fn destination_name(
    instance: isize,
    file_object: *const FILE_OBJECT,
    name_options: u32,
) -> Result<Arc<Vec<u16>>, NTSTATUS> {
    let f = "FltGetDestinationFileNameInformation";
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_DESTINATION_NAME", format!("{f} above APC_LEVEL"));
        return Err(STATUS_INVALID_PARAMETER);
    }
    verifier::require_safe_post_op(f);
    if !instance_is_valid(instance, f) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    if name_options & 0xFF == FLT_FILE_NAME_SHORT {
        violation(
            "DESTINATION_NAME_SHORT",
            format!("{f} with FLT_FILE_NAME_SHORT"),
        );
        return Err(STATUS_FLT_INVALID_NAME_REQUEST);
    }
    let ctx = CURRENT_OP.with(|c| c.borrow().as_ref().and_then(|o| o.set_info.clone()));
    let Some(ctx) = ctx.filter(|c| {
        matches!(
            c.class,
            FILE_RENAME_INFORMATION
                | FILE_RENAME_INFORMATION_EX
                | FILE_LINK_INFORMATION
                | FILE_LINK_INFORMATION_EX
        )
    }) else {
        violation(
            "DESTINATION_NAME_NOT_RENAME_OR_LINK",
            format!("{f} outside a rename or hard-link set-information"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    };
    if file_object.is_null() || file_object as usize != ctx.file_object {
        let which = if file_object as usize == ctx.parent_of_target && !file_object.is_null() {
            "Parameters.SetFileInformation.ParentOfTarget"
        } else {
            "a file object other than the operation's target"
        };
        violation(
            "DESTINATION_NAME_FILE_OBJECT",
            format!("{f} with {which} (must be TargetFileObject / FltObjects->FileObject)"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    }
    ctx.target.ok_or(STATUS_OBJECT_NAME_NOT_FOUND)
}

/// Runs `f` as if inside `callback` of a set-information of `class` on `file_object` whose
/// destination is `target` (for rule tests).
pub fn as_if_in_set_info(
    callback: &'static str,
    class: u32,
    file_object: usize,
    target: &str,
    f: impl FnOnce(),
) {
    let ctx = SetInfoContext {
        class,
        target: Some(Arc::new(target.encode_utf16().collect())),
        file_object,
        parent_of_target: file_object + 0x100,
    };
    irp::begin_op(1000, Arc::new(Vec::new()), Some(ctx));
    verifier::set_in_callback(Some(callback));
    f();
    verifier::set_in_callback(None);
    irp::end_op();
}

/// A stand-in file object address for rule tests (never dereferenced by the rules).
pub fn test_file_object() -> usize {
    0x5EED_0000
}

/// Runs one set-information through pre-, the "file system", and post-set-information.
pub fn run_set_info(
    op: &SetInfoOp,
    file: &OpenFile,
    instance: isize,
    filter: isize,
) -> CallbackTiming {
    let (bytes, length) = op.info_buffer();
    let unaligned = op.hostile == Some(Hostile::Unaligned);
    let buffer = ExactBuffer::new(&bytes, unaligned);
    let parent = Box::new(0u64); // a stand-in ParentOfTarget: an address, never a FILE_OBJECT
    let parent_ptr = if op.kind.names_a_target() {
        (&*parent as *const u64).cast_mut().cast::<FILE_OBJECT>()
    } else {
        std::ptr::null_mut()
    };
    let replace = match op.kind {
        SetInfoKind::Rename { replace, .. } => usize::from(replace),
        _ => 0,
    };
    let params = SetInformationParameters {
        length,
        _align_class: 0,
        file_information_class: op.kind.class(),
        _align_parent: 0,
        parent_of_target: parent_ptr,
        replace_or_handle: replace,
        info_buffer: buffer
            .as_ref()
            .map_or(std::ptr::null_mut(), ExactBuffer::ptr),
    };
    let iopb = irp::parameter_block(IRP_MJ_SET_INFORMATION as u8, 0, file, instance, params);
    let mut data = irp::callback_data(&iopb, op.op_id, false);
    let objects = related_objects(filter, instance, &*file.file_object);
    let ctx = SetInfoContext {
        class: op.kind.class(),
        target: op.target.clone(),
        file_object: &*file.file_object as *const FILE_OBJECT as usize,
        parent_of_target: parent_ptr as usize,
    };
    irp::begin_op(op.pid, op.source.clone(), Some(ctx));
    let spec = OpSpec {
        pre_name: "PreSetInformation",
        post_name: "PostSetInformation",
        callbacks: |r| (r.pre_set_info, r.post_set_info),
        fast_io: false,
        post_at_dispatch: op.post_at_dispatch,
        pre_irql: PASSIVE_LEVEL,
    };
    let stream = file.file_object.FsContext as usize;
    let longest = irp::call_operation(&spec, &mut data, &objects, |data| {
        data.IoStatus.Anonymous.Status = op.status;
        data.IoStatus.Information = 0;
        if op.status >= 0 {
            apply_disposition(stream, &op.kind);
        }
    });
    irp::end_op();
    drop(buffer);
    CallbackTiming { longest }
}

/// The file system's side of a delete disposition (`ns-ntddk-_file_disposition_information_ex`).
fn apply_disposition(stream: usize, kind: &SetInfoKind) {
    world::with_world(|w| {
        let f = w.files.entry(stream).or_default();
        match *kind {
            SetInfoKind::Disposition { delete } => f.delete_pending = delete,
            SetInfoKind::DispositionEx { flags } => {
                let delete = flags & FILE_DISPOSITION_DELETE != 0;
                if flags & FILE_DISPOSITION_ON_CLOSE != 0 {
                    f.delete_on_close = delete;
                } else {
                    f.delete_pending = delete;
                    f.posix = delete && flags & FILE_DISPOSITION_POSIX_SEMANTICS != 0;
                }
            }
            _ => {}
        }
    });
}
