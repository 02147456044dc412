//! The PE headers, entry point, sections, checksum and debug directory.

use object::Object as _;
use object::pe;
use object::read::pe::{ExportTarget, ImageNtHeaders, PeFile64};

use super::violation::{
    Architecture, ENTRY_EXPORT, IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT, ImageError, Violation,
    malformed,
};
use crate::checksum;

pub(super) fn check_headers(
    file: &PeFile64<'_>,
    architecture: Architecture,
    violations: &mut Vec<Violation>,
) {
    let headers = file.nt_headers();
    let machine = headers.file_header().machine.get(object::LittleEndian).0;
    if machine != architecture.machine() {
        violations.push(Violation::Machine {
            found: machine,
            expected: architecture,
        });
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

pub(super) fn check_entry_point(
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

pub(super) fn check_sections(file: &PeFile64<'_>, violations: &mut Vec<Violation>) {
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

/// `/CETCOMPAT` (x64) and no build path: both live in the debug directory.
pub(super) fn check_debug_directory(
    file: &PeFile64<'_>,
    data: &[u8],
    architecture: Architecture,
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
    if !cet_compatible && architecture.has_cet() {
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

pub(super) fn check_checksum(
    data: &[u8],
    violations: &mut Vec<Violation>,
) -> Result<(), ImageError> {
    let not_pe = |error: checksum::ChecksumError| ImageError::NotPe(error.to_string());
    let stored = checksum::stored(data).map_err(not_pe)?;
    let computed = checksum::compute(data).map_err(not_pe)?;
    if stored != computed {
        violations.push(Violation::ChecksumMismatch { stored, computed });
    }
    Ok(())
}
