//! The simulator's Verifier-style rules fire when broken: each case breaks one rule through the
//! same exported functions the driver calls, and expects that rule's name in the findings.

use core::ffi::c_void;
use core::ptr;

use fsense_fltsim::ffi;
use fsense_fltsim::verifier;
use windows_sys::Wdk::Foundation::OBJECT_ATTRIBUTES;

fn fires(rule: &str, f: impl FnOnce()) {
    let found = fsense_fltsim::violations_of(f);
    assert!(
        found.iter().any(|v| v.starts_with(rule)),
        "expected {rule}, found {found:?}"
    );
}

#[test]
fn freeing_a_pointer_the_pool_never_returned() {
    let mut local = 0u64;
    // SAFETY: (test) the simulator only looks the pointer up; it never frees unknown pointers.
    fires("POOL_FREE_UNKNOWN", || unsafe {
        ffi::ExFreePoolWithTag((&mut local as *mut u64).cast(), 1)
    });
}

#[test]
fn double_free() {
    fires("POOL_FREE_UNKNOWN", || {
        // SAFETY: (test) allocate, then free twice; the second free is refused, not performed.
        unsafe {
            let p = ffi::ExAllocatePool2(0x40, 16, 0x7473_6554);
            ffi::ExFreePoolWithTag(p, 0x7473_6554);
            ffi::ExFreePoolWithTag(p, 0x7473_6554);
        }
    });
}

#[test]
fn freeing_with_the_wrong_tag() {
    fires("POOL_TAG_MISMATCH", || {
        // SAFETY: (test) a real allocation freed once, with a different tag.
        unsafe {
            let p = ffi::ExAllocatePool2(0x40, 16, 0x7473_6554);
            ffi::ExFreePoolWithTag(p, 0x1234);
        }
    });
}

#[test]
fn paged_pool_at_dispatch_level() {
    fires("IRQL_PAGED_POOL", || {
        verifier::set_irql(verifier::DISPATCH_LEVEL);
        // SAFETY: (test) a plain allocation; freed right after.
        unsafe {
            let p = ffi::ExAllocatePool2(0x100, 16, 0x7473_6554);
            verifier::set_irql(verifier::PASSIVE_LEVEL);
            ffi::ExFreePoolWithTag(p, 0x7473_6554);
        }
    });
}

#[test]
fn waiting_while_holding_a_spin_lock() {
    fires("WAIT_HOLDING_SPIN_LOCK", || {
        let mut lock = 0usize;
        let mut event = [0u64; 3];
        let timeout: i64 = -10;
        // SAFETY: (test) a local spin lock and event, acquired and released in order.
        unsafe {
            ffi::KeInitializeEvent(event.as_mut_ptr().cast(), 1, 0);
            let old = ffi::KeAcquireSpinLockRaiseToDpc(&mut lock);
            ffi::KeWaitForSingleObject(event.as_ptr().cast(), 0, 0, 0, &timeout);
            ffi::KeReleaseSpinLock(&mut lock, old);
        }
    });
}

#[test]
fn releasing_a_spin_lock_never_acquired() {
    let mut lock = 0usize;
    // SAFETY: (test) a local lock word.
    fires("SPIN_LOCK_UNPAIRED", || unsafe {
        ffi::KeReleaseSpinLock(&mut lock, 0)
    });
}

#[test]
fn releasing_a_name_reference_not_held() {
    fires("NAME_RELEASE_UNKNOWN", || {
        // SAFETY: (test) the simulator only looks the pointer up.
        unsafe { ffi::FltReleaseFileNameInformation(ptr::dangling()) }
    });
}

#[test]
fn name_query_at_dispatch_level() {
    fires("IRQL_NAME_QUERY", || {
        verifier::set_irql(verifier::DISPATCH_LEVEL);
        let mut out = ptr::null_mut();
        // SAFETY: (test) refused before any pointer is read.
        unsafe { ffi::FltGetFileNameInformation(ptr::dangling(), 0x101, &mut out) };
        verifier::set_irql(verifier::PASSIVE_LEVEL);
    });
}

