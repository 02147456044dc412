//! The driver reads kernel structures through windows-sys definitions; a wrong size or offset
//! there reads the wrong bytes of a live kernel object. This test compares every size and offset
//! the driver depends on with numbers derived independently of windows-sys
//! (`tests/layout_expected.txt`, made by `scripts/derive-layouts.sh` from the mingw-w64 and Wine
//! DDK headers with a C compiler for x64).
//!
//! Every entry of the file must be mapped to a Rust expression here and every mapping must name an
//! entry of the file, so neither side can drift alone.

// windows-sys lays its structs out for the pointer width of the target it is compiled for, and the
// expected numbers are for x64 Windows; on a 64-bit host (where tests run) the two agree, on a
// 32-bit host the comparison would be meaningless.
#![cfg(target_pointer_width = "64")]

use core::mem::{offset_of, size_of};
use std::collections::{BTreeMap, BTreeSet};

use windows_sys::Wdk::Foundation::{FILE_OBJECT, IO_SECURITY_CONTEXT, KEVENT, OBJECT_ATTRIBUTES};
use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
    FLT_CALLBACK_DATA, FLT_CONTEXT_REGISTRATION, FLT_FILE_NAME_INFORMATION, FLT_IO_PARAMETER_BLOCK,
    FLT_OPERATION_REGISTRATION, FLT_PARAMETERS, FLT_REGISTRATION, FLT_RELATED_OBJECTS,
};
use windows_sys::Wdk::System::SystemServices::KEY_VALUE_PARTIAL_INFORMATION;
use windows_sys::Win32::Foundation::UNICODE_STRING;
use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;

use fsense_driver::ffi::{
    CreateParameters, FsControlParameters, PrepareMdlWriteParameters, SetInformationParameters,
    WriteParameters,
};

const EXPECTED: &str = include_str!("layout_expected.txt");

