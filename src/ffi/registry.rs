//! Registry: the load-time settings of the service key.

use super::*;

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn ZwOpenKey(
        key_handle: *mut HANDLE,
        desired_access: u32,
        object_attributes: *const OBJECT_ATTRIBUTES,
    ) -> NTSTATUS;
    fn ZwQueryValueKey(
        key_handle: HANDLE,
        value_name: *const UNICODE_STRING,
        information_class: i32,
        information: *mut c_void,
        length: u32,
        result_length: *mut u32,
    ) -> NTSTATUS;
}

/// Name of the REG_DWORD under the service key that sets the queue capacity (records).
pub(super) static QUEUE_CAPACITY_VALUE: [u16; 13] = ascii_utf16(b"QueueCapacity");
/// Name of the REG_DWORD that caps records per batch (1 = one message per event).
pub(super) static BATCH_RECORDS_VALUE: [u16; 12] = ascii_utf16(b"BatchRecords");
const KEY_READ: u32 = 0x0002_0019;
const KEY_VALUE_PARTIAL_INFORMATION: i32 = 2;
const REG_DWORD: u32 = 4;

/// Reads a REG_DWORD value of the service key. Any failure reads as "not set".
pub(super) fn read_dword_value(key_path: &UNICODE_STRING, name: &[u16]) -> Option<u32> {
    // SAFETY: the I/O manager's registry path, valid during DriverEntry (our only caller).
    unsafe { unicode_string_bytes(key_path) }.ok()?;
    let oa = OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: ptr::null_mut(),
        ObjectName: key_path,
        Attributes: OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
        SecurityDescriptor: ptr::null(),
        SecurityQualityOfService: ptr::null(),
    };
    let mut key: HANDLE = ptr::null_mut();
    // SAFETY: valid out pointer; the attributes name a checked UNICODE_STRING.
    let st = unsafe { ZwOpenKey(&mut key, KEY_READ, &oa) };
    if !status::is_success(st) {
        return None;
    }
    let value_name = UNICODE_STRING {
        Length: (name.len() * 2) as u16,
        MaximumLength: (name.len() * 2) as u16,
        Buffer: name.as_ptr().cast_mut(),
    };
    // KEY_VALUE_PARTIAL_INFORMATION: TitleIndex, Type, DataLength, then the data.
    let mut info = [0u32; 5];
    let mut returned: u32 = 0;
    // SAFETY: key is open; the buffer is 20 writable, 4-aligned bytes and its size is passed.
    let st = unsafe {
        ZwQueryValueKey(
            key,
            &value_name,
            KEY_VALUE_PARTIAL_INFORMATION,
            info.as_mut_ptr().cast(),
            core::mem::size_of_val(&info) as u32,
            &mut returned,
        )
    };
    // SAFETY: we opened this handle above and close it once.
    unsafe { ObCloseHandle(key, KERNEL_MODE) };
    let [_, value_type, data_len, data, _] = info;
    (status::is_success(st) && returned >= 16 && value_type == REG_DWORD && data_len == 4)
        .then_some(data)
}
