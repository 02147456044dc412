//! Lints `inf/fsense.inf` against the rules for a file-system minifilter installed as a primitive
//! driver, as Microsoft's "Creating an INF file for a minifilter driver" and "Creating a new
//! primitive driver" pages describe them, plus driver package isolation for the OS-decorated
//! install section (what `infverif /w` enforces) and fsense's own choices. The INF has two install
//! sections per architecture (NTamd64, NTarm64), split as minispy's is ([`INSTALL_SECTIONS`]); each
//! is checked, they must agree, and each architecture installs its own image (`arch`).
//!
//! The parser understands the part of the INF syntax these files use: `[sections]`, `key = values`,
//! comma-separated fields, quoted strings (`""` is a quote), `;` comments, `\` line continuations
//! and `%strkey%` substitution from `[Strings]` (numeric DIRIDs such as `%13%` stay as written).
//!
//! Files: `rules` (what the INF must say), `parse` (the INF syntax), `lint` (the rules applied),
//! `arch` (the architecture rules: each image's source, destination and service), `finding`.

mod arch;
mod finding;
mod lint;
mod parse;
mod rules;
#[cfg(test)]
mod tests;

pub use arch::{DriverSource, driver_images, driver_source, service_binary};
pub use lint::{Finding, MinifilterFacts, lint, lint_parsed};
pub use parse::{Entry, Inf, InfError, Section, parse, read_inf};
pub use rules::{
    ALTITUDE_RANGE, ARCHITECTURES, CATALOG_FILE, CLASS, CLASS_GUID, DIRID_DRIVER_STORE,
    DRIVER_FILE, INSTALL_SECTIONS, InstallSection, LOAD_ORDER_GROUP, PARAMETERS, SERVICE_NAME,
    SETTINGS, SUPPORTED_FEATURES, platform_extension, source_extension,
};
