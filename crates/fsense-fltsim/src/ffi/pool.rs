//! Pool memory: `ExAllocatePool2`, `ExFreePoolWithTag`.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

pub(super) fn pool_layout(size: usize) -> Option<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(size.max(1), 16).ok()
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAllocatePool2(
    flags: u64,
    number_of_bytes: usize,
    tag: u32,
) -> *mut c_void {
    require_irql(DISPATCH_LEVEL, "ExAllocatePool2");
    if tag == 0 {
        violation("POOL_TAG_ZERO", "ExAllocatePool2 with tag 0");
    }
    if flags & POOL_FLAG_PAGED != 0 && verifier::irql() > APC_LEVEL {
        violation("IRQL_PAGED_POOL", "paged pool allocated at DISPATCH_LEVEL");
    }
    if flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED) == 0 {
        violation(
            "POOL_FLAGS",
            format!("ExAllocatePool2 flags {flags:#x} name no pool"),
        );
    }
    let injected = world::with_world(|w| {
        w.pool_allocations += 1;
        matches!(
            (w.fail_point, w.pool_allocations),
            (Some(FailPoint::FirstPoolAllocation), 1) | (Some(FailPoint::SecondPoolAllocation), 2)
        )
    })
    .unwrap_or(false);
    if injected {
        return std::ptr::null_mut();
    }
    let Some(layout) = pool_layout(number_of_bytes) else {
        return std::ptr::null_mut();
    };
    // SAFETY: layout has non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if !p.is_null() {
        world::with_world(|w| {
            w.allocations.insert(
                p as usize,
                Allocation {
                    size: number_of_bytes,
                    tag,
                },
            )
        });
    }
    p.cast()
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExFreePoolWithTag(p: *mut c_void, tag: u32) {
    if verifier::irql() > DISPATCH_LEVEL {
        violation("IRQL_FREE", "pool freed above DISPATCH_LEVEL");
    }
    let entry = world::with_world(|w| w.allocations.remove(&(p as usize))).flatten();
    match entry {
        None => violation(
            "POOL_FREE_UNKNOWN",
            format!(
                "freeing {p:p}, which the pool never returned or already freed (double free or foreign pointer)"
            ),
        ),
        Some(a) => {
            if a.tag != tag {
                violation(
                    "POOL_TAG_MISMATCH",
                    format!("freed with tag {tag:#x}, allocated with {:#x}", a.tag),
                );
            }
            if let Some(layout) = pool_layout(a.size) {
                // SAFETY: p was allocated by ExAllocatePool2 above with this layout and is
                // removed from the map, so it is freed exactly once.
                unsafe { std::alloc::dealloc(p.cast(), layout) };
            }
        }
    }
}
