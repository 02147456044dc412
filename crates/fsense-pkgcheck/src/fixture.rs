//! Builds small driver-like PE32+ images for the checker's own tests: a good one that passes every
//! rule, and variants that each break exactly one.

mod code;

use std::collections::BTreeMap;

use object::pe;
use object::write::pe::{NtHeaders, Writer};

pub use self::code::{Asm, CodeSpec, FixtureFunction, Layout, Registration, alloc};
use crate::checksum;

/// What to put in the image; `Spec::good()` passes every rule.
#[derive(Debug, Clone)]
pub struct Spec {
    pub machine: u16,
    pub subsystem: u16,
    pub dll_characteristics: u16,
    /// (module, functions) pairs for the import table.
    pub imports: Vec<(&'static str, Vec<&'static str>)>,
    /// Name of the one export; it points at the start of `.text`.
    pub export: Option<&'static str>,
    /// Put the entry point somewhere other than the export.
    pub entry_elsewhere: bool,
    pub text_writable: bool,
    /// Raw bytes of the certificate table (a WIN_CERTIFICATE), if any.
    pub certificate: Option<Vec<u8>>,
    /// The extended DLL characteristics debug entry (`/CETCOMPAT` writes 0x1), if any.
    pub ex_dll_characteristics: Option<u32>,
    /// The PDB path of the CodeView debug entry, if any.
    pub pdb_path: Option<&'static str>,
    pub fix_checksum: bool,
    /// Machine code, unwind data and a registration instead of `xor eax, eax; ret`.
    pub code: Option<CodeSpec>,
}

impl Spec {
    pub fn good() -> Self {
        Self {
            machine: pe::IMAGE_FILE_MACHINE_AMD64.0,
            subsystem: pe::IMAGE_SUBSYSTEM_NATIVE.0,
            dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE.0
                | pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT.0
                | pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY.0
                | pe::IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA.0,
            imports: vec![
                (
                    "ntoskrnl.exe",
                    vec!["ExAllocatePool2", "KeInitializeSpinLock"],
                ),
                ("FLTMGR.SYS", vec!["FltRegisterFilter", "FltStartFiltering"]),
            ],
            export: Some("DriverEntry"),
            entry_elsewhere: false,
            text_writable: false,
            certificate: None,
            ex_dll_characteristics: Some(crate::image::IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT),
            pdb_path: Some("fsense_driver.pdb"),
            fix_checksum: true,
            code: None,
        }
    }

    pub fn signed() -> Self {
        Self {
            certificate: Some(win_certificate(0x0200, 0x0002, 64)),
            ..Self::good()
        }
    }

    pub fn build(&self) -> Vec<u8> {
        build(self)
    }
}

/// A WIN_CERTIFICATE with `payload` bytes of (fake) PKCS#7 data, padded to 8 bytes.
pub fn win_certificate(revision: u16, certificate_type: u16, payload: usize) -> Vec<u8> {
    let length = 8 + payload;
    let mut bytes = Vec::with_capacity(length.next_multiple_of(8));
    bytes.extend_from_slice(&(length as u32).to_le_bytes());
    bytes.extend_from_slice(&revision.to_le_bytes());
    bytes.extend_from_slice(&certificate_type.to_le_bytes());
    bytes.extend(std::iter::repeat_n(0x30, payload));
    bytes.resize(length.next_multiple_of(8), 0);
    bytes
}

const TEXT_SIZE: u32 = 0x20;
const EXPORT_DIRECTORY_LEN: usize = 40;
const IMPORT_DESCRIPTOR_LEN: usize = 20;

/// Little-endian byte sink whose positions are RVAs relative to `base`.
struct Blob {
    base: u32,
    bytes: Vec<u8>,
}

