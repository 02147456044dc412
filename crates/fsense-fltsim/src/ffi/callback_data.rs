//! Callback data: who asked for an operation.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsGetThreadId(thread: isize) -> HANDLE {
    (thread - ETHREAD_BASE) as usize as HANDLE
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn PsGetProcessCreateTimeQuadPart(process: isize) -> i64 {
    process_create_time((process - EPROCESS_BASE) as u32)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetRequestorProcessId(
    _callback_data: *const FLT_CALLBACK_DATA,
) -> u32 {
    require_irql(DISPATCH_LEVEL, "FltGetRequestorProcessId");
    CURRENT_OP.with(|c| c.borrow().as_ref().map_or(0, |o| o.pid))
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetRequestorProcess(
    _callback_data: *const FLT_CALLBACK_DATA,
) -> isize {
    require_irql(DISPATCH_LEVEL, "FltGetRequestorProcess");
    CURRENT_OP.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(0, |o| EPROCESS_BASE + o.pid as isize)
    })
}

/// Reference: `nf-fltkernel-fltisdirectory`: FileObject and Instance required, IRQL <= APC_LEVEL,
/// the file object must be open (after a successful create).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltIsDirectory(
    file_object: *const FILE_OBJECT,
    instance: isize,
    is_directory: *mut bool,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation("IRQL_IS_DIRECTORY", "FltIsDirectory above APC_LEVEL");
    }
    if !instance_is_valid(instance, "FltIsDirectory") {
        return STATUS_INVALID_PARAMETER;
    }
    if file_object.is_null() || is_directory.is_null() {
        violation(
            "IS_DIRECTORY_ARGUMENTS",
            "FltIsDirectory with a NULL pointer",
        );
        return STATUS_INVALID_PARAMETER;
    }
    let op = CURRENT_OP.with(|c| c.borrow().as_ref().map(|o| (o.directory, o.opened)));
    match op {
        Some((directory, true)) => {
            // SAFETY: non-null out pointer from the driver.
            unsafe { is_directory.write(directory) };
            STATUS_SUCCESS
        }
        _ => {
            violation(
                "IS_DIRECTORY_NOT_OPEN",
                "FltIsDirectory on a file object that was not opened",
            );
            STATUS_INVALID_PARAMETER
        }
    }
}
