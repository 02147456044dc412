//! Checks a driver image (`fsense.sys`) against what the Windows kernel loader and our rules require.
//!
//! Every deviation is reported (not just the first), so one run tells the whole story.

use std::fmt;

use object::Object as _;
use object::pe;
use object::read::pe::{ExportTarget, ImageNtHeaders, Import, PeFile64};
use thiserror::Error;

use crate::checksum;
use crate::imports::{self, ImportProblem, WindowsRelease};

/// The only modules a driver may import from: anything else (ntdll.dll, a user-mode DLL) cannot be
/// resolved in kernel mode and the image would fail to load.
pub const ALLOWED_IMPORT_MODULES: &[&str] = &["ntoskrnl.exe", "FLTMGR.SYS", "HAL.dll"];

/// The export the entry point must be.
pub const ENTRY_EXPORT: &str = "DriverEntry";

/// winnt.h: the extended DLL characteristics bit `/CETCOMPAT` sets (object keeps it commented out).
pub const IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT: u32 = 0x01;

/// `WIN_CERTIFICATE` header: dwLength, wRevision, wCertificateType.
const WIN_CERTIFICATE_HEADER_LEN: usize = 8;
/// `WIN_CERT_REVISION_2_0`: the only revision Authenticode uses.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`: an Authenticode PKCS#7 SignedData blob.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRules {
    /// The image must carry an Authenticode signature (the packaged, signed `fsense.sys`).
    pub require_signature: bool,
    /// The oldest Windows the image must load on: every import must exist there
    /// ([`imports::DECLARED_FLOOR`] for the package).
    pub floor: WindowsRelease,
}

/// One way the image deviates from the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    NotPe32Plus,
    Machine(u16),
    Subsystem(u16),
    NoEntryExport,
    EntryPointMismatch {
        entry: u32,
        export: u32,
    },
    ForbiddenImport(String),
    /// An import the table in `imports.rs` does not list: its first Windows release is unknown.
    ImportNotInTable {
        module: String,
        name: String,
    },
    /// An import first shipped after the floor: the loader refuses the image on the floor.
    ImportNewerThanFloor {
        module: String,
        name: String,
        since: WindowsRelease,
        floor: WindowsRelease,
        url: String,
    },
    ImportByOrdinal(String),
    DelayLoadImports(String),
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    MissingDllCharacteristic(&'static str),
    RelocationsStripped,
    WritableAndExecutable(String),
    Unsigned,
    MalformedSignature(&'static str),
    /// No `IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT` (`/CETCOMPAT`): kernel-mode hardware-enforced
    /// stack protection refuses to load images without it.
    NotCetCompatible,
    /// The CodeView entry names a PDB by a path, which leaks the build machine's directories.
    BuildPathInDebugDirectory(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPe32Plus => write!(f, "not a PE32+ image"),
            Self::Machine(machine) => {
                write!(f, "machine is {machine:#06x}, expected AMD64 (0x8664)")
            }
            Self::Subsystem(subsystem) => {
                write!(f, "subsystem is {subsystem}, expected NATIVE (1)")
            }
            Self::NoEntryExport => write!(f, "no `{ENTRY_EXPORT}` export"),
            Self::EntryPointMismatch { entry, export } => write!(
                f,
                "entry point RVA {entry:#x} is not `{ENTRY_EXPORT}` (RVA {export:#x})"
            ),
            Self::ForbiddenImport(module) => write!(
                f,
                "imports from `{module}`; only {} are allowed",
                ALLOWED_IMPORT_MODULES.join(", ")
            ),
            Self::ImportNotInTable { module, name } => write!(
                f,
                "imports `{module}!{name}`, which is not in the import table \
                 (crates/fsense-pkgcheck/src/imports.rs): add it with its first Windows release \
                 and the DDI page that states it"
            ),
            Self::ImportNewerThanFloor {
                module,
                name,
                since,
                floor,
                url,
            } => write!(
                f,
                "imports `{module}!{name}`, which needs {since} ({url}); the declared minimum is \
                 {floor}, where the driver would not load"
            ),
            Self::ImportByOrdinal(module) => write!(
                f,
                "imports from `{module}` by ordinal; import kernel routines by name"
            ),
            Self::DelayLoadImports(module) => {
                write!(
                    f,
                    "delay-load import from `{module}`; drivers cannot delay-load"
                )
            }
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "PE checksum is {stored:#010x}, should be {computed:#010x} (the loader refuses it)"
            ),
            Self::MissingDllCharacteristic(name) => write!(f, "DllCharacteristics lacks {name}"),
            Self::RelocationsStripped => write!(
                f,
                "relocations are stripped: the kernel cannot load the image at another base"
            ),
            Self::WritableAndExecutable(section) => {
                write!(f, "section `{section}` is both writable and executable")
            }
            Self::Unsigned => write!(f, "no Authenticode signature (security directory is empty)"),
            Self::MalformedSignature(why) => write!(f, "malformed signature: {why}"),
            Self::NotCetCompatible => write!(
                f,
                "not CET compatible (no IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT debug entry; \
                 link with /CETCOMPAT): kernel-mode hardware-enforced stack protection refuses it"
            ),
            Self::BuildPathInDebugDirectory(path) => write!(
                f,
                "the debug directory names the PDB as `{path}`, a build-machine path; \
                 only the file name should ship (/PDBALTPATH:%_PDB%)"
            ),
        }
    }
}

