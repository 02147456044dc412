//! Registry: the load-time settings under the service's `Parameters` key.

use super::*;

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn ZwQueryValueKey(
        key_handle: HANDLE,
        value_name: *const UNICODE_STRING,
        information_class: i32,
        information: *mut c_void,
        length: u32,
        result_length: *mut u32,
    ) -> NTSTATUS;
}

/// Name of the REG_DWORD under the service's `Parameters` key that sets the queue capacity (records).
pub(super) static QUEUE_CAPACITY_VALUE: [u16; 13] = ascii_utf16(b"QueueCapacity");
/// Name of the REG_DWORD that caps records per batch (1 = one message per event).
pub(super) static BATCH_RECORDS_VALUE: [u16; 12] = ascii_utf16(b"BatchRecords");
const KEY_READ: u32 = 0x0002_0019;
const KEY_VALUE_PARTIAL_INFORMATION: i32 = 2;
const REG_DWORD: u32 = 4;

/// The service's `Parameters` subkey, open for reading; closed when dropped.
///
/// Invariant: `handle` is an open kernel handle from `IoOpenDriverRegistryKey`, closed once.
pub(super) struct ParametersKey {
    handle: HANDLE,
}

impl ParametersKey {
    /// Opens `Parameters` through `IoOpenDriverRegistryKey(DriverRegKeyParameters)`, the path
    /// driver package isolation allows (no absolute registry path). DriverEntry only (PASSIVE).
    ///
    /// # Safety
    /// `driver` must be the driver object the I/O manager passed to DriverEntry.
    pub(super) unsafe fn open(driver: *const DRIVER_OBJECT) -> Option<Self> {
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: our driver object (caller's contract), a valid out pointer, flags 0.
        let st = unsafe {
            IoOpenDriverRegistryKey(driver, DriverRegKeyParameters, KEY_READ, 0, &mut handle)
        };
        (status::is_success(st) && !handle.is_null()).then_some(Self { handle })
    }

    /// Reads a REG_DWORD value. Any failure reads as "not set".
    pub(super) fn dword(&self, name: &[u16]) -> Option<u32> {
        let value_name = UNICODE_STRING {
            Length: (name.len() * 2) as u16,
            MaximumLength: (name.len() * 2) as u16,
            Buffer: name.as_ptr().cast_mut(),
        };
        // KEY_VALUE_PARTIAL_INFORMATION: TitleIndex, Type, DataLength, then the data.
        let mut info = [0u32; 5];
        let mut returned: u32 = 0;
        // SAFETY: the key is open (type invariant); the buffer is 20 writable, 4-aligned bytes
        // and its size is passed.
        let st = unsafe {
            ZwQueryValueKey(
                self.handle,
                &value_name,
                KEY_VALUE_PARTIAL_INFORMATION,
                info.as_mut_ptr().cast(),
                core::mem::size_of_val(&info) as u32,
                &mut returned,
            )
        };
        let [_, value_type, data_len, data, _] = info;
        (status::is_success(st) && returned >= 16 && value_type == REG_DWORD && data_len == 4)
            .then_some(data)
    }
}

impl Drop for ParametersKey {
    fn drop(&mut self) {
        // SAFETY: type invariant: our open handle, closed exactly once (here).
        unsafe { ObCloseHandle(self.handle, KERNEL_MODE) };
    }
}
