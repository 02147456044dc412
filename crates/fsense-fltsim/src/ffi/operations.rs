//! I/O: calling the driver's callbacks as the Filter Manager does.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

/// An open file object the simulator keeps for one create and its writes.
pub struct OpenFile {
    pub(super) file_object: Box<FILE_OBJECT>,
}

// SAFETY: the raw pointers inside the FILE_OBJECT are fake stream keys, never dereferenced.
unsafe impl Send for OpenFile {}

/// Timing and outcome of one operation's callbacks.
pub struct CallbackTiming {
    pub longest: Duration,
}

pub(super) fn enter_callback(name: &'static str) -> Option<Registration> {
    world::with_world(|w| {
        if w.unloading || w.registration.is_none() {
            return None;
        }
        w.callbacks_in_flight += 1;
        w.registration
    })
    .flatten()
    .inspect(|_r| {
        verifier::set_in_callback(Some(name));
    })
}

pub(super) fn leave_callback() {
    verifier::set_in_callback(None);
    world::with_world(|w| w.callbacks_in_flight = w.callbacks_in_flight.saturating_sub(1));
}

/// Ends a pre-operation callback. An operation whose pre-op asked for its post-op stays in
/// flight until the post-op returns, as with the real Filter Manager: FltUnregisterFilter waits
/// for it (and calls the post-op with FLTFL_POST_OPERATION_DRAINING if it is still pending),
/// so the driver's registration cannot vanish between the two callbacks of one operation.
pub(super) fn leave_pre_callback(post_pending: bool) {
    if post_pending {
        verifier::set_in_callback(None);
    } else {
        leave_callback();
    }
}

/// Runs `f` as if inside `callback` of a create of `path` (for rule tests): the operation the
/// name and directory queries consult, opened or not, its stream a directory or not.
pub fn as_if_in_create(
    callback: &'static str,
    path: &str,
    opened: bool,
    directory: bool,
    f: impl FnOnce(),
) {
    CURRENT_OP.with(|c| {
        *c.borrow_mut() = Some(CurrentOp {
            pid: 1000,
            path: Arc::new(path.encode_utf16().collect()),
            shape: NameShape::Valid,
            directory,
            opened,
            delete_on_close: false,
            set_info: None,
        })
    });
    verifier::set_in_callback(Some(callback));
    f();
    verifier::set_in_callback(None);
    CURRENT_OP.with(|c| *c.borrow_mut() = None);
}

/// One open-for-write and one write through it, issued while unload runs (see
/// FltUnregisterFilter). Runs on its own thread, as real I/O would. Nothing it records is
/// expected by the client: the driver stopped taking events before it unregisters.
pub(super) fn io_racing_unload(filter: isize) {
    let instance =
        world::with_world(|w| w.instances.iter().find(|(_, a)| *a).map(|(i, _)| *i)).flatten();
    let Some(instance) = instance else {
        return;
    };
    let path: Vec<u16> = format!("{VOLUME}\\unload-race.txt")
        .encode_utf16()
        .collect();
    let create = CreateOp {
        op_id: u32::MAX - 1,
        pid: 4321,
        file: usize::MAX,
        stream_key: 0x9_0000,
        shape: NameShape::Valid,
        desired_access: 0x0010_0002, // FILE_WRITE_DATA | SYNCHRONIZE
        disposition: 1,
        options: 0,
        share_access: 0,
        status: STATUS_SUCCESS,
        information: 1,
        directory_stream: false,
        target_directory: false,
    };
    let write = WriteOp {
        op_id: u32::MAX,
        pid: 4321,
        file: usize::MAX,
        create_op: create.op_id,
        offset: 0,
        length: 16,
        bytes_written: 16,
        status: STATUS_SUCCESS,
        paging_io: false,
        post_at_dispatch: false,
        fast_io_fallback: false,
        name_le: None,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            verifier::set_thread_role("I/O racing unload");
            let (open, _) = run_create(&create, Arc::new(path), instance, filter);
            if let Some(file) = open {
                run_write(&write, &file, instance, filter);
            }
        });
    });
}

