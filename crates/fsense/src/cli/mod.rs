//! The `fsense` command line. Every failure is one line `error: ...` on stderr and a non-zero
//! exit code, never a panic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod decode;
mod service;
mod setup;
#[cfg(not(windows))]
mod simulate;
mod status;
mod watch;

/// fsense: file-system event sensor (Windows minifilter + user-mode consumer).
#[derive(Parser, Debug)]
#[command(name = "fsense", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Watch directories and print their file events as OCSF JSON lines (Linux: fanotify, as
    /// root; Windows: the fsense driver's port).
    Watch(WatchArgs),
    /// Run the real driver code against the simulated Filter Manager and consume its messages.
    #[cfg(not(windows))]
    Simulate(SimulateArgs),
    /// Print the records of a capture file as JSON lines.
    Decode(DecodeArgs),
    /// Feed a capture file through the full pipeline (OCSF output).
    Replay(ReplayArgs),
    /// Versions, build id, config version and counters as reported by the sensor.
    Status(StatusArgs),
    /// Detection content: keys, publishing, verification, updates, rollout.
    #[cfg(all(feature = "content", not(target_env = "msvc")))]
    #[command(subcommand)]
    Content(crate::pipeline::content::ContentCommand),
    /// The agent as a Windows service: install, uninstall (Windows only).
    #[command(subcommand)]
    Service(service::ServiceCommand),
}

/// Where rules come from.
#[derive(Args, Debug, Default, Clone)]
pub struct RulesArgs {
    /// A rules file (TOML) to evaluate, for local testing.
    #[arg(long, value_name = "RULES.toml", conflicts_with = "state_dir")]
    rules: Option<PathBuf>,
    /// A sensor state directory: the content installed there by `fsense content update`.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Follow a content repository while running: install newer releases into --state-dir
    /// and switch the running rules between two events.
    #[arg(long, value_name = "URL|DIR", requires_all = ["state_dir", "content_root"])]
    content_repo: Option<String>,
    /// The trusted root metadata for --content-repo (KEYS/root.json).
    #[arg(long, value_name = "ROOT.json", requires = "content_repo")]
    content_root: Option<PathBuf>,
    /// PEM certificates of a private CA for an https:// --content-repo (as `content update
    /// --ca-file`), trusted besides the system's.
    #[arg(long, value_name = "FILE", requires = "content_repo")]
    content_ca_file: Option<PathBuf>,
    /// Seconds between two checks of --content-repo.
    #[arg(long, value_name = "N", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    update_interval_s: u64,
    #[command(flatten)]
    fleet: crate::fleet::FleetArgs,
}

/// Options every event-producing command shares.
#[derive(Args, Debug, Default, Clone)]
pub struct OutputArgs {
    /// Write the OCSF JSON lines to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write the final counters as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Do not report events whose path matches GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    #[command(flatten)]
    rules: RulesArgs,
    #[command(flatten)]
    sink: crate::output::sink::options::SinkArgs,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Directories to watch (recursively).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
    /// Record the received messages to a capture file.
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    /// When a write is reported (Linux). `first`: at the first write of each write session and
    /// again when the file is closed; the kernel skips the writes in between. `close`: only when
    /// the file is closed after writing: least overhead, but a file kept open is reported late.
    #[cfg(target_os = "linux")]
    #[arg(long, value_enum, default_value_t = WritesArg::First)]
    writes: WritesArg,
}

/// `--writes`: see [`WatchArgs`].
#[cfg(target_os = "linux")]
#[derive(clap::ValueEnum, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum WritesArg {
    #[default]
    First,
    Close,
}

/// The most file operations one `fsense simulate` run takes: its plan is built in memory first
/// (measured: 280 MB peak for 1,000,000 in a debug build), so 10 million stays under 3 GB.
#[cfg(not(windows))]
const MAX_SIMULATED_OPERATIONS: u64 = 10_000_000;

#[cfg(not(windows))]
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// File operations (opens, writes, renames, links, deletes, clones) the simulated I/O
    /// threads issue. The driver reports those its configuration asks for: the summary's
    /// `generated` counts those events (the consumer's own I/O and read-only opens of directories
    /// are not reported). At most 10,000,000: the plan is built in memory before the run (about
    /// 280 MB per million). `--events` is the old name of this flag.
    #[arg(
        long = "operations",
        alias = "events",
        value_name = "N",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SIMULATED_OPERATIONS)
    )]
    events: u64,
    /// I/O threads calling the driver's callbacks at once.
    #[arg(long, value_name = "T", default_value_t = 4)]
    threads: u32,
    /// The driver's queue capacity, in records.
    #[arg(long, value_name = "C", default_value_t = 4096)]
    queue_capacity: u32,
    /// The simulated consumer's behaviour: absent, normal, slow, stalled, crash, malicious.
    #[arg(long, value_name = "MODE", default_value = "normal")]
    consumer: fsense_fltsim::ConsumerMode,
    /// Seed of the simulation.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// The consumer at the port: sim (the simulator's own), win32 (the real Windows client
    /// over the simulated Win32 API), win32-single (that client with one receive posted and
    /// lookups on the receive path, the design before it was fixed).
    #[arg(long, value_name = "CLIENT", default_value = "sim")]
    client: simulate::ClientKind,
    /// File operations per second over all I/O threads. The default is a rate the driver's queue
    /// and its send timeout hold with a normal consumer (nothing dropped); 0 is the firehose:
    /// the threads go as fast as they can and outrun the driver's queue on purpose, to show that
    /// every lost event is counted.
    #[arg(long, value_name = "OPS_PER_S", default_value_t = simulate::DEFAULT_RATE)]
    rate: u64,
    /// Make every first process or account lookup take this long (win32 clients).
    #[arg(long, value_name = "N", default_value_t = 0)]
    slow_lookup_ms: u64,
    /// Load the driver this many times in a row (win32 clients): each load is unloaded under
    /// I/O while the client is connected, and the client must connect to the next one.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    loads: u32,
    /// Do not print the events.
    #[arg(long)]
    quiet: bool,
    /// Record the received messages to a capture file.
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The capture file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The capture file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Report the last health snapshot recorded in a capture file instead of asking a live
    /// sensor (the only source on machines without the driver).
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A failure: one line for the user, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// Exit code 2: bad input, environment, or I/O.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(e),
    };
    match run(cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", one_line(&f.message));
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Watch(a) => watch::run(a),
        #[cfg(not(windows))]
        Command::Simulate(a) => simulate::run(a),
        Command::Decode(a) => decode::decode(a),
        Command::Replay(a) => decode::replay(a),
        Command::Status(a) => status::run(a),
        #[cfg(all(feature = "content", not(target_env = "msvc")))]
        Command::Content(c) => Ok(crate::fleet::run_content(c)),
        Command::Service(c) => service::run(c),
    }
}

/// Help and version go to stdout with exit 0; usage errors become one line and exit 2.
fn clap_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error: {} (see --help)", one_line(first));
            ExitCode::from(2)
        }
    }
}

pub(crate) use crate::output::json::one_line;

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn error_lines_carry_no_control_or_bidi_characters() {
        let hostile = "a\nb\r\x1b]0;T\x07\u{9b}2K\u{7f}\u{202e}x\u{2067}é";
        let line = one_line(hostile);
        assert_eq!(
            line,
            "a\\u{a}b\\u{d}\\u{1b}]0;T\\u{7}\\u{9b}2K\\u{7f}\\u{202e}x\\u{2067}é"
        );
        assert!(!line.chars().any(|c| c.is_control()));
    }
}
