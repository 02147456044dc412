//! Registration and unload: the registration tables, DriverEntry, the unload and instance callbacks.

use super::*;

/// `FLT_REGISTRATION` holds raw pointers, so it is not `Sync`; ours points only to other statics.
#[repr(transparent)]
struct StaticRegistration(FLT_REGISTRATION);
// SAFETY: the pointed-to tables are immutable statics; the Filter Manager only reads them.
unsafe impl Sync for StaticRegistration {}

#[repr(transparent)]
struct StaticOperations([FLT_OPERATION_REGISTRATION; 7]);
// SAFETY: immutable table of function pointers and integers.
unsafe impl Sync for StaticOperations {}

#[repr(transparent)]
struct StaticContexts([FLT_CONTEXT_REGISTRATION; 2]);
// SAFETY: immutable table of integers and null pointers.
unsafe impl Sync for StaticContexts {}

static OPERATIONS: StaticOperations = StaticOperations([
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_CREATE as u8,
        Flags: 0,
        PreOperation: Some(pre_create),
        PostOperation: Some(post_create),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_WRITE as u8,
        Flags: 0,
        PreOperation: Some(pre_write),
        PostOperation: Some(post_write),
        Reserved1: ptr::null_mut(),
    },
    // Issue 27. Set-information: rename, link, disposition (every other class leaves the
    // pre-operation at once). Cleanup: where a delete becomes real. Prepare-MDL-write: the
    // fast-I/O MDL path (the SMB server's), which IRP_MJ_WRITE never sees. File-system control:
    // block clones (FSCTL_DUPLICATE_EXTENTS_TO_FILE and _EX).
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_SET_INFORMATION as u8,
        Flags: 0,
        PreOperation: Some(pre_set_information),
        PostOperation: Some(post_set_information),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_CLEANUP as u8,
        Flags: 0,
        PreOperation: Some(pre_cleanup),
        PostOperation: Some(post_cleanup),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_PREPARE_MDL_WRITE as u8,
        Flags: 0,
        PreOperation: Some(pre_prepare_mdl_write),
        PostOperation: Some(post_prepare_mdl_write),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_FILE_SYSTEM_CONTROL as u8,
        Flags: 0,
        PreOperation: Some(pre_fs_control),
        PostOperation: Some(post_fs_control),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_OPERATION_END as u8,
        Flags: 0,
        PreOperation: None,
        PostOperation: None,
        Reserved1: ptr::null_mut(),
    },
]);

static CONTEXTS: StaticContexts = StaticContexts([
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_STREAM_CONTEXT as u16,
        Flags: 0,
        ContextCleanupCallback: None,
        Size: FLT_VARIABLE_SIZED_CONTEXTS,
        PoolTag: POOL_TAG,
        ContextAllocateCallback: None,
        ContextFreeCallback: None,
        Reserved1: ptr::null_mut(),
    },
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_CONTEXT_END as u16,
        Flags: 0,
        ContextCleanupCallback: None,
        Size: 0,
        PoolTag: 0,
        ContextAllocateCallback: None,
        ContextFreeCallback: None,
        Reserved1: ptr::null_mut(),
    },
]);

static REGISTRATION: StaticRegistration = StaticRegistration(FLT_REGISTRATION {
    Size: core::mem::size_of::<FLT_REGISTRATION>() as u16,
    Version: FLT_REGISTRATION_VERSION as u16,
    Flags: 0,
    ContextRegistration: CONTEXTS.0.as_ptr(),
    OperationRegistration: OPERATIONS.0.as_ptr(),
    FilterUnloadCallback: Some(filter_unload),
    InstanceSetupCallback: Some(instance_setup),
    InstanceQueryTeardownCallback: Some(instance_query_teardown),
    InstanceTeardownStartCallback: None,
    InstanceTeardownCompleteCallback: None,
    GenerateFileNameCallback: None,
    NormalizeNameComponentCallback: None,
    NormalizeContextCleanupCallback: None,
    TransactionNotificationCallback: None,
    NormalizeNameComponentExCallback: None,
    SectionNotificationCallback: None,
});

/// Storage the driver allocates at load and frees at unload.
static QUEUE_STORAGE: PoolSlot = PoolSlot::new();
static BATCH_BUFFER: PoolSlot = PoolSlot::new();

