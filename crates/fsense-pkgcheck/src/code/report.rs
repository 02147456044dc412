//! The result of the code checks, and the report the package step prints.

use std::fmt;

use object::pe;

use super::data_imports::{DATA_IMPORTS, DataUse};
use super::finding::CodeFinding;
use super::stack::EntryStack;

/// What the code checks found in one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub machine: u16,
    pub budget: u32,
    /// `.pdata` entries.
    pub functions: usize,
    /// Functions reachable from the entry points.
    pub reachable: usize,
    /// Indirect jumps inside functions (jump tables).
    pub indirect_jumps: usize,
    pub data_uses: Vec<DataUse>,
    pub stacks: Vec<EntryStack>,
    /// The largest single frame among reachable functions.
    pub largest_frame: Option<(String, u32)>,
    pub findings: Vec<CodeFinding>,
}

impl Analysis {
    pub fn unsupported(machine: u16) -> Self {
        Self {
            machine,
            budget: 0,
            functions: 0,
            reachable: 0,
            indirect_jumps: 0,
            data_uses: Vec::new(),
            stacks: Vec::new(),
            largest_frame: None,
            findings: Vec::new(),
        }
    }

    pub fn is_supported(&self) -> bool {
        self.machine == pe::IMAGE_FILE_MACHINE_AMD64.0
            || self.machine == pe::IMAGE_FILE_MACHINE_ARM64.0
    }
}

impl fmt::Display for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_supported() {
            return writeln!(
                f,
                "code checks: machine {:#06x} is not read (AMD64 and ARM64 only)",
                self.machine
            );
        }
        writeln!(
            f,
            "data imports (allow-list: {}):",
            DATA_IMPORTS
                .iter()
                .map(|data| format!("{} = {} loads", data.name, data.loads))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if self.data_uses.is_empty() {
            writeln!(f, "  none")?;
        }
        for data in &self.data_uses {
            writeln!(
                f,
                "  {} in {}: {} dependent load(s): {}",
                data.import,
                data.function,
                data.loads,
                data.chain
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )?;
        }
        writeln!(
            f,
            "stack per entry point (budget {} bytes; {} functions in .pdata, {} reachable, {} \
             jump-table jumps):",
            self.budget, self.functions, self.reachable, self.indirect_jumps
        )?;
        for entry in &self.stacks {
            let bytes = entry.bytes.map_or_else(
                || "unbounded".to_string(),
                |bytes| format!("{bytes:>5} bytes"),
            );
            let path = entry
                .path
                .iter()
                .map(|(name, frame)| format!("{name} ({frame})"))
                .collect::<Vec<_>>()
                .join(" -> ");
            writeln!(f, "  {bytes}  {} @ {:#x}: {path}", entry.name, entry.rva)?;
        }
        if let Some((name, frame)) = &self.largest_frame {
            writeln!(f, "largest frame: {name}, {frame} bytes")?;
        }
        if self.findings.is_empty() {
            writeln!(f, "code findings: none")?;
        } else {
            writeln!(f, "code findings:")?;
            for finding in &self.findings {
                writeln!(f, "  {finding}")?;
            }
        }
        Ok(())
    }
}
