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

// ---------------------------------------------------------------------------------------------
// Set-information, cleanup, FSCTL and MDL operations (#27): each rule broken by a planted
// callback (or a direct call inside a simulated operation), and the models the rules rest on.
// ---------------------------------------------------------------------------------------------

mod changes {
    use core::ffi::c_void;
    use core::ptr;
    use std::sync::Mutex;

    use fsense_fltsim::changes::{
        FILE_DISPOSITION_DELETE, FILE_DISPOSITION_INFORMATION, FILE_DISPOSITION_ON_CLOSE,
        FILE_DISPOSITION_POSIX_SEMANTICS, FILE_RENAME_INFORMATION, FSCTL_DUPLICATE_EXTENTS_TO_FILE,
        SetInfoKind,
    };
    use fsense_fltsim::ffi::{self, Step};
    use fsense_fltsim::verifier;
    use windows_sys::Wdk::Foundation::FILE_OBJECT;
    use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
        FLT_CALLBACK_DATA, FLT_RELATED_OBJECTS,
    };

    use super::fires;

    const FLT_PREOP_SUCCESS_WITH_CALLBACK: i32 = 0;
    const FLT_PREOP_PENDING: i32 = 2;
    const FLT_PREOP_SYNCHRONIZE: i32 = 5;
    const STATUS_FILE_DELETED: i32 = 0xC000_0123_u32 as i32;
    const VOLUME: &str = "\\Device\\HarddiskVolume3";

    /// What the planted callbacks saw, in order (each test holds [`ONE_AT_A_TIME`] and resets
    /// this first).
    static SEEN: Mutex<Vec<(u8, i32, u8)>> = Mutex::new(Vec::new());
    static PRE_RETURNS: Mutex<i32> = Mutex::new(0);
    /// The tests of this module share the planted callbacks' state: one at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn reset(pre_returns: i32) {
        *SEEN.lock().unwrap() = Vec::new();
        *PRE_RETURNS.lock().unwrap() = pre_returns;
    }

    unsafe extern "system" fn pre(
        _data: *mut FLT_CALLBACK_DATA,
        _objects: *const FLT_RELATED_OBJECTS,
        completion: *mut *mut c_void,
    ) -> i32 {
        // SAFETY: (test) the simulator's completion slot.
        unsafe { *completion = ptr::null_mut() };
        *PRE_RETURNS.lock().unwrap()
    }

    /// Records (major function, FltQueryInformationFile's status, IRQL) in every post-operation.
    unsafe extern "system" fn post_querying(
        data: *mut FLT_CALLBACK_DATA,
        objects: *const FLT_RELATED_OBJECTS,
        _completion: *const c_void,
        _flags: u32,
    ) -> i32 {
        // SAFETY: (test) the simulator's callback data and related objects for this operation.
        let (major, file, instance) = unsafe {
            (
                (*(*data).Iopb).MajorFunction,
                (*objects).FileObject,
                (*objects).Instance,
            )
        };
        let mut info = [0u8; 24];
        // SAFETY: (test) a 24-byte buffer for FileStandardInformation.
        let status = unsafe {
            ffi::FltQueryInformationFile(
                instance,
                file,
                info.as_mut_ptr().cast(),
                24,
                5,
                ptr::null_mut(),
            )
        };
        SEEN.lock().unwrap().push((major, status, verifier::irql()));
        0
    }

    fn set_info(kind: SetInfoKind, post_at_dispatch: bool) -> Step {
        Step::SetInfo {
            kind,
            target: None,
            hostile: None,
            post_at_dispatch,
        }
    }

    /// `ifs/returning-flt-preop-synchronize`: "If a filter's pre-operation callback routine
    /// returns FLT_PREOP_SYNCHRONIZE, it must implement a post-operation callback routine".
    #[test]
    fn synchronize_without_a_post_operation_callback() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        reset(FLT_PREOP_SYNCHRONIZE);
        fires("SYNCHRONIZE_WITHOUT_POST_CALLBACK", || {
            ffi::run_planted(Some(pre), None, false, &[Step::Cleanup]);
        });
    }

    /// `nc-fltkernel-pflt_pre_operation_callback`: a sensor never pends (FLT_PREOP_PENDING would
    /// need FltCompletePendedPreOperation).
    #[test]
    fn pending_a_set_information() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        reset(FLT_PREOP_PENDING);
        fires("CALLBACK_RETURN", || {
            ffi::run_planted(
                Some(pre),
                Some(post_querying),
                false,
                &[set_info(SetInfoKind::Disposition { delete: true }, false)],
            );
        });
    }

    /// `ifs/writing-postoperation-callback-routines`: the post-operation of an IRP operation
    /// that was not synchronized may run at DISPATCH_LEVEL, so a PASSIVE_LEVEL routine
    /// (`nf-fltkernel-fltqueryinformationfile`) there is a bug even when this run used PASSIVE.
    #[test]
    fn passive_routine_in_an_unsynchronized_post_operation() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        reset(FLT_PREOP_SUCCESS_WITH_CALLBACK);
        fires("POST_OP_MAY_BE_DISPATCH", || {
            ffi::run_planted(Some(pre), Some(post_querying), false, &[Step::Cleanup]);
        });
        reset(FLT_PREOP_SUCCESS_WITH_CALLBACK);
        fires("IRQL", || {
            ffi::run_planted(
                Some(pre),
                Some(post_querying),
                false,
                &[set_info(SetInfoKind::Disposition { delete: true }, true)],
            );
        });
    }

    /// The model the rule rests on: synchronized, the post-operation runs at <= APC_LEVEL even
    /// when the completion came at DISPATCH_LEVEL, and nothing fires; fast I/O post-operations
    /// run at PASSIVE_LEVEL.
    #[test]
    fn synchronized_and_fast_io_post_operations_run_below_dispatch() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        reset(FLT_PREOP_SYNCHRONIZE);
        let found = fsense_fltsim::violations_of(|| {
            ffi::run_planted(
                Some(pre),
                Some(post_querying),
                false,
                &[
                    set_info(SetInfoKind::Disposition { delete: true }, true),
                    Step::MdlWrite {
                        irp_fallback: false,
                    },
                    Step::Cleanup,
                ],
            );
        });
        assert_eq!(found, Vec::<String>::new());
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.iter().all(|&(_, _, irql)| irql == 0), "{seen:?}");
    }

    /// The `delete` sample's test of a delete (post-cleanup FileStandardInformation answers
    /// STATUS_FILE_DELETED) holds exactly when the file is gone: a disposition set, delete-on-
    /// close, a POSIX delete; not a disposition set then cleared, nor delete-on-close withdrawn.
    #[test]
    fn a_file_is_deleted_at_cleanup_only_when_its_delete_stood() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let cleanup_status = |delete_on_close: bool, steps: Vec<Step>| {
            reset(FLT_PREOP_SYNCHRONIZE);
            let mut script = steps;
            script.push(Step::Cleanup);
            let found = fsense_fltsim::violations_of(|| {
                ffi::run_planted(Some(pre), Some(post_querying), delete_on_close, &script);
            });
            assert_eq!(found, Vec::<String>::new());
            let seen = SEEN.lock().unwrap().clone();
            seen.iter().rev().find(|s| s.0 == 0x12).map(|s| s.1)
        };
        let deleted = Some(STATUS_FILE_DELETED);
        let disposition = |delete| set_info(SetInfoKind::Disposition { delete }, false);
        let ex = |flags| set_info(SetInfoKind::DispositionEx { flags }, false);
        assert_eq!(cleanup_status(false, vec![disposition(true)]), deleted);
        assert_eq!(cleanup_status(true, vec![]), deleted);
        let posix = FILE_DISPOSITION_DELETE | FILE_DISPOSITION_POSIX_SEMANTICS;
        assert_eq!(cleanup_status(false, vec![ex(posix)]), deleted);
        let on_close = FILE_DISPOSITION_DELETE | FILE_DISPOSITION_ON_CLOSE;
        assert_eq!(cleanup_status(false, vec![ex(on_close)]), deleted);
        assert_eq!(
            cleanup_status(false, vec![disposition(true), disposition(false)]),
            Some(0)
        );
        assert_eq!(
            cleanup_status(true, vec![ex(FILE_DISPOSITION_ON_CLOSE)]),
            Some(0)
        );
        assert_eq!(cleanup_status(false, vec![]), Some(0));
    }

    fn destination(
        callback: &'static str,
        class: u32,
        object: usize,
        options: u32,
        post_safe: Option<bool>,
    ) {
        let file = ffi::set_info::test_file_object();
        ffi::as_if_in_set_info(callback, class, file, &format!("{VOLUME}\\new.txt"), || {
            verifier::set_post_op_safe(post_safe);
            let _ = ffi::set_info::destination_name(0x4000, object as *const FILE_OBJECT, options);
            verifier::set_post_op_safe(None);
        });
    }

    /// Every rule of `nf-fltkernel-fltgetdestinationfilenameinformation`.
    #[test]
    fn destination_name_rules() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let file = ffi::set_info::test_file_object();
        let attach = || ffi::planted_instance(0x4000);
        fires("IRQL_DESTINATION_NAME", || {
            attach();
            verifier::set_irql(verifier::DISPATCH_LEVEL);
            destination(
                "PostSetInformation",
                FILE_RENAME_INFORMATION,
                file,
                0x102,
                None,
            );
            verifier::set_irql(verifier::PASSIVE_LEVEL);
        });
        fires("POST_OP_MAY_BE_DISPATCH", || {
            attach();
            destination(
                "PostSetInformation",
                FILE_RENAME_INFORMATION,
                file,
                0x102,
                Some(false),
            );
        });
        fires("DESTINATION_NAME_SHORT", || {
            attach();
            destination(
                "PreSetInformation",
                FILE_RENAME_INFORMATION,
                file,
                0x104,
                None,
            );
        });
        fires("DESTINATION_NAME_NOT_RENAME_OR_LINK", || {
            attach();
            destination(
                "PreSetInformation",
                FILE_DISPOSITION_INFORMATION,
                file,
                0x102,
                None,
            );
        });
        fires("DESTINATION_NAME_FILE_OBJECT", || {
            attach();
            // Parameters.SetFileInformation.ParentOfTarget (`as_if_in_set_info` puts it at +0x100).
            destination(
                "PreSetInformation",
                FILE_RENAME_INFORMATION,
                file + 0x100,
                0x102,
                None,
            );
        });
        fires("INSTANCE_INVALID", || {
            destination(
                "PreSetInformation",
                FILE_RENAME_INFORMATION,
                file,
                0x102,
                None,
            );
        });
        // And the documented call passes: pre-operation, the target file object, opened format.
        let found = fsense_fltsim::violations_of(|| {
            attach();
            destination(
                "PreSetInformation",
                FILE_RENAME_INFORMATION,
                file,
                0x102,
                None,
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn query_information_with_null_arguments() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        fires("QUERY_INFORMATION_ARGUMENTS", || {
            ffi::planted_instance(0x4000);
            // SAFETY: (test) refused before any pointer is read.
            unsafe {
                ffi::FltQueryInformationFile(
                    0x4000,
                    ptr::null(),
                    ptr::null_mut(),
                    0,
                    5,
                    ptr::null_mut(),
                )
            };
        });
    }

    /// An FSCTL's input (clone or METHOD_NEITHER) reaches the planted callbacks with the WDK
    /// layout, and a driver that returns at once touches nothing.
    #[test]
    fn fsctls_pass_a_driver_that_ignores_them() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        reset(FLT_PREOP_SYNCHRONIZE);
        let found = fsense_fltsim::violations_of(|| {
            ffi::run_planted(
                Some(pre),
                Some(post_querying),
                false,
                &[
                    Step::Fsctl {
                        code: FSCTL_DUPLICATE_EXTENTS_TO_FILE,
                        hostile: None,
                    },
                    Step::Fsctl {
                        code: fsense_fltsim::changes::FSCTL_GET_RETRIEVAL_POINTERS,
                        hostile: None,
                    },
                    Step::MdlWrite { irp_fallback: true },
                ],
            );
        });
        assert_eq!(found, Vec::<String>::new());
        let majors: Vec<u8> = SEEN.lock().unwrap().iter().map(|s| s.0).collect();
        // FSCTL, FSCTL, PREPARE_MDL_WRITE ((UCHAR)-17), then its IRP form: two writes.
        assert_eq!(majors, vec![0x0D, 0x0D, 0xEF, 0x04, 0x04]);
    }

    /// Each hostile buffer breaks the documented layout the way its name says, and the valid
    /// one does not (FILE_RENAME_INFORMATION: FileNameLength at 16, FileName at 20, sizeof 24).
    #[test]
    fn hostile_set_information_buffers_are_what_they_claim() {
        use fsense_fltsim::changes::{Hostile, RENAME_INFO_SIZE, RENAME_NAME_OFFSET, SetInfoOp};
        use std::sync::Arc;
        let target: Vec<u16> = format!("{VOLUME}\\dir\\new name.txt")
            .encode_utf16()
            .collect();
        let op = |hostile| SetInfoOp {
            op_id: 0,
            pid: 1000,
            file: 0,
            create_op: 0,
            kind: SetInfoKind::Rename {
                ex: false,
                replace: true,
            },
            source: Arc::new(Vec::new()),
            source_le: Arc::new(Vec::new()),
            target: Some(Arc::new(target.clone())),
            target_le: None,
            hostile,
            status: 0,
            post_at_dispatch: false,
        };
        let name_len = |b: &[u8]| u32::from_le_bytes(b[16..20].try_into().unwrap()) as u64;
        let (valid, len) = op(None).info_buffer();
        assert_eq!(len as usize, valid.len());
        assert_eq!(valid[0], 1, "ReplaceIfExists");
        assert_eq!(name_len(&valid), 2 * "new name.txt".len() as u64);
        assert!(RENAME_NAME_OFFSET as u64 + name_len(&valid) <= u64::from(len));
        let (b, len) = op(Some(Hostile::NameLongerThanBuffer)).info_buffer();
        assert!(RENAME_NAME_OFFSET as u64 + name_len(&b) > u64::from(len));
        let (b, _) = op(Some(Hostile::OddNameLength)).info_buffer();
        assert_eq!(name_len(&b) % 2, 1);
        let (b, _) = op(Some(Hostile::NameLengthNearMax)).info_buffer();
        assert!(name_len(&b) >= u64::from(u32::MAX) - 1);
        let (b, len) = op(Some(Hostile::ShorterThanHeader)).info_buffer();
        assert!((len as usize) < RENAME_INFO_SIZE && b.len() == len as usize);
    }

    /// Hostile FSCTL inputs against DUPLICATE_EXTENTS_DATA (32 bytes) / _EX (48, `Size` first).
    #[test]
    fn hostile_fsctl_inputs_are_what_they_claim() {
        use fsense_fltsim::changes::{
            DUPLICATE_EXTENTS_DATA_EX_LEN, DUPLICATE_EXTENTS_DATA_LEN,
            FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX, FsctlOp, Hostile,
        };
        let op = |code, hostile| FsctlOp {
            op_id: 0,
            pid: 1000,
            file: 0,
            create_op: 0,
            code,
            target_offset: 4096,
            byte_count: 65536,
            source_offset: 8192,
            hostile,
            status: 0,
            post_at_dispatch: false,
        };
        let (b, len) = op(FSCTL_DUPLICATE_EXTENTS_TO_FILE, None).input();
        assert_eq!((b.len(), len as usize), (32, DUPLICATE_EXTENTS_DATA_LEN));
        assert_eq!(
            u64::from_le_bytes(b[16..24].try_into().unwrap()),
            4096,
            "TargetFileOffset"
        );
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            65536,
            "ByteCount"
        );
        let (b, len) = op(FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX, None).input();
        assert_eq!((b.len(), len as usize), (48, DUPLICATE_EXTENTS_DATA_EX_LEN));
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 48, "Size");
        let (_, len) = op(FSCTL_DUPLICATE_EXTENTS_TO_FILE, Some(Hostile::FsctlShort)).input();
        assert!((len as usize) < DUPLICATE_EXTENTS_DATA_LEN);
        let (b, len) = op(
            FSCTL_DUPLICATE_EXTENTS_TO_FILE,
            Some(Hostile::FsctlNullBuffer),
        )
        .input();
        assert!(b.is_empty() && len as usize == DUPLICATE_EXTENTS_DATA_LEN);
        let (b, len) = op(
            FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX,
            Some(Hostile::FsctlSizeMismatch),
        )
        .input();
        assert!(u64::from_le_bytes(b[0..8].try_into().unwrap()) > u64::from(len));
    }
}
