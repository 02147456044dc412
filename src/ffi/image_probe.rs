//! Test only (feature `image-probe`): code that breaks both rules `fsense-pkgcheck` reads in the
//! built image, so its package test shows the checks failing on real compiler output, not only on
//! the hand-assembled fixtures of its unit tests:
//! - a data import read one load too deep: review N1's pattern, a `raw-dylib` extern static is the
//!   kernel's variable itself (dllimport), so dereferencing it once more reads inside the
//!   `OBJECT_TYPE` (three dependent loads where `extern POBJECT_TYPE *PsThreadType;` gives two);
//! - a pre-operation-shaped callback with a 3 KiB array on its stack that calls a helper with
//!   another one: each frame stays under the 4 KiB page (no `__chkstk`, which a driver does not
//!   link), together they pass the checker's budget.
//!
//! The callback is exported so that the linker keeps it and the checker counts it as an entry
//! point. Nothing here runs: no build without the feature contains it.

use core::ffi::c_void;
use core::hint::black_box;

/// The bytes each of the two frames holds.
const PROBE_ARRAY: usize = 3 * 1024;

// The wrong declaration on purpose: `*const *mut c_void`, then dereferenced.
#[allow(
    clashing_extern_declarations,
    reason = "the probe's declaration is the wrong one on purpose"
)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    #[link_name = "PsThreadType"]
    static PROBE_PS_THREAD_TYPE: *const *mut c_void;
}

/// A helper with its own large frame.
#[inline(never)]
fn probe_helper(seed: usize) -> usize {
    let mut frame = [0u8; PROBE_ARRAY];
    if let Some(byte) = frame.get_mut(seed % PROBE_ARRAY) {
        *byte = 1;
    }
    black_box(&mut frame)
        .iter()
        .map(|&byte| usize::from(byte))
        .sum()
}

/// Shaped like a `PFLT_PRE_OPERATION_CALLBACK`; returns `FLT_PREOP_SUCCESS_NO_CALLBACK` (1).
///
/// # Safety
/// Never called: it exists to be read by `fsense-pkgcheck`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn fsense_image_probe_pre_operation(
    _data: *mut c_void,
    _objects: *const c_void,
    completion: *mut *mut c_void,
) -> i32 {
    // SAFETY: reads the import (never executed; see the module documentation). Reading the
    // static is two loads (the slot, the kernel's variable); dereferencing it is the third.
    let variable = unsafe { PROBE_PS_THREAD_TYPE };
    let first_field = if variable.is_null() {
        0
    } else {
        // SAFETY: as above.
        unsafe { variable.read_volatile() as usize }
    };
    let mut frame = [0u8; PROBE_ARRAY];
    if let Some(byte) = frame.get_mut(first_field % PROBE_ARRAY) {
        *byte = 1;
    }
    let sum: usize = black_box(&mut frame)
        .iter()
        .map(|&byte| usize::from(byte))
        .sum();
    let total = sum.wrapping_add(probe_helper(first_field));
    if !completion.is_null() {
        // SAFETY: as above.
        unsafe { completion.write(black_box(total) as *mut c_void) };
    }
    1
}