/// The image could not be read far enough to check it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("not a PE image: {0}")]
    NotPe(String),
    #[error("malformed {table}: {reason}")]
    Malformed { table: &'static str, reason: String },
}

fn malformed(table: &'static str) -> impl Fn(object::read::Error) -> ImageError {
    move |error| ImageError::Malformed {
        table,
        reason: error.to_string(),
    }
}

/// Checks `data` as a driver image; an empty list means it passes.
pub fn check(data: &[u8], rules: ImageRules) -> Result<Vec<Violation>, ImageError> {
    match object::FileKind::parse(data) {
        Ok(object::FileKind::Pe64) => {}
        Ok(object::FileKind::Pe32) => return Ok(vec![Violation::NotPe32Plus]),
        Ok(other) => return Err(ImageError::NotPe(format!("{other:?} file"))),
        Err(error) => return Err(ImageError::NotPe(error.to_string())),
    }
    let file = PeFile64::parse(data).map_err(|error| ImageError::NotPe(error.to_string()))?;
    let mut violations = Vec::new();
    check_headers(&file, &mut violations);
    check_entry_point(&file, &mut violations)?;
    check_imports(&file, rules.floor, &mut violations)?;
    check_sections(&file, &mut violations);
    check_checksum(data, &mut violations)?;
    check_debug_directory(&file, data, &mut violations)?;
    check_signature(&file, data, rules, &mut violations);
    Ok(violations)
}

/// Whether `data` is a PE32+ image with a non-empty security directory (i.e. already signed).
pub fn has_signature(data: &[u8]) -> bool {
    PeFile64::parse(data).is_ok_and(|file| {
        file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
            .is_some_and(|directory| directory.size.get(object::LittleEndian) != 0)
    })
}

