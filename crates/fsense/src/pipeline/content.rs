//! Content rules (crate `fsense-content`) as the pipeline uses them.
//!
//! Builds without the `content` feature (fuzzing) and builds for the msvc target leave content
//! out. The msvc target leaves it out: its TUF client's crypto backend is a C library
//! (aws-lc-sys) that cannot be compiled for msvc without the MSVC toolchain, and that target is
//! only type-checked here. There, asking for rules is a clear error. The shipped `fsense.exe`
//! (windows-gnu) has content.

use std::path::Path;

use crate::output::ocsf::{MatchedRule, severity_name};
use fsense_proto::Operation;

#[cfg(all(feature = "content", not(target_env = "msvc")))]
pub use fsense_content::cli::{ContentCommand, run as run_command};

/// A loaded rule set and its engine.
pub struct Rules {
    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    engine: fsense_content::Engine,
    #[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
    never: std::convert::Infallible,
}

impl Rules {
    /// Rules from a TOML file (local testing).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        #[cfg(all(feature = "content", not(target_env = "msvc")))]
        {
            fsense_content::load_rules_file(path)
                .map(|set| Self {
                    engine: fsense_content::Engine::new(set),
                })
                .map_err(|e| format!("rules {}: {e}", path.display()))
        }
        #[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
        {
            Err(unavailable(path))
        }
    }

    /// A rule set the content crate compiled (live content hands these over).
    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    pub fn from_set(set: fsense_content::RuleSet) -> Self {
        Self {
            engine: fsense_content::Engine::new(set),
        }
    }

    /// The content a sensor state directory has active.
    pub fn from_state_dir(dir: &Path) -> Result<Self, String> {
        #[cfg(all(feature = "content", not(target_env = "msvc")))]
        {
            fsense_content::load_active(dir)
                .map(|set| Self {
                    engine: fsense_content::Engine::new(set),
                })
                .map_err(|e| format!("content in {}: {e}", dir.display()))
        }
        #[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
        {
            Err(unavailable(dir))
        }
    }

    /// The content version.
    pub fn version(&self) -> u64 {
        #[cfg(all(feature = "content", not(target_env = "msvc")))]
        {
            self.engine.rules().version()
        }
        #[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
        {
            match self.never {}
        }
    }

    /// Writes no `write_burst` rule could track because its process table was full: events
    /// the rules did not see as they should have, so they are reported, not hidden.
    pub fn untracked_writes(&self) -> u64 {
        #[cfg(all(feature = "content", not(target_env = "msvc")))]
        {
            self.engine.untracked_writes()
        }
        #[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
        {
            match self.never {}
        }
    }

    /// Evaluates one event with no second name; see [`Rules::evaluate_named`].
    pub fn evaluate(
        &mut self,
        operation: Operation,
        path: &str,
        pid: u32,
        time_ms: u64,
        out: &mut Vec<MatchedRule>,
    ) -> u8 {
        self.evaluate_named(operation, path, None, pid, time_ms, out)
    }

    /// Evaluates one event (`target`: a rename's or link's new name, a clone's source); fills `out` with the matches and returns the highest OCSF severity
    /// id among them (1 when nothing matched).
    pub fn evaluate_named(
        &mut self,
        operation: Operation,
        path: &str,
        target: Option<&str>,
        pid: u32,
        time_ms: u64,
        out: &mut Vec<MatchedRule>,
    ) -> u8 {
        out.clear();
        #[cfg(all(feature = "content", not(target_env = "msvc")))]
        {
            let facts = fsense_content::EventFacts {
                operation,
                path,
                pid,
                time_ms,
            };
            let mut severity = 1;
            for m in self.engine.evaluate_named(&facts, target) {
                let id = m.severity.ocsf_severity_id();
                severity = severity.max(id);
                out.push(MatchedRule {
                    id: m.id.to_string(),
                    severity: severity_name(id),
                });
            }
            severity
        }
        #[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
        {
            let _ = (operation, path, target, pid, time_ms, severity_name);
            match self.never {}
        }
    }
}

#[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
fn unavailable(path: &Path) -> String {
    format!(
        "cannot load {}: this build has no content support (built without the `content` feature, \
         or for msvc; the shipped builds have it)",
        path.display()
    )
}