/// The Rust side of every entry: a type name is its size, `Type.member.path` an offset.
/// `FLT_PARAMETERS.Create` / `.Write` are the driver's own `CreateParameters` /
/// `WriteParameters` (windows-sys's `FLT_PARAMETERS_0` / `_4` are misaligned on x64; see
/// `src/ffi.rs`), read from the start of the union.
const ACTUAL: &[(&str, usize)] = &[
    ("FLT_CALLBACK_DATA", size_of::<FLT_CALLBACK_DATA>()),
    (
        "FLT_CALLBACK_DATA.Flags",
        offset_of!(FLT_CALLBACK_DATA, Flags),
    ),
    (
        "FLT_CALLBACK_DATA.Thread",
        offset_of!(FLT_CALLBACK_DATA, Thread),
    ),
    (
        "FLT_CALLBACK_DATA.Iopb",
        offset_of!(FLT_CALLBACK_DATA, Iopb),
    ),
    (
        "FLT_CALLBACK_DATA.IoStatus",
        offset_of!(FLT_CALLBACK_DATA, IoStatus),
    ),
    (
        "FLT_CALLBACK_DATA.RequestorMode",
        offset_of!(FLT_CALLBACK_DATA, RequestorMode),
    ),
    (
        "FLT_IO_PARAMETER_BLOCK",
        size_of::<FLT_IO_PARAMETER_BLOCK>(),
    ),
    (
        "FLT_IO_PARAMETER_BLOCK.IrpFlags",
        offset_of!(FLT_IO_PARAMETER_BLOCK, IrpFlags),
    ),
    (
        "FLT_IO_PARAMETER_BLOCK.MajorFunction",
        offset_of!(FLT_IO_PARAMETER_BLOCK, MajorFunction),
    ),
    (
        "FLT_IO_PARAMETER_BLOCK.TargetFileObject",
        offset_of!(FLT_IO_PARAMETER_BLOCK, TargetFileObject),
    ),
    (
        "FLT_IO_PARAMETER_BLOCK.TargetInstance",
        offset_of!(FLT_IO_PARAMETER_BLOCK, TargetInstance),
    ),
    (
        "FLT_IO_PARAMETER_BLOCK.Parameters",
        offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters),
    ),
    ("FLT_PARAMETERS", size_of::<FLT_PARAMETERS>()),
    ("FLT_PARAMETERS.Create", size_of::<CreateParameters>()),
    (
        "FLT_PARAMETERS.Create.SecurityContext",
        offset_of!(CreateParameters, security_context),
    ),
    (
        "FLT_PARAMETERS.Create.Options",
        offset_of!(CreateParameters, options),
    ),
    (
        "FLT_PARAMETERS.Create.ShareAccess",
        offset_of!(CreateParameters, share_access),
    ),
    ("FLT_PARAMETERS.Write", size_of::<WriteParameters>()),
    (
        "FLT_PARAMETERS.Write.Length",
        offset_of!(WriteParameters, length),
    ),
    (
        "FLT_PARAMETERS.Write.ByteOffset",
        offset_of!(WriteParameters, byte_offset),
    ),
    // Issue 27: the driver's own views of three more union members (read from the start of the
    // union like Create and Write; their second and third ULONGs are POINTER_ALIGNMENT).
    (
        "FLT_PARAMETERS.SetFileInformation",
        size_of::<SetInformationParameters>(),
    ),
    (
        "FLT_PARAMETERS.SetFileInformation.Length",
        offset_of!(SetInformationParameters, length),
    ),
    (
        "FLT_PARAMETERS.SetFileInformation.FileInformationClass",
        offset_of!(SetInformationParameters, file_information_class),
    ),
    (
        "FLT_PARAMETERS.SetFileInformation.InfoBuffer",
        offset_of!(SetInformationParameters, info_buffer),
    ),
    (
        "FLT_PARAMETERS.FileSystemControl.Buffered.InputBufferLength",
        offset_of!(FsControlParameters, input_buffer_length),
    ),
    (
        "FLT_PARAMETERS.FileSystemControl.Buffered.FsControlCode",
        offset_of!(FsControlParameters, fs_control_code),
    ),
    (
        "FLT_PARAMETERS.FileSystemControl.Buffered.SystemBuffer",
        offset_of!(FsControlParameters, system_buffer),
    ),
    (
        "FLT_PARAMETERS.PrepareMdlWrite.FileOffset",
        offset_of!(PrepareMdlWriteParameters, file_offset),
    ),
    (
        "FLT_PARAMETERS.PrepareMdlWrite.Length",
        offset_of!(PrepareMdlWriteParameters, length),
    ),
    ("FLT_RELATED_OBJECTS", size_of::<FLT_RELATED_OBJECTS>()),
    (
        "FLT_RELATED_OBJECTS.Size",
        offset_of!(FLT_RELATED_OBJECTS, Size),
    ),
    (
        "FLT_RELATED_OBJECTS.TransactionContext",
        offset_of!(FLT_RELATED_OBJECTS, TransactionContext),
    ),
    (
        "FLT_RELATED_OBJECTS.Filter",
        offset_of!(FLT_RELATED_OBJECTS, Filter),
    ),
    (
        "FLT_RELATED_OBJECTS.Volume",
        offset_of!(FLT_RELATED_OBJECTS, Volume),
    ),
    (
        "FLT_RELATED_OBJECTS.Instance",
        offset_of!(FLT_RELATED_OBJECTS, Instance),
    ),
    (
        "FLT_RELATED_OBJECTS.FileObject",
        offset_of!(FLT_RELATED_OBJECTS, FileObject),
    ),
    (
        "FLT_RELATED_OBJECTS.Transaction",
        offset_of!(FLT_RELATED_OBJECTS, Transaction),
    ),
    (
        "FLT_FILE_NAME_INFORMATION",
        size_of::<FLT_FILE_NAME_INFORMATION>(),
    ),
    (
        "FLT_FILE_NAME_INFORMATION.Size",
        offset_of!(FLT_FILE_NAME_INFORMATION, Size),
    ),
    (
        "FLT_FILE_NAME_INFORMATION.Format",
        offset_of!(FLT_FILE_NAME_INFORMATION, Format),
    ),
    (
        "FLT_FILE_NAME_INFORMATION.Name",
        offset_of!(FLT_FILE_NAME_INFORMATION, Name),
    ),
    (
        "FLT_FILE_NAME_INFORMATION.Volume",
        offset_of!(FLT_FILE_NAME_INFORMATION, Volume),
    ),
    ("FLT_REGISTRATION", size_of::<FLT_REGISTRATION>()),
    ("FLT_REGISTRATION.Size", offset_of!(FLT_REGISTRATION, Size)),
    (
        "FLT_REGISTRATION.Version",
        offset_of!(FLT_REGISTRATION, Version),
    ),
    (
        "FLT_REGISTRATION.Flags",
        offset_of!(FLT_REGISTRATION, Flags),
    ),
    (
        "FLT_REGISTRATION.ContextRegistration",
        offset_of!(FLT_REGISTRATION, ContextRegistration),
    ),
    (
        "FLT_REGISTRATION.OperationRegistration",
        offset_of!(FLT_REGISTRATION, OperationRegistration),
    ),
    (
        "FLT_REGISTRATION.FilterUnloadCallback",
        offset_of!(FLT_REGISTRATION, FilterUnloadCallback),
    ),
    (
        "FLT_REGISTRATION.InstanceSetupCallback",
        offset_of!(FLT_REGISTRATION, InstanceSetupCallback),
    ),
    (
        "FLT_REGISTRATION.InstanceQueryTeardownCallback",
        offset_of!(FLT_REGISTRATION, InstanceQueryTeardownCallback),
    ),
    (
        "FLT_REGISTRATION.InstanceTeardownStartCallback",
        offset_of!(FLT_REGISTRATION, InstanceTeardownStartCallback),
    ),
    (
        "FLT_REGISTRATION.InstanceTeardownCompleteCallback",
        offset_of!(FLT_REGISTRATION, InstanceTeardownCompleteCallback),
    ),
    (
        "FLT_REGISTRATION.GenerateFileNameCallback",
        offset_of!(FLT_REGISTRATION, GenerateFileNameCallback),
    ),
    (
        "FLT_REGISTRATION.NormalizeNameComponentCallback",
        offset_of!(FLT_REGISTRATION, NormalizeNameComponentCallback),
    ),
    (
        "FLT_REGISTRATION.NormalizeContextCleanupCallback",
        offset_of!(FLT_REGISTRATION, NormalizeContextCleanupCallback),
    ),
    (
        "FLT_REGISTRATION.TransactionNotificationCallback",
        offset_of!(FLT_REGISTRATION, TransactionNotificationCallback),
    ),
    (
        "FLT_REGISTRATION.NormalizeNameComponentExCallback",
        offset_of!(FLT_REGISTRATION, NormalizeNameComponentExCallback),
    ),
    (
        "FLT_REGISTRATION.SectionNotificationCallback",
        offset_of!(FLT_REGISTRATION, SectionNotificationCallback),
    ),
    (
        "FLT_OPERATION_REGISTRATION",
        size_of::<FLT_OPERATION_REGISTRATION>(),
    ),
    (
        "FLT_OPERATION_REGISTRATION.MajorFunction",
        offset_of!(FLT_OPERATION_REGISTRATION, MajorFunction),
    ),
    (
        "FLT_OPERATION_REGISTRATION.Flags",
        offset_of!(FLT_OPERATION_REGISTRATION, Flags),
    ),
    (
        "FLT_OPERATION_REGISTRATION.PreOperation",
        offset_of!(FLT_OPERATION_REGISTRATION, PreOperation),
    ),
    (
        "FLT_OPERATION_REGISTRATION.PostOperation",
        offset_of!(FLT_OPERATION_REGISTRATION, PostOperation),
    ),
    (
        "FLT_OPERATION_REGISTRATION.Reserved1",
        offset_of!(FLT_OPERATION_REGISTRATION, Reserved1),
    ),
    (
        "FLT_CONTEXT_REGISTRATION",
        size_of::<FLT_CONTEXT_REGISTRATION>(),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.ContextType",
        offset_of!(FLT_CONTEXT_REGISTRATION, ContextType),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.Flags",
        offset_of!(FLT_CONTEXT_REGISTRATION, Flags),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.ContextCleanupCallback",
        offset_of!(FLT_CONTEXT_REGISTRATION, ContextCleanupCallback),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.Size",
        offset_of!(FLT_CONTEXT_REGISTRATION, Size),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.PoolTag",
        offset_of!(FLT_CONTEXT_REGISTRATION, PoolTag),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.ContextAllocateCallback",
        offset_of!(FLT_CONTEXT_REGISTRATION, ContextAllocateCallback),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.ContextFreeCallback",
        offset_of!(FLT_CONTEXT_REGISTRATION, ContextFreeCallback),
    ),
    (
        "FLT_CONTEXT_REGISTRATION.Reserved1",
        offset_of!(FLT_CONTEXT_REGISTRATION, Reserved1),
    ),
    ("IO_SECURITY_CONTEXT", size_of::<IO_SECURITY_CONTEXT>()),
    (
        "IO_SECURITY_CONTEXT.DesiredAccess",
        offset_of!(IO_SECURITY_CONTEXT, DesiredAccess),
    ),
    ("IO_STATUS_BLOCK", size_of::<IO_STATUS_BLOCK>()),
    (
        "IO_STATUS_BLOCK.Status",
        offset_of!(IO_STATUS_BLOCK, Anonymous.Status),
    ),
    (
        "IO_STATUS_BLOCK.Information",
        offset_of!(IO_STATUS_BLOCK, Information),
    ),
    ("UNICODE_STRING", size_of::<UNICODE_STRING>()),
    ("UNICODE_STRING.Length", offset_of!(UNICODE_STRING, Length)),
    (
        "UNICODE_STRING.MaximumLength",
        offset_of!(UNICODE_STRING, MaximumLength),
    ),
    ("UNICODE_STRING.Buffer", offset_of!(UNICODE_STRING, Buffer)),
    ("OBJECT_ATTRIBUTES", size_of::<OBJECT_ATTRIBUTES>()),
    (
        "OBJECT_ATTRIBUTES.Length",
        offset_of!(OBJECT_ATTRIBUTES, Length),
    ),
    (
        "OBJECT_ATTRIBUTES.RootDirectory",
        offset_of!(OBJECT_ATTRIBUTES, RootDirectory),
    ),
    (
        "OBJECT_ATTRIBUTES.ObjectName",
        offset_of!(OBJECT_ATTRIBUTES, ObjectName),
    ),
    (
        "OBJECT_ATTRIBUTES.Attributes",
        offset_of!(OBJECT_ATTRIBUTES, Attributes),
    ),
    (
        "OBJECT_ATTRIBUTES.SecurityDescriptor",
        offset_of!(OBJECT_ATTRIBUTES, SecurityDescriptor),
    ),
    (
        "OBJECT_ATTRIBUTES.SecurityQualityOfService",
        offset_of!(OBJECT_ATTRIBUTES, SecurityQualityOfService),
    ),
    ("FILE_OBJECT.FsContext", offset_of!(FILE_OBJECT, FsContext)),
    ("KEVENT", size_of::<KEVENT>()),
    (
        "KEY_VALUE_PARTIAL_INFORMATION.TitleIndex",
        offset_of!(KEY_VALUE_PARTIAL_INFORMATION, TitleIndex),
    ),
    (
        "KEY_VALUE_PARTIAL_INFORMATION.Type",
        offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Type),
    ),
    (
        "KEY_VALUE_PARTIAL_INFORMATION.DataLength",
        offset_of!(KEY_VALUE_PARTIAL_INFORMATION, DataLength),
    ),
    (
        "KEY_VALUE_PARTIAL_INFORMATION.Data",
        offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data),
    ),
];

