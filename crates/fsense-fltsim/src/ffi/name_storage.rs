//! The storage behind a file name information reference handed to the driver, kept in the
//! simulated kernel's world. A leaf: it imports nothing from the simulator, so the world can hold
//! it without an import circle.

use windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_FILE_NAME_INFORMATION;

/// Name information handed to the driver: the structure and the buffers its strings point
/// into, held as raw pointers (moving a `Box` would invalidate the pointers the driver holds).
pub struct NameInfoStorage {
    pub(super) info: *mut FLT_FILE_NAME_INFORMATION,
    pub(super) name: *mut [u16],
    pub(super) volume: *mut [u16],
}

// SAFETY: the pointers are uniquely owned by this value (from Box::into_raw); the world's mutex
// serialises access to the map that holds them.
unsafe impl Send for NameInfoStorage {}

impl Drop for NameInfoStorage {
    fn drop(&mut self) {
        // SAFETY: each pointer came from Box::into_raw in FltGetFileNameInformation and is freed
        // exactly once, here.
        unsafe {
            drop(Box::from_raw(self.info));
            drop(Box::from_raw(self.name));
            drop(Box::from_raw(self.volume));
        }
    }
}
