//! Pool memory: non-paged allocations held for the driver's lifetime.

use super::*;

// `+verbatim`: the module name is exactly `ntoskrnl.exe` (rustc would otherwise append `.dll`).
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    fn ExAllocatePool2(flags: u64, number_of_bytes: usize, tag: u32) -> *mut c_void;
    fn ExFreePoolWithTag(p: *mut c_void, tag: u32);
}

/// One non-paged allocation held in a static for the driver's lifetime.
///
/// Invariant: when `ptr` is non-null it is a live (not freed) allocation from `ExAllocatePool2`
/// with [`POOL_TAG`], exclusively owned through the slice [`PoolSlot::allocate`] returned until
/// [`PoolSlot::free`].
pub struct PoolSlot {
    /// Release store (DriverEntry), Acquire load and AcqRel swap (DriverEntry, unload): a
    /// published pointer. Not what orders the memory's uses before the free: the worker's join
    /// and `FltUnregisterFilter` (which waits for callbacks in flight) do that; the swap makes
    /// the free happen once.
    ptr: AtomicPtr<u8>,
}

impl Default for PoolSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolSlot {
    pub const fn new() -> Self {
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Allocates `len` non-paged bytes. Returns the memory for the caller to own until `free`.
    /// Only called from DriverEntry, before any callback can run.
    pub fn allocate(&self, len: usize) -> Option<&'static mut [u8]> {
        if len == 0 || !self.ptr.load(Ordering::Acquire).is_null() {
            return None;
        }
        // SAFETY: plain allocation call; a null return is handled below.
        let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, len, POOL_TAG) }.cast::<u8>();
        if p.is_null() {
            return None;
        }
        self.ptr.store(p, Ordering::Release);
        // SAFETY: p is a fresh, zero-initialised, non-paged allocation of len bytes that nothing
        // else references; it stays valid until `free`, which the owner calls only after dropping
        // every use of this slice (unload, after the worker has been joined).
        Some(unsafe { core::slice::from_raw_parts_mut(p, len) })
    }

    /// Frees the allocation, if any. The caller must hold no borrow of it any more.
    pub fn free(&self) {
        let p = self.ptr.swap(ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: p came from ExAllocatePool2 with POOL_TAG and was not freed (swap makes
            // this the only free); the caller has dropped every borrow (see allocate).
            unsafe { ExFreePoolWithTag(p.cast(), POOL_TAG) };
        }
    }
}
