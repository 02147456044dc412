//! Callback data: validated views of `FLT_CALLBACK_DATA` and the requestor of an operation.

use super::*;

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn PsGetThreadId(thread: isize) -> HANDLE;
    fn PsGetProcessCreateTimeQuadPart(process: isize) -> i64;
}

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

/// `FLT_PARAMETERS.SetFileInformation` as the WDK lays it out on x64: `FileInformationClass` is
/// `POINTER_ALIGNMENT` (fltKernel.h), so it sits at 8, `ParentOfTarget` at 16, the
/// `ReplaceIfExists` / `DeleteHandle` union at 24 and `InfoBuffer` at 32 (checked by
/// `tests/layout.rs`). Issue 27.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SetInformationParameters {
    pub length: u32,
    pub _align_class: u32,
    pub file_information_class: i32,
    pub _align_parent: u32,
    pub parent_of_target: *mut FILE_OBJECT,
    pub replace_if_exists_or_delete_handle: usize,
    pub info_buffer: *mut c_void,
}

/// `FLT_PARAMETERS.FileSystemControl.Buffered` on x64: `OutputBufferLength` at 0, then the
/// `POINTER_ALIGNMENT` `InputBufferLength` at 8 and `FsControlCode` at 16, `SystemBuffer` at 24.
/// A METHOD_BUFFERED FSCTL (both duplicate-extents codes are) has its input there. Issue 27.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FsControlParameters {
    pub output_buffer_length: u32,
    pub _align_input: u32,
    pub input_buffer_length: u32,
    pub _align_code: u32,
    pub fs_control_code: u32,
    pub _align_buffer: u32,
    pub system_buffer: *mut c_void,
}

/// `FLT_PARAMETERS.PrepareMdlWrite` on x64: `FileOffset` at 0, the `POINTER_ALIGNMENT`
/// `Length` at 8 and `Key` at 16, `MdlChain` at 24. Issue 27.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrepareMdlWriteParameters {
    pub file_offset: i64,
    pub length: u32,
    pub _align_key: u32,
    pub key: u32,
    pub _align_chain: u32,
    pub mdl_chain: *mut *mut c_void,
}

const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    use windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_PARAMETERS;
    assert!(offset_of!(SetInformationParameters, file_information_class) == 8);
    assert!(offset_of!(SetInformationParameters, parent_of_target) == 16);
    assert!(offset_of!(SetInformationParameters, info_buffer) == 32);
    assert!(size_of::<SetInformationParameters>() <= size_of::<FLT_PARAMETERS>());
    assert!(align_of::<SetInformationParameters>() <= align_of::<FLT_PARAMETERS>());
    assert!(offset_of!(FsControlParameters, input_buffer_length) == 8);
    assert!(offset_of!(FsControlParameters, fs_control_code) == 16);
    assert!(offset_of!(FsControlParameters, system_buffer) == 24);
    assert!(size_of::<FsControlParameters>() <= size_of::<FLT_PARAMETERS>());
    assert!(align_of::<FsControlParameters>() <= align_of::<FLT_PARAMETERS>());
    assert!(offset_of!(PrepareMdlWriteParameters, length) == 8);
    assert!(offset_of!(PrepareMdlWriteParameters, key) == 16);
    assert!(offset_of!(PrepareMdlWriteParameters, mdl_chain) == 24);
    assert!(size_of::<PrepareMdlWriteParameters>() <= size_of::<FLT_PARAMETERS>());
    assert!(align_of::<PrepareMdlWriteParameters>() <= align_of::<FLT_PARAMETERS>());
};

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
    pub(super) raw: *const FLT_CALLBACK_DATA,
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
    /// Through the MDL interface (`IRP_MJ_PREPARE_MDL_WRITE`, or an `IRP_MJ_WRITE` with
    /// `IRP_MN_MDL`): reported with `MDL_WRITE` (issue 27).
    pub mdl: bool,
}