/// Entries where windows-sys 0.61 is known to disagree with the headers, with the value windows-sys
/// gives. Its metadata drops the per-member `POINTER_ALIGNMENT` (`DECLSPEC_ALIGN(8)` on x64) inside
/// `FLT_PARAMETERS` and declares the members `packed(4)` (upstream: microsoft/windows-rs#3525,
/// #4967), so `Create.ShareAccess` sits 4 bytes and `Write.ByteOffset` 8 bytes early: a driver that
/// reads them through windows-sys gets the wrong bytes on real Windows. Once the driver reads these
/// through its own correct `repr(C)` structs, map the entries in `ACTUAL` to those and delete them
/// here: the test below fails until this list matches reality.
const KNOWN_WINDOWS_SYS_DEFECTS: &[(&str, usize)] = &[];

/// Parses `NAME VALUE` lines; `#` comments and blank lines are skipped. Panics (failing the test)
/// on a malformed line or a repeated name, naming the line.
fn expected() -> BTreeMap<&'static str, usize> {
    let mut entries = BTreeMap::new();
    for (index, line) in EXPECTED.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, value] = fields[..] else {
            panic!("layout_expected.txt:{line_no}: expected `NAME VALUE`, got `{line}`");
        };
        let value: usize = value.parse().unwrap_or_else(|e| {
            panic!("layout_expected.txt:{line_no}: `{value}` is not a byte count: {e}")
        });
        assert!(
            entries.insert(name, value).is_none(),
            "layout_expected.txt:{line_no}: `{name}` appears twice"
        );
    }
    entries
}

