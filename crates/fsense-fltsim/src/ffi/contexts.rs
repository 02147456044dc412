//! Contexts: allocation, stream contexts, references.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltAllocateContext(
    filter: isize,
    context_type: u16,
    context_size: usize,
    pool_type: i32,
    returned_context: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_CONTEXT", "FltAllocateContext above APC_LEVEL");
    }
    // `nf-fltkernel-fltallocatecontext`: ContextSize "Must be greater than zero and less than
    // or equal to MAXUSHORT"; PoolType NonPagedPool(Nx) or PagedPool.
    if context_size == 0 || context_size > usize::from(u16::MAX) {
        violation(
            "CONTEXT_SIZE",
            format!("FltAllocateContext of {context_size} bytes (1..=65535 allowed)"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if !matches!(pool_type, 0 | 1 | 512) {
        violation(
            "CONTEXT_POOL_TYPE",
            format!("FltAllocateContext with pool type {pool_type}"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if pool_type == 1 && verifier::irql() > PASSIVE_LEVEL {
        violation(
            "CONTEXT_POOL_TYPE",
            "paged context allocated above PASSIVE_LEVEL",
        );
    }
    if !filter_is_valid(filter, "FltAllocateContext") {
        return STATUS_INVALID_PARAMETER;
    }
    if returned_context.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // Registered context types: `nf-fltkernel-fltallocatecontext` (STATUS_FLT_CONTEXT_ALLOCATION_NOT_FOUND).
    let registered =
        world::with_world(|w| w.registration.is_some_and(|r| r.stream_contexts_registered))
            .unwrap_or(false);
    if u32::from(context_type) != FLT_STREAM_CONTEXT || !registered {
        violation(
            "CONTEXT_NOT_REGISTERED",
            format!("context type {context_type} was not registered"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let Some(layout) = pool_layout(context_size) else {
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    // SAFETY: non-zero layout.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    world::with_world(|w| {
        w.contexts.insert(
            p as usize,
            Context {
                refs: 1,
                size: context_size,
                attached_to: None,
            },
        )
    });
    // SAFETY: non-null out pointer.
    unsafe { returned_context.write(p.cast()) };
    STATUS_SUCCESS
}

fn stream_key(file_object: *const FILE_OBJECT) -> Option<usize> {
    if file_object.is_null() {
        return None;
    }
    // SAFETY: the file object the simulator built for this operation.
    Some(unsafe { (*file_object).FsContext } as usize)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltSetStreamContext(
    instance: isize,
    file_object: *const FILE_OBJECT,
    operation: i32,
    new_context: PFLT_CONTEXT,
    old_context: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_CONTEXT", "FltSetStreamContext above APC_LEVEL");
    }
    if !instance_is_valid(instance, "FltSetStreamContext") {
        return STATUS_INVALID_PARAMETER;
    }
    // `nf-fltkernel-fltsetstreamcontext`: Operation is FLT_SET_CONTEXT_REPLACE_IF_EXISTS (0)
    // or FLT_SET_CONTEXT_KEEP_IF_EXISTS (1).
    if !matches!(operation, 0 | 1) {
        violation(
            "SET_CONTEXT_OPERATION",
            format!("FltSetStreamContext with operation {operation}"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let Some(stream) = stream_key(file_object) else {
        return STATUS_INVALID_PARAMETER;
    };
    // fsense's own rule (not the Filter Manager's): a directory, or the target directory of a
    // rename, gets no write-name context (its writes are not file data). A directory opened
    // FILE_DELETE_ON_CLOSE may get one: its delete is found at cleanup (#27, the `delete`
    // sample tracks any stream opened so).
    let directory = CURRENT_OP.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|o| o.directory && !o.delete_on_close)
    });
    if directory {
        violation(
            "DIRECTORY_NAME_CONTEXT",
            "a stream context set on a directory (check FltIsDirectory and SL_OPEN_TARGET_DIRECTORY)",
        );
    }
    let mut release_after = None;
    let status = world::with_world(|w| {
        if !w.contexts.contains_key(&(new_context as usize)) {
            violation(
                "CONTEXT_UNKNOWN",
                "FltSetStreamContext with a context never allocated",
            );
            return STATUS_INVALID_PARAMETER;
        }
        if let Some(&existing) = w.stream_contexts.get(&stream)
            && operation == 1
        {
            // KEEP_IF_EXISTS: hand back the existing one, referenced.
            if let Some(c) = w.contexts.get_mut(&existing) {
                c.refs += 1;
            }
            if !old_context.is_null() {
                // SAFETY: non-null out pointer.
                unsafe { old_context.write(existing as PFLT_CONTEXT) };
            }
            return STATUS_FLT_CONTEXT_ALREADY_DEFINED;
        }
        // REPLACE_IF_EXISTS: the stream drops its reference on the old context; with OldContext
        // given, that reference is the caller's to release instead.
        if let Some(replaced) = w.stream_contexts.insert(stream, new_context as usize) {
            if let Some(c) = w.contexts.get_mut(&replaced) {
                c.attached_to = None;
            }
            if old_context.is_null() {
                release_after = Some(replaced);
            } else {
                // SAFETY: non-null out pointer.
                unsafe { old_context.write(replaced as PFLT_CONTEXT) };
            }
        }
        if let Some(c) = w.contexts.get_mut(&(new_context as usize)) {
            c.refs += 1;
            c.attached_to = Some(stream);
        }
        STATUS_SUCCESS
    })
    .unwrap_or(STATUS_INVALID_PARAMETER);
    if let Some(replaced) = release_after {
        release_context_ref(replaced, true);
    }
    status
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetStreamContext(
    instance: isize,
    file_object: *const FILE_OBJECT,
    context: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_CONTEXT", "FltGetStreamContext above APC_LEVEL");
    }
    if !instance_is_valid(instance, "FltGetStreamContext") {
        return STATUS_INVALID_PARAMETER;
    }
    let Some(stream) = stream_key(file_object) else {
        return STATUS_INVALID_PARAMETER;
    };
    let found = world::with_world(|w| {
        let c = *w.stream_contexts.get(&stream)?;
        w.contexts.get_mut(&c)?.refs += 1;
        Some(c)
    })
    .flatten();
    match found {
        Some(c) if !context.is_null() => {
            // SAFETY: non-null out pointer.
            unsafe { context.write(c as PFLT_CONTEXT) };
            STATUS_SUCCESS
        }
        Some(c) => {
            release_context_ref(c, false);
            STATUS_INVALID_PARAMETER
        }
        None => STATUS_NOT_FOUND,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltReleaseContext(context: PFLT_CONTEXT) {
    if verifier::irql() > DISPATCH_LEVEL {
        violation("IRQL_CONTEXT", "FltReleaseContext above DISPATCH_LEVEL");
    }
    release_context_ref(context as usize, false);
}

pub(super) fn release_context_ref(ctx: usize, detach: bool) {
    let free = world::with_world(|w| {
        let Some(c) = w.contexts.get_mut(&ctx) else {
            violation(
                "CONTEXT_RELEASE_UNKNOWN",
                format!(
                    "releasing a context reference not held ({ctx:#x}, {} live)",
                    w.contexts.len()
                ),
            );
            return None;
        };
        if c.refs == 0 {
            violation(
                "CONTEXT_OVER_RELEASE",
                "context released more often than referenced",
            );
            return None;
        }
        c.refs -= 1;
        if detach {
            c.attached_to = None;
        }
        (c.refs == 0)
            .then(|| w.contexts.remove(&ctx).map(|c| c.size))
            .flatten()
    })
    .flatten();
    if let Some(size) = free
        && let Some(layout) = pool_layout(size)
    {
        // SAFETY: allocated in FltAllocateContext with this layout; last reference gone.
        unsafe { std::alloc::dealloc(ctx as *mut u8, layout) };
    }
}