fn check_headers(file: &PeFile64<'_>, violations: &mut Vec<Violation>) {
    let headers = file.nt_headers();
    let machine = headers.file_header().machine.get(object::LittleEndian).0;
    if machine != pe::IMAGE_FILE_MACHINE_AMD64.0 {
        violations.push(Violation::Machine(machine));
    }
    let characteristics = headers
        .file_header()
        .characteristics
        .get(object::LittleEndian)
        .0;
    if characteristics & pe::IMAGE_FILE_RELOCS_STRIPPED.0 != 0 {
        violations.push(Violation::RelocationsStripped);
    }
    let optional = headers.optional_header();
    let subsystem = optional.subsystem.get(object::LittleEndian).0;
    if subsystem != pe::IMAGE_SUBSYSTEM_NATIVE.0 {
        violations.push(Violation::Subsystem(subsystem));
    }
    let flags = optional.dll_characteristics.get(object::LittleEndian).0;
    for (flag, name) in [
        (
            pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
            "FORCE_INTEGRITY (/INTEGRITYCHECK)",
        ),
        (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
        (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
    ] {
        if flags & flag.0 == 0 {
            violations.push(Violation::MissingDllCharacteristic(name));
        }
    }
}

fn check_entry_point(
    file: &PeFile64<'_>,
    violations: &mut Vec<Violation>,
) -> Result<(), ImageError> {
    let entry = file
        .nt_headers()
        .optional_header()
        .address_of_entry_point
        .get(object::LittleEndian);
    let exports = match file.export_table().map_err(malformed("export table"))? {
        Some(table) => table.exports().map_err(malformed("export table"))?,
        None => Vec::new(),
    };
    let export = exports.iter().find_map(|export| match export.target {
        ExportTarget::Address(address) if export.name == Some(ENTRY_EXPORT.as_bytes()) => {
            Some(address)
        }
        _ => None,
    });
    match export {
        None => violations.push(Violation::NoEntryExport),
        Some(export) if export != entry => {
            violations.push(Violation::EntryPointMismatch { entry, export })
        }
        Some(_) => {}
    }
    Ok(())
}

fn is_allowed_module(name: &str) -> bool {
    ALLOWED_IMPORT_MODULES
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

fn check_imports(
    file: &PeFile64<'_>,
    floor: WindowsRelease,
    violations: &mut Vec<Violation>,
) -> Result<(), ImageError> {
    if let Some(table) = file.import_table().map_err(malformed("import table"))? {
        let mut descriptors = table.descriptors().map_err(malformed("import table"))?;
        while let Some(descriptor) = descriptors.next().map_err(malformed("import table"))? {
            let name = table
                .name(descriptor.name.get(object::LittleEndian))
                .map_err(malformed("import table"))?;
            let module = String::from_utf8_lossy(name).into_owned();
            if !is_allowed_module(&module) {
                violations.push(Violation::ForbiddenImport(module));
                continue;
            }
            // The lookup table names the imports; some linkers leave it out and only the IAT has them.
            let lookup = match descriptor.original_first_thunk.get(object::LittleEndian) {
                0 => descriptor.first_thunk.get(object::LittleEndian),
                address => address,
            };
            let mut thunks = table.thunks(lookup).map_err(malformed("import table"))?;
            let mut by_ordinal = false;
            while let Some(thunk) = thunks
                .next::<pe::ImageNtHeaders64>()
                .map_err(malformed("import table"))?
            {
                let import = table
                    .import::<pe::ImageNtHeaders64>(thunk)
                    .map_err(malformed("import table"))?;
                let function = match import {
                    Import::Name(_, name) => Some(String::from_utf8_lossy(name).into_owned()),
                    Import::Ordinal(_) => None,
                };
                match imports::check(&module, function.as_deref(), floor) {
                    None => {}
                    Some(ImportProblem::ByOrdinal) => by_ordinal = true,
                    Some(ImportProblem::Unknown) => violations.push(Violation::ImportNotInTable {
                        module: module.clone(),
                        name: function.unwrap_or_default(),
                    }),
                    Some(ImportProblem::NewerThanFloor(known)) => {
                        violations.push(Violation::ImportNewerThanFloor {
                            module: module.clone(),
                            name: known.name.to_string(),
                            since: known.since,
                            floor,
                            url: known.url(),
                        })
                    }
                }
            }
            if by_ordinal {
                violations.push(Violation::ImportByOrdinal(module));
            }
        }
    }
    if let Some(table) = file
        .delay_load_import_table()
        .map_err(malformed("delay-load import table"))?
    {
        let mut descriptors = table
            .descriptors()
            .map_err(malformed("delay-load import table"))?;
        while let Some(descriptor) = descriptors
            .next()
            .map_err(malformed("delay-load import table"))?
        {
            let name = table
                .name(descriptor.dll_name_rva.get(object::LittleEndian))
                .map_err(malformed("delay-load import table"))?;
            violations.push(Violation::DelayLoadImports(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
    }
    Ok(())
}

fn check_sections(file: &PeFile64<'_>, violations: &mut Vec<Violation>) {
    let writable_and_executable = pe::IMAGE_SCN_MEM_WRITE.0 | pe::IMAGE_SCN_MEM_EXECUTE.0;
    for section in file.section_table().iter() {
        let flags = section.characteristics.get(object::LittleEndian).0;
        if flags & writable_and_executable == writable_and_executable {
            let name = section.name.split(|&byte| byte == 0).next().unwrap_or(&[]);
            violations.push(Violation::WritableAndExecutable(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
    }
}

/// `/CETCOMPAT` and no build path: both live in the debug directory.
fn check_debug_directory(
    file: &PeFile64<'_>,
    data: &[u8],
    violations: &mut Vec<Violation>,
) -> Result<(), ImageError> {
    let mut cet_compatible = false;
    if let Some(directory) = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_DEBUG) {
        let table = directory
            .data(data, &file.section_table())
            .map_err(malformed("debug directory"))?;
        let entries =
            object::pod::slice_from_all_bytes::<pe::ImageDebugDirectory>(table).map_err(|()| {
                ImageError::Malformed {
                    table: "debug directory",
                    reason: "its size is not a whole number of entries".into(),
                }
            })?;
        for entry in entries {
            if entry.typ.get(object::LittleEndian) != pe::IMAGE_DEBUG_TYPE_EX_DLLCHARACTERISTICS {
                continue;
            }
            let offset = entry.pointer_to_raw_data.get(object::LittleEndian) as usize;
            let flags = offset
                .checked_add(4)
                .and_then(|end| data.get(offset..end))
                .filter(|_| entry.size_of_data.get(object::LittleEndian) >= 4)
                .ok_or_else(|| ImageError::Malformed {
                    table: "debug directory",
                    reason: "the extended DLL characteristics lie outside the file".into(),
                })?;
            let flags = u32::from_le_bytes([flags[0], flags[1], flags[2], flags[3]]);
            cet_compatible |= flags & IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT != 0;
        }
    }
    if !cet_compatible {
        violations.push(Violation::NotCetCompatible);
    }
    if let Some(info) = file.pdb_info().map_err(malformed("debug directory"))? {
        let path = String::from_utf8_lossy(info.path()).into_owned();
        if path.contains(['\\', '/']) {
            violations.push(Violation::BuildPathInDebugDirectory(path));
        }
    }
    Ok(())
}

fn check_checksum(data: &[u8], violations: &mut Vec<Violation>) -> Result<(), ImageError> {
    let not_pe = |error: checksum::ChecksumError| ImageError::NotPe(error.to_string());
    let stored = checksum::stored(data).map_err(not_pe)?;
    let computed = checksum::compute(data).map_err(not_pe)?;
    if stored != computed {
        violations.push(Violation::ChecksumMismatch { stored, computed });
    }
    Ok(())
}

fn check_signature(
    file: &PeFile64<'_>,
    data: &[u8],
    rules: ImageRules,
    violations: &mut Vec<Violation>,
) {
    let directory = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY);
    let (offset, size) = directory.map_or((0, 0), |directory| {
        (
            directory.virtual_address.get(object::LittleEndian) as usize,
            directory.size.get(object::LittleEndian) as usize,
        )
    });
    if size == 0 {
        if rules.require_signature {
            violations.push(Violation::Unsigned);
        }
        return;
    }
    // The security directory holds a file offset (not an RVA) of WIN_CERTIFICATE entries.
    let Some(table) = offset
        .checked_add(size)
        .and_then(|end| data.get(offset..end))
    else {
        violations.push(Violation::MalformedSignature(
            "certificate table lies outside the file",
        ));
        return;
    };
    if offset % 8 != 0 {
        violations.push(Violation::MalformedSignature(
            "certificate table is not 8-byte aligned",
        ));
    }
    let Some(header) = table.get(..WIN_CERTIFICATE_HEADER_LEN) else {
        violations.push(Violation::MalformedSignature(
            "certificate table is shorter than a WIN_CERTIFICATE header",
        ));
        return;
    };
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let revision = u16::from_le_bytes([header[4], header[5]]);
    let certificate_type = u16::from_le_bytes([header[6], header[7]]);
    if length <= WIN_CERTIFICATE_HEADER_LEN || length > table.len() {
        violations.push(Violation::MalformedSignature(
            "WIN_CERTIFICATE length does not fit the table",
        ));
    }
    if revision != WIN_CERT_REVISION_2_0 {
        violations.push(Violation::MalformedSignature(
            "WIN_CERTIFICATE revision is not 2.0",
        ));
    }
    if certificate_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA {
        violations.push(Violation::MalformedSignature(
            "WIN_CERTIFICATE is not PKCS#7 signed data",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{Spec, win_certificate};

    const UNSIGNED: ImageRules = ImageRules {
        require_signature: false,
        floor: imports::DECLARED_FLOOR,
    };
    const SIGNED: ImageRules = ImageRules {
        require_signature: true,
        floor: imports::DECLARED_FLOOR,
    };

    fn violations(spec: &Spec, rules: ImageRules) -> Vec<Violation> {
        check(&spec.build(), rules).expect("fixture parses")
    }

    #[test]
    fn a_good_image_passes() {
        assert_eq!(violations(&Spec::good(), UNSIGNED), vec![]);
        assert_eq!(violations(&Spec::signed(), SIGNED), vec![]);
        assert_eq!(violations(&Spec::signed(), UNSIGNED), vec![]);
    }

    #[test]
    fn import_module_names_compare_case_insensitively() {
        let spec = Spec {
            imports: vec![
                ("NTOSKRNL.EXE", vec!["KeQuerySystemTimePrecise"]),
                ("fltmgr.sys", vec!["FltStartFiltering"]),
            ],
            ..Spec::good()
        };
        assert_eq!(violations(&spec, UNSIGNED), vec![]);
    }

    #[test]
    fn an_import_newer_than_the_floor_fails() {
        let spec = Spec {
            imports: vec![
                ("ntoskrnl.exe", vec!["ExAllocatePool2"]),
                ("FLTMGR.SYS", vec!["FltRegisterFilter", "FltVetoBypassIO"]),
            ],
            ..Spec::good()
        };
        let found = violations(&spec, UNSIGNED);
        assert_eq!(found.len(), 1, "{found:?}");
        let Violation::ImportNewerThanFloor {
            name, since, floor, ..
        } = &found[0]
        else {
            panic!("{found:?}");
        };
        assert_eq!(
            (name.as_str(), *since, *floor),
            (
                "FltVetoBypassIO",
                imports::WINDOWS_11,
                imports::DECLARED_FLOOR
            )
        );
        let message = found[0].to_string();
        assert!(message.contains("Windows 11 (build 22000)"), "{message}");
        assert!(
            message.contains("nf-fltkernel-fltvetobypassio"),
            "{message}"
        );
        // The same image with a floor it meets passes.
        let rules = ImageRules {
            floor: imports::WINDOWS_11,
            ..UNSIGNED
        };
        assert_eq!(violations(&spec, rules), vec![]);
        // And the shipped import, ExAllocatePool2, fails a floor older than 2004.
        let rules = ImageRules {
            floor: imports::WINDOWS_10_1803,
            ..UNSIGNED
        };
        let found = violations(&spec, rules);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].to_string().contains("ExAllocatePool2"));
    }

    #[test]
    fn an_import_missing_from_the_table_fails() {
        let spec = Spec {
            imports: vec![
                ("ntoskrnl.exe", vec!["ExAllocatePool2", "KeBugCheckEx"]),
                // Known routine, wrong module: unknown there.
                ("FLTMGR.SYS", vec!["ExFreePoolWithTag"]),
            ],
            ..Spec::good()
        };
        assert_eq!(
            violations(&spec, UNSIGNED),
            vec![
                Violation::ImportNotInTable {
                    module: "ntoskrnl.exe".into(),
                    name: "KeBugCheckEx".into()
                },
                Violation::ImportNotInTable {
                    module: "FLTMGR.SYS".into(),
                    name: "ExFreePoolWithTag".into()
                },
            ]
        );
    }

    #[test]
    fn an_image_without_imports_passes() {
        let spec = Spec {
            imports: vec![],
            ..Spec::good()
        };
        assert_eq!(violations(&spec, UNSIGNED), vec![]);
    }

    #[test]
    fn wrong_machine() {
        let spec = Spec {
            machine: pe::IMAGE_FILE_MACHINE_ARM64.0,
            ..Spec::good()
        };
        assert_eq!(
            violations(&spec, UNSIGNED),
            vec![Violation::Machine(0xaa64)]
        );
    }

    #[test]
    fn wrong_subsystem() {
        let spec = Spec {
            subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_CUI.0,
            ..Spec::good()
        };
        assert_eq!(violations(&spec, UNSIGNED), vec![Violation::Subsystem(3)]);
    }

    #[test]
    fn each_missing_dll_characteristic_is_reported() {
        for (flag, name) in [
            (
                pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY.0,
                "FORCE_INTEGRITY (/INTEGRITYCHECK)",
            ),
            (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT.0, "NX_COMPAT"),
            (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE.0, "DYNAMIC_BASE"),
        ] {
            let spec = Spec {
                dll_characteristics: Spec::good().dll_characteristics & !flag,
                ..Spec::good()
            };
            assert_eq!(
                violations(&spec, UNSIGNED),
                vec![Violation::MissingDllCharacteristic(name)]
            );
        }
    }

    #[test]
    fn an_image_without_cetcompat_fails() {
        for ex_dll_characteristics in [None, Some(0), Some(0x2)] {
            let spec = Spec {
                ex_dll_characteristics,
                ..Spec::good()
            };
            assert_eq!(
                violations(&spec, UNSIGNED),
                vec![Violation::NotCetCompatible],
                "{ex_dll_characteristics:?}"
            );
        }
    }

    #[test]
    fn a_build_path_in_the_debug_directory_fails() {
        for path in [
            "/work/main/target/x86_64-pc-windows-msvc/release/deps/fsense_driver.pdb",
            "C:\\build\\fsense_driver.pdb",
        ] {
            let spec = Spec {
                pdb_path: Some(path),
                ..Spec::good()
            };
            assert_eq!(
                violations(&spec, UNSIGNED),
                vec![Violation::BuildPathInDebugDirectory(path.into())]
            );
        }
        // No CodeView entry at all is fine too.
        let spec = Spec {
            pdb_path: None,
            ..Spec::good()
        };
        assert_eq!(violations(&spec, UNSIGNED), vec![]);
    }

    #[test]
    fn forbidden_import_modules_are_named() {
        let spec = Spec {
            imports: vec![
                ("ntoskrnl.exe", vec!["KeSetEvent"]),
                ("ntdll.dll", vec!["RtlInitUnicodeString"]),
                ("KERNEL32.dll", vec!["CreateFileW"]),
            ],
            ..Spec::good()
        };
        assert_eq!(
            violations(&spec, UNSIGNED),
            vec![
                Violation::ForbiddenImport("ntdll.dll".into()),
                Violation::ForbiddenImport("KERNEL32.dll".into()),
            ]
        );
    }

    #[test]
    fn a_missing_entry_export_is_reported() {
        let spec = Spec {
            export: None,
            ..Spec::good()
        };
        assert_eq!(violations(&spec, UNSIGNED), vec![Violation::NoEntryExport]);
        let renamed = Spec {
            export: Some("driver_entry"),
            ..Spec::good()
        };
        assert_eq!(
            violations(&renamed, UNSIGNED),
            vec![Violation::NoEntryExport]
        );
    }

    #[test]
    fn an_entry_point_elsewhere_is_reported() {
        let spec = Spec {
            entry_elsewhere: true,
            ..Spec::good()
        };
        let found = violations(&spec, UNSIGNED);
        assert!(
            matches!(found.as_slice(), [Violation::EntryPointMismatch { entry, export }] if entry == &(export + 0x10)),
            "{found:?}"
        );
    }

    #[test]
    fn stripped_relocations_are_reported() {
        let mut image = Spec::good().build();
        let nt = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
        // Characteristics: the u16 18 bytes into the COFF header; RELOCS_STRIPPED is 0x0001.
        image[nt + 4 + 18] |= 0x01;
        checksum::fix(&mut image).unwrap();
        assert_eq!(
            check(&image, UNSIGNED).unwrap(),
            vec![Violation::RelocationsStripped]
        );
    }

    #[test]
    fn a_writable_code_section_is_reported() {
        let spec = Spec {
            text_writable: true,
            ..Spec::good()
        };
        assert_eq!(
            violations(&spec, UNSIGNED),
            vec![Violation::WritableAndExecutable(".text".into())]
        );
    }

    #[test]
    fn a_zero_or_stale_checksum_is_reported() {
        let zero = Spec {
            fix_checksum: false,
            ..Spec::good()
        };
        let image = zero.build();
        let computed = checksum::compute(&image).unwrap();
        assert_eq!(
            check(&image, UNSIGNED).unwrap(),
            vec![Violation::ChecksumMismatch {
                stored: 0,
                computed
            }]
        );
        // A byte changed after the checksum was written (e.g. patched code).
        let mut patched = Spec::good().build();
        let last = patched.len() - 1;
        patched[last] ^= 0x01;
        assert!(matches!(
            check(&patched, UNSIGNED).unwrap().as_slice(),
            [Violation::ChecksumMismatch { .. }]
        ));
    }

    #[test]
    fn an_unsigned_image_fails_when_a_signature_is_required() {
        assert_eq!(violations(&Spec::good(), SIGNED), vec![Violation::Unsigned]);
    }

    #[test]
    fn a_malformed_certificate_is_reported() {
        let wrong_type = Spec {
            certificate: Some(win_certificate(0x0200, 0x0001, 64)),
            ..Spec::good()
        };
        assert_eq!(
            violations(&wrong_type, SIGNED),
            vec![Violation::MalformedSignature(
                "WIN_CERTIFICATE is not PKCS#7 signed data"
            )]
        );
        let wrong_revision = Spec {
            certificate: Some(win_certificate(0x0100, 0x0002, 64)),
            ..Spec::good()
        };
        assert_eq!(
            violations(&wrong_revision, SIGNED),
            vec![Violation::MalformedSignature(
                "WIN_CERTIFICATE revision is not 2.0"
            )]
        );
        let mut too_long = win_certificate(0x0200, 0x0002, 64);
        too_long[..4].copy_from_slice(&4096u32.to_le_bytes());
        let too_long = Spec {
            certificate: Some(too_long),
            ..Spec::good()
        };
        assert_eq!(
            violations(&too_long, SIGNED),
            vec![Violation::MalformedSignature(
                "WIN_CERTIFICATE length does not fit the table"
            )]
        );
    }

    #[test]
    fn a_certificate_table_past_the_end_is_reported() {
        let mut image = Spec::signed().build();
        // Security directory = data directory 4; it starts 112 bytes into the PE32+ optional header.
        let nt = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
        let size_field = nt + 24 + 112 + 4 * 8 + 4;
        image[size_field..size_field + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
        checksum::fix(&mut image).unwrap();
        assert_eq!(
            check(&image, SIGNED).unwrap(),
            vec![Violation::MalformedSignature(
                "certificate table lies outside the file"
            )]
        );
    }

    #[test]
    fn a_pe32_image_is_not_pe32_plus() {
        let mut image = Spec::good().build();
        let nt = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
        // Optional header magic: 0x20b (PE32+) -> 0x10b (PE32).
        image[nt + 24] = 0x0b;
        image[nt + 25] = 0x01;
        assert_eq!(check(&image, UNSIGNED), Ok(vec![Violation::NotPe32Plus]));
    }

    #[test]
    fn several_deviations_are_all_reported() {
        let spec = Spec {
            subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_GUI.0,
            dll_characteristics: 0,
            text_writable: true,
            fix_checksum: false,
            ..Spec::good()
        };
        assert_eq!(violations(&spec, SIGNED).len(), 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn what_is_not_a_pe_is_an_error() {
        assert!(matches!(
            check(b"\x7fELF\x02\x01\x01", UNSIGNED),
            Err(ImageError::NotPe(_))
        ));
        assert!(matches!(check(b"", UNSIGNED), Err(ImageError::NotPe(_))));
    }

    proptest::proptest! {
        /// Truncated or corrupted images give violations or an error, never a panic.
        #[test]
        fn never_panics_on_damaged_images(cut in 0usize..2048, flips in proptest::collection::vec((0usize..2048, proptest::prelude::any::<u8>()), 0..8)) {
            let mut image = Spec::signed().build();
            for (at, value) in flips {
                if let Some(byte) = image.get_mut(at) { *byte ^= value; }
            }
            image.truncate(cut.min(image.len()));
            let _ = check(&image, SIGNED);
        }
    }
}
