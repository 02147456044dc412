//! Registration and unload: `FltRegisterFilter`, `FltStartFiltering`, `FltUnregisterFilter`, and calling the driver's entry point and unload callback.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltRegisterFilter(
    driver: *const DRIVER_OBJECT,
    registration: *const FLT_REGISTRATION,
    ret_filter: *mut isize,
) -> NTSTATUS {
    // `nf-fltkernel-fltregisterfilter`: PASSIVE_LEVEL, the caller's own driver object, once.
    require_irql(PASSIVE_LEVEL, "FltRegisterFilter");
    let (ours, registered) =
        world::with_world(|w| (w.driver_object == driver as usize, w.registration.is_some()))
            .unwrap_or((false, false));
    if !ours {
        violation(
            "REGISTER_DRIVER_OBJECT",
            "FltRegisterFilter with a driver object other than DriverEntry's",
        );
        return STATUS_INVALID_PARAMETER;
    }
    if registered {
        violation(
            "REGISTER_TWICE",
            "FltRegisterFilter while the filter is registered",
        );
        return STATUS_INVALID_PARAMETER;
    }
    if fails(FailPoint::RegisterFilter) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if registration.is_null() || ret_filter.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null pointer to the driver's static registration.
    let reg = unsafe { &*registration };
    if usize::from(reg.Size) != std::mem::size_of::<FLT_REGISTRATION>() {
        violation(
            "REGISTRATION_SIZE",
            format!("FLT_REGISTRATION.Size {}", reg.Size),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let mut r = Registration {
        pre_create: None,
        post_create: None,
        pre_write: None,
        post_write: None,
        pre_set_info: None,
        post_set_info: None,
        pre_cleanup: None,
        post_cleanup: None,
        pre_fsctl: None,
        post_fsctl: None,
        pre_prepare_mdl_write: None,
        post_prepare_mdl_write: None,
        unload: reg.FilterUnloadCallback,
        instance_setup: reg.InstanceSetupCallback,
        stream_contexts_registered: false,
    };
    let mut ops: *const FLT_OPERATION_REGISTRATION = reg.OperationRegistration;
    let mut terminated = false;
    for _ in 0..64 {
        if ops.is_null() {
            break;
        }
        // SAFETY: within the driver's operation table, which ends with IRP_MJ_OPERATION_END
        // (checked: we stop there and give up after 64 entries).
        let op = unsafe { &*ops };
        if op.MajorFunction == IRP_MJ_OPERATION_END as u8 {
            terminated = true;
            break;
        }
        match u32::from(op.MajorFunction) {
            IRP_MJ_CREATE => (r.pre_create, r.post_create) = (op.PreOperation, op.PostOperation),
            IRP_MJ_WRITE => (r.pre_write, r.post_write) = (op.PreOperation, op.PostOperation),
            IRP_MJ_SET_INFORMATION => {
                (r.pre_set_info, r.post_set_info) = (op.PreOperation, op.PostOperation)
            }
            IRP_MJ_CLEANUP => (r.pre_cleanup, r.post_cleanup) = (op.PreOperation, op.PostOperation),
            IRP_MJ_FILE_SYSTEM_CONTROL => {
                (r.pre_fsctl, r.post_fsctl) = (op.PreOperation, op.PostOperation)
            }
            // The fast I/O pseudo-major codes are negative UCHARs: IRP_MJ_PREPARE_MDL_WRITE is
            // (UCHAR)-17 (`ns-fltkernel-_flt_operation_registration`).
            m if m == u32::from(IRP_MJ_PREPARE_MDL_WRITE as u8) => {
                (r.pre_prepare_mdl_write, r.post_prepare_mdl_write) =
                    (op.PreOperation, op.PostOperation)
            }
            _ => {}
        }
        // SAFETY: the next entry exists because this one was not the terminator.
        ops = unsafe { ops.add(1) };
    }
    if !terminated {
        violation(
            "REGISTRATION_TABLE",
            "operation table not terminated by IRP_MJ_OPERATION_END",
        );
        return STATUS_INVALID_PARAMETER;
    }
    let mut ctx = reg.ContextRegistration;
    for _ in 0..16 {
        if ctx.is_null() {
            break;
        }
        // SAFETY: within the driver's context table, terminated by FLT_CONTEXT_END.
        let c = unsafe { &*ctx };
        if u32::from(c.ContextType) == FLT_CONTEXT_END {
            break;
        }
        if u32::from(c.ContextType) == FLT_STREAM_CONTEXT {
            r.stream_contexts_registered = true;
        }
        // SAFETY: as above.
        ctx = unsafe { ctx.add(1) };
    }
    remember_watched(&r);
    let handle = world::with_world(|w| {
        w.registration = Some(r);
        w.filter_handle = w.new_handle() as isize;
        w.filter_handle
    });
    match handle {
        Some(h) => {
            // SAFETY: non-null out pointer.
            unsafe { ret_filter.write(h) };
            STATUS_SUCCESS
        }
        None => STATUS_INSUFFICIENT_RESOURCES,
    }
}

/// Volumes the simulated machine has: (device type, file system, name).
pub const VOLUMES: [(u32, FLT_FILESYSTEM_TYPE, &str); 3] = [
    (0x08, 2, "NTFS disk"), // FILE_DEVICE_DISK_FILE_SYSTEM, FLT_FSTYPE_NTFS
    (0x14, 6, "LANMAN redirector"), // FILE_DEVICE_NETWORK_FILE_SYSTEM, FLT_FSTYPE_LANMAN
    (0x11, 25, "named pipes"), // FILE_DEVICE_NAMED_PIPE, FLT_FSTYPE_NPFS
];

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltStartFiltering(filter: isize) -> NTSTATUS {
    // `nf-fltkernel-fltstartfiltering`: PASSIVE_LEVEL, once, on the registered filter.
    require_irql(PASSIVE_LEVEL, "FltStartFiltering");
    if world::with_world(|w| w.filter_started).unwrap_or(false) {
        violation(
            "START_TWICE",
            "FltStartFiltering on a filter already started",
        );
        return STATUS_INVALID_PARAMETER;
    }
    if fails(FailPoint::StartFiltering) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let reg = world::with_world(|w| {
        (w.filter_handle == filter)
            .then_some(w.registration)
            .flatten()
    })
    .flatten();
    let Some(reg) = reg else {
        violation(
            "START_UNREGISTERED",
            "FltStartFiltering on a filter that is not registered",
        );
        return STATUS_INVALID_PARAMETER;
    };
    let mut instances = Vec::new();
    for (i, (device, fs, _)) in VOLUMES.iter().enumerate() {
        let instance = 0x4000 + i as isize;
        let objects = related_objects(filter, instance, std::ptr::null());
        let attach = match reg.instance_setup {
            // SAFETY: the driver's instance-setup callback, called at PASSIVE_LEVEL with a valid
            // related-objects structure, as the Filter Manager does.
            Some(cb) => (unsafe { cb(&objects, 0, *device, *fs) }) >= 0,
            None => true,
        };
        instances.push((instance, attach));
    }
    world::with_world(|w| {
        w.instances = instances;
        w.filter_started = true;
    });
    STATUS_SUCCESS
}

pub(super) fn related_objects(
    filter: isize,
    instance: isize,
    file: *const FILE_OBJECT,
) -> FLT_RELATED_OBJECTS {
    FLT_RELATED_OBJECTS {
        Size: std::mem::size_of::<FLT_RELATED_OBJECTS>() as u16,
        TransactionContext: 0,
        Filter: filter,
        Volume: instance + 0x100,
        Instance: instance,
        FileObject: file,
        Transaction: std::ptr::null(),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltUnregisterFilter(filter: isize) {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_UNREGISTER", "FltUnregisterFilter above PASSIVE_LEVEL");
    }
    if let Some(cb) = verifier::in_callback() {
        violation(
            "UNREGISTER_IN_CALLBACK",
            format!("FltUnregisterFilter from {cb}"),
        );
    }
    let ok = world::with_world(|w| w.filter_handle == filter && w.registration.is_some())
        .unwrap_or(false);
    if !ok {
        violation(
            "UNREGISTER_UNKNOWN",
            "FltUnregisterFilter on a filter that is not registered",
        );
        return;
    }
    // I/O keeps reaching the driver until the Filter Manager tears the instances down inside
    // this call (`nf-fltkernel-fltunregisterfilter`: it waits for outstanding operations; the
    // ctx sample reads the filter from FltObjects for this reason): one more open-for-write and
    // write arrive now, before new operations stop, so a driver that already dropped its filter
    // handle is caught deterministically, not only when a real thread happens to race.
    io_racing_unload(filter);
    world::with_world(|w| w.unloading = true);
    // A connected client is disconnected here, inside FltUnregisterFilter
    // (`nf-fltkernel-fltcloseclientport`, Remarks: "when the minifilter driver is about to be
    // unloaded"): the driver's disconnect callback runs now and must close its client port.
    disconnect_client();
    // Wait for callbacks in flight (new operations no longer reach the driver).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let in_flight = world::with_world(|w| w.callbacks_in_flight).unwrap_or(0);
        if in_flight == 0 {
            break;
        }
        if Instant::now() > deadline {
            violation(
                "UNREGISTER_HANG",
                format!("{in_flight} callbacks still in flight after 10 s"),
            );
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Instance teardown: detach every stream context (the stream's reference goes away).
    let attached: Vec<usize> =
        world::with_world(|w| w.stream_contexts.drain().map(|(_, c)| c).collect())
            .unwrap_or_default();
    for ctx in attached {
        release_context_ref(ctx, true);
    }
    world::with_world(|w| {
        w.registration = None;
        w.retired_filters.push(filter);
        w.filter_handle = 0;
        // Torn down: an instance handle used after this is stale.
        for (_, attached) in &mut w.instances {
            *attached = false;
        }
    });
}

/// Set when the driver's unload callback is about to be called (reset at each load): an
/// operation whose callbacks all returned before it was reported if the driver reports it.
static UNLOAD_BEGUN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the last registered driver watches (bits below), kept after FltUnregisterFilter so that
/// records delivered during and after unload are checked against the driver that made them.
static WATCHED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
const WATCHES_SET_INFO: u8 = 1;
const WATCHES_CLEANUP: u8 = 2;
const WATCHES_FSCTL: u8 = 4;
const WATCHES_PREPARE_MDL_WRITE: u8 = 8;

fn remember_watched(r: &Registration) {
    let bits = if r.pre_set_info.is_some() {
        WATCHES_SET_INFO
    } else {
        0
    } | if r.pre_cleanup.is_some() || r.post_cleanup.is_some() {
        WATCHES_CLEANUP
    } else {
        0
    } | if r.pre_fsctl.is_some() {
        WATCHES_FSCTL
    } else {
        0
    } | if r.pre_prepare_mdl_write.is_some() {
        WATCHES_PREPARE_MDL_WRITE
    } else {
        0
    };
    WATCHED.store(bits, Ordering::Release);
}

/// Whether the loaded driver registered the callbacks that can see `op`'s change (a driver
/// that does not watch an operation cannot be held to report it; the run counts those apart).
pub fn watches(op: &crate::plan::PlannedOp) -> bool {
    use crate::plan::PlannedOp;
    let bits = WATCHED.load(Ordering::Acquire);
    let need = match op {
        PlannedOp::SetInfo(_) => WATCHES_SET_INFO,
        PlannedOp::Cleanup(_) => WATCHES_CLEANUP,
        PlannedOp::Fsctl(_) => WATCHES_FSCTL,
        PlannedOp::MdlWrite(_) => WATCHES_PREPARE_MDL_WRITE,
        PlannedOp::Create(_) | PlannedOp::Write(_) => 0,
    };
    bits & need == need
}

/// Whether the loaded driver registered IRP_MJ_SET_INFORMATION (so it can follow renames).
pub fn watches_renames() -> bool {
    WATCHED.load(Ordering::Acquire) & WATCHES_SET_INFO != 0
}

pub fn unload_begun() -> bool {
    UNLOAD_BEGUN.load(Ordering::Acquire)
}

/// Calls the driver's entry point with a fake driver object and the service key path.
pub fn call_driver_entry() -> NTSTATUS {
    UNLOAD_BEGUN.store(false, Ordering::Release);
    WATCHED.store(0, Ordering::Release);
    // SAFETY: DRIVER_OBJECT is plain data; the driver only passes its address to
    // FltRegisterFilter, which the simulator does not dereference.
    let mut driver: Box<DRIVER_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    let mut path = world::with_world(|w| w.registry_path.clone()).unwrap_or_default();
    let registry_path = UNICODE_STRING {
        Length: (path.len() * 2) as u16,
        MaximumLength: (path.len() * 2) as u16,
        Buffer: path.as_mut_ptr(),
    };
    world::with_world(|w| w.driver_object = &*driver as *const DRIVER_OBJECT as usize);
    verifier::set_irql(PASSIVE_LEVEL);
    // SAFETY: the driver's entry point, called once per load at PASSIVE_LEVEL with a driver
    // object and registry path that outlive the call.
    unsafe { fsense_driver::ffi::DriverEntry(&mut *driver, &registry_path) }
}

/// Unloads the driver as `fltmc unload` would: calls its unload callback at PASSIVE_LEVEL.
pub fn call_unload() -> Option<NTSTATUS> {
    let unload = world::with_world(|w| w.registration.and_then(|r| r.unload)).flatten()?;
    UNLOAD_BEGUN.store(true, Ordering::Release);
    verifier::set_irql(PASSIVE_LEVEL);
    // SAFETY: the driver's unload callback, at PASSIVE_LEVEL, outside any I/O callback.
    Some(unsafe { unload(0) })
}
