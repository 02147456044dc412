//! One operation through a driver's pre- and post-operation callbacks, the way the Filter
//! Manager sequences them, for the operations beyond create and write (set-information,
//! cleanup, file system control, PREPARE_MDL_WRITE, and the MDL forms of IRP_MJ_WRITE).
//!
//! What it enforces, from Microsoft's pages:
//! - `nc-fltkernel-pflt_pre_operation_callback`: a pre-operation returns one of the documented
//!   statuses; fsense never pends or completes, so SUCCESS_WITH_CALLBACK, SUCCESS_NO_CALLBACK and
//!   SYNCHRONIZE are the ones that fit a sensor.
//! - `ifs/returning-flt-preop-synchronize`: SYNCHRONIZE needs a post-operation callback, and the
//!   post-operation then runs at IRQL <= APC_LEVEL in the same thread; for a fast I/O operation
//!   it counts as SUCCESS_WITH_CALLBACK.
//! - `ifs/writing-postoperation-callback-routines`: otherwise the post-operation of an IRP
//!   operation may run at DISPATCH_LEVEL in an arbitrary thread; the post-operation of a fast
//!   I/O operation runs at PASSIVE_LEVEL in the same thread.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

/// `FLT_PREOP_SYNCHRONIZE`.
pub(super) const FLT_PREOP_SYNCHRONIZE: i32 = 5;

/// How one operation reaches the driver.
pub(super) struct OpSpec {
    pub pre_name: &'static str,
    pub post_name: &'static str,
    pub callbacks: fn(&Registration) -> (PFLT_PRE_OPERATION_CALLBACK, PFLT_POST_OPERATION_CALLBACK),
    pub fast_io: bool,
    /// An unsynchronized post-operation of an IRP operation runs at DISPATCH_LEVEL this time.
    pub post_at_dispatch: bool,
    pub pre_irql: u8,
}

/// Runs the pre-operation callback, then `file_system` (which completes the operation: sets
/// `IoStatus`), then the post-operation callback if one was asked for. Returns the longest
/// callback time.
pub(super) fn call_operation(
    spec: &OpSpec,
    data: &mut FLT_CALLBACK_DATA,
    objects: &FLT_RELATED_OBJECTS,
    file_system: impl FnOnce(&mut FLT_CALLBACK_DATA),
) -> Duration {
    let mut longest = Duration::ZERO;
    verifier::set_irql(spec.pre_irql);
    let Some(reg) = enter_callback(spec.pre_name) else {
        file_system(data);
        return longest;
    };
    let (pre_cb, post_cb) = (spec.callbacks)(&reg);
    let mut completion: *mut c_void = UNWRITTEN_COMPLETION_CONTEXT;
    let start = verifier::callback_clock();
    let pre = match pre_cb {
        // SAFETY: the driver's pre-operation callback with callback data, related objects and a
        // completion-context slot that live for the whole operation, at the operation's IRQL.
        Some(cb) => unsafe { cb(data, objects, &mut completion) },
        None => 1,
    };
    longest = longest.max(verifier::callback_time(start));
    if !matches!(pre, 0 | 1 | FLT_PREOP_SYNCHRONIZE) {
        violation(
            "CALLBACK_RETURN",
            format!("{} returned {pre}", spec.pre_name),
        );
    }
    let synchronized = pre == FLT_PREOP_SYNCHRONIZE && !spec.fast_io;
    if pre == FLT_PREOP_SYNCHRONIZE && post_cb.is_none() {
        violation(
            "SYNCHRONIZE_WITHOUT_POST_CALLBACK",
            format!(
                "{} returned FLT_PREOP_SYNCHRONIZE with no post-operation callback registered",
                spec.pre_name
            ),
        );
    }
    let wants_post = (pre == 0 || pre == FLT_PREOP_SYNCHRONIZE) && post_cb.is_some();
    leave_pre_callback(wants_post);
    let completion = written_completion_context(completion, wants_post, spec.pre_name);
    if !wants_post && !completion.is_null() {
        violation(
            "COMPLETION_CONTEXT_LEAK",
            format!(
                "{} set a completion context but asked for no post-operation callback",
                spec.pre_name
            ),
        );
    }

    file_system(data);

    if let (true, Some(post)) = (wants_post, post_cb) {
        let draining = world::with_world(|w| w.unloading).unwrap_or(true);
        verifier::set_in_callback(Some(spec.post_name));
        let safe = synchronized || spec.fast_io;
        verifier::set_post_op_safe(Some(safe));
        verifier::set_irql(if !safe && spec.post_at_dispatch {
            DISPATCH_LEVEL
        } else if synchronized {
            spec.pre_irql
        } else {
            PASSIVE_LEVEL
        });
        let flags = if draining {
            FLTFL_POST_OPERATION_DRAINING
        } else {
            0
        };
        let start = verifier::callback_clock();
        // SAFETY: the driver's post-operation callback with the same structures, at the IRQL
        // the Filter Manager would use, with the completion context its pre-operation wrote.
        let status = unsafe { post(data, objects, completion, flags) };
        longest = longest.max(verifier::callback_time(start));
        check_post_status(status, spec.post_name);
        verifier::set_post_op_safe(None);
        leave_callback();
    }
    verifier::set_irql(PASSIVE_LEVEL);
    longest
}

