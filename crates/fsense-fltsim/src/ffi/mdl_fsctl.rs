//! Writes that do not come as a plain IRP_MJ_WRITE: the fast I/O MDL interface
//! (IRP_MJ_PREPARE_MDL_WRITE, and its IRP fallback IRP_MJ_WRITE with IRP_MN_MDL then
//! IRP_MN_COMPLETE_MDL) and block clones (IRP_MJ_FILE_SYSTEM_CONTROL with
//! FSCTL_DUPLICATE_EXTENTS_TO_FILE(_EX)), next to FSCTLs a sensor ignores, a METHOD_NEITHER one
//! among them.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::irp::{self, ExactBuffer, OpSpec};
use super::*;
use crate::changes::{FsctlOp, Hostile, MdlWriteOp};

/// `IRP_MN_MDL`, `IRP_MN_COMPLETE_MDL` (`IRP_MN_COMPLETE | IRP_MN_MDL`) for IRP_MJ_WRITE
/// (`ifs/irp-mj-write`: "IRP_MN_MDL ... IRP_MN_COMPLETE_MDL").
pub const IRP_MN_MDL: u8 = 0x02;
pub const IRP_MN_COMPLETE_MDL: u8 = 0x06;
/// `IRP_MN_USER_FS_REQUEST`.
const IRP_MN_USER_FS_REQUEST: u8 = 0x00;
/// The transfer type in an I/O control code's low two bits: METHOD_NEITHER.
const METHOD_NEITHER: u32 = 3;

/// `FLT_PARAMETERS.PrepareMdlWrite` (`ifs/flt-parameters-for-irp-mj-prepare-mdl-write`):
/// FileOffset, Length, Key, MdlChain.
#[repr(C)]
struct PrepareMdlWriteParameters {
    file_offset: i64,
    length: u32,
    key: u32,
    mdl_chain: *mut *mut c_void,
}

/// `FLT_PARAMETERS.FileSystemControl` on x64 (`ifs/flt-parameters-for-irp-mj-file-system-control`):
/// OutputBufferLength, InputBufferLength and FsControlCode each `POINTER_ALIGNMENT`; then the
/// method's buffer: `Buffered.SystemBuffer` / `Neither.InputBuffer` / `Direct.InputSystemBuffer`,
/// and `Neither.OutputBuffer`, `OutputMdlAddress`.
#[repr(C)]
struct FileSystemControlParameters {
    output_buffer_length: u32,
    _align_input: u32,
    input_buffer_length: u32,
    _align_code: u32,
    fs_control_code: u32,
    _align_buffer: u32,
    input_or_system_buffer: *mut c_void,
    output_buffer: *mut c_void,
    output_mdl_address: *mut c_void,
}

const _: () = {
    assert!(std::mem::offset_of!(FileSystemControlParameters, input_buffer_length) == 8);
    assert!(std::mem::offset_of!(FileSystemControlParameters, fs_control_code) == 16);
    assert!(std::mem::offset_of!(FileSystemControlParameters, input_or_system_buffer) == 24);
    assert!(std::mem::offset_of!(PrepareMdlWriteParameters, mdl_chain) == 16);
};

