//! fsense detection content.
//!
//! Skeleton: the public API others code against; bodies follow.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::Path;

pub use fsense_proto::Operation;

/// How serious a rule match is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

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

/// Compiled content.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    version: u64,
    count: usize,
}

impl RuleSet {
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Why content was refused.
#[derive(Debug, Clone)]
pub struct ContentError {
    message: String,
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ContentError {}

fn not_yet() -> ContentError {
    ContentError {
        message: "not implemented yet".into(),
    }
}

pub fn compile(_toml_text: &str) -> Result<RuleSet, ContentError> {
    Err(not_yet())
}

pub fn load_rules_file(_path: &Path) -> Result<RuleSet, ContentError> {
    Err(not_yet())
}

pub fn load_active(_state_dir: &Path) -> Result<RuleSet, ContentError> {
    Err(not_yet())
}

/// What the engine looks at in one event.
pub struct EventFacts<'a> {
    pub operation: Operation,
    pub path: &'a str,
    pub pid: u32,
    pub time_ms: u64,
}

/// One rule that matched an event.
pub struct RuleMatch<'r> {
    pub id: &'r str,
    pub severity: Severity,
}

/// Runs a rule set over events.
pub struct Engine {
    rules: RuleSet,
}

impl Engine {
    pub fn new(rules: RuleSet) -> Self {
        Self { rules }
    }
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
    pub fn evaluate(&mut self, _event: &EventFacts<'_>) -> Vec<RuleMatch<'_>> {
        Vec::new()
    }
}

pub mod cli {
    use std::path::PathBuf;

    /// `fsense content ...`
    #[derive(clap::Subcommand, Debug)]
    pub enum ContentCommand {
        /// Create signing keys and the initial signed root.json.
        Keygen {
            #[arg(long)]
            out_dir: PathBuf,
        },
        /// Validate a rules file and publish it to a TUF repository.
        Publish {
            rules: PathBuf,
            #[arg(long)]
            keys: PathBuf,
            #[arg(long)]
            repo: PathBuf,
        },
        /// Fetch the latest content through TUF and validate it.
        Verify {
            #[arg(long)]
            repo: PathBuf,
            #[arg(long)]
            root: PathBuf,
        },
        /// Install the latest content into a sensor state directory.
        Update {
            #[arg(long)]
            repo: PathBuf,
            #[arg(long)]
            root: PathBuf,
            #[arg(long)]
            state_dir: PathBuf,
        },
        /// Return to the last known good content.
        Rollback {
            #[arg(long)]
            state_dir: PathBuf,
        },
        /// Simulate a staged rollout over a fleet.
        Rollout {
            #[arg(long)]
            fleet: u32,
            #[arg(long, value_delimiter = ',')]
            rings: Vec<u32>,
            #[arg(long)]
            repo: PathBuf,
            #[arg(long)]
            root: PathBuf,
            #[arg(long)]
            seed: u64,
            #[arg(long)]
            inject_fault: f64,
            #[arg(long)]
            summary_json: Option<PathBuf>,
        },
    }

    pub fn run(_cmd: ContentCommand) -> std::process::ExitCode {
        eprintln!("error: not implemented yet");
        std::process::ExitCode::from(1)
    }
}
