//! The I/O callbacks: pre/post create and write.

use super::*;

pub(super) unsafe extern "system" fn pre_create(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_CREATE) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    // No completion slot, no post-create: post_create reads the slot, so it must be ours.
    if completion.is_null() || !completion.is_aligned() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    let desired_access = data.create_params().map_or(0, |p| p.desired_access);
    let requestor = data.requestor();
    let interest = sensor::SENSOR.create_interest(&requestor, desired_access);
    // A delete-on-close open needs post-create too (issue 27): it keeps the name its delete
    // will report at cleanup.
    let delete_on_close = data.deletes_on_close() && sensor::SENSOR.wants_namespace(&requestor);
    if !interest.post && !delete_on_close {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // Always written before WITH_CALLBACK: the DDI calls the context optional and promises no
    // NULL on entry (`nc-fltkernel-pflt_pre_operation_callback`, CompletionContext), and
    // post_create releases any non-NULL value as a name reference.
    let mut context = ptr::null_mut();
    if interest.name_in_pre {
        // The opened name, in case the create fails: documented here, not in post-create.
        if let Ok(name) = NameInfo::query(&data, true) {
            context = name.into_raw();
        }
    }
    // SAFETY: non-null, aligned out pointer from the Filter Manager; post_create takes the
    // reference (if any) back exactly once (it always runs after WITH_CALLBACK, draining
    // included).
    unsafe { *completion = context };
    FLT_PREOP_SUCCESS_WITH_CALLBACK
}

pub(super) unsafe extern "system" fn post_create(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // SAFETY: `completion` is what pre_create stored: null or a name reference from into_raw,
    // taken back exactly once here (released on every return path when dropped).
    let pre_create_name = unsafe { NameInfo::from_raw(completion) };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_CREATE) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let st = data.status();
    // STATUS_REPARSE is a success code, but nothing was opened (the samples skip it too), and
    // the create is reissued on the target, which is reported itself: nothing to do (#11).
    if st == status::REPARSE {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    let opened = status::is_success(st);
    let record = sensor::SENSOR.reports_creates();
    let params = data.create_params().unwrap_or_default();
    // Not recording: post-create runs only to keep the name of an open that can write. Any
    // other open needs no name (creates were switched off since pre-create, or never on).
    let keeps_name = opened && sensor::opens_for_writing(params.desired_access);
    let delete_on_close = opened && data.deletes_on_close();
    if !(record || keeps_name || delete_on_close) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // An opened file gets its normalized name now; a failed one keeps the opened name taken in
    // pre-create (no name query runs here for a create that did not open anything).
    let name = if opened {
        drop(pre_create_name);
        NameInfo::query(&data, false)
    } else {
        pre_create_name.ok_or(NameError::NotQueried)
    };
    let (path, volume, name_failed) = match &name {
        Ok(info) => match info.name() {
            Ok(path) => (path, info.volume(), false),
            Err(_) => (&[][..], &[][..], true),
        },
        Err(_) => (&[][..], &[][..], true),
    };
    let target_directory = data.opens_target_directory();
    let facts = sensor::CreateFacts {
        requestor: data.requestor(),
        status: st,
        opened,
        record,
        target_directory,
        information: data.information(),
        params,
        directory: if opened {
            data.opened_a_directory()
        } else {
            data.is_directory_open()
        },
        name_failed,
    };
    let stored = sensor::SENSOR.record_create(&facts, path, volume);
    // The filter from this callback's related objects, never the global: callbacks keep
    // arriving while unload runs (the ctx sample does the same).
    // SAFETY: the related objects the Filter Manager passed to this callback.
    let filter = unsafe { related_filter(objects) };
    if let (true, Some(filter)) = (stored.keep_name_for_writes, filter) {
        StreamName::attach(
            &data,
            filter,
            stored.path.as_le_bytes(),
            stored.volume.as_le_bytes(),
            stored.truncated,
        );
    }
    // Delete-on-close (issue 27): the stream becomes a delete candidate, decided at cleanup as
    // the `delete` sample does. The context is the stream's (kept if one exists).
    // Files only: no stream context is set on a directory (the simulator's
    // DIRECTORY_NAME_CONTEXT rule), so a directory's delete-on-close is not reported.
    let file_delete_on_close = delete_on_close && !facts.directory && !target_directory;
    if let (true, false, Some(filter)) = (file_delete_on_close, name_failed, filter) {
        StreamName::attach_with(
            &data,
            filter,
            stored.path.as_le_bytes(),
            stored.volume.as_le_bytes(),
            stored.truncated,
            StreamState::DELETE_CANDIDATE,
            false,
        );
        if let Some(ctx) = StreamName::get(&data) {
            ctx.update_state(StreamState::DELETE_CANDIDATE, 0);
        }
    }
    drop(name); // released exactly once, after the last use of its strings
    FLT_POSTOP_FINISHED_PROCESSING
}

pub(super) unsafe extern "system" fn pre_write(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *mut *mut c_void,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_WRITE) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if completion.is_null() || !completion.is_aligned() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // The completion step of an MDL write (IRP_MN_MDL | IRP_MN_COMPLETE) is not a second write:
    // its data was reported at the prepare step (N2).
    if data.is_write_completion() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if !sensor::SENSOR.wants_write(&data.requestor(), data.write_params().paging_io) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // SAFETY: `completion` was checked non-null and aligned above; post_write takes the name back.
    unsafe { StreamName::hand_to_post(&data, completion) }
}

pub(super) unsafe extern "system" fn post_write(
    data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    completion: *const c_void,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // SAFETY: `completion` is what pre_write stored: null or a reference from into_raw, taken
    // back exactly once here.
    let name = unsafe { StreamName::from_raw(completion) };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING; // `name` is released on return
    }
    // SAFETY: the Filter Manager's callback data for this callback.
    let Ok(data) = (unsafe { CallbackData::from_raw(data, IRP_MJ_WRITE) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    // A fast I/O write whose fast path a filter below disallowed wrote nothing here; the I/O
    // manager reissues it as an IRP, which reaches pre- and post-write again and is recorded
    // then (#14: counted once).
    if data.is_fast_io() && data.status() == status::FLT_DISALLOW_FAST_IO {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    let (path, volume, truncated) = name
        .as_ref()
        .map_or((&[][..], &[][..], false), StreamName::parts);
    let facts = sensor::WriteFacts {
        requestor: data.requestor(),
        status: data.status(),
        bytes_written: data.information(),
        params: data.write_params(),
        name_known: name.is_some(),
        truncated,
    };
    sensor::SENSOR.record_write(&facts, path, volume);
    FLT_POSTOP_FINISHED_PROCESSING
}
