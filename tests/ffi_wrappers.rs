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

// --- issue 27: the variable-length buffers of set-information and FSCTLs ----------------------

use fsense_driver::ffi::{
    BadBuffer, DUPLICATE_EXTENTS_EX_LEN, NAME_CHANGE_NAME_OFFSET, info_buffer, parse_disposition,
    parse_duplicate_extents, parse_name_change,
};

/// A FILE_RENAME_INFORMATION / FILE_LINK_INFORMATION of `total` bytes whose FileNameLength says
/// `declared` (the name bytes are 'a', 0, ...), 8-aligned as the system buffer is.
fn name_change_buffer(first: u32, declared: u32, total: usize) -> Vec<u64> {
    let mut words = vec![0u64; total.div_ceil(8)];
    let bytes = words_as_bytes_mut(&mut words);
    bytes[0..4].copy_from_slice(&first.to_le_bytes());
    bytes[8..16].copy_from_slice(&0x44u64.to_le_bytes());
    bytes[16..20].copy_from_slice(&declared.to_le_bytes());
    for (i, b) in bytes[NAME_CHANGE_NAME_OFFSET..].iter_mut().enumerate() {
        *b = if i % 2 == 0 { b'a' } else { 0 };
    }
    words
}

fn words_as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 storage viewed as its bytes (u8 has no alignment or validity needs).
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), words.len() * 8) }
}

/// Views `total` bytes of `words` through the driver's unsafe constructor.
fn view(words: &[u64], total: usize, align: usize) -> Result<&[u8], BadBuffer> {
    assert!(total <= words.len() * 8);
    // SAFETY: `words` holds at least `total` readable bytes for the borrow.
    unsafe { info_buffer(words.as_ptr().cast(), total as u32, align) }
}

/// N2/#12 (third driver review), issue 27: a FileNameLength that runs past the buffer is
/// rejected before a byte of the name is read (Miri would flag the read otherwise).
#[test]
fn hostile_file_name_lengths_are_rejected_unread() {
    let total = NAME_CHANGE_NAME_OFFSET + 6; // room for 3 units
    for (declared, expected) in [
        (
            8,
            Err(BadBuffer::NameLength {
                declared: 8,
                room: 6,
            }),
        ),
        (
            u32::MAX,
            Err(BadBuffer::NameLength {
                declared: u32::MAX,
                room: 6,
            }),
        ),
        (
            0x8000_0000,
            Err(BadBuffer::NameLength {
                declared: 0x8000_0000,
                room: 6,
            }),
        ),
        (5, Err(BadBuffer::OddNameLength(5))),
    ] {
        let words = name_change_buffer(1, declared, total);
        let buf = view(&words, total, 8).unwrap();
        assert_eq!(
            parse_name_change(buf, false).map(|c| c.file_name.len()),
            expected
        );
    }
    let words = name_change_buffer(1, 6, total);
    let buf = view(&words, total, 8).unwrap();
    let change = parse_name_change(buf, false).unwrap();
    assert_eq!(change.file_name, b"a\0a\0a\0");
    assert_eq!(
        (change.replace_if_exists, change.root_directory),
        (true, 0x44)
    );
    // Shorter than the fixed part: rejected, whatever it declares.
    let short = view(&words, NAME_CHANGE_NAME_OFFSET - 1, 8);
    assert_eq!(
        short.and_then(|b| parse_name_change(b, true)).err(),
        Some(BadBuffer::TooShort {
            needed: 20,
            len: 19
        })
    );
}

#[test]
fn ex_name_changes_read_the_replace_flag_from_flags() {
    let total = NAME_CHANGE_NAME_OFFSET + 2;
    // FILE_RENAME_POSIX_SEMANTICS (0x2) alone: not a replace.
    let words = name_change_buffer(0x2, 2, total);
    let buf = view(&words, total, 8).unwrap();
    assert!(!parse_name_change(buf, true).unwrap().replace_if_exists);
    // A non-Ex buffer only reads the BOOLEAN: 0x100 in the word is not ReplaceIfExists.
    let words = name_change_buffer(0x100, 2, total);
    let buf = view(&words, total, 8).unwrap();
    assert!(!parse_name_change(buf, false).unwrap().replace_if_exists);
    let words = name_change_buffer(0x1, 2, total);
    let buf = view(&words, total, 8).unwrap();
    assert!(parse_name_change(buf, true).unwrap().replace_if_exists);
}

