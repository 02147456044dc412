//! fsense minifilter (the driver is being written; this entry point is a stand-in that lets the
//! packaging flow build a real image meanwhile).
#![no_std]

use core::ffi::c_void;

/// Stand-in entry point: refuses to load (STATUS_NOT_IMPLEMENTED) until the driver lands.
#[unsafe(no_mangle)]
pub extern "system" fn DriverEntry(_driver: *mut c_void, _registry_path: *const c_void) -> i32 {
    0xC000_0002_u32 as i32
}

#[cfg(all(target_os = "windows", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