#[test]
fn send_with_a_null_timeout_and_from_an_io_callback() {
    let message = [0u8; 8];
    let port: isize = 0;
    let send = || {
        // SAFETY: (test) valid message buffer and port variable; no consumer, so it returns at once.
        unsafe {
            ffi::FltSendMessage(
                0,
                &port,
                message.as_ptr().cast::<c_void>(),
                8,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
    };
    fires("SEND_NULL_TIMEOUT", send);
    fires("SEND_IN_IO_CALLBACK", || {
        verifier::set_in_callback(Some("PostWrite"));
        send();
        verifier::set_in_callback(None);
    });
}

#[test]
fn port_with_a_null_dacl() {
    fires("PORT_SECURITY", || {
        let oa = OBJECT_ATTRIBUTES {
            Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: ptr::null_mut(),
            ObjectName: ptr::null(),
            Attributes: 0x200,
            SecurityDescriptor: ptr::null(),
            SecurityQualityOfService: ptr::null(),
        };
        let mut port = 0;
        // SAFETY: (test) valid attributes and out pointer; no filter is registered, so the port
        // is refused after the checks.
        unsafe {
            ffi::FltCreateCommunicationPort(0, &mut port, &oa, ptr::null(), None, None, None, 1)
        };
    });
}

#[test]
fn filter_handle_null_or_unknown() {
    let mut port: isize = 0x1234;
    // SAFETY: (test) a valid client-port variable; the simulator checks the filter first.
    fires("FILTER_NULL", || unsafe {
        ffi::FltCloseClientPort(0, &mut port)
    });
    let mut ctx = ptr::null_mut();
    // SAFETY: (test) a valid out pointer; refused on the filter before anything is allocated.
    fires("FILTER_UNKNOWN", || unsafe {
        ffi::FltAllocateContext(0x77, 8, 64, 512, &mut ctx);
    });
}

#[test]
fn stream_context_on_an_instance_never_attached() {
    let mut ctx = ptr::null_mut();
    // SAFETY: (test) refused on the instance before the file object is read.
    fires("INSTANCE_INVALID", || unsafe {
        ffi::FltGetStreamContext(0x4001, ptr::null(), &mut ctx);
    });
}

#[test]
fn reference_with_the_wrong_object_type() {
    let mut object = ptr::null_mut();
    let mut not_a_type = 0u64;
    // SAFETY: (test) a valid out pointer; the type is compared by address only.
    fires("OBJECT_TYPE_MISMATCH", || unsafe {
        ffi::ObReferenceObjectByHandle(
            ptr::null_mut(),
            0x0010_0000,
            (&mut not_a_type as *mut u64).cast(),
            0,
            &mut object,
            ptr::null_mut(),
        );
    });
}

/// S1 (docs/simulator.md): `PsThreadType` is the kernel's `POBJECT_TYPE` variable itself. Its
/// value is the type to pass; reading one level deeper (the type's first field, N1 of the third
/// driver review) is a mismatch, as it is on Windows with the `otl` global flag.
#[test]
fn reference_with_the_thread_type_read_one_level_too_deep() {
    let variable: *const *mut c_void = ptr::from_ref(&ffi::PsThreadType).cast();
    // SAFETY: (test) the simulator's exported variable is one aligned pointer to the type.
    let thread_type = unsafe { *variable };
    // SAFETY: (test) the type is an aligned, 16-byte static; its first field is a pointer.
    let first_field = unsafe { *thread_type.cast::<*mut c_void>() };
    assert_ne!(first_field, thread_type);
    let mut object = ptr::null_mut();
    // SAFETY: (test) a valid out pointer; the type is compared by address only.
    fires("OBJECT_TYPE_MISMATCH", || unsafe {
        ffi::ObReferenceObjectByHandle(
            ptr::null_mut(),
            0x0010_0000,
            first_field,
            0,
            &mut object,
            ptr::null_mut(),
        );
    });
}

#[test]
fn waiting_on_a_handle_that_is_not_a_thread() {
    // SAFETY: (test) the simulator only looks the handle up.
    fires("WAIT_UNKNOWN_HANDLE", || unsafe {
        ffi::ZwWaitForSingleObject(0x999 as _, 0, ptr::null());
    });
}

#[test]
fn name_query_in_post_create_of_a_failed_create() {
    let mut out = ptr::null_mut();
    let data =
        ptr::dangling::<windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_CALLBACK_DATA>();
    fires("NAME_QUERY_AFTER_FAILED_CREATE", || {
        ffi::as_if_in_create(
            "PostCreate",
            "\\Device\\HarddiskVolume3\\gone",
            false,
            false,
            || {
                // SAFETY: (test) refused before the callback data is read.
                unsafe { ffi::FltGetFileNameInformation(data, 0x102, &mut out) };
            },
        )
    });
}

#[test]
fn short_name_query_in_pre_create() {
    let mut out = ptr::null_mut();
    let data =
        ptr::dangling::<windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_CALLBACK_DATA>();
    fires("NAME_FORMAT_IN_PRE_CREATE", || {
        ffi::as_if_in_create("PreCreate", "\\a", false, false, || {
            // SAFETY: (test) refused before the callback data is read.
            unsafe { ffi::FltGetFileNameInformation(data, 0x104, &mut out) };
        })
    });
}

#[test]
fn normalized_name_query_in_pre_create() {
    let mut out = ptr::null_mut();
    let data =
        ptr::dangling::<windows_sys::Wdk::Storage::FileSystem::Minifilters::FLT_CALLBACK_DATA>();
    fires("NAME_NORMALIZED_IN_PRE_CREATE", || {
        ffi::as_if_in_create(
            "PreCreate",
            "\\Device\\HarddiskVolume3\\a",
            false,
            false,
            || {
                // SAFETY: (test) the callback data is never read; the reference is released below.
                unsafe {
                    ffi::FltGetFileNameInformation(data, 0x101, &mut out);
                    ffi::FltReleaseFileNameInformation(out);
                }
            },
        )
    });
}

#[test]
fn context_above_maxushort() {
    fires("CONTEXT_SIZE", || {
        let mut ctx = ptr::null_mut();
        // SAFETY: (test) refused on the size; no context is allocated.
        unsafe { ffi::FltAllocateContext(0x77, 8, 65_536, 512, &mut ctx) };
    });
}

#[test]
fn is_directory_on_a_create_that_opened_nothing() {
    let mut is_dir = false;
    let file = 8u64;
    fires("INSTANCE_INVALID", || {
        ffi::as_if_in_create("PostCreate", "\\x", false, false, || {
            // SAFETY: (test) refused on the instance before the file object is read.
            unsafe { ffi::FltIsDirectory((&file as *const u64).cast(), 0x4000, &mut is_dir) };
        })
    });
}

#[test]
fn registry_key_for_another_driver_object() {
    let mut key = ptr::null_mut();
    let not_ours = 8u64;
    fires("REGISTRY_KEY_ARGUMENTS", || {
        // SAFETY: (test) the driver object is compared by address only.
        unsafe {
            ffi::IoOpenDriverRegistryKey((&not_ours as *const u64).cast(), 0, 0x20019, 0, &mut key)
        };
    });
}

#[test]
fn registering_with_another_driver_object() {
    let not_ours = 8u64;
    let mut filter = 0isize;
    // SAFETY: (test) refused on the driver object before the registration is read.
    fires("REGISTER_DRIVER_OBJECT", || unsafe {
        ffi::FltRegisterFilter((&not_ours as *const u64).cast(), ptr::null(), &mut filter);
    });
}

#[test]
fn closing_the_server_port_at_dispatch_level() {
    fires("IRQL", || {
        verifier::set_irql(verifier::DISPATCH_LEVEL);
        // SAFETY: (test) no port is open: the simulator only looks the handle up.
        unsafe { ffi::FltCloseCommunicationPort(0x10) };
        verifier::set_irql(verifier::PASSIVE_LEVEL);
    });
}