/// One MDL write: fast I/O PREPARE_MDL_WRITE (post-operation at PASSIVE_LEVEL, same thread:
/// `ifs/writing-postoperation-callback-routines`); when the fast path is refused below, the IRP
/// form: IRP_MJ_WRITE / IRP_MN_MDL, then IRP_MJ_WRITE / IRP_MN_COMPLETE_MDL, which only gives
/// the MDL back (`ifs/irp-mj-write`).
pub fn run_mdl_write(
    op: &MdlWriteOp,
    file: &OpenFile,
    instance: isize,
    filter: isize,
) -> CallbackTiming {
    let objects = related_objects(filter, instance, &*file.file_object);
    irp::begin_op(op.pid, Arc::new(Vec::new()), None);
    let mut mdl_chain: *mut c_void = std::ptr::null_mut();
    let params = PrepareMdlWriteParameters {
        file_offset: op.offset as i64,
        length: op.length,
        key: 0,
        mdl_chain: &mut mdl_chain,
    };
    let iopb = irp::parameter_block(IRP_MJ_PREPARE_MDL_WRITE as u8, 0, file, instance, params);
    let mut data = irp::callback_data(&iopb, op.op_id, true);
    let spec = OpSpec {
        pre_name: "PrePrepareMdlWrite",
        post_name: "PostPrepareMdlWrite",
        callbacks: |r| (r.pre_prepare_mdl_write, r.post_prepare_mdl_write),
        fast_io: true,
        post_at_dispatch: false,
        pre_irql: PASSIVE_LEVEL,
    };
    let mut longest = irp::call_operation(&spec, &mut data, &objects, |data| {
        if op.irp_fallback {
            data.IoStatus.Anonymous.Status = STATUS_FLT_DISALLOW_FAST_IO;
            data.IoStatus.Information = 0;
        } else {
            data.IoStatus.Anonymous.Status = STATUS_SUCCESS;
            data.IoStatus.Information = op.length as usize;
        }
    });
    if op.irp_fallback {
        for minor in [IRP_MN_MDL, IRP_MN_COMPLETE_MDL] {
            let write = WriteParameters {
                length: op.length,
                _align_key: 0,
                key: 0,
                _align_byte_offset: 0,
                byte_offset: op.offset as i64,
                write_buffer: std::ptr::null_mut(),
                mdl_address: std::ptr::null_mut(),
            };
            let iopb = irp::parameter_block(IRP_MJ_WRITE as u8, minor, file, instance, write);
            let mut data = irp::callback_data(&iopb, op.op_id, false);
            let spec = OpSpec {
                pre_name: "PreWrite",
                post_name: "PostWrite",
                callbacks: |r| (r.pre_write, r.post_write),
                fast_io: false,
                post_at_dispatch: op.post_at_dispatch,
                pre_irql: PASSIVE_LEVEL,
            };
            let t = irp::call_operation(&spec, &mut data, &objects, |data| {
                data.IoStatus.Anonymous.Status = STATUS_SUCCESS;
                data.IoStatus.Information = op.length as usize;
            });
            longest = longest.max(t);
        }
    }
    irp::end_op();
    CallbackTiming { longest }
}

/// One FSCTL on the handle: a block clone (buffered input DUPLICATE_EXTENTS_DATA(_EX), in an
/// allocation of exactly the bytes given, hostile lengths included), another buffered FSCTL, or
/// a METHOD_NEITHER one whose input is a user address the driver must never touch.
pub fn run_fsctl(op: &FsctlOp, file: &OpenFile, instance: isize, filter: isize) -> CallbackTiming {
    let objects = related_objects(filter, instance, &*file.file_object);
    irp::begin_op(op.pid, Arc::new(Vec::new()), None);
    let (bytes, length) = op.input();
    let buffer = if op.hostile == Some(Hostile::FsctlNullBuffer) {
        None
    } else {
        ExactBuffer::new(&bytes, false)
    };
    let neither = op.code & 3 == METHOD_NEITHER;
    let input = if neither {
        irp::untouchable_user_address()
    } else {
        buffer
            .as_ref()
            .map_or(std::ptr::null_mut(), ExactBuffer::ptr)
    };
    let params = FileSystemControlParameters {
        output_buffer_length: 0,
        _align_input: 0,
        input_buffer_length: length,
        _align_code: 0,
        fs_control_code: op.code,
        _align_buffer: 0,
        input_or_system_buffer: input,
        output_buffer: if neither {
            irp::untouchable_user_address()
        } else {
            std::ptr::null_mut()
        },
        output_mdl_address: std::ptr::null_mut(),
    };
    let iopb = irp::parameter_block(
        IRP_MJ_FILE_SYSTEM_CONTROL as u8,
        IRP_MN_USER_FS_REQUEST,
        file,
        instance,
        params,
    );
    let mut data = irp::callback_data(&iopb, op.op_id, false);
    let spec = OpSpec {
        pre_name: "PreFileSystemControl",
        post_name: "PostFileSystemControl",
        callbacks: |r| (r.pre_fsctl, r.post_fsctl),
        fast_io: false,
        post_at_dispatch: op.post_at_dispatch,
        pre_irql: PASSIVE_LEVEL,
    };
    let longest = irp::call_operation(&spec, &mut data, &objects, |data| {
        data.IoStatus.Anonymous.Status = op.status;
        data.IoStatus.Information = 0;
    });
    irp::end_op();
    drop(buffer);
    CallbackTiming { longest }
}
