//! Checks a driver image (`fsense.sys`) against what the Windows kernel loader and our rules require.
//!
//! Every deviation is reported (not just the first), so one run tells the whole story.
//!
//! Files: `violation` (what can be reported), `headers` (headers, entry, sections, checksum, debug
//! directory), `import_table` (imports against the floor table), `signature` (certificate table);
//! the machine-code checks (data imports, stack) live in `crate::code`.

mod headers;
mod import_table;
mod signature;
#[cfg(test)]
mod tests;
mod violation;

use object::read::pe::PeFile64;

use crate::code::{self, CodeError};
use crate::imports::WindowsRelease;
pub use signature::has_signature;
pub use violation::{
    ALLOWED_IMPORT_MODULES, Architecture, ENTRY_EXPORT, IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT,
    ImageError, Violation,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRules {
    /// The image must carry an Authenticode signature (the packaged, signed `fsense.sys`).
    pub require_signature: bool,
    /// The oldest Windows the image must load on: every import must exist there
    /// ([`imports::DECLARED_FLOOR`] for the package).
    pub floor: WindowsRelease,
}

/// Checks `data` as an x64 driver image; an empty list means it passes.
pub fn check(data: &[u8], rules: ImageRules) -> Result<Vec<Violation>, ImageError> {
    check_architecture(data, rules, Architecture::Amd64)
}

/// Checks `data` as a driver image for `architecture`, its code included (`crate::code` reads
/// x64 and A64).
pub fn check_architecture(
    data: &[u8],
    rules: ImageRules,
    architecture: Architecture,
) -> Result<Vec<Violation>, ImageError> {
    match object::FileKind::parse(data) {
        Ok(object::FileKind::Pe64) => {}
        Ok(object::FileKind::Pe32) => return Ok(vec![Violation::NotPe32Plus]),
        Ok(other) => return Err(ImageError::NotPe(format!("{other:?} file"))),
        Err(error) => return Err(ImageError::NotPe(error.to_string())),
    }
    let file = PeFile64::parse(data).map_err(|error| ImageError::NotPe(error.to_string()))?;
    let mut violations = Vec::new();
    headers::check_headers(&file, architecture, &mut violations);
    headers::check_entry_point(&file, &mut violations)?;
    import_table::check_imports(&file, rules.floor, &mut violations)?;
    headers::check_sections(&file, &mut violations);
    headers::check_checksum(data, &mut violations)?;
    headers::check_debug_directory(&file, data, architecture, &mut violations)?;
    signature::check_signature(&file, data, rules.require_signature, &mut violations);
    match code::analyze(data) {
        Ok(analysis) => violations.extend(analysis.findings.into_iter().map(Violation::Code)),
        Err(CodeError::Malformed { table, reason }) => {
            return Err(ImageError::Malformed { table, reason });
        }
    }
    Ok(violations)
}
