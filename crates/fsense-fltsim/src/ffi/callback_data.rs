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
    CURRENT_OP.with(|c| c.borrow().as_ref().map_or(0, |o| o.pid))
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetRequestorProcess(
    _callback_data: *const FLT_CALLBACK_DATA,
) -> isize {
    CURRENT_OP.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(0, |o| EPROCESS_BASE + o.pid as isize)
    })
}