fn actual() -> BTreeMap<&'static str, usize> {
    let mut entries = BTreeMap::new();
    for &(name, value) in ACTUAL {
        assert!(
            entries.insert(name, value).is_none(),
            "ACTUAL maps `{name}` twice"
        );
    }
    entries
}

#[test]
fn expected_file_and_rust_table_name_the_same_entries() {
    let expected: BTreeSet<_> = expected().into_keys().collect();
    let actual: BTreeSet<_> = actual().into_keys().collect();
    let unmapped: Vec<_> = expected.difference(&actual).collect();
    let stale: Vec<_> = actual.difference(&expected).collect();
    assert!(
        unmapped.is_empty() && stale.is_empty(),
        "entries of layout_expected.txt with no Rust expression: {unmapped:?}; \
         Rust expressions with no entry in layout_expected.txt: {stale:?}"
    );
    assert!(
        expected.len() >= 80,
        "layout_expected.txt has only {} entries; was it truncated?",
        expected.len()
    );
}

#[test]
fn windows_sys_layouts_match_the_c_headers() {
    let actual = actual();
    let defects: BTreeSet<_> = KNOWN_WINDOWS_SYS_DEFECTS.iter().map(|&(n, _)| n).collect();
    let mismatches: Vec<String> = expected()
        .into_iter()
        .filter(|(name, _)| !defects.contains(name))
        .filter_map(|(name, want)| {
            let got = actual.get(name)?;
            (*got != want).then(|| format!("{name}: headers {want}, windows-sys {got}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "windows-sys disagrees with the C headers:\n  {}",
        mismatches.join("\n  ")
    );
}

#[test]
fn known_windows_sys_defects_are_still_present() {
    let expected = expected();
    let actual = actual();
    for &(name, windows_sys_value) in KNOWN_WINDOWS_SYS_DEFECTS {
        let want = *expected
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in layout_expected.txt"));
        let got = *actual
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no Rust expression in ACTUAL"));
        assert_ne!(
            got, want,
            "{name} now matches the headers ({want}): remove it from KNOWN_WINDOWS_SYS_DEFECTS"
        );
        assert_eq!(
            got, windows_sys_value,
            "{name}: the Rust value changed from {windows_sys_value} to {got} (headers: {want})"
        );
    }
}
