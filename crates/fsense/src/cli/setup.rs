//! Building a pipeline from command-line options.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Failure, OutputArgs, RulesArgs};
use crate::pipeline::Pipeline;
use crate::pipeline::content::Rules;
use crate::pipeline::enrich::{self, Offline, ProcessCache};
use crate::pipeline::filter::Filter;
use crate::pipeline::live_content::{self, LiveContentConfig, LiveRules};
use crate::pipeline::paths::DosDeviceMap;
use crate::source::capture::{CaptureWriter, SourceKind};
use crate::time::now_ticks;

/// Whether the events happened on this machine (then processes are looked up and our own pid
/// is excluded) or elsewhere (simulator, replays).
#[derive(Debug, Clone, Copy)]
pub enum Locality {
    Live,
    Elsewhere,
    /// The simulated Windows machine (`simulate --client win32`): processes and drive letters
    /// come from the simulated Win32 functions, through `lookup`.
    #[cfg(not(windows))]
    SimulatedWindows {
        lookup: fn() -> Box<dyn enrich::ProcessLookup>,
    },
}

/// The content rules the options ask for, if any, and the live-content checker when they
/// follow a repository.
pub fn load_rules(rules: &RulesArgs) -> Result<(Option<Rules>, Option<LiveRules>), Failure> {
    if let Some(path) = &rules.rules {
        Ok((Some(Rules::from_file(path)?), None))
    } else if let (Some(repo), Some(root), Some(dir)) =
        (&rules.content_repo, &rules.content_root, &rules.state_dir)
    {
        let gate = rules.fleet.fleet.as_ref().map(|_| Arc::default());
        let (rules_now, mut live) = live_content::start(LiveContentConfig {
            repo: repo.clone(),
            root: root.clone(),
            ca_file: rules.content_ca_file.clone(),
            state_dir: dir.clone(),
            interval: Duration::from_secs(rules.update_interval_s),
            gate: gate.clone(),
        })?;
        if let Some(gate) = gate {
            crate::fleet::attach(&rules.fleet, &mut live, gate)?;
        }
        Ok((rules_now, Some(live)))
    } else if let Some(dir) = &rules.state_dir {
        Ok((Some(Rules::from_state_dir(dir)?), None))
    } else {
        Ok((None, None))
    }
}

/// The output the options ask for: a file, or stdout (`quiet`: nowhere).
pub fn open_output(path: Option<&Path>, quiet: bool) -> Result<Box<dyn Write + Send>, Failure> {
    if quiet {
        return Ok(Box::new(io::sink()));
    }
    match path {
        Some(p) => {
            let f = crate::output::outfile::create_stream(p)?;
            Ok(Box::new(f))
        }
        None => Ok(Box::new(io::stdout())),
    }
}

/// A capture writer for `--capture FILE`.
pub fn open_capture(
    path: Option<&Path>,
    source: SourceKind,
) -> Result<Option<CaptureWriter<BufWriter<File>>>, Failure> {
    let Some(p) = path else { return Ok(None) };
    let f = crate::output::outfile::create_stream(p)?;
    CaptureWriter::new(BufWriter::with_capacity(1 << 16, f), source, now_ticks())
        .map(Some)
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", p.display())))
}

/// Builds the pipeline.
pub fn pipeline(
    out: &OutputArgs,
    quiet: bool,
    capture: Option<CaptureWriter<BufWriter<File>>>,
    locality: Locality,
) -> Result<Pipeline, Failure> {
    pipeline_with_roots(out, quiet, capture, locality, Vec::new())
}

/// Builds the pipeline, reporting only events under `roots` (drive-letter paths, Windows).
pub fn pipeline_with_roots(
    out: &OutputArgs,
    quiet: bool,
    capture: Option<CaptureWriter<BufWriter<File>>>,
    locality: Locality,
    roots: Vec<String>,
) -> Result<Pipeline, Failure> {
    check_output_dirs(out)?;
    let (rules, live) = load_rules(&out.rules)?;
    let (self_pid, lookup, devices) = match locality {
        Locality::Live => (
            Some(std::process::id()),
            enrich::live(),
            DosDeviceMap::current(),
        ),
        Locality::Elsewhere => (
            None,
            Box::new(Offline) as Box<dyn enrich::ProcessLookup>,
            DosDeviceMap::default(),
        ),
        #[cfg(not(windows))]
        Locality::SimulatedWindows { lookup } => (
            None,
            lookup(),
            DosDeviceMap::new(crate::ffi::windows::dos_devices()),
        ),
    };
    let filter = Filter::new(self_pid, &out.exclude, rules)
        .map_err(|e| e.to_string())?
        .with_roots(roots, cfg!(windows));
    let output = open_output(out.output.as_deref(), quiet)?;
    Ok(Pipeline::new(
        ProcessCache::new(lookup, 4096),
        filter,
        devices,
        output,
        capture,
    )
    .with_live_rules(live))
}

/// Refuses, at start, an output whose directory (or a directory on the way to it) another user
/// could use to redirect it (`--output`, `--summary-json`; `--capture` is checked when it is
/// opened, which is at start too).
pub fn check_output_dirs(out: &OutputArgs) -> Result<(), Failure> {
    for path in [out.output.as_deref(), out.summary_json.as_deref()]
        .into_iter()
        .flatten()
    {
        crate::output::outfile::check_dir_of(path)?;
    }
    Ok(())
}

/// A flag set by SIGINT / SIGTERM (Ctrl+C / Ctrl+Break / console close on Windows).
pub fn stop_flag() -> Result<Arc<AtomicBool>, Failure> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    ctrlc::set_handler(move || set.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    Ok(flag)
}

/// An output error as a failure that names where the events were going.
pub fn output_failure(out: &OutputArgs, e: &io::Error) -> Failure {
    match &out.output {
        Some(p) => Failure::new(format!("cannot write {}: {e}", p.display())),
        None => Failure::new(format!("cannot write the output: {e}")),
    }
}