#[test]
fn info_buffers_are_checked_for_null_and_alignment() {
    // SAFETY: a null pointer with a length is refused before any read; length 0 reads nothing.
    unsafe {
        assert_eq!(info_buffer(ptr::null(), 4, 1), Err(BadBuffer::Null));
        assert_eq!(info_buffer(ptr::null(), 0, 8), Ok(&[][..]));
    }
    let words = [0u64; 4];
    let odd = words.as_ptr().cast::<u8>().wrapping_add(4).cast();
    // SAFETY: misaligned for 8: refused before any read.
    assert_eq!(
        unsafe { info_buffer(odd, 8, 8) },
        Err(BadBuffer::Misaligned)
    );
    // SAFETY: 4-aligned and 28 readable bytes remain after it.
    assert_eq!(unsafe { info_buffer(odd, 8, 4) }.map(<[u8]>::len), Ok(8));
}

#[test]
fn dispositions_are_read_within_their_length() {
    let words = [0u64; 1];
    assert_eq!(
        view(&words, 0, 1).and_then(|b| parse_disposition(b, false)),
        Err(BadBuffer::TooShort { needed: 1, len: 0 })
    );
    assert_eq!(
        view(&words, 3, 4).and_then(|b| parse_disposition(b, true)),
        Err(BadBuffer::TooShort { needed: 4, len: 3 })
    );
    let words = [u64::from(0x1u32 | 0x2 | 0x8)];
    let d = view(&words, 4, 4)
        .and_then(|b| parse_disposition(b, true))
        .unwrap();
    assert!(d.delete && d.posix && d.on_close);
    let words = [0x0100u64]; // DeleteFile is the first byte only
    assert!(
        !view(&words, 1, 1)
            .and_then(|b| parse_disposition(b, false))
            .unwrap()
            .delete
    );
}

#[test]
fn duplicate_extents_inputs_are_versioned_and_bounded() {
    let mut words = [0u64; 6];
    words[2] = 4096; // TargetFileOffset (plain form)
    words[3] = 1 << 33; // ByteCount
    let c = view(&words, 32, 8)
        .and_then(|b| parse_duplicate_extents(b, false))
        .unwrap();
    assert_eq!((c.target_offset, c.byte_count), (4096, 1 << 33));
    assert_eq!(
        view(&words, 31, 8)
            .and_then(|b| parse_duplicate_extents(b, false))
            .err(),
        Some(BadBuffer::TooShort {
            needed: 32,
            len: 31
        })
    );
    // _EX, x64: Size 48, offsets 24 and 32.
    let mut ex = [0u64; 6];
    ex[0] = DUPLICATE_EXTENTS_EX_LEN as u64;
    ex[3] = 8192;
    ex[4] = 512;
    let c = view(&ex, 48, 8)
        .and_then(|b| parse_duplicate_extents(b, true))
        .unwrap();
    assert_eq!((c.target_offset, c.byte_count), (8192, 512));
    assert_eq!(
        view(&ex, 47, 8)
            .and_then(|b| parse_duplicate_extents(b, true))
            .err(),
        Some(BadBuffer::TooShort {
            needed: 48,
            len: 47
        })
    );
    // _EX32: a DWORD32 Size of 40, offsets 16 and 24.
    let mut ex32 = [0u64; 5];
    ex32[0] = 40 | (0x1234 << 32);
    ex32[2] = 77;
    ex32[3] = 9;
    let c = view(&ex32, 40, 8)
        .and_then(|b| parse_duplicate_extents(b, true))
        .unwrap();
    assert_eq!((c.target_offset, c.byte_count), (77, 9));
    // Any other Size is a version this build does not know.
    ex[0] = 1 << 40;
    assert_eq!(
        view(&ex, 48, 8)
            .and_then(|b| parse_duplicate_extents(b, true))
            .err(),
        Some(BadBuffer::UnknownVersion(1 << 40))
    );
}

/// Writes `bytes` at `at` inside the parameter union (the WDK's x64 offsets, written as raw
/// bytes so the driver's own struct definitions are not used to build the input).
fn put_param(iopb: &mut FLT_IO_PARAMETER_BLOCK, at: usize, bytes: &[u8]) {
    let base = ptr::addr_of_mut!(iopb.Parameters).cast::<u8>();
    assert!(at + bytes.len() <= core::mem::size_of_val(&iopb.Parameters));
    // SAFETY: inside the union's bytes (asserted), which the test owns.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(at), bytes.len()) };
}

