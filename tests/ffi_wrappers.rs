//! The driver's safe wrappers over kernel structures, fed hostile shapes. Miri runs this file
//! (see the README's test command), so an out-of-bounds or misaligned read here is caught as
//! undefined behaviour, not just as a wrong answer.

use core::ptr;

use fsense_driver::ffi::{
    BadCallbackData, BadUnicodeString, CallbackData, CreateParameters, WriteParameters,
    unicode_string_bytes,
};
use fsense_driver::sensor::{DEFAULT_QUEUE_CAPACITY, LoadConfig, opens_for_writing};
use windows_sys::Wdk::Foundation::IO_SECURITY_CONTEXT;
use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
    FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK,
};
use windows_sys::Wdk::System::SystemServices::{IRP_MJ_CREATE, IRP_MJ_WRITE, IRP_PAGING_IO};
use windows_sys::Win32::Foundation::UNICODE_STRING;

// The simulator defines the kernel functions the driver imports.
use fsense_fltsim as _;

fn us(len: u16, max: u16, buf: *mut u16) -> UNICODE_STRING {
    UNICODE_STRING {
        Length: len,
        MaximumLength: max,
        Buffer: buf,
    }
}

#[test]
fn unicode_string_checks_every_field_before_reading() {
    let mut units = [0x41u16, 0xD800, 0x42];
    let p = units.as_mut_ptr();
    // SAFETY: (all calls below) every Buffer is either null, misaligned (never read: the checks
    // refuse it first), or points into `units`, which outlives the call; lengths that exceed the
    // buffer are refused before any read.
    unsafe {
        assert_eq!(unicode_string_bytes(&us(6, 6, p)).map(<[u8]>::len), Ok(6));
        assert_eq!(
            unicode_string_bytes(&us(5, 6, p)),
            Err(BadUnicodeString::OddLength)
        );
        assert_eq!(
            unicode_string_bytes(&us(8, 6, p)),
            Err(BadUnicodeString::LengthAboveMaximum)
        );
        assert_eq!(
            unicode_string_bytes(&us(2, 2, ptr::null_mut())),
            Err(BadUnicodeString::NullBuffer)
        );
        assert_eq!(
            unicode_string_bytes(&us(0, 0, ptr::null_mut())),
            Ok(&[][..])
        );
        let misaligned = p.cast::<u8>().wrapping_add(1).cast::<u16>();
        assert_eq!(
            unicode_string_bytes(&us(2, 4, misaligned)),
            Err(BadUnicodeString::Misaligned)
        );
    }
}

#[test]
fn unpaired_surrogates_pass_through_unchanged() {
    let mut units = [0xDC00u16, 0x5C, 0xD800];
    let s = us(6, 6, units.as_mut_ptr());
    // SAFETY: Buffer points to 3 units (6 bytes) that outlive the borrow.
    let bytes = unsafe { unicode_string_bytes(&s) }.unwrap();
    assert_eq!(bytes, &[0x00, 0xDC, 0x5C, 0x00, 0x00, 0xD8]);
}

#[test]
fn longest_string_is_read_exactly() {
    let mut units = vec![0x61u16; 32_767];
    let len = (units.len() * 2) as u16;
    let s = us(len, len, units.as_mut_ptr());
    // SAFETY: Buffer points to 32,767 units that outlive the borrow.
    let bytes = unsafe { unicode_string_bytes(&s) }.unwrap();
    assert_eq!(bytes.len(), 65_534);
}

fn zeroed_data() -> FLT_CALLBACK_DATA {
    // SAFETY: FLT_CALLBACK_DATA is plain data for which all-zero is a valid bit pattern.
    unsafe { core::mem::zeroed() }
}

fn zeroed_iopb() -> FLT_IO_PARAMETER_BLOCK {
    // SAFETY: plain data, all-zero is valid.
    unsafe { core::mem::zeroed() }
}

#[test]
fn callback_data_refuses_null_and_wrong_shapes() {
    // SAFETY: null is explicitly allowed by from_raw's contract.
    let null = unsafe { CallbackData::from_raw(ptr::null(), IRP_MJ_CREATE) };
    assert_eq!(null.err(), Some(BadCallbackData::Null));

    let mut data = zeroed_data();
    // SAFETY: `data` is valid for the call; its Iopb is null, which must be refused.
    let no_iopb = unsafe { CallbackData::from_raw(&data, IRP_MJ_CREATE) };
    assert_eq!(no_iopb.err(), Some(BadCallbackData::NullParameterBlock));

    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_WRITE as u8;
    data.Iopb = &iopb;
    // SAFETY: data and iopb are valid locals for the call.
    let wrong = unsafe { CallbackData::from_raw(&data, IRP_MJ_CREATE) };
    assert_eq!(
        wrong.err(),
        Some(BadCallbackData::WrongMajorFunction(IRP_MJ_WRITE as u8))
    );

    let bytes = [0u8; core::mem::size_of::<FLT_CALLBACK_DATA>() + 8];
    let misaligned = bytes.as_ptr().wrapping_add(1).cast::<FLT_CALLBACK_DATA>();
    // SAFETY: misaligned pointers are refused before any read.
    let mis = unsafe { CallbackData::from_raw(misaligned, IRP_MJ_CREATE) };
    assert_eq!(mis.err(), Some(BadCallbackData::Misaligned));
}