fn check_pre_status(status: i32, callback: &str) {
    // Only SUCCESS_WITH_CALLBACK (0) and SUCCESS_NO_CALLBACK (1) fit a sensor that never pends.
    if !(0..=1).contains(&status) {
        violation("CALLBACK_RETURN", format!("{callback} returned {status}"));
    }
}

pub(super) fn check_post_status(status: i32, callback: &str) {
    if status != 0 {
        violation(
            "CALLBACK_RETURN",
            format!("{callback} returned {status}, expected FLT_POSTOP_FINISHED_PROCESSING"),
        );
    }
    if verifier::spin_locks_held() != 0 {
        violation(
            "CALLBACK_HOLDS_LOCK",
            format!("{callback} returned holding a spin lock"),
        );
    }
}

/// Runs one create through pre-create, the "file system", and post-create.
pub fn run_create(
    op: &CreateOp,
    path: Arc<Vec<u16>>,
    instance: isize,
    filter: isize,
) -> (Option<OpenFile>, CallbackTiming) {
    let mut timing = CallbackTiming {
        longest: Duration::ZERO,
    };
    // SAFETY: FILE_OBJECT is plain data; all-zero is a valid (closed) file object shape.
    let mut file_object: Box<FILE_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    file_object.FsContext = op.stream_key as *mut c_void;
    let mut security = IO_SECURITY_CONTEXT {
        SecurityQos: std::ptr::null_mut(),
        AccessState: std::ptr::null_mut(),
        DesiredAccess: op.desired_access,
        FullCreateOptions: op.options,
    };
    // SAFETY: plain data; all-zero is a valid parameter block shape, filled in below.
    let mut iopb: FLT_IO_PARAMETER_BLOCK = unsafe { std::mem::zeroed() };
    iopb.MajorFunction = IRP_MJ_CREATE as u8;
    iopb.TargetFileObject = &mut *file_object;
    iopb.TargetInstance = instance;
    if op.target_directory {
        iopb.OperationFlags = SL_OPEN_TARGET_DIRECTORY;
    }
    // The Create member in its real (WDK) layout; windows-sys's is misaligned on x64.
    let create = CreateParameters {
        security_context: &mut security,
        options: (op.disposition << 24) | (op.options & 0x00FF_FFFF),
        _align_file_attributes: 0,
        file_attributes: 0,
        share_access: op.share_access,
        _align_ea_length: 0,
        ea_length: 0,
        _align_ea_buffer: 0,
        ea_buffer: std::ptr::null_mut(),
        allocation_size: 0,
    };
    // SAFETY: CreateParameters fits inside the FLT_PARAMETERS union with no stricter alignment
    // (the driver checks both at compile time).
    unsafe {
        std::ptr::addr_of_mut!(iopb.Parameters)
            .cast::<CreateParameters>()
            .write(create)
    };
    // SAFETY: plain data; all-zero is valid, filled in below.
    let mut data: FLT_CALLBACK_DATA = unsafe { std::mem::zeroed() };
    data.Flags = 1; // FLTFL_CALLBACK_DATA_IRP_OPERATION
    data.Thread = ETHREAD_BASE + op.op_id as isize;
    data.Iopb = &iopb;
    data.RequestorMode = 1; // UserMode
    let objects = related_objects(filter, instance, &*file_object);

    CURRENT_OP.with(|c| {
        *c.borrow_mut() = Some(CurrentOp {
            pid: op.pid,
            path,
            shape: op.shape,
            directory: op.directory_stream,
            opened: op.opened(),
            delete_on_close: op.options & FILE_DELETE_ON_CLOSE != 0,
            set_info: None,
        })
    });
    verifier::set_current_pid(op.pid);
    verifier::set_irql(PASSIVE_LEVEL);

    let Some(reg) = enter_callback("PreCreate") else {
        return (None, timing);
    };
    let mut completion: *mut c_void = UNWRITTEN_COMPLETION_CONTEXT;
    let start = verifier::callback_clock();
    let pre = match reg.pre_create {
        // SAFETY: the driver's pre-create callback with callback data, related objects and a
        // completion-context slot that live for the whole operation, at PASSIVE_LEVEL.
        Some(cb) => unsafe { cb(&mut data, &objects, &mut completion) },
        None => 1,
    };
    timing.longest = timing.longest.max(verifier::callback_time(start));
    check_pre_status(pre, "PreCreate");
    leave_pre_callback(pre == 0);
    let completion = written_completion_context(completion, pre == 0, "PreCreate");

    // The file system completes the create.
    data.IoStatus.Anonymous.Status = op.status;
    data.IoStatus.Information = op.information as usize;

    if pre == 0 {
        let draining = world::with_world(|w| w.unloading).unwrap_or(true);
        verifier::set_in_callback(Some("PostCreate"));
        let flags = if draining {
            FLTFL_POST_OPERATION_DRAINING
        } else {
            0
        };
        let start = verifier::callback_clock();
        let post = match reg.post_create {
            // SAFETY: the driver's post-create callback, same structures, PASSIVE_LEVEL.
            Some(cb) => unsafe { cb(&mut data, &objects, completion, flags) },
            None => 0,
        };
        timing.longest = timing.longest.max(verifier::callback_time(start));
        check_post_status(post, "PostCreate");
        leave_callback();
    }
    CURRENT_OP.with(|c| *c.borrow_mut() = None);
    if op.opened() && !op.target_directory {
        files::handle_opened(op.stream_key, op.options & FILE_DELETE_ON_CLOSE != 0);
    }
    let open = op.opened().then_some(OpenFile { file_object });
    (open, timing)
}

