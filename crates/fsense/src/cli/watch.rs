//! `fsense watch`: live events from this machine until SIGINT / SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

use super::{Failure, WatchArgs, setup};
use crate::output::report::write_json_file;
use crate::pipeline::PipelineStats;

pub fn run(args: WatchArgs) -> Result<ExitCode, Failure> {
    platform::run(args, setup::stop_flag()?)
}

/// Watches until `stop` is set (the service's stop handshake), not until a signal.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn run_until(args: WatchArgs, stop: Arc<AtomicBool>) -> Result<ExitCode, Failure> {
    platform::run(args, stop)
}

fn finish_summary(args: &WatchArgs, stats: &PipelineStats, source: Value) -> Result<(), Failure> {
    let untracked = match stats.untracked_writes {
        0 => String::new(),
        n => format!(", {n} writes the rules could not track"),
    };
    eprintln!(
        "fsense: {} events, {} reported, {} dropped, {} excluded, {} self-excluded, {} rule matches{untracked}",
        stats.events,
        stats.reported,
        stats.dropped,
        stats.excluded,
        stats.self_excluded,
        stats.rule_matches
    );
    if let Some(path) = &args.out.summary_json {
        let mut v = serde_json::to_value(stats).map_err(|e| e.to_string())?;
        v["source"] = source;
        write_json_file(path, &v)?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod platform {
    use std::io;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::setup::{self, Locality};
    use super::super::{Failure, WatchArgs, WritesArg};
    use super::finish_summary;
    use crate::output::status_line::StatusLine;
    use crate::pipeline::Pipeline;
    use crate::source::capture::SourceKind;
    use crate::source::fanotify::{FanotifySource, WriteEvents};
    use crate::time::now_ticks;

    /// How long to let events gather after the first one arrives. Bounds the added latency; the
    /// kernel queue (16,384 events) does not fill that fast at realistic rates.
    const COALESCE: std::time::Duration = std::time::Duration::from_millis(10);

    pub fn run(args: WatchArgs, stop: Arc<AtomicBool>) -> Result<ExitCode, Failure> {
        let writes = match args.writes {
            WritesArg::First => WriteEvents::FirstAndClose,
            WritesArg::Close => WriteEvents::CloseOnly,
        };
        let mut source =
            FanotifySource::open(&args.dirs, writes).map_err(|e| Failure::new(e.to_string()))?;
        let capture = setup::open_capture(args.capture.as_deref(), SourceKind::Fanotify)?;
        let mut pipeline = setup::pipeline(&args.out, false, capture, Locality::Live)?;
        crate::output::sink::options::attach(&mut pipeline, &args.out.sink, now_ticks())?;
        let roots: Vec<String> = source.roots().map(|p| p.display().to_string()).collect();
        eprintln!(
            "fsense: watching {}",
            super::super::one_line(&roots.join(", "))
        );
        let mut status = StatusLine::new();
        let outcome = (|| -> io::Result<()> {
            while !stop.load(Ordering::SeqCst) {
                if source.wait(200)? {
                    // Let events accumulate: one wake-up per burst instead of per event, and
                    // the kernel merges repeated events for a file while they wait in its queue.
                    std::thread::sleep(COALESCE);
                    drain(&mut source, &mut pipeline)?;
                    pipeline.flush()?;
                }
                let s = pipeline.stats();
                status.tick(&s, source.stats().queue_high_water);
            }
            // Everything the kernel queued before the signal is still delivered.
            drain(&mut source, &mut pipeline)?;
            pipeline.close_session(source.stats().generated);
            pipeline.finish(now_ticks())
        })();
        status.clear();
        outcome.map_err(|e| setup::output_failure(&args.out, &e))?;
        let source_stats = serde_json::to_value(source.stats()).map_err(|e| e.to_string())?;
        finish_summary(&args, &pipeline.stats(), source_stats)?;
        Ok(ExitCode::SUCCESS)
    }

    fn drain(source: &mut FanotifySource, pipeline: &mut Pipeline) -> io::Result<u64> {
        source.drain(
            &mut |batch| match pipeline.handle_message(batch, now_ticks())? {
                Ok(_) => Ok(()),
                // The batch was encoded by this process: failing to decode it is a bug here.
                Err(e) => Err(io::Error::other(format!(
                    "internal batch encoding error: {e}"
                ))),
            },
        )
    }
}

#[cfg(windows)]
mod platform {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::super::setup::{self, Locality};
    use super::super::{Failure, WatchArgs};
    use super::finish_summary;
    use crate::source::capture::SourceKind;
    use crate::time::now_ticks;

    pub fn run(args: WatchArgs, stop: Arc<AtomicBool>) -> Result<ExitCode, Failure> {
        let roots = windows_roots(&args.dirs)?;
        eprintln!(
            "fsense: watching {}",
            super::super::one_line(&roots.join(", "))
        );
        let capture = setup::open_capture(args.capture.as_deref(), SourceKind::WindowsPort)?;
        let mut pipeline =
            setup::pipeline_with_roots(&args.out, false, capture, Locality::Live, roots)?;
        crate::output::sink::options::attach(&mut pipeline, &args.out.sink, now_ticks())?;
        let port_stats = crate::source::winport::run(&mut pipeline, &stop)
            .map_err(|e| setup::output_failure(&args.out, &e))?;
        pipeline
            .finish(now_ticks())
            .map_err(|e| setup::output_failure(&args.out, &e))?;
        let source = serde_json::to_value(&port_stats).map_err(|e| e.to_string())?;
        finish_summary(&args, &pipeline.stats(), source)?;
        Ok(ExitCode::SUCCESS)
    }

    /// The directories as drive-letter paths (`C:\\Users\\ann`), which is how events are shown.
    fn windows_roots(dirs: &[std::path::PathBuf]) -> Result<Vec<String>, Failure> {
        dirs.iter()
            .map(|d| {
                let full = std::fs::canonicalize(d)
                    .map_err(|e| Failure::new(format!("cannot watch {}: {e}", d.display())))?;
                let text = full.to_string_lossy();
                Ok(text.strip_prefix("\\\\?\\").unwrap_or(&text).to_string())
            })
            .collect()
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod platform {
    use super::super::{Failure, WatchArgs};
    use std::process::ExitCode;

    pub fn run(
        _: WatchArgs,
        _: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<ExitCode, Failure> {
        Err(Failure::new(
            "fsense watch runs on Linux (fanotify) and Windows (the driver)",
        ))
    }
}
