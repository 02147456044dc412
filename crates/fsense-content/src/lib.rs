//! fsense detection content, end to end.
//!
//! - [`rules`]: the templates (code) and [`compile`], which is both the validator and the
//!   interpreter's compile step, so the two cannot disagree.
//! - [`engine`]: runs a compiled [`RuleSet`] over events, in time linear in the path length.
//! - [`tuf`]: distribution through a TUF repository (`tough`): keys, publishing, verifying.
//! - [`signing`]: k-of-n targets signatures (stage, sign, publish) and key rotation.
//! - [`state`]: a sensor's state directory: atomic install, last known good, rollback.
//! - [`update`]: fetching and verifying a release without the state directory's lock, then
//!   installing it.
//! - [`rollout`]: rings with health gates and automatic rollback, plus the fleet simulator.
//! - [`fleet`]: the fleet protocol (health documents, rollout records) and the gate arithmetic.
//! - [`reload`]: live content for a running consumer: [`reload::Follower`] follows a
//!   repository into a state directory and hands over each new rule set.
//! - [`http`]: repositories on a web server.
//! - [`cli`]: the `fsense content ...` commands.
//!
//! The file format, the templates, the limits and the repository layout are documented in
//! `docs/content.md`.
#![forbid(unsafe_code)]

#[cfg(feature = "distribution")]
pub mod cli;
pub mod engine;
mod error;
pub mod fleet;
#[cfg(feature = "distribution")]
mod fsio;
#[cfg(feature = "distribution")]
pub mod http;
#[cfg(feature = "distribution")]
pub mod reload;
#[cfg(feature = "distribution")]
mod review;
#[cfg(feature = "distribution")]
pub mod rollout;
pub mod rules;
#[cfg(feature = "distribution")]
pub mod signing;
#[cfg(feature = "distribution")]
pub mod state;
#[cfg(feature = "distribution")]
pub mod tuf;
#[cfg(feature = "distribution")]
pub mod update;

use std::path::Path;

pub use engine::{Engine, EventFacts, RuleMatch};
pub use error::{ContentError, ErrorKind};
pub use fsense_proto::Operation;
pub use rules::{RuleSet, compile};

/// How serious a rule match is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Lower-case name, as written in rules files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// OCSF `severity_id`: Informational 1, Low 2, Medium 3, High 4, Critical 5.
    pub fn ocsf_severity_id(self) -> u8 {
        match self {
            Self::Info => 1,
            Self::Low => 2,
            Self::Medium => 3,
            Self::High => 4,
            Self::Critical => 5,
        }
    }
}

/// Reads and compiles a local rules file (for `--rules FILE` testing; no TUF involved).
pub fn load_rules_file(path: &Path) -> Result<RuleSet, ContentError> {
    let text = read_limited(path)?;
    compile(&text)
}

#[cfg(feature = "distribution")]
/// Loads the content `fsense content update` installed in `state_dir` (re-validated on load).
pub fn load_active(state_dir: &Path) -> Result<RuleSet, ContentError> {
    state::StateDir::open(state_dir)?.load_active()
}

/// Reads a text file, refusing anything over the rules size limit before reading it whole.
pub(crate) fn read_limited(path: &Path) -> Result<String, ContentError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| ContentError::io("cannot open", path, e))?;
    let mut bytes = Vec::new();
    file.take(rules::MAX_RULES_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ContentError::io("cannot read", path, e))?;
    if bytes.len() > rules::MAX_RULES_FILE_BYTES {
        return Err(ContentError::invalid(
            None,
            None,
            format!(
                "{} is over the {} byte limit",
                path.display(),
                rules::MAX_RULES_FILE_BYTES
            ),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| ContentError::invalid(None, None, format!("{} is not UTF-8", path.display())))
}