impl Blob {
    fn rva(&self) -> u32 {
        self.base + self.bytes.len() as u32
    }
    fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    fn cstr(&mut self, text: &str) -> u32 {
        let rva = self.rva();
        self.bytes.extend_from_slice(text.as_bytes());
        self.bytes.push(0);
        rva
    }
    fn align(&mut self, to: usize) {
        self.bytes.resize(self.bytes.len().next_multiple_of(to), 0);
    }
    fn patch_u32(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
}

/// (export directory, import directory, IAT, debug directory) as (rva, size); size 0 if absent.
type Directories = [(u32, u32); 4];
/// Import name -> IAT slot RVA.
type Slots = BTreeMap<String, u32>;

const IMAGE_BASE: u64 = 0x1_4000_0000;
/// The first section's RVA with these headers and a 0x1000 section alignment.
const TEXT_RVA: u32 = 0x1000;

const DEBUG_DIRECTORY_LEN: usize = 28;

/// `file_base`: the file offset of `base` (debug entries point at their data by file offset too).
fn rdata_contents(
    spec: &Spec,
    base: u32,
    file_base: u32,
    export_target: u32,
) -> (Vec<u8>, Directories, Slots) {
    let mut blob = Blob {
        base,
        bytes: Vec::new(),
    };
    let mut directories = [(0, 0); 4];
    let mut slots = Slots::new();

    if let Some(name) = spec.export {
        let start = blob.bytes.len();
        blob.bytes.resize(start + EXPORT_DIRECTORY_LEN, 0);
        let functions = blob.rva();
        blob.u32(export_target);
        let names = blob.rva();
        let name_slot = blob.bytes.len();
        blob.u32(0);
        let ordinals = blob.rva();
        blob.u16(0);
        let module_name = blob.cstr("fsense.sys");
        let function_name = blob.cstr(name);
        blob.patch_u32(name_slot, function_name);
        // Characteristics, TimeDateStamp, versions stay 0.
        blob.patch_u32(start + 12, module_name);
        blob.patch_u32(start + 16, 1); // ordinal base
        blob.patch_u32(start + 20, 1); // NumberOfFunctions
        blob.patch_u32(start + 24, 1); // NumberOfNames
        blob.patch_u32(start + 28, functions);
        blob.patch_u32(start + 32, names);
        blob.patch_u32(start + 36, ordinals);
        directories[0] = (base + start as u32, blob.bytes.len() as u32 - start as u32);
        blob.align(8);
    }

    if !spec.imports.is_empty() {
        let descriptors = blob.bytes.len();
        blob.bytes.resize(
            descriptors + IMPORT_DESCRIPTOR_LEN * (spec.imports.len() + 1),
            0,
        );
        directories[1] = (
            base + descriptors as u32,
            (IMPORT_DESCRIPTOR_LEN * (spec.imports.len() + 1)) as u32,
        );
        blob.align(8);
        let iat_start = blob.rva();
        // IATs first (contiguous, so one IAT directory covers them), then lookup tables and names.
        let mut iats = Vec::new();
        for (_, functions) in &spec.imports {
            iats.push(blob.bytes.len());
            blob.bytes
                .resize(blob.bytes.len() + 8 * (functions.len() + 1), 0);
        }
        directories[2] = (iat_start, blob.rva() - iat_start);
        for (index, (module, functions)) in spec.imports.iter().enumerate() {
            let lookup = blob.bytes.len();
            blob.bytes.resize(lookup + 8 * (functions.len() + 1), 0);
            for (slot, function) in functions.iter().enumerate() {
                blob.align(2);
                let hint_name = blob.rva();
                blob.u16(0);
                blob.cstr(function);
                slots.insert(function.to_string(), base + (iats[index] + slot * 8) as u32);
                for table in [lookup, iats[index]] {
                    let at = table + slot * 8;
                    blob.bytes[at..at + 8].copy_from_slice(&u64::from(hint_name).to_le_bytes());
                }
            }
            let module_name = blob.cstr(module);
            let descriptor = descriptors + index * IMPORT_DESCRIPTOR_LEN;
            blob.patch_u32(descriptor, base + lookup as u32); // OriginalFirstThunk
            blob.patch_u32(descriptor + 12, module_name);
            blob.patch_u32(descriptor + 16, base + iats[index] as u32); // FirstThunk
        }
    }
    let mut debug_entries: Vec<(u32, Vec<u8>)> = Vec::new();
    if let Some(path) = spec.pdb_path {
        let mut codeview = b"RSDS".to_vec();
        codeview.extend_from_slice(&[0x11; 16]); // GUID
        codeview.extend_from_slice(&1u32.to_le_bytes()); // age
        codeview.extend_from_slice(path.as_bytes());
        codeview.push(0);
        debug_entries.push((pe::IMAGE_DEBUG_TYPE_CODEVIEW.0, codeview));
    }
    if let Some(flags) = spec.ex_dll_characteristics {
        debug_entries.push((
            pe::IMAGE_DEBUG_TYPE_EX_DLLCHARACTERISTICS.0,
            flags.to_le_bytes().to_vec(),
        ));
    }
    if !debug_entries.is_empty() {
        blob.align(8);
        let table = blob.bytes.len();
        let table_len = DEBUG_DIRECTORY_LEN * debug_entries.len();
        blob.bytes.resize(table + table_len, 0);
        directories[3] = (base + table as u32, table_len as u32);
        for (index, (kind, data)) in debug_entries.iter().enumerate() {
            blob.align(4);
            let rva = blob.rva();
            blob.bytes.extend_from_slice(data);
            let entry = table + index * DEBUG_DIRECTORY_LEN;
            blob.patch_u32(entry + 12, *kind);
            blob.patch_u32(entry + 16, data.len() as u32);
            blob.patch_u32(entry + 20, rva);
            blob.patch_u32(entry + 24, rva - base + file_base);
        }
    }
    blob.u64(0);
    (blob.bytes, directories, slots)
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut image = Vec::new();
    let mut writer = Writer::new(true, 0x1000, 0x200, &mut image);
    writer.reserve_dos_header_and_stub();
    writer.reserve_nt_headers(16);
    writer.reserve_section_headers(if spec.code.is_some() { 5 } else { 2 });

    let mut text_flags =
        pe::IMAGE_SCN_CNT_CODE | pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_MEM_READ;
    if spec.text_writable {
        text_flags |= pe::IMAGE_SCN_MEM_WRITE;
    }
    // The code refers to the import slots, which follow it in .rdata: with .text under one
    // section-alignment unit, .rdata starts at TEXT_RVA + 0x1000 whatever the code's size.
    let (_, _, slots) = rdata_contents(spec, TEXT_RVA + 0x1000, 0, TEXT_RVA);
    let layout = Layout {
        text: TEXT_RVA,
        slots,
    };
    let code = match &spec.code {
        Some(code) => (code.text)(&layout),
        None => vec![0x31, 0xc0, 0xc3], // xor eax, eax; ret
    };
    let text_size = (code.len() as u32).max(TEXT_SIZE);
    assert!(text_size <= 0x1000, "fixture code must fit one page");
    let text = writer.reserve_section(*b".text\0\0\0", text_flags, text_size, text_size);
    assert_eq!(text.virtual_address, TEXT_RVA);
    // The rdata contents depend on its RVA: lay them out once to learn the size, then for real.
    let (probe, _, _) = rdata_contents(spec, 0, 0, 0);
    let rdata = writer.reserve_rdata_section(probe.len() as u32);
    let (rdata_bytes, directories, _) = rdata_contents(
        spec,
        rdata.virtual_address,
        rdata.file_offset,
        text.virtual_address,
    );
    for (index, (rva, size)) in [
        pe::IMAGE_DIRECTORY_ENTRY_EXPORT,
        pe::IMAGE_DIRECTORY_ENTRY_IMPORT,
        pe::IMAGE_DIRECTORY_ENTRY_IAT,
        pe::IMAGE_DIRECTORY_ENTRY_DEBUG,
    ]
    .into_iter()
    .zip(directories)
    {
        if size != 0 {
            writer.set_data_directory(index, rva, size);
        }
    }
    assert_eq!(rdata.virtual_address, TEXT_RVA + 0x1000);
    // Unwind data and registration (.xdata), function table (.pdata), base relocations (.reloc).
    let mut extra = Vec::new();
    if let Some(code) = &spec.code {
        let (probe, _, _) = code::xdata_contents(code, 0, TEXT_RVA, IMAGE_BASE);
        let xdata = writer.reserve_xdata_section(probe.len() as u32);
        let (xdata_bytes, unwind, pointers) =
            code::xdata_contents(code, xdata.virtual_address, TEXT_RVA, IMAGE_BASE);
        let pdata_bytes = code::pdata_contents(code, TEXT_RVA, &unwind);
        let pdata = writer.reserve_pdata_section(pdata_bytes.len().max(1) as u32);
        for pointer in pointers {
            writer.add_reloc(pointer, pe::IMAGE_REL_BASED_DIR64);
        }
        if !writer.has_relocs() {
            // A real image always has some; keep the section count fixed.
            writer.add_reloc(xdata.virtual_address, pe::IMAGE_REL_BASED_ABSOLUTE);
        }
        writer.reserve_reloc_section();
        extra.push((xdata.file_offset, xdata_bytes));
        extra.push((pdata.file_offset, pdata_bytes));
    }
    if let Some(certificate) = &spec.certificate {
        writer.reserve_certificate_table(certificate.len() as u32);
    }

    let entry = if spec.entry_elsewhere {
        text.virtual_address + 0x10
    } else {
        text.virtual_address
    };
    writer.write_dos_header_and_stub().expect("DOS header");
    writer.write_nt_headers(NtHeaders {
        machine: pe::Machine(spec.machine),
        time_date_stamp: 0,
        characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE
            | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE
            | pe::IMAGE_FILE_DLL,
        major_linker_version: 14,
        minor_linker_version: 0,
        address_of_entry_point: entry,
        image_base: IMAGE_BASE,
        major_operating_system_version: 10,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 10,
        minor_subsystem_version: 0,
        subsystem: pe::Subsystem(spec.subsystem),
        dll_characteristics: pe::DllFlags(spec.dll_characteristics),
        size_of_stack_reserve: 0x40000,
        size_of_stack_commit: 0x1000,
        size_of_heap_reserve: 0x100000,
        size_of_heap_commit: 0x1000,
    });
    writer.write_section_headers();
    let mut code = code;
    code.resize(text_size as usize, 0xcc);
    writer.write_section(text.file_offset, &code);
    writer.write_section(rdata.file_offset, &rdata_bytes);
    for (offset, bytes) in &extra {
        writer.write_section(*offset, bytes);
    }
    if spec.code.is_some() {
        writer.write_reloc_section();
    }
    if let Some(certificate) = &spec.certificate {
        writer.write_certificate_table(certificate);
    }
    if spec.fix_checksum {
        checksum::fix(&mut image).expect("fixture is a PE image");
    }
    image
}