/// Set-information parameters: the class and the caller's buffer (unchecked until parsed).
#[derive(Debug, Clone, Copy)]
pub struct SetInfo {
    pub class: i32,
    pub length: u32,
    pub buffer: *const c_void,
}

/// The FSCTL code of a file-system-control request and its buffered input.
#[derive(Debug, Clone, Copy)]
pub struct FsControl {
    pub code: u32,
    pub input_length: u32,
    pub input: *const c_void,
}

/// `IRP_MN_MDL` and `IRP_MN_COMPLETE` bits of a write's minor function.
const IRP_MN_MDL_BIT: u8 = 0x02;
const IRP_MN_COMPLETE_BIT: u8 = 0x04;
/// `IRP_MN_USER_FS_REQUEST`: the minor function of an FSCTL from a caller.
const IRP_MN_USER_FS_REQUEST: u8 = 0x00;

const FILE_DIRECTORY_FILE: u32 = 0x1;
const SL_OPEN_TARGET_DIRECTORY: u8 = 0x04;

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

    /// A fast I/O operation (`FLTFL_CALLBACK_DATA_FAST_IO_OPERATION`), not an IRP.
    pub fn is_fast_io(&self) -> bool {
        self.data.Flags & FLTFL_CALLBACK_DATA_FAST_IO_OPERATION != 0
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

    /// A create that opens the parent directory of a rename or link target
    /// (`SL_OPEN_TARGET_DIRECTORY` in the parameter block's operation flags).
    pub fn opens_target_directory(&self) -> bool {
        self.iopb.OperationFlags & SL_OPEN_TARGET_DIRECTORY != 0
    }

    /// Whether the opened stream is a directory, asked of the file system after a successful
    /// open (`FltIsDirectory`; a directory can be opened without FILE_DIRECTORY_FILE). Falls
    /// back to the create option if the query fails. Post-create, PASSIVE_LEVEL.
    pub fn opened_a_directory(&self) -> bool {
        let mut is_directory = false;
        // SAFETY: the file object and instance of this create's parameter block, after the
        // file was opened; a valid out pointer.
        let st = unsafe {
            FltIsDirectory(
                self.iopb.TargetFileObject,
                self.iopb.TargetInstance,
                &mut is_directory,
            )
        };
        if status::is_success(st) {
            is_directory
        } else {
            self.is_directory_open()
        }
    }

    /// Whether the target file object is a directory (`FltIsDirectory`), or `None` if the
    /// file system does not say. Any operation on an open file; IRQL <= APC_LEVEL.
    pub fn is_directory(&self) -> Option<bool> {
        let mut is_directory = false;
        // SAFETY: the file object and instance of this operation's parameter block (an open
        // file); a valid out pointer.
        let st = unsafe {
            FltIsDirectory(
                self.iopb.TargetFileObject,
                self.iopb.TargetInstance,
                &mut is_directory,
            )
        };
        status::is_success(st).then_some(is_directory)
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
            mdl: self.iopb.MinorFunction & IRP_MN_MDL_BIT != 0,
        }
    }

    /// An `IRP_MJ_WRITE` whose minor function has `IRP_MN_COMPLETE`: the end of an MDL write
    /// (`IRP_MN_MDL | IRP_MN_COMPLETE`) or of a DPC-level write, not a new write. Its data was
    /// reported at the prepare step (issue 27, N2: counted once).
    pub fn is_write_completion(&self) -> bool {
        self.iopb.MinorFunction & IRP_MN_COMPLETE_BIT != 0
    }

    /// Parameters of a fast-I/O MDL write (`IRP_MJ_PREPARE_MDL_WRITE`).
    pub fn prepare_mdl_write_params(&self) -> Option<WriteParams> {
        if self.iopb.MajorFunction != IRP_MJ_PREPARE_MDL_WRITE as u8 {
            return None;
        }
        let p = ptr::addr_of!(self.iopb.Parameters).cast::<PrepareMdlWriteParameters>();
        // SAFETY: the major function is IRP_MJ_PREPARE_MDL_WRITE (checked above), so the union holds PrepareMdlWrite, laid out as PrepareMdlWriteParameters
        // (compile-time offsets above), inside the union; two fields read by projection.
        let (offset, length) = unsafe {
            (
                ptr::addr_of!((*p).file_offset).read(),
                ptr::addr_of!((*p).length).read(),
            )
        };
        Some(WriteParams {
            offset: offset as u64,
            length,
            paging_io: false,
            mdl: true,
        })
    }

    /// The class and buffer of an `IRP_MJ_SET_INFORMATION`.
    pub fn set_info(&self) -> Option<SetInfo> {
        if u32::from(self.iopb.MajorFunction) != IRP_MJ_SET_INFORMATION {
            return None;
        }
        let p = ptr::addr_of!(self.iopb.Parameters).cast::<SetInformationParameters>();
        // SAFETY: the major function is IRP_MJ_SET_INFORMATION (checked above), so the
        // union holds SetFileInformation, laid out as SetInformationParameters (offsets checked
        // above and in tests/layout.rs); three fields read by projection, padding never.
        let (class, length, buffer) = unsafe {
            (
                ptr::addr_of!((*p).file_information_class).read(),
                ptr::addr_of!((*p).length).read(),
                ptr::addr_of!((*p).info_buffer).read(),
            )
        };
        Some(SetInfo {
            class,
            length,
            buffer: buffer.cast_const(),
        })
    }

    /// The code and input of a caller's FSCTL, or `None` for any other file-system-control
    /// minor function (mount, verify, ...), whose parameters are laid out differently.
    pub fn fs_control(&self) -> Option<FsControl> {
        if u32::from(self.iopb.MajorFunction) != IRP_MJ_FILE_SYSTEM_CONTROL
            || self.iopb.MinorFunction != IRP_MN_USER_FS_REQUEST
        {
            return None;
        }
        let p = ptr::addr_of!(self.iopb.Parameters).cast::<FsControlParameters>();
        // SAFETY: IRP_MJ_FILE_SYSTEM_CONTROL with IRP_MN_USER_FS_REQUEST: the union holds
        // FileSystemControl.Common/Buffered, laid out as FsControlParameters (checked above).
        // The buffer member is only meaningful for METHOD_BUFFERED codes; the caller reads it
        // for those alone.
        let (code, input_length, input) = unsafe {
            (
                ptr::addr_of!((*p).fs_control_code).read(),
                ptr::addr_of!((*p).input_buffer_length).read(),
                ptr::addr_of!((*p).system_buffer).read(),
            )
        };
        Some(FsControl {
            code,
            input_length,
            input: input.cast_const(),
        })
    }

    /// The create options of an `IRP_MJ_CREATE` contain `FILE_DELETE_ON_CLOSE`.
    pub fn deletes_on_close(&self) -> bool {
        const FILE_DELETE_ON_CLOSE: u32 = 0x0000_1000;
        self.create_params()
            .is_some_and(|p| p.options & FILE_DELETE_ON_CLOSE != 0)
    }
}

/// The filter handle from a callback's related objects (`FltObjects->Filter`), as the ctx sample
/// takes it: valid for the whole callback, unlike a global that unload clears.
///
/// # Safety
/// `objects` must be null or the related objects the Filter Manager passed to the running
/// callback (valid for its duration).
pub unsafe fn related_filter(objects: *const FLT_RELATED_OBJECTS) -> Option<isize> {
    if objects.is_null() || !objects.is_aligned() {
        return None;
    }
    // SAFETY: non-null, aligned, and valid for the callback by the caller's contract.
    let objects = unsafe { &*objects };
    if usize::from(objects.Size) < core::mem::size_of::<FLT_RELATED_OBJECTS>() {
        return None;
    }
    (objects.Filter != 0).then_some(objects.Filter)
}
