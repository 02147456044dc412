//! `fsense watch`: live events from this machine until SIGINT / SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value;

use super::{Failure, WatchArgs, setup};
use crate::output::report::write_json_file;
use crate::pipeline::PipelineStats;

pub fn run(args: WatchArgs) -> Result<ExitCode, Failure> {
    // Before anything is created: a summary written only at the end is refused now.
    setup::check_output_dirs(&args.out)?;
    platform::run(args, setup::stop_flag()?)
}

/// Watches until `stop` is set (the service's stop handshake), not until a signal.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn run_until(args: WatchArgs, stop: Arc<AtomicBool>) -> Result<ExitCode, Failure> {
    setup::check_output_dirs(&args.out)?;
    platform::run(args, stop)
}

/// What the source adds to the summary: how exact the dropped count is, and what it left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SourceNote {
    /// Kernel queue overflows: each lost an unknown number of events (at least one).
    pub overflows: u64,
    /// Whether the dropped count is only a lower bound.
    pub dropped_is_lower_bound: bool,
    /// Events outside the watched paths (fanotify marks the whole file system).
    pub outside: Option<u64>,
    /// Directories moved in whose contents could not all be reported.
    pub moved_in_not_listed: u64,
}

/// The stderr summary line.
pub fn summary_line(stats: &PipelineStats, note: &SourceNote) -> String {
    let dropped = match (note.dropped_is_lower_bound, note.overflows) {
        (false, _) => format!("{} dropped", stats.dropped),
        (true, 0) => format!("at least {} dropped", stats.dropped),
        (true, k) => format!(
            "at least {} dropped (the kernel queue overflowed {k} time{}, each losing an unknown number of events, counted as one)",
            stats.dropped,
            if k == 1 { "" } else { "s" }
        ),
    };
    let mut line = format!(
        "fsense: {} events, {} reported, {dropped}, {} excluded, {} self-excluded, {} rule matches",
        stats.events, stats.reported, stats.excluded, stats.self_excluded, stats.rule_matches
    );
    if stats.untracked_writes > 0 {
        line += &format!(
            ", {} writes the rules could not track",
            stats.untracked_writes
        );
    }
    if let Some(n) = note.outside {
        line += &format!(", {n} outside the watched paths");
    }
    if note.moved_in_not_listed > 0 {
        line += &format!(
            ", {} directories moved in not listed in full",
            note.moved_in_not_listed
        );
    }
    line
}

fn finish_summary(
    args: &WatchArgs,
    stats: &PipelineStats,
    source: Value,
    note: &SourceNote,
) -> Result<(), Failure> {
    eprintln!("{}", summary_line(stats, note));
    if let Some(path) = &args.out.summary_json {
        let mut v = serde_json::to_value(stats).map_err(|e| e.to_string())?;
        v["source"] = source;
        v["dropped_is_lower_bound"] = Value::Bool(note.dropped_is_lower_bound);
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
        let s = source.stats();
        let note = super::SourceNote {
            overflows: s.overflows,
            dropped_is_lower_bound: s.dropped_is_lower_bound(),
            outside: Some(s.outside),
            moved_in_not_listed: s.moved_in_not_listed,
        };
        let source_stats = serde_json::to_value(s).map_err(|e| e.to_string())?;
        finish_summary(&args, &pipeline.stats(), source_stats, &note)?;
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
        // The driver counts its drops exactly (queue full, send failures).
        finish_summary(
            &args,
            &pipeline.stats(),
            source,
            &super::SourceNote::default(),
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_makes_the_dropped_count_a_stated_lower_bound() {
        let stats = PipelineStats {
            events: 10,
            reported: 9,
            dropped: 2,
            ..PipelineStats::default()
        };
        let exact = summary_line(&stats, &SourceNote::default());
        assert!(exact.contains(", 2 dropped,"), "{exact}");
        assert!(!exact.contains("outside"), "{exact}");
        let note = SourceNote {
            overflows: 2,
            dropped_is_lower_bound: true,
            outside: Some(7),
            moved_in_not_listed: 1,
        };
        let line = summary_line(&stats, &note);
        assert!(
            line.contains("at least 2 dropped (the kernel queue overflowed 2 times"),
            "{line}"
        );
        assert!(line.contains(", 7 outside the watched paths"), "{line}");
        assert!(
            line.contains("1 directories moved in not listed in full"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
    }
}