/// Callback data for an operation on `file`, by the thread `op_id` names.
pub(super) fn callback_data(
    iopb: &FLT_IO_PARAMETER_BLOCK,
    op_id: u32,
    fast_io: bool,
) -> FLT_CALLBACK_DATA {
    // SAFETY: plain data; all-zero is valid, filled in below.
    let mut data: FLT_CALLBACK_DATA = unsafe { std::mem::zeroed() };
    data.Flags = if fast_io {
        FLTFL_CALLBACK_DATA_FAST_IO_OPERATION
    } else {
        FLTFL_CALLBACK_DATA_IRP_OPERATION
    };
    data.Thread = ETHREAD_BASE + op_id as isize;
    data.Iopb = iopb;
    data.RequestorMode = 1; // UserMode
    data
}

/// A parameter block for `major` on `file`, with `params` written at the start of the
/// `Parameters` union.
pub(super) fn parameter_block<P>(
    major: u8,
    minor: u8,
    file: &OpenFile,
    instance: isize,
    params: P,
) -> FLT_IO_PARAMETER_BLOCK {
    const {
        assert!(std::mem::size_of::<P>() <= std::mem::size_of::<FLT_PARAMETERS>());
        assert!(std::mem::align_of::<P>() <= std::mem::align_of::<FLT_PARAMETERS>());
    }
    // SAFETY: plain data, filled in below.
    let mut iopb: FLT_IO_PARAMETER_BLOCK = unsafe { std::mem::zeroed() };
    iopb.MajorFunction = major;
    iopb.MinorFunction = minor;
    iopb.TargetFileObject = (&*file.file_object as *const FILE_OBJECT).cast_mut();
    iopb.TargetInstance = instance;
    // SAFETY: `P` fits the union with no stricter alignment (checked at compile time above).
    unsafe {
        std::ptr::addr_of_mut!(iopb.Parameters)
            .cast::<P>()
            .write(params)
    };
    iopb
}

/// Sets the per-thread state the Filter Manager functions consult during one operation.
pub(super) fn begin_op(pid: u32, path: Arc<Vec<u16>>, set_info: Option<set_info::SetInfoContext>) {
    CURRENT_OP.with(|c| {
        *c.borrow_mut() = Some(CurrentOp {
            pid,
            path,
            shape: NameShape::Valid,
            directory: false,
            opened: true,
            delete_on_close: false,
            set_info,
        })
    });
    verifier::set_current_pid(pid);
}

pub(super) fn end_op() {
    CURRENT_OP.with(|c| *c.borrow_mut() = None);
}

/// A buffer of exactly `len` bytes (8-aligned, or at an odd address when `unaligned`) that ends
/// where its allocation ends: a read past it is a read outside any allocation, which Miri
/// reports (`scripts/test.sh` runs the simulator under Miri) and which a sanitizer would.
pub(super) struct ExactBuffer {
    base: *mut u8,
    layout: std::alloc::Layout,
    offset: usize,
}

impl ExactBuffer {
    pub fn new(bytes: &[u8], unaligned: bool) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        let offset = usize::from(unaligned);
        let layout = std::alloc::Layout::from_size_align(bytes.len() + offset, 8).ok()?;
        // SAFETY: non-zero size.
        let base = unsafe { std::alloc::alloc(layout) };
        if base.is_null() {
            return None;
        }
        // SAFETY: `base` has `bytes.len() + offset` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(offset), bytes.len()) };
        Some(Self {
            base,
            layout,
            offset,
        })
    }

    pub fn ptr(&self) -> *mut c_void {
        // SAFETY: within (or one past the start of) the allocation.
        unsafe { self.base.add(self.offset) }.cast()
    }
}

impl Drop for ExactBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.base, self.layout) };
    }
}

/// A user-mode address the driver must never dereference (a METHOD_NEITHER FSCTL's input): a
/// page with no access at all where the host allows it, so a read crashes the test at once.
pub(super) fn untouchable_user_address() -> *mut c_void {
    #[cfg(all(unix, not(miri)))]
    {
        static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let page = *PAGE.get_or_init(|| {
            // SAFETY: an anonymous private mapping with no access; never unmapped (one page for
            // the process's lifetime).
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED { 0 } else { p as usize }
        });
        if page != 0 {
            return page as *mut c_void;
        }
    }
    // No such page: an address in the user half that no allocation of this process has.
    0x0000_7FFE_0000_1000_usize as *mut c_void
}