/// The driver's entry point: allocate everything, register, open the port, start filtering. Any
/// failure unwinds exactly what was set up.
///
/// # Safety
/// Called by the I/O manager with a valid driver object.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *const UNICODE_STRING,
) -> NTSTATUS {
    if driver.is_null() {
        return status::INVALID_PARAMETER;
    }
    #[cfg(feature = "panic-probe")]
    if crate::panic::planted(driver as usize) == 7 {
        return status::INVALID_PARAMETER;
    }
    // SAFETY: the driver object the I/O manager passed us.
    let parameters = unsafe { ParametersKey::open(driver) };
    let read = |name: &[u16]| parameters.as_ref().and_then(|key| key.dword(name));
    let config = sensor::LoadConfig::from_registry_value(read(&QUEUE_CAPACITY_VALUE))
        .with_batch_records(read(&BATCH_RECORDS_VALUE));
    drop(parameters);
    let Some(storage) = QUEUE_STORAGE.allocate(config.queue_bytes()) else {
        return status::INSUFFICIENT_RESOURCES;
    };
    let Some(batch) = BATCH_BUFFER.allocate(fsense_proto::MAX_BATCH_BYTES) else {
        QUEUE_STORAGE.free();
        return status::INSUFFICIENT_RESOURCES;
    };
    sensor::SENSOR.install_queue(storage, &config);
    delivery::install_batch_buffer(batch);
    sensor::SENSOR.worker_wake.init();

    let mut filter: isize = 0;
    // SAFETY: driver is the non-null driver object the I/O manager passed; the registration
    // points to statics that live forever.
    let st = unsafe { FltRegisterFilter(driver, &REGISTRATION.0, &mut filter) };
    if !status::is_success(st) {
        release_storage();
        return st;
    }
    HANDLES.filter.store(filter, Ordering::Release);

    let st = create_port(filter);
    if !status::is_success(st) {
        // SAFETY: registered above and not started: unregistering is the exact inverse.
        unsafe { FltUnregisterFilter(filter) };
        HANDLES.filter.store(0, Ordering::Release);
        release_storage();
        return st;
    }

    let st = start_worker();
    if !status::is_success(st) {
        close_server_port();
        // SAFETY: as above.
        unsafe { FltUnregisterFilter(filter) };
        HANDLES.filter.store(0, Ordering::Release);
        release_storage();
        return st;
    }

    // SAFETY: filter is registered and fully set up.
    let st = unsafe { FltStartFiltering(filter) };
    if !status::is_success(st) {
        close_server_port();
        stop_worker();
        // SAFETY: as above.
        unsafe { FltUnregisterFilter(filter) };
        HANDLES.filter.store(0, Ordering::Release);
        release_storage();
        return st;
    }
    status::SUCCESS
}

fn release_storage() {
    sensor::SENSOR.remove_queue();
    delivery::remove_batch_buffer();
    QUEUE_STORAGE.free();
    BATCH_BUFFER.free();
}

unsafe extern "system" fn filter_unload(_flags: u32) -> NTSTATUS {
    close_server_port();
    stop_worker();
    let filter = HANDLES.filter.load(Ordering::Acquire);
    if filter != 0 {
        // SAFETY: our registered filter; this waits for callbacks in flight, disconnects the
        // client (our disconnect callback closes its port) and tears instances down.
        unsafe { FltUnregisterFilter(filter) };
    }
    // Cleared only now: until FltUnregisterFilter returns, callbacks still run and the
    // disconnect callback passes this handle to FltCloseClientPort (which must not get NULL).
    HANDLES.filter.store(0, Ordering::Release);
    release_storage();
    status::SUCCESS
}

unsafe extern "system" fn instance_setup(
    _objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
    volume_device_type: u32,
    file_system: FLT_FILESYSTEM_TYPE,
) -> NTSTATUS {
    let local_disk = volume_device_type == FILE_DEVICE_DISK_FILE_SYSTEM
        && matches!(
            file_system,
            FLT_FSTYPE_NTFS | FLT_FSTYPE_REFS | FLT_FSTYPE_FAT | FLT_FSTYPE_EXFAT
        );
    if local_disk {
        status::SUCCESS
    } else {
        status::FLT_DO_NOT_ATTACH
    }
}

unsafe extern "system" fn instance_query_teardown(
    _objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
) -> NTSTATUS {
    // Manual detach (fltmc detach) is allowed: the sensor holds nothing per instance but
    // stream contexts, which the Filter Manager tears down.
    status::SUCCESS
}
