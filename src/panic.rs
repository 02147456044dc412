//! No panic survives in the driver image.
//!
//! The release build of `fsense.sys` (lto, one codegen unit, panic = abort) links this handler,
//! which calls a function that exists nowhere. If the optimiser can prove no panic is reachable,
//! the handler is discarded and the link succeeds; if any panic path remains (an index, an
//! overflow check, an `unwrap`), the link fails naming `fsense_panic_is_reachable`. So the
//! driver needs no runtime panic policy: there is nothing to bugcheck on.

#[cfg(all(target_os = "windows", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe extern "C" {
        /// Deliberately undefined: referencing it fails the link.
        fn fsense_panic_is_reachable() -> !;
    }
    // SAFETY: never executes: the symbol is undefined, so an image that still references this
    // handler does not link.
    unsafe { fsense_panic_is_reachable() }
}

/// A reachable panic (an out-of-bounds index), compiled only with feature `panic-probe`: the test
/// suite builds the release image with it and expects the link to fail.
#[cfg(feature = "panic-probe")]
#[inline(never)]
pub fn planted(index: usize) -> u8 {
    [1u8, 2, 3][index]
}
