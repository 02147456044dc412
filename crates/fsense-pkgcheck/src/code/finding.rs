//! What the code checks report, and why a check could not run.

use std::fmt;

use thiserror::Error;

/// The image's code or tables could not be read far enough to check them.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodeError {
    #[error("malformed {table}: {reason}")]
    Malformed { table: &'static str, reason: String },
}

/// One instruction, as the report shows it: RVA and Intel syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub rva: u32,
    pub text: String,
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}: {}", self.rva, self.text)
    }
}

fn listing(chain: &[Listed]) -> String {
    chain
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One rule the code breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeFinding {
    /// The value read from an import slot is used as data (dereferenced, or the slot read other
    /// than to call through it), and the import is not on the data allow-list.
    DataImportNotAllowed {
        import: String,
        function: String,
        chain: Vec<Listed>,
    },
    /// An allow-listed data import used with another number of dependent loads than its C type
    /// gives.
    DataImportLoads {
        import: String,
        c_type: &'static str,
        expected: u32,
        found: u32,
        function: String,
        chain: Vec<Listed>,
    },
    /// The value of a data import went where the check cannot follow it (stored to memory other
    /// than the frame, or past the instruction limit).
    DataImportUnfollowed {
        import: String,
        function: String,
        why: &'static str,
        site: u32,
    },
    /// An entry point can use more stack than the budget (worst case through its calls).
    StackOverBudget {
        entry: String,
        bytes: u32,
        budget: u32,
        path: Vec<String>,
    },
    /// A call whose target the image does not say: its stack use cannot be bounded.
    IndirectCall {
        function: String,
        instruction: Listed,
    },
    /// A direct call to something that is not code in the image.
    CallOutsideCode {
        function: String,
        instruction: Listed,
    },
    /// A cycle in the call graph: its stack use is unbounded.
    Recursion { cycle: Vec<String> },
}

impl fmt::Display for CodeFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataImportNotAllowed {
                import,
                function,
                chain,
            } => write!(
                f,
                "uses the import `{import}` as data in {function} ({}), and it is not on the \
                 data-import allow-list (crates/fsense-pkgcheck/src/code/data_imports.rs): add it \
                 with its documented C type and the loads its use takes, or import a routine instead",
                listing(chain)
            ),
            Self::DataImportLoads {
                import,
                c_type,
                expected,
                found,
                function,
                chain,
            } => write!(
                f,
                "reads the data import `{import}` with {found} dependent load(s) in {function} \
                 ({}); its documented declaration `{c_type}` gives {expected} (the import slot, \
                 then the variable){}",
                listing(chain),
                if found > expected {
                    ": the extra load reads inside the object the variable points to"
                } else {
                    ""
                }
            ),
            Self::DataImportUnfollowed {
                import,
                function,
                why,
                site,
            } => write!(
                f,
                "cannot follow the value of the data import `{import}` read at {site:#x} in \
                 {function}: {why}"
            ),
            Self::StackOverBudget {
                entry,
                bytes,
                budget,
                path,
            } => write!(
                f,
                "{entry} can use {bytes} bytes of kernel stack, over the budget of {budget} \
                 (deepest path: {})",
                path.join(" -> ")
            ),
            Self::IndirectCall {
                function,
                instruction,
            } => write!(
                f,
                "indirect call in {function} ({instruction}): its target and stack use are unknown"
            ),
            Self::CallOutsideCode {
                function,
                instruction,
            } => write!(
                f,
                "call in {function} ({instruction}) to an address outside the image's code"
            ),
            Self::Recursion { cycle } => write!(
                f,
                "recursion: {}; the stack it takes has no bound",
                cycle.join(" -> ")
            ),
        }
    }
}