/// What the completion-context slot holds before the pre-operation callback runs (rule S3 of
/// docs/simulator.md). `nc-fltkernel-pflt_pre_operation_callback` calls the context optional and
/// the `_Flt_CompletionContext_Outptr_` annotation page says it "might or might not be NULL":
/// nothing promises NULL on entry, so the simulator puts a value no allocation has, and a
/// post-operation callback that would receive it means the pre-operation never wrote it.
pub(super) const UNWRITTEN_COMPLETION_CONTEXT: *mut c_void = 0x0BAD_C0DE_0000_0008 as *mut c_void;

/// The completion context to hand to the post-operation callback (NULL for an unwritten slot,
/// after reporting COMPLETION_CONTEXT_UNWRITTEN, so the run goes on without a wild pointer).
pub(super) fn written_completion_context(
    slot: *mut c_void,
    with_callback: bool,
    callback: &str,
) -> *mut c_void {
    if slot != UNWRITTEN_COMPLETION_CONTEXT {
        return slot;
    }
    if with_callback {
        violation(
            "COMPLETION_CONTEXT_UNWRITTEN",
            format!(
                "{callback} returned FLT_PREOP_SUCCESS_WITH_CALLBACK without writing *CompletionContext \
                 (not documented to be NULL on entry)"
            ),
        );
    }
    std::ptr::null_mut()
}

/// Runs one write through pre-write, the "file system", and post-write (possibly at DISPATCH).
/// A write planned as a fast I/O fallback runs first as a fast I/O operation that a filter below
/// disallows, then as the IRP the I/O manager reissues.
pub fn run_write(op: &WriteOp, file: &OpenFile, instance: isize, filter: isize) -> CallbackTiming {
    if !op.fast_io_fallback {
        return run_write_as(op, file, instance, filter, false);
    }
    let fast = run_write_as(op, file, instance, filter, true);
    let irp = run_write_as(op, file, instance, filter, false);
    CallbackTiming {
        longest: fast.longest.max(irp.longest),
    }
}

/// `FLTFL_CALLBACK_DATA_IRP_OPERATION` / `FLTFL_CALLBACK_DATA_FAST_IO_OPERATION`.
pub(super) const FLTFL_CALLBACK_DATA_IRP_OPERATION: u32 = 1;
pub(super) const FLTFL_CALLBACK_DATA_FAST_IO_OPERATION: u32 = 2;

