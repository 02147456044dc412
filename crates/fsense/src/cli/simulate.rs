//! `fsense simulate`: the driver's own code against the simulated Filter Manager, its messages
//! consumed by the real pipeline.

use std::io;
use std::process::ExitCode;

use fsense_fltsim::{SimConfig, SimReport};
use serde_json::{Value, json};

use super::setup::{self, Locality};
use super::{Failure, SimulateArgs};
use crate::capture::SourceKind;
use crate::pipeline::PipelineStats;
use crate::report::{health_json, write_json_file};
use crate::time::now_ticks;

pub fn run(args: SimulateArgs) -> Result<ExitCode, Failure> {
    let capture = setup::open_capture(args.capture.as_deref(), SourceKind::Simulator)?;
    let mut pipeline = setup::pipeline(&args.out, args.quiet, capture, Locality::Elsewhere)?;
    crate::sink::options::attach(&mut pipeline, &args.out.sink, now_ticks())?;
    let config = SimConfig {
        events: args.events,
        threads: args.threads,
        queue_capacity: args.queue_capacity,
        consumer: args.consumer,
        seed: args.seed,
    };
    let mut output_error: Option<io::Error> = None;
    let mut first_decode_error = None;
    let report = fsense_fltsim::run(&config, &mut |bytes: &[u8]| {
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
        eprintln!("warning: a driver message did not decode: {e}");
    }
    let stats = pipeline.stats();
    if stats.dropped != report.seq_gaps || stats.events != report.delivered {
        eprintln!(
            "warning: the consumer saw {} events and {} lost sequence numbers; the simulator reports {} delivered and {} gaps",
            stats.events, stats.dropped, report.delivered, report.seq_gaps
        );
    }
    let failures = report.failures();
    let summary = summary_json(&args, &report, &stats, &failures);
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
    });
    if let Some(sink) = &stats.sink {
        v["sink"] = json!(sink);
    }
    v
}
