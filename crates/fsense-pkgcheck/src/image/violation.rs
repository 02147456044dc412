//! What the image check reports: every rule an image can break, and the errors that stop a check.

use std::fmt;

use thiserror::Error;

use crate::code::CodeFinding;
use crate::imports::WindowsRelease;

/// The only modules a driver may import from: anything else (ntdll.dll, a user-mode DLL) cannot be
/// resolved in kernel mode and the image would fail to load.
pub const ALLOWED_IMPORT_MODULES: &[&str] = &["ntoskrnl.exe", "FLTMGR.SYS", "HAL.dll"];

/// The export the entry point must be.
pub const ENTRY_EXPORT: &str = "DriverEntry";

/// winnt.h: the extended DLL characteristics bit `/CETCOMPAT` sets (object keeps it commented out).
pub const IMAGE_DLLCHARACTERISTICS_EX_CET_COMPAT: u32 = 0x01;

/// The processor an image is built for (`IMAGE_FILE_HEADER.Machine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Amd64,
    Arm64,
}

impl Architecture {
    pub fn machine(self) -> u16 {
        match self {
            Self::Amd64 => object::pe::IMAGE_FILE_MACHINE_AMD64.0,
            Self::Arm64 => object::pe::IMAGE_FILE_MACHINE_ARM64.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Amd64 => "AMD64",
            Self::Arm64 => "ARM64",
        }
    }

    /// CET shadow stacks are an x64 feature: `/CETCOMPAT` marks x64 images only.
    pub fn has_cet(self) -> bool {
        self == Self::Amd64
    }
}

/// One way the image deviates from the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    NotPe32Plus,
    Machine {
        found: u16,
        expected: Architecture,
    },
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
    /// What the code checks found (data imports, stack): see `crate::code`.
    Code(CodeFinding),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPe32Plus => write!(f, "not a PE32+ image"),
            Self::Machine { found, expected } => write!(
                f,
                "machine is {found:#06x}, expected {} ({:#06x})",
                expected.name(),
                expected.machine()
            ),
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
            Self::Code(finding) => write!(f, "{finding}"),
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

pub(super) fn malformed(table: &'static str) -> impl Fn(object::read::Error) -> ImageError {
    move |error| ImageError::Malformed {
        table,
        reason: error.to_string(),
    }
}
