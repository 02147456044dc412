//! Registry: the service key and its values.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

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
    let is_key = world::with_world(|w| {
        w.open_handles.get(&(key_handle as usize)) == Some(&HandleKind::RegistryKey)
    })
    .unwrap_or(false);
    if !is_key {
        return STATUS_INVALID_HANDLE;
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
