//! The import table: allowed modules, the floor table, no ordinals, no delay-load.

use object::pe;
use object::read::pe::{Import, PeFile64};

use super::violation::{ALLOWED_IMPORT_MODULES, ImageError, Violation, malformed};
use crate::imports::{self, ImportProblem, WindowsRelease};

fn is_allowed_module(name: &str) -> bool {
    ALLOWED_IMPORT_MODULES
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

pub(super) fn check_imports(
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