fn run_write_as(
    op: &WriteOp,
    file: &OpenFile,
    instance: isize,
    filter: isize,
    fast_io_disallowed: bool,
) -> CallbackTiming {
    let mut timing = CallbackTiming {
        longest: Duration::ZERO,
    };
    // SAFETY: plain data, filled in below.
    let mut iopb: FLT_IO_PARAMETER_BLOCK = unsafe { std::mem::zeroed() };
    iopb.MajorFunction = IRP_MJ_WRITE as u8;
    iopb.IrpFlags = if op.paging_io { IRP_PAGING_IO } else { 0 };
    iopb.TargetFileObject = (&*file.file_object as *const FILE_OBJECT).cast_mut();
    iopb.TargetInstance = instance;
    let write = WriteParameters {
        length: op.length,
        _align_key: 0,
        key: 0,
        _align_byte_offset: 0,
        byte_offset: op.offset as i64,
        write_buffer: std::ptr::null_mut(),
        mdl_address: std::ptr::null_mut(),
    };
    // SAFETY: WriteParameters fits inside the FLT_PARAMETERS union (checked by the driver).
    unsafe {
        std::ptr::addr_of_mut!(iopb.Parameters)
            .cast::<WriteParameters>()
            .write(write)
    };
    // SAFETY: plain data, filled in below.
    let mut data: FLT_CALLBACK_DATA = unsafe { std::mem::zeroed() };
    data.Flags = if fast_io_disallowed {
        FLTFL_CALLBACK_DATA_FAST_IO_OPERATION
    } else {
        FLTFL_CALLBACK_DATA_IRP_OPERATION
    };
    data.Thread = ETHREAD_BASE + op.op_id as isize;
    data.Iopb = &iopb;
    data.RequestorMode = if op.paging_io { 0 } else { 1 };
    let objects = related_objects(filter, instance, &*file.file_object);
    CURRENT_OP.with(|c| {
        *c.borrow_mut() = Some(CurrentOp {
            pid: op.pid,
            path: Arc::new(Vec::new()),
            shape: NameShape::QueryFails,
            directory: false,
            opened: true,
            delete_on_close: false,
            set_info: None,
        })
    });
    verifier::set_current_pid(op.pid);
    verifier::set_irql(if op.paging_io {
        APC_LEVEL
    } else {
        PASSIVE_LEVEL
    });

    let Some(reg) = enter_callback("PreWrite") else {
        CURRENT_OP.with(|c| *c.borrow_mut() = None);
        return timing;
    };
    let mut completion: *mut c_void = UNWRITTEN_COMPLETION_CONTEXT;
    let start = verifier::callback_clock();
    let pre = match reg.pre_write {
        // SAFETY: the driver's pre-write callback with structures valid for the operation.
        Some(cb) => unsafe { cb(&mut data, &objects, &mut completion) },
        None => 1,
    };
    timing.longest = timing.longest.max(verifier::callback_time(start));
    check_pre_status(pre, "PreWrite");
    leave_pre_callback(pre == 0);
    let completion = written_completion_context(completion, pre == 0, "PreWrite");

    if fast_io_disallowed {
        // The filter below returned FLT_PREOP_DISALLOW_FASTIO: nothing was written, and the
        // Filter Manager sets this status for the filters above.
        data.IoStatus.Anonymous.Status = STATUS_FLT_DISALLOW_FAST_IO;
        data.IoStatus.Information = 0;
    } else {
        data.IoStatus.Anonymous.Status = op.status;
        data.IoStatus.Information = op.bytes_written as usize;
    }

    if pre == 0 {
        let draining = world::with_world(|w| w.unloading).unwrap_or(true);
        verifier::set_in_callback(Some("PostWrite"));
        // Post-write may run at DISPATCH_LEVEL (completion in an arbitrary context).
        verifier::set_irql(if op.post_at_dispatch {
            DISPATCH_LEVEL
        } else {
            PASSIVE_LEVEL
        });
        let flags = if draining {
            FLTFL_POST_OPERATION_DRAINING
        } else {
            0
        };
        let start = verifier::callback_clock();
        let post = match reg.post_write {
            // SAFETY: the driver's post-write callback, same structures.
            Some(cb) => unsafe { cb(&mut data, &objects, completion, flags) },
            None => 0,
        };
        timing.longest = timing.longest.max(verifier::callback_time(start));
        check_post_status(post, "PostWrite");
        leave_callback();
        verifier::set_irql(PASSIVE_LEVEL);
    } else if !completion.is_null() {
        violation(
            "COMPLETION_CONTEXT_LEAK",
            "PreWrite set a completion context but asked for no post-operation callback",
        );
    }
    CURRENT_OP.with(|c| *c.borrow_mut() = None);
    timing
}
