//! The simulated user-mode functions (`fsense_fltsim::win32`) refuse what their documentation
//! forbids: each case breaks one rule through the exported function the Windows client imports,
//! with the driver loaded and a client connected, and expects that rule's name in the findings.

use core::ffi::c_void;
use core::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fsense_fltsim::win32::{
    CancelIoEx, CloseHandle, CreateEventW, CreateIoCompletionPort, FilterConnectCommunicationPort,
    FilterGetMessage, FilterReplyMessage, GetQueuedCompletionStatus, LocalFree,
};
use fsense_fltsim::{ConsumerMode, SimConfig, Tuning};
use fsense_proto::Hello;
use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::InstallableFileSystems::{
    FILTER_MESSAGE_HEADER, FILTER_REPLY_HEADER,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

const IO_PENDING: i32 = 0x8007_03E5_u32 as i32;
const CONNECTION_LIMIT: i32 = 0x8007_04D6_u32 as i32;

fn port_name() -> Vec<u16> {
    "\\fsensePort".encode_utf16().chain(Some(0)).collect()
}

/// Connects as the Windows client does; the raw HRESULT and handle.
fn connect() -> (i32, HANDLE) {
    let hello = Hello::current().encode();
    let name = port_name();
    let mut handle: HANDLE = ptr::null_mut();
    // SAFETY: (test) valid name, context and out pointer for the call.
    let hr = unsafe {
        FilterConnectCommunicationPort(
            name.as_ptr(),
            0,
            hello.as_ptr().cast(),
            hello.len() as u16,
            ptr::null(),
            &mut handle,
        )
    };
    (hr, handle)
}

/// Runs `body` on the consumer thread while the driver is loaded; returns the run's findings.
fn findings_of(body: impl FnOnce() + Send) -> Vec<String> {
    let config = SimConfig {
        events: 100,
        threads: 2,
        queue_capacity: 64,
        consumer: ConsumerMode::Normal,
        seed: 5,
    };
    let mut body = Some(body);
    let report =
        fsense_fltsim::run_external(&config, &Tuning::default(), &mut |stop: &AtomicBool| {
            if let Some(body) = body.take() {
                body();
            }
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    report.verifier_violations
}

fn fires(rule: &str, body: impl FnOnce() + Send) {
    let found = findings_of(body);
    assert!(
        found.iter().any(|v| v.starts_with(rule)),
        "expected {rule}, found {found:?}"
    );
}

/// A connection, with `f` run on it, then closed.
fn connected(f: impl FnOnce(HANDLE)) {
    let (hr, h) = connect();
    assert_eq!(hr, 0, "connect failed");
    f(h);
    // SAFETY: (test) the handle from connect, closed once.
    unsafe { CloseHandle(h) };
}

#[test]
fn a_clean_session_has_no_findings() {
    let found = findings_of(|| {
        connected(|h| {
            let mut buffer = vec![0u64; 2 + fsense_proto::MAX_MESSAGE_BYTES / 8];
            // SAFETY: (test) an OVERLAPPED and buffer that outlive the receive (cancelled and
            // completed before they are freed).
            unsafe {
                let completion = CreateIoCompletionPort(h, ptr::null_mut(), 7, 1);
                let mut ov: OVERLAPPED = std::mem::zeroed();
                let hr = FilterGetMessage(
                    h,
                    buffer.as_mut_ptr().cast(),
                    (buffer.len() * 8) as u32,
                    &mut ov,
                );
                assert_eq!(
                    hr, IO_PENDING,
                    "an overlapped receive returns ERROR_IO_PENDING"
                );
                let (mut n, mut key, mut done) = (0u32, 0usize, ptr::null_mut());
                let ok = GetQueuedCompletionStatus(completion, &mut n, &mut key, &mut done, 5000);
                assert_eq!(ok, 1, "no message within 5 s");
                assert_eq!(done, &mut ov as *mut OVERLAPPED);
                assert_eq!(key, 7);
                let header = buffer.as_ptr().cast::<FILTER_MESSAGE_HEADER>().read();
                assert!(header.MessageId != 0);
                assert!(n as usize > std::mem::size_of::<FILTER_MESSAGE_HEADER>());
                // Nothing pending any more: CancelIoEx finds nothing.
                assert_eq!(CancelIoEx(h, &ov), 0);
                CloseHandle(completion);
            }
        })
    });
    assert_eq!(found, Vec::<String>::new());
}

/// S2 / N5 (third driver review): `FILTER_MESSAGE_HEADER.ReplyLength` is "the length, in bytes,
/// of the expected reply, including the FILTER_REPLY_HEADER header"
/// (`ns-fltuserstructures-_filter_message_header`): for the driver's 40-byte health reply
/// buffer, 56. Batches expect no reply: 0.
#[test]
fn reply_length_includes_the_reply_header() {
    let seen = std::sync::Mutex::new(Vec::new());
    let found = findings_of(|| {
        connected(|h| {
            let mut buffer = vec![0u64; 2 + fsense_proto::MAX_MESSAGE_BYTES / 8];
            // SAFETY: (test) an OVERLAPPED and buffer that outlive each receive (each completes
            // before the next is posted).
            unsafe {
                let completion = CreateIoCompletionPort(h, ptr::null_mut(), 7, 1);
                for _ in 0..64 {
                    let mut ov: OVERLAPPED = std::mem::zeroed();
                    let size = (buffer.len() * 8) as u32;
                    assert_eq!(
                        FilterGetMessage(h, buffer.as_mut_ptr().cast(), size, &mut ov),
                        IO_PENDING
                    );
                    let (mut n, mut key, mut done) = (0u32, 0usize, ptr::null_mut());
                    if GetQueuedCompletionStatus(completion, &mut n, &mut key, &mut done, 5000) != 1
                    {
                        CancelIoEx(h, &ov);
                        break;
                    }
                    let header = buffer.as_ptr().cast::<FILTER_MESSAGE_HEADER>().read();
                    let body = std::slice::from_raw_parts(
                        buffer.as_ptr().cast::<u8>().add(16),
                        (n as usize).saturating_sub(16),
                    );
                    let is_health =
                        body.get(..4) == Some(&fsense_proto::Health::MAGIC.to_le_bytes()[..]);
                    seen.lock().unwrap().push((is_health, header.ReplyLength));
                    if is_health {
                        break;
                    }
                }
                CloseHandle(completion);
            }
        })
    });
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter().any(|&(health, _)| health),
        "no health message: {seen:?} {found:?}"
    );
    let expected =
        (fsense_proto::ControlReply::LEN + std::mem::size_of::<FILTER_REPLY_HEADER>()) as u32;
    for (health, reply_length) in seen {
        assert_eq!(reply_length, if health { expected } else { 0 });
    }
}

#[test]
fn a_second_connection_meets_the_limit() {
    let found = findings_of(|| {
        connected(|_| {
            let (hr, h) = connect();
            assert_eq!(hr, CONNECTION_LIMIT);
            assert_eq!(h, INVALID_HANDLE_VALUE);
        })
    });
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn receive_into_no_buffer() {
    fires("GET_MESSAGE_NULL_BUFFER", || {
        connected(|h| {
            // SAFETY: (test) OVERLAPPED is plain data for which all-zero bytes are valid.
            let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
            // SAFETY: (test) the simulator refuses the NULL buffer before touching anything.
            unsafe { FilterGetMessage(h, ptr::null_mut(), 4096, &mut ov) };
        })
    });
}

#[test]
fn receive_into_a_buffer_smaller_than_the_header() {
    fires("GET_MESSAGE_BUFFER_SMALL", || {
        connected(|h| {
            let mut small = [0u64; 1];
            // SAFETY: (test) refused on its size before anything is written.
            unsafe {
                let mut ov: OVERLAPPED = std::mem::zeroed();
                FilterGetMessage(h, small.as_mut_ptr().cast(), 8, &mut ov);
            }
        })
    });
}

#[test]
fn synchronous_receive() {
    fires("GET_MESSAGE_SYNCHRONOUS", || {
        connected(|h| {
            let mut buffer = vec![0u64; 64];
            // SAFETY: (test) refused before it could wait.
            unsafe { FilterGetMessage(h, buffer.as_mut_ptr().cast(), 512, ptr::null_mut()) };
        })
    });
}

#[test]
fn an_overlapped_reused_while_pending() {
    fires("OVERLAPPED_IN_USE", || {
        connected(|h| {
            let mut buffer = vec![0u64; 2 + fsense_proto::MAX_MESSAGE_BYTES / 8];
            let size = (buffer.len() * 8) as u32;
            // SAFETY: (test) the second post is refused; the first is cancelled and its
            // completion awaited before the buffer and OVERLAPPED go away.
            unsafe {
                let completion = CreateIoCompletionPort(h, ptr::null_mut(), 0, 1);
                let mut ov: OVERLAPPED = std::mem::zeroed();
                // The driver may be between messages: the receive stays pending.
                FilterGetMessage(h, buffer.as_mut_ptr().cast(), size, &mut ov);
                FilterGetMessage(h, buffer.as_mut_ptr().cast(), size, &mut ov);
                CancelIoEx(h, &ov);
                let (mut n, mut key, mut done) = (0u32, 0usize, ptr::null_mut());
                GetQueuedCompletionStatus(completion, &mut n, &mut key, &mut done, 5000);
                CloseHandle(completion);
            }
        })
    });
}

#[test]
fn reply_without_a_buffer() {
    fires("REPLY_NULL_BUFFER", || {
        connected(|h| {
            // SAFETY: (test) refused before reading.
            unsafe { FilterReplyMessage(h, ptr::null(), 56) };
        })
    });
}

#[test]
fn reply_smaller_than_its_header() {
    fires("REPLY_BUFFER_SMALL", || {
        connected(|h| {
            let reply = FILTER_REPLY_HEADER {
                Status: 0,
                MessageId: 1,
            };
            // SAFETY: (test) refused on its size before reading past it.
            unsafe { FilterReplyMessage(h, &reply, 8) };
        })
    });
}

#[test]
fn connect_with_a_context_of_size_zero() {
    fires("CONNECT_CONTEXT_SIZE", || {
        let name = port_name();
        let context = [1u8; 4];
        let mut h: HANDLE = ptr::null_mut();
        // SAFETY: (test) refused before the context is read.
        unsafe {
            FilterConnectCommunicationPort(
                name.as_ptr(),
                0,
                context.as_ptr().cast(),
                0,
                ptr::null(),
                &mut h,
            )
        };
    });
}

#[test]
fn receive_on_a_closed_handle() {
    fires("HANDLE_INVALID", || {
        let (_, h) = connect();
        let mut buffer = vec![0u64; 64];
        // SAFETY: (test) the handle is closed, then used: refused before anything is written.
        unsafe {
            CloseHandle(h);
            let mut ov: OVERLAPPED = std::mem::zeroed();
            FilterGetMessage(h, buffer.as_mut_ptr().cast(), 512, &mut ov);
        }
    });
}

#[test]
fn closing_a_handle_twice() {
    fires("CLOSE_HANDLE_INVALID", || {
        // SAFETY: (test) an event closed twice; the second close is refused.
        unsafe {
            let e = CreateEventW(ptr::null(), 1, 0, ptr::null());
            CloseHandle(e);
            CloseHandle(e);
        }
    });
}

#[test]
fn local_free_of_memory_the_system_did_not_allocate() {
    fires("LOCAL_FREE_UNKNOWN", || {
        let mut mine = [0u16; 4];
        // SAFETY: (test) the simulator only looks the pointer up.
        unsafe { LocalFree(mine.as_mut_ptr().cast::<c_void>()) };
    });
}
