//! `fsense simulate`: the driver's own code against the simulated Filter Manager, its messages
//! consumed by the real pipeline: handed over by the simulator's own consumer, or received by
//! the real Windows port client (`--client win32`) through the simulated Win32 functions.

use std::io;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fsense_fltsim::win32::{self, Win32Config};
use fsense_fltsim::{ConsumerMode, SimConfig, SimReport, Tuning};
use serde_json::{Value, json};

use super::setup::{self, Locality};
use super::{Failure, SimulateArgs};
use crate::ffi::windows::{DEFAULT_RECEIVES, WinProcessLookup};
use crate::output::report::{health_json, write_json_file};
use crate::pipeline::enrich::{BACKGROUND_WORKERS, Background, ProcessLookup};
use crate::pipeline::{Pipeline, PipelineStats};
use crate::source::capture::SourceKind;
use crate::source::winport::{self, AfterMessage, PortStats};
use crate::time::now_ticks;

/// Which consumer takes the driver's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// The simulator's own consumer, in any [`ConsumerMode`].
    Sim,
    /// The real Windows port client: several receives posted, lookups in the background.
    Win32,
    /// The real Windows port client as it was: one receive, lookups on the receive path.
    Win32Single,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Win32 => "win32",
            Self::Win32Single => "win32-single",
        }
    }
}

impl FromStr for ClientKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Sim, Self::Win32, Self::Win32Single]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown client '{s}' (sim, win32, win32-single)"))
    }
}

pub fn run(args: SimulateArgs) -> Result<ExitCode, Failure> {
    if args.client != ClientKind::Sim {
        return run_win32(args);
    }
    if args.loads != 1 {
        return Err(Failure::new(
            "--loads takes the win32 clients (the simulator's own consumer serves one load)",
        ));
    }
    let capture = setup::open_capture(args.capture.as_deref(), SourceKind::Simulator)?;
    let mut pipeline = setup::pipeline(&args.out, args.quiet, capture, Locality::Elsewhere)?;
    crate::output::sink::options::attach(&mut pipeline, &args.out.sink, now_ticks())?;
    let config = sim_config(&args);
    let tuning = Tuning {
        rate_per_s: args.rate,
        ..Tuning::default()
    };
    let mut output_error: Option<io::Error> = None;
    let mut first_decode_error = None;
    let report = fsense_fltsim::run_tuned(&config, &tuning, &mut |bytes: &[u8]| {
        if output_error.is_some() {
            return;
        }
        match pipeline.handle_message(bytes, now_ticks()) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                first_decode_error.get_or_insert(e);
            }
            Err(e) => output_error = Some(e),
        }
    });
    // Sequence numbers after the last delivered record were lost too.
    pipeline.close_session(report.generated);
    let finish = pipeline.finish(now_ticks());
    if let Some(e) = output_error.or(finish.err()) {
        return Err(setup::output_failure(&args.out, &e));
    }
    if let Some(e) = first_decode_error {
        eprintln!(
            "warning: a driver message did not decode: {}",
            super::one_line(&e.to_string())
        );
    }
    let stats = pipeline.stats();
    if stats.dropped != report.seq_gaps || stats.events != report.delivered {
        eprintln!(
            "warning: the consumer saw {} events and {} lost sequence numbers; the simulator reports {} delivered and {} gaps",
            stats.events, stats.dropped, report.delivered, report.seq_gaps
        );
    }
    let failures = report.failures();
    conclude(&args, &report, &stats, failures, json!({ "kind": "sim" }))
}

fn sim_config(args: &SimulateArgs) -> SimConfig {
    SimConfig {
        events: args.events,
        threads: args.threads,
        queue_capacity: args.queue_capacity,
        consumer: args.consumer,
        seed: args.seed,
    }
}