#[test]
fn set_information_and_fsctl_parameters_are_read_at_the_wdk_offsets() {
    use windows_sys::Wdk::System::SystemServices::{
        IRP_MJ_FILE_SYSTEM_CONTROL, IRP_MJ_SET_INFORMATION,
    };
    let marker = 0x1000usize as *const u8;
    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_SET_INFORMATION as u8;
    put_param(&mut iopb, 0, &24u32.to_le_bytes()); // Length
    put_param(&mut iopb, 4, &0xEEEE_EEEEu32.to_le_bytes()); // padding: must not be read
    put_param(&mut iopb, 8, &10i32.to_le_bytes()); // FileInformationClass
    put_param(&mut iopb, 32, &(marker as usize).to_le_bytes()); // InfoBuffer
    let mut data = zeroed_data();
    data.Iopb = &iopb;
    // SAFETY: data and iopb outlive the view.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_SET_INFORMATION) }.unwrap();
    let info = view.set_info().unwrap();
    assert_eq!(
        (info.class, info.length, info.buffer.addr()),
        (10, 24, 0x1000)
    );
    assert!(view.fs_control().is_none(), "not an FSCTL");

    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_FILE_SYSTEM_CONTROL as u8;
    put_param(&mut iopb, 0, &7u32.to_le_bytes()); // OutputBufferLength
    put_param(&mut iopb, 8, &32u32.to_le_bytes()); // InputBufferLength
    put_param(&mut iopb, 16, &0x0009_8344u32.to_le_bytes()); // FsControlCode
    put_param(&mut iopb, 24, &(marker as usize).to_le_bytes()); // SystemBuffer
    data.Iopb = &iopb;
    // SAFETY: as above.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_FILE_SYSTEM_CONTROL) }.unwrap();
    let f = view.fs_control().unwrap();
    assert_eq!(
        (f.code, f.input_length, f.input.addr()),
        (0x0009_8344, 32, 0x1000)
    );
    assert!(view.set_info().is_none(), "not a set-information");
    // A mount or verify request (another minor) has another layout: not read.
    iopb.MinorFunction = 1;
    data.Iopb = &iopb; // a fresh borrow after the write (the old one is stale for Miri)
    // SAFETY: as above.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_FILE_SYSTEM_CONTROL) }.unwrap();
    assert!(view.fs_control().is_none());
}

#[test]
fn mdl_writes_are_flagged_and_their_completion_is_not_a_write() {
    use windows_sys::Wdk::Storage::FileSystem::Minifilters::IRP_MJ_PREPARE_MDL_WRITE;
    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_PREPARE_MDL_WRITE as u8;
    put_param(&mut iopb, 0, &4096i64.to_le_bytes()); // FileOffset
    put_param(&mut iopb, 8, &512u32.to_le_bytes()); // Length
    put_param(&mut iopb, 16, &0xAAAA_AAAAu32.to_le_bytes()); // Key
    let mut data = zeroed_data();
    data.Iopb = &iopb;
    let major = u32::from(IRP_MJ_PREPARE_MDL_WRITE as u8);
    // SAFETY: data and iopb outlive the view.
    let view = unsafe { CallbackData::from_raw(&data, major) }.unwrap();
    let w = view.prepare_mdl_write_params().unwrap();
    assert_eq!(
        (w.offset, w.length, w.mdl, w.paging_io),
        (4096, 512, true, false)
    );

    let mut iopb = zeroed_iopb();
    iopb.MajorFunction = IRP_MJ_WRITE as u8;
    iopb.MinorFunction = 0x02; // IRP_MN_MDL: the prepare step, a write
    data.Iopb = &iopb;
    // SAFETY: as above.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_WRITE) }.unwrap();
    assert!(view.write_params().mdl && !view.is_write_completion());
    assert!(view.prepare_mdl_write_params().is_none());
    iopb.MinorFunction = 0x02 | 0x04; // IRP_MN_MDL | IRP_MN_COMPLETE: not a second write
    data.Iopb = &iopb;
    // SAFETY: as above.
    let view = unsafe { CallbackData::from_raw(&data, IRP_MJ_WRITE) }.unwrap();
    assert!(view.is_write_completion());
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: if cfg!(miri) { 4 } else { 512 },
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// Any bytes: the parsers never panic, and an accepted name lies inside the buffer.
    #[test]
    fn name_change_parsing_is_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64), ex in proptest::bool::ANY) {
        if let Ok(c) = parse_name_change(&bytes, ex) {
            let declared = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
            proptest::prop_assert_eq!(c.file_name.len(), declared);
            proptest::prop_assert!(NAME_CHANGE_NAME_OFFSET + declared <= bytes.len());
        }
        let _ = parse_disposition(&bytes, ex);
        let _ = parse_duplicate_extents(&bytes, ex);
    }
}
