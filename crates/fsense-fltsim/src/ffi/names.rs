//! Names: file name information handed to the driver.
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is that of the documented kernel function it replaces"
)]

use super::*;
use name_storage::NameInfoStorage;

fn make_string(units: usize, buffer: *mut u16) -> UNICODE_STRING {
    let len = (units * 2).min(u16::MAX as usize - 1) as u16;
    UNICODE_STRING {
        Length: len,
        MaximumLength: len,
        Buffer: if units == 0 {
            std::ptr::null_mut()
        } else {
            buffer
        },
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetFileNameInformation(
    callback_data: *const FLT_CALLBACK_DATA,
    name_options: u32,
    file_name_information: *mut *mut FLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    if verifier::irql() > APC_LEVEL {
        violation(
            "IRQL_NAME_QUERY",
            "FltGetFileNameInformation above APC_LEVEL",
        );
        return STATUS_INVALID_PARAMETER;
    }
    if verifier::spin_locks_held() > 0 {
        violation(
            "NAME_QUERY_HOLDING_SPIN_LOCK",
            "name query while holding a spin lock",
        );
    }
    if callback_data.is_null() || file_name_information.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let op = CURRENT_OP.with(|c| {
        c.borrow()
            .as_ref()
            .map(|o| (o.path.clone(), o.shape, o.opened))
    });
    let Some((path, shape, opened)) = op else {
        violation(
            "NAME_QUERY_OUTSIDE_OPERATION",
            "name query with no operation in progress",
        );
        return STATUS_INVALID_PARAMETER;
    };
    // `nf-fltkernel-fltgetfilenameinformation`, Remarks: the opened name of a create that
    // does not succeed is documented only for the *pre*-create callback; and on
    // STATUS_REPARSE the query is refused unless FLT_FILE_NAME_ALLOW_QUERY_ON_REPARSE is given.
    // So in post-create, a create that opened nothing has no name to ask for.
    if verifier::in_callback() == Some("PostCreate")
        && !opened
        && name_options & FLT_FILE_NAME_ALLOW_QUERY_ON_REPARSE == 0
    {
        violation(
            "NAME_QUERY_AFTER_FAILED_CREATE",
            "post-create name query for a create that failed or returned STATUS_REPARSE (query the opened name in pre-create)",
        );
        return STATUS_FLT_INVALID_NAME_REQUEST;
    }
    // `nf-fltkernel-fltgetfilenameinformation`, format table: FLT_FILE_NAME_SHORT is "not valid
    // in the pre-create path". A normalized name there is valid but must be checked for
    // tunnelling (`nf-fltkernel-fltgettunneledname`); fsense never needs it, so that is a
    // finding of this project's own (NAME_NORMALIZED_IN_PRE_CREATE).
    if verifier::in_callback() == Some("PreCreate") {
        match name_options & 0xFF {
            FLT_FILE_NAME_SHORT => {
                violation(
                    "NAME_FORMAT_IN_PRE_CREATE",
                    "FLT_FILE_NAME_SHORT queried in pre-create",
                );
                return STATUS_INVALID_PARAMETER;
            }
            FLT_FILE_NAME_OPENED => {}
            other => violation(
                "NAME_NORMALIZED_IN_PRE_CREATE",
                format!("pre-create name query with format {other:#x}, not FLT_FILE_NAME_OPENED"),
            ),
        }
    }
    if shape == NameShape::QueryFails {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    let name: *mut [u16] = Box::into_raw(Box::<[u16]>::from(path.as_slice()));
    let volume: *mut [u16] = Box::into_raw(VOLUME.encode_utf16().collect::<Box<[u16]>>());
    let (name_ptr, name_units) = (name.cast::<u16>(), name.len());
    let mut info = FLT_FILE_NAME_INFORMATION {
        Size: std::mem::size_of::<FLT_FILE_NAME_INFORMATION>() as u16,
        NamesParsed: 0,
        Format: 1,
        Name: make_string(name_units, name_ptr),
        // Volume stays empty until FltParseFileNameInformation, as on Windows.
        Volume: UNICODE_STRING::default(),
        Share: UNICODE_STRING::default(),
        Extension: UNICODE_STRING::default(),
        Stream: UNICODE_STRING::default(),
        FinalComponent: UNICODE_STRING::default(),
        ParentDir: UNICODE_STRING::default(),
    };
    match shape {
        NameShape::OddLength => info.Name.Length = info.Name.Length.saturating_sub(1) | 1,
        NameShape::LengthAboveMaximum => {
            info.Name.MaximumLength = info.Name.Length.saturating_sub(2);
            if info.Name.Length == 0 {
                info.Name.Length = 2;
            }
        }
        NameShape::NullBuffer => {
            info.Name.Buffer = std::ptr::null_mut();
            info.Name.Length = info.Name.Length.max(2);
            info.Name.MaximumLength = info.Name.Length;
        }
        NameShape::Valid | NameShape::QueryFails => {}
    }
    let ptr = Box::into_raw(Box::new(info));
    world::with_world(|w| {
        w.name_infos.insert(
            ptr as usize,
            NameInfoStorage {
                info: ptr,
                name,
                volume,
            },
        )
    });
    // SAFETY: non-null out pointer from the driver.
    unsafe { file_name_information.write(ptr) };
    STATUS_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltParseFileNameInformation(
    file_name_information: *mut FLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    require_irql(APC_LEVEL, "FltParseFileNameInformation");
    world::with_world(
        |w| match w.name_infos.get_mut(&(file_name_information as usize)) {
            Some(s) => {
                // SAFETY: both pointers are live allocations owned by the storage entry, which
                // stays in the map (so alive) while we hold the world lock.
                unsafe {
                    (*s.info).Volume = make_string(s.volume.len(), s.volume.cast::<u16>());
                    (*s.info).NamesParsed = 1;
                }
                STATUS_SUCCESS
            }
            None => {
                violation(
                    "NAME_PARSE_UNKNOWN",
                    "parsing name information the Filter Manager did not hand out",
                );
                STATUS_INVALID_PARAMETER
            }
        },
    )
    .unwrap_or(STATUS_INVALID_PARAMETER)
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltReleaseFileNameInformation(
    file_name_information: *const FLT_FILE_NAME_INFORMATION,
) {
    require_irql(APC_LEVEL, "FltReleaseFileNameInformation");
    let removed =
        world::with_world(|w| w.name_infos.remove(&(file_name_information as usize))).flatten();
    if removed.is_none() {
        violation(
            "NAME_RELEASE_UNKNOWN",
            "FltReleaseFileNameInformation on a reference not held (double release or foreign pointer)",
        );
    }
}

/// `nf-fltkernel-fltgetdestinationfilenameinformation` (issue 27): the destination name of a
/// rename or link, built as the Filter Manager builds it: a `FileName` that starts with `\` is a
/// full path on the volume; otherwise it names an entry in the directory of the file being
/// renamed or linked. (`RootDirectory` handles are not modelled: the name is taken as relative
/// to the file's own directory.) IRQL <= APC_LEVEL, the documented ceiling.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FltGetDestinationFileNameInformation(
    instance: isize,
    file_object: *const FILE_OBJECT,
    _root_directory: HANDLE,
    file_name: *const u16,
    file_name_length: u32,
    name_options: u32,
    ret_file_name_information: *mut *mut FLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    // The page's rules (IRQL, rename or link only, which file object, no short names):
    // `set_info::destination_name`. The name itself is built below from what the driver passed.
    if let Err(status) = super::set_info::destination_name(instance, file_object, name_options) {
        return status;
    }
    if file_object.is_null() || ret_file_name_information.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    if !file_name_length.is_multiple_of(2) || (file_name.is_null() && file_name_length != 0) {
        return STATUS_INVALID_PARAMETER;
    }
    let units: Vec<u16> = if file_name_length == 0 {
        Vec::new()
    } else {
        // SAFETY: the driver passes `file_name_length` readable bytes at `file_name` (u16
        // aligned), as the documented contract requires.
        unsafe { std::slice::from_raw_parts(file_name, file_name_length as usize / 2) }.to_vec()
    };
    let Some(path) = CURRENT_OP.with(|c| c.borrow().as_ref().map(|o| o.path.clone())) else {
        violation(
            "NAME_QUERY_OUTSIDE_OPERATION",
            "destination name query with no operation in progress",
        );
        return STATUS_INVALID_PARAMETER;
    };
    let backslash = u16::from(b'\\');
    let mut full: Vec<u16> = if units.first() == Some(&backslash) {
        VOLUME.encode_utf16().chain(units.iter().copied()).collect()
    } else {
        let parent = path
            .iter()
            .rposition(|&u| u == backslash)
            .map_or(&path[..], |i| &path[..i]);
        let mut v = parent.to_vec();
        v.push(backslash);
        v.extend_from_slice(&units);
        v
    };
    full.truncate(32_767);
    let name: *mut [u16] = Box::into_raw(full.into_boxed_slice());
    let volume: *mut [u16] = Box::into_raw(VOLUME.encode_utf16().collect::<Box<[u16]>>());
    let (name_ptr, name_units) = (name.cast::<u16>(), name.len());
    let info = FLT_FILE_NAME_INFORMATION {
        Size: std::mem::size_of::<FLT_FILE_NAME_INFORMATION>() as u16,
        NamesParsed: 0,
        Format: 1,
        Name: make_string(name_units, name_ptr),
        Volume: UNICODE_STRING::default(),
        Share: UNICODE_STRING::default(),
        Extension: UNICODE_STRING::default(),
        Stream: UNICODE_STRING::default(),
        FinalComponent: UNICODE_STRING::default(),
        ParentDir: UNICODE_STRING::default(),
    };
    let ptr = Box::into_raw(Box::new(info));
    world::with_world(|w| {
        w.name_infos.insert(
            ptr as usize,
            NameInfoStorage {
                info: ptr,
                name,
                volume,
            },
        )
    });
    // SAFETY: non-null out pointer from the driver.
    unsafe { ret_file_name_information.write(ptr) };
    STATUS_SUCCESS
}

// `FltQueryInformationFile` is in `files.rs`, with the delete model it answers from.