/// The real Windows client (`winport`, `ffi::windows`) against the simulated Win32 functions.
fn run_win32(args: SimulateArgs) -> Result<ExitCode, Failure> {
    if !matches!(
        args.consumer,
        ConsumerMode::Normal | ConsumerMode::Slow | ConsumerMode::Crash
    ) {
        return Err(Failure::new(format!(
            "--client {} runs the consumer modes normal, slow and crash, not {}",
            args.client.as_str(),
            args.consumer
        )));
    }
    let single = args.client == ClientKind::Win32Single;
    let lookup: fn() -> Box<dyn ProcessLookup> = if single {
        || Box::new(WinProcessLookup)
    } else {
        || {
            Box::new(Background::new(
                || Box::new(WinProcessLookup),
                BACKGROUND_WORKERS,
            ))
        }
    };
    let capture = setup::open_capture(args.capture.as_deref(), SourceKind::Simulator)?;
    let mut pipeline = setup::pipeline(
        &args.out,
        args.quiet,
        capture,
        Locality::SimulatedWindows { lookup },
    )?;
    crate::output::sink::options::attach(&mut pipeline, &args.out.sink, now_ticks())?;
    win32::configure(Win32Config {
        caller_is_admin: true,
        slow_lookup: Duration::from_millis(args.slow_lookup_ms),
    });
    let tuning = Tuning {
        rate_per_s: args.rate,
        ..Tuning::default()
    };
    let receives = if single { 1 } else { DEFAULT_RECEIVES };
    let mode = args.consumer;
    let mut behaviour = move |messages: u64| -> AfterMessage {
        match mode {
            ConsumerMode::Slow => std::thread::sleep(Duration::from_millis(1)),
            // Close the port every few messages, as a consumer that crashes and restarts.
            ConsumerMode::Crash if messages.is_multiple_of(3) => return AfterMessage::Reconnect,
            _ => {}
        }
        AfterMessage::Continue
    };
    let mut outcome: Option<io::Result<PortStats>> = None;
    let report = fsense_fltsim::run_external_reloading(
        &sim_config(&args),
        &tuning,
        args.loads,
        &mut |stop: &AtomicBool| {
            let options = winport::Options {
                receives,
                after_message: Some(&mut behaviour),
            };
            outcome = Some(winport::run_with(&mut pipeline, stop, options));
        },
    );
    win32::configure(Win32Config::default());
    let port = match outcome {
        Some(Ok(port)) => port,
        Some(Err(e)) => return Err(setup::output_failure(&args.out, &e)),
        None => return Err(Failure::new("the Windows client never ran")),
    };
    // The client's account is the last load's: closed with what that load generated.
    pipeline.close_session(
        report
            .health
            .map_or(report.generated, |h| h.events_generated),
    );
    pipeline
        .finish(now_ticks())
        .map_err(|e| setup::output_failure(&args.out, &e))?;
    let stats = pipeline.stats();
    let mut failures = report.failures();
    let unobservable = unobservable_at_unload(&report);
    // The consumer here is the code under test: what it counted must be what was delivered,
    // and every gap it could know of (the tails it cannot see are the simulator's to count).
    if stats.events != report.delivered
        || Some(stats.dropped) != report.seq_gaps.checked_sub(unobservable)
    {
        failures.push(format!(
            "the Windows client saw {} events and {} lost sequence numbers; the Filter Manager delivered {} and the driver's gaps are {} ({} of them after the last number the client could learn of)",
            stats.events, stats.dropped, report.delivered, report.seq_gaps, unobservable
        ));
    }
    if stats.decode_errors != 0 {
        failures.push(format!(
            "{} driver messages did not decode",
            stats.decode_errors
        ));
    }
    let client = json!({
        "kind": args.client.as_str(),
        "receives": receives,
        "rate": args.rate,
        "slow_lookup_ms": args.slow_lookup_ms,
        "loads": args.loads,
        "unseen_tail_per_load": report.unseen_tail_per_load,
        "unobservable_at_unload": unobservable,
        "lookups_pending": pending_lookups(&pipeline),
        "port": port,
    });
    conclude(&args, &report, &stats, failures, client)
}

/// Sequence numbers of every load but the last that the client had no way to learn of: above
/// the highest it took in a batch or health before the unload closed its port. The last load's
/// account is closed with the driver's own final count, so nothing of it is unobservable.
fn unobservable_at_unload(report: &SimReport) -> u64 {
    match report.unseen_tail_per_load.split_last() {
        Some((_, earlier)) => earlier.iter().sum(),
        None => 0,
    }
}

fn pending_lookups(pipeline: &Pipeline) -> u64 {
    pipeline.lookups_pending()
}

/// Writes the summary and says how the run went.
fn conclude(
    args: &SimulateArgs,
    report: &SimReport,
    stats: &PipelineStats,
    failures: Vec<String>,
    client: Value,
) -> Result<ExitCode, Failure> {
    let summary = summary_json(args, report, stats, &failures, client);
    if let Some(path) = &args.out.summary_json {
        write_json_file(path, &summary)?;
    }
    if failures.is_empty() {
        eprintln!(
            "simulate: passed ({} generated, {} delivered, {} dropped, {} events output)",
            report.generated, report.delivered, report.dropped, stats.reported
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: simulation failed: {}", failures.join("; "));
        Ok(ExitCode::from(1))
    }
}

fn summary_json(
    args: &SimulateArgs,
    report: &SimReport,
    stats: &PipelineStats,
    failures: &[String],
    client: Value,
) -> Value {
    let mut v = json!({
        "generated": report.generated,
        "delivered": report.delivered,
        "dropped": report.dropped,
        "seq_gaps": report.seq_gaps,
        "leaked_allocations": report.leaked_allocations,
        "unreleased_name_infos": report.unreleased_name_infos,
        "verifier_violations": report.verifier_violations,
        "max_callback_us": report.max_callback_us,
        "unload_clean": report.unload_clean,
        "health": report.health.as_ref().map(health_json),
        "consumer": args.consumer.as_str(),
        "events": args.events,
        "threads": args.threads,
        "queue_capacity": args.queue_capacity,
        "seed": args.seed,
        "passed": failures.is_empty(),
        "failures": failures,
        "pipeline": stats,
        "content_version": stats.content_version,
        "client": client,
    });
    if let Some(sink) = &stats.sink {
        v["sink"] = json!(sink);
    }
    v
}