#[test]
fn create_without_security_context_yields_no_parameters() {
    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_CREATE as u8;
    let mut data = zeroed_data();
    data.Iopb = &iopb;
    // SAFETY: data and iopb outlive the view.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_CREATE) }.unwrap();
    assert!(view.create_params().is_none());
    assert!(!view.is_directory_open());
}

#[test]
fn create_parameters_are_split_as_the_io_manager_packs_them() {
    let mut security = IO_SECURITY_CONTEXT {
        SecurityQos: ptr::null_mut(),
        AccessState: ptr::null_mut(),
        DesiredAccess: 0x0012_019F,
        FullCreateOptions: 0,
    };
    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_CREATE as u8;
    let create = CreateParameters {
        security_context: &mut security,
        options: (2 << 24) | 0x21, // FILE_CREATE, directory | sync
        _align_file_attributes: 0,
        file_attributes: 0,
        share_access: 3,
        _align_ea_length: 0,
        ea_length: 0,
        _align_ea_buffer: 0,
        ea_buffer: ptr::null_mut(),
        allocation_size: 0,
    };
    // SAFETY: CreateParameters fits inside the union with no stricter alignment (checked by the
    // driver at compile time).
    unsafe {
        ptr::addr_of_mut!(iopb.Parameters)
            .cast::<CreateParameters>()
            .write(create)
    };
    let mut data = zeroed_data();
    data.Iopb = &iopb;
    // SAFETY: data, iopb and security outlive the view.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_CREATE) }.unwrap();
    let p = view.create_params().unwrap();
    assert_eq!(
        (p.disposition, p.options, p.share_access, p.desired_access),
        (2, 0x21, 3, 0x0012_019F)
    );
    assert!(view.is_directory_open());
}

#[test]
fn write_parameters_and_paging_flag() {
    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_WRITE as u8;
    iopb.IrpFlags = IRP_PAGING_IO;
    let write = WriteParameters {
        length: u32::MAX,
        _align_key: 0,
        key: 0xAAAA_AAAA, // must not leak into the offset (windows-sys's layout would)
        _align_byte_offset: 0,
        byte_offset: -2, // u64::MAX - 1 as the kernel's LARGE_INTEGER
        write_buffer: ptr::null_mut(),
        mdl_address: ptr::null_mut(),
    };
    // SAFETY: WriteParameters fits inside the union (checked by the driver at compile time).
    unsafe {
        ptr::addr_of_mut!(iopb.Parameters)
            .cast::<WriteParameters>()
            .write(write)
    };
    let mut data = zeroed_data();
    data.Iopb = &iopb;
    // SAFETY: data and iopb outlive the view.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_WRITE) }.unwrap();
    let w = view.write_params();
    assert_eq!(
        (w.offset, w.length, w.paging_io),
        (u64::MAX - 1, u32::MAX, true)
    );
}

#[test]
fn registry_capacity_below_range_defaults_and_above_range_is_capped() {
    assert_eq!(
        LoadConfig::from_registry_value(None).queue_capacity,
        DEFAULT_QUEUE_CAPACITY
    );
    assert_eq!(
        LoadConfig::from_registry_value(Some(0)).queue_capacity,
        DEFAULT_QUEUE_CAPACITY
    );
    // Defect 7: capped at 65,536 records (32 MiB of non-paged pool), never 1M (512 MiB).
    for huge in [u32::MAX, 1 << 20, 65_537] {
        let config = LoadConfig::from_registry_value(Some(huge));
        assert_eq!(config.queue_capacity, 65_536);
        assert!(config.queue_bytes() <= 32 << 20);
    }
    assert_eq!(LoadConfig::from_registry_value(Some(64)).queue_capacity, 64);
    assert!(
        LoadConfig::from_registry_value(Some(16)).queue_bytes() >= fsense_proto::MAX_RECORD_BYTES
    );
}

#[test]
fn only_write_capable_opens_keep_a_name() {
    assert!(opens_for_writing(0x2)); // FILE_WRITE_DATA
    assert!(opens_for_writing(0x4)); // FILE_APPEND_DATA
    assert!(opens_for_writing(0x4000_0000)); // GENERIC_WRITE
    assert!(!opens_for_writing(0x8000_0000 | 0x1)); // GENERIC_READ | FILE_READ_DATA
    assert!(!opens_for_writing(0x0010_0000)); // SYNCHRONIZE only
}
