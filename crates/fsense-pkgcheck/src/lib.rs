//! Checks the fsense driver package that `cargo make package` builds on Linux, so a deviation fails
//! here instead of on a Windows test VM: the driver image (`image`, `checksum`), the INF (`inf`), and
//! the PowerShell kit under `windows/` (`scripts`). `package` runs them all over `target/package/`.
//! `code` reads the image's machine code: data imports and the stack each entry point can take.
#![forbid(unsafe_code)]

use std::fmt;

pub mod agent_service;
pub mod checksum;
pub mod code;
pub mod floor;
pub mod image;
pub mod imports;
pub mod inf;
pub mod package;
pub mod scripts;

#[cfg(test)]
mod fixture;

/// Every file a package may contain. `fsense.cat` comes only from the Windows (WDK) flow.
pub const PACKAGE_FILES: &[&str] = &[
    "fsense.sys",
    "fsense.inf",
    "fsense.cer",
    "fsense.cat",
    "fsense.exe",
];

/// One rule broken by one file (`subject`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub subject: String,
    pub message: String,
}

impl Finding {
    pub fn new(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}
