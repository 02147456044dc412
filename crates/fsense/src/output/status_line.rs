//! The live status line on stderr while a source runs on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::pipeline::PipelineStats;

/// Redraws one line on stderr at most once a second; silent when stderr is not a terminal.
pub struct StatusLine {
    enabled: bool,
    started: Instant,
    last_draw: Instant,
    last_events: u64,
    drawn: bool,
}

impl StatusLine {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            enabled: std::io::stderr().is_terminal(),
            started: now,
            last_draw: now,
            last_events: 0,
            drawn: false,
        }
    }

    /// Redraws if a second has passed.
    pub fn tick(&mut self, stats: &PipelineStats, queue_high_water: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last_draw);
        if dt < Duration::from_secs(1) {
            return;
        }
        let rate = (stats.events.saturating_sub(self.last_events)) as f64 / dt.as_secs_f64();
        let up = now.duration_since(self.started).as_secs();
        let line = render(stats, queue_high_water, up, rate);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.last_draw = now;
        self.last_events = stats.events;
        self.drawn = true;
    }

    /// Clears the line before the final summary.
    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Default for StatusLine {
    fn default() -> Self {
        Self::new()
    }
}

/// The text of the line: counters only (no names from the file system).
fn render(stats: &PipelineStats, queue_high_water: u64, up_secs: u64, rate: f64) -> String {
    let mut line = format!(
        "{up_secs}s  {} events  {rate:.0}/s  dropped {}  queue high-water {queue_high_water}",
        stats.events, stats.dropped
    );
    if stats.untracked_writes > 0 {
        line.push_str(&format!("  untracked writes {}", stats.untracked_writes));
    }
    if let Some(k) = &stats.sink {
        line.push_str(&format!(
            "  sink acked {} spooled {} spool-dropped {}",
            k.acknowledged, k.spooled, k.spool_dropped
        ));
        if k.rejected > 0 {
            line.push_str(&format!("  sink-rejected {}", k.rejected));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untracked_writes_show_when_there_are_any() {
        let mut stats = PipelineStats {
            events: 10,
            dropped: 2,
            ..PipelineStats::default()
        };
        assert_eq!(
            render(&stats, 5, 3, 1.0),
            "3s  10 events  1/s  dropped 2  queue high-water 5"
        );
        stats.untracked_writes = 7;
        assert!(render(&stats, 5, 3, 1.0).ends_with("  untracked writes 7"));
    }
}
