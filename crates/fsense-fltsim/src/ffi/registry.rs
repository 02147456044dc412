//! Registry: the service key and its values.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

/// Reference: `nf-wdm-ioopendriverregistrykey`: DriverObject is the caller's driver object,
/// RegKeyType a DRIVER_REGKEY_TYPE (Parameters = 0), Flags reserved (0), PASSIVE_LEVEL. The
/// driver-isolation way to reach `Parameters` (no absolute registry path).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoOpenDriverRegistryKey(
    driver_object: *const DRIVER_OBJECT,
    reg_key_type: i32,
    _desired_access: u32,
    flags: u32,
    driver_reg_key: *mut HANDLE,
) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation(
            "IRQL_REGISTRY",
            "IoOpenDriverRegistryKey above PASSIVE_LEVEL",
        );
    }
    let ours = world::with_world(|w| w.driver_object == driver_object as usize).unwrap_or(false);
    if !ours || driver_reg_key.is_null() || flags != 0 {
        violation(
            "REGISTRY_KEY_ARGUMENTS",
            "IoOpenDriverRegistryKey needs the caller's driver object, flags 0 and an out pointer",
        );
        return STATUS_INVALID_PARAMETER;
    }
    if reg_key_type != 0 {
        return STATUS_OBJECT_NAME_NOT_FOUND; // the simulator has only Parameters
    }
    let handle = world::with_world(|w| {
        let h = w.new_handle();
        w.open_handles.insert(h, HandleKind::ParametersKey);
        h
    });
    match handle {
        Some(h) => {
            // SAFETY: non-null out pointer.
            unsafe { driver_reg_key.write(h as HANDLE) };
            STATUS_SUCCESS
        }
        None => STATUS_INSUFFICIENT_RESOURCES,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwOpenKey(
    key_handle: *mut HANDLE,
    _desired_access: u32,
    object_attributes: *const OBJECT_ATTRIBUTES,
) -> NTSTATUS {
    if verifier::irql() != PASSIVE_LEVEL {
        violation("IRQL_REGISTRY", "ZwOpenKey above PASSIVE_LEVEL");
    }
    if key_handle.is_null() || object_attributes.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null pointer to the driver's OBJECT_ATTRIBUTES.
    let oa = unsafe { &*object_attributes };
    let name = read_unicode(oa.ObjectName);
    let handle = world::with_world(|w| {
        (name.as_deref() == Some(w.registry_path.as_slice())).then(|| {
            let h = w.new_handle();
            w.open_handles.insert(h, HandleKind::RegistryKey);
            h
        })
    })
    .flatten();
    match handle {
        Some(h) => {
            // SAFETY: non-null out pointer.
            unsafe { key_handle.write(h as HANDLE) };
            STATUS_SUCCESS
        }
        None => STATUS_OBJECT_NAME_NOT_FOUND,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwQueryValueKey(
    key_handle: HANDLE,
    value_name: *const UNICODE_STRING,
    information_class: i32,
    information: *mut c_void,
    length: u32,
    result_length: *mut u32,
) -> NTSTATUS {
    let kind = world::with_world(|w| w.open_handles.get(&(key_handle as usize)).copied()).flatten();
    match kind {
        Some(HandleKind::ParametersKey) => {}
        // The INF writes the settings under Parameters; the service key's root has none.
        Some(HandleKind::RegistryKey) => return STATUS_OBJECT_NAME_NOT_FOUND,
        _ => {
            violation(
                "REGISTRY_HANDLE",
                format!("ZwQueryValueKey on {key_handle:p}, not an open key"),
            );
            return STATUS_INVALID_HANDLE;
        }
    }
    let name = read_unicode(value_name).map(|u| String::from_utf16_lossy(&u));
    if information_class != KEY_VALUE_PARTIAL_INFORMATION {
        return STATUS_INVALID_PARAMETER;
    }
    let value = world::with_world(|w| match name.as_deref() {
        Some("QueueCapacity") => Some(w.queue_capacity),
        Some("BatchRecords") if w.batch_records != 0 => Some(w.batch_records),
        _ => None,
    })
    .flatten();
    let Some(capacity) = value else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    let mut bytes = Vec::with_capacity(16);
    for v in [0u32, 4 /* REG_DWORD */, 4, capacity] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    if !result_length.is_null() {
        // SAFETY: non-null out pointer.
        unsafe { result_length.write(bytes.len() as u32) };
    }
    if (length as usize) < bytes.len() || information.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    // SAFETY: the driver's buffer holds `length` >= 16 writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), information.cast::<u8>(), bytes.len()) };
    STATUS_SUCCESS
}
