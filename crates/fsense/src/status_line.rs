//! The live status line on stderr while a source runs on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::sink::SinkStats;

/// Redraws one line on stderr at most once a second; silent when stderr is not a terminal.
pub struct StatusLine {
    enabled: bool,
    started: Instant,
    last_draw: Instant,
    last_events: u64,
    drawn: bool,
    sink: Option<SinkStats>,
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
            sink: None,
        }
    }

    /// The sink's counters, shown at the end of the line from the next redraw on.
    pub fn set_sink(&mut self, sink: Option<SinkStats>) {
        self.sink = sink;
    }

    /// Redraws if a second has passed.
    pub fn tick(&mut self, events: u64, dropped: u64, queue_high_water: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last_draw);
        if dt < Duration::from_secs(1) {
            return;
        }
        let rate = (events.saturating_sub(self.last_events)) as f64 / dt.as_secs_f64();
        let up = now.duration_since(self.started).as_secs();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{up}s  {events} events  {rate:.0}/s  dropped {dropped}  queue high-water {queue_high_water}"
        );
        if let Some(k) = &self.sink {
            let _ = write!(
                err,
                "  sink acked {} spooled {} spool-dropped {}",
                k.acknowledged, k.spooled, k.spool_dropped
            );
        }
        let _ = err.flush();
        self.last_draw = now;
        self.last_events = events;
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
