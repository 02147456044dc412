//! decode -> enrich -> filter -> output: the one path every source's messages take.
//!
//! Sources hand over driver messages as bytes (the Windows port, the simulator, and fanotify,
//! whose events are encoded into the same batch format first; captures replay them). The
//! pipeline decodes each with `fsense-proto`, follows sequence numbers to count what was lost,
//! records valid messages to the capture, and writes one OCSF JSON line per reported event.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use fsense_proto::{DecodeError, EventRecord, Health, Message, SeqTracker};
use serde::Serialize;

use crate::output::ocsf::{self, EventView, MatchedRule};
use crate::output::sink::{EventKey, EventSink, SinkStats};
use crate::pipeline::enrich::ProcessCache;
use crate::pipeline::filter::{Filter, Verdict};
use crate::source::capture::CaptureWriter;
use crate::time::{TICKS_PER_MS, UNIX_EPOCH_TICKS};
use live_content::LiveRules;
use paths::DosDeviceMap;

pub mod content;
pub mod enrich;
pub mod filter;
pub mod live_content;
pub mod paths;

/// Counters of a run, as written to `--summary-json`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PipelineStats {
    /// Records received and decoded.
    pub events: u64,
    /// Events written to the output.
    pub reported: u64,
    /// Sequence numbers that never arrived: events lost before they reached us.
    pub dropped: u64,
    pub self_excluded: u64,
    pub excluded: u64,
    /// Events outside the watched directories (sources that report more than was asked for).
    pub outside: u64,
    /// Events that matched at least one content rule.
    pub rule_matches: u64,
    /// Writes a `write_burst` rule could not track because its process table was full: a rule
    /// that may have missed a burst says so.
    pub untracked_writes: u64,
    pub messages: u64,
    pub batches: u64,
    pub health_messages: u64,
    /// Messages that did not decode (counted, not captured, not processed).
    pub decode_errors: u64,
    /// Records whose sequence number went backwards (should stay 0).
    pub out_of_order: u64,
    /// Driver loads seen (a reconnect to a reloaded driver starts a new sequence).
    pub sessions: u64,
    /// Rules version of the content running at the end (`None`: no content).
    pub content_version: Option<u64>,
    /// Releases installed while running (`--content-repo`).
    pub content_updates: u64,
    /// Content update checks refused or failed while running; the rules stayed.
    pub content_update_failures: u64,
    /// The `--sink` counters, when there is a sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkStats>,
}

/// What a message turned out to be.
#[derive(Debug, Clone, Copy)]
pub enum Handled {
    Batch { records: u32 },
    Health(Health),
}

/// The pipeline, generic over nothing: the output is any writer.
pub struct Pipeline {
    cache: ProcessCache,
    filter: Filter,
    devices: DosDeviceMap,
    out: BufWriter<Box<dyn Write + Send>>,
    capture: Option<CaptureWriter<BufWriter<File>>>,
    seq: SeqTracker,
    /// Losses of earlier sessions (the tracker restarts with each driver load).
    lost_before: u64,
    out_of_order_before: u64,
    /// Highest sequence number received in the current session.
    last_sequence: u64,
    stats: PipelineStats,
    last_health: Option<Health>,
    rules_buf: Vec<MatchedRule>,
    /// The JSON line being built (reused).
    line: Vec<u8>,
    /// New rule sets from the content checker (`--content-repo`).
    live: Option<LiveRules>,
    /// Where every reported event also goes (`--sink`).
    sink: Option<Box<dyn EventSink>>,
}

impl Pipeline {
    pub fn new(
        cache: ProcessCache,
        filter: Filter,
        devices: DosDeviceMap,
        out: Box<dyn Write + Send>,
        capture: Option<CaptureWriter<BufWriter<File>>>,
    ) -> Self {
        Self {
            cache,
            filter,
            devices,
            out: BufWriter::with_capacity(1 << 16, out),
            capture,
            seq: SeqTracker::new(),
            lost_before: 0,
            out_of_order_before: 0,
            last_sequence: 0,
            stats: PipelineStats {
                sessions: 1,
                ..PipelineStats::default()
            },
            last_health: None,
            rules_buf: Vec::new(),
            line: Vec::with_capacity(1024),
            live: None,
            sink: None,
        }
    }

    /// Follows live content: rule sets the checker publishes replace the running ones between
    /// two events.
    #[must_use]
    pub fn with_live_rules(mut self, live: Option<LiveRules>) -> Self {
        self.live = live;
        self
    }

    /// Also hands every reported event to `sink`.
    pub fn set_sink(&mut self, sink: Box<dyn EventSink>) {
        self.sink = Some(sink);
    }

    /// Decodes and processes one driver message received at `received_at` (FILETIME ticks).
    /// A message that does not decode is counted and returned as the error; nothing of it is
    /// output. Output errors are returned as `Ok(Err(..))`'s outer `io::Error`.
    pub fn handle_message(
        &mut self,
        bytes: &[u8],
        received_at: u64,
    ) -> io::Result<Result<Handled, DecodeError>> {
        self.stats.messages += 1;
        let message = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.decode_errors += 1;
                return Ok(Err(e));
            }
        };
        if let Some(capture) = self.capture.as_mut() {
            capture.write_message(bytes, received_at)?;
        }
        Ok(Ok(self.handle_decoded(&message)?))
    }

    /// Processes a message that is already decoded (replays decode while reading).
    pub fn handle_decoded(&mut self, message: &Message<'_>) -> io::Result<Handled> {
        match message {
            Message::Batch(batch) => {
                self.stats.batches += 1;
                let mut n = 0u32;
                for record in batch.records() {
                    self.handle_record(&record)?;
                    n += 1;
                }
                Ok(Handled::Batch { records: n })
            }
            Message::Health(health) => {
                self.stats.health_messages += 1;
                self.last_health = Some(*health);
                Ok(Handled::Health(*health))
            }
        }
    }

    fn handle_record(&mut self, record: &EventRecord<'_>) -> io::Result<()> {
        // Between two events: the only point where the rules change (one atomic load when
        // nothing new was published).
        if let Some(live) = self.live.as_mut()
            && let Some(rules) = live.rules.take_new()
        {
            self.filter.set_rules(rules);
        }
        self.stats.events += 1;
        self.seq.observe(record.sequence);
        self.last_sequence = self.last_sequence.max(record.sequence);
        let shown = paths::display(&record.path);
        let path = self.devices.to_dos(&shown.text);
        // A rename's or link's new name, a clone's source.
        let target_shown = record
            .operation
            .has_target()
            .then(|| paths::display(&record.target));
        let target = target_shown.as_ref().map(|t| self.devices.to_dos(&t.text));
        let verdict = self.filter.verdict(record.pid, &path);
        // A rename or link is kept when either name is (a move from an excluded or unwatched
        // directory into a watched one is reported; so is a move out of one).
        let verdict = match (&target, verdict) {
            (Some(t), Verdict::Excluded | Verdict::Outside)
                if record.operation != fsense_proto::Operation::Clone =>
            {
                match self.filter.verdict(record.pid, t) {
                    Verdict::Keep => Verdict::Keep,
                    _ => verdict,
                }
            }
            _ => verdict,
        };
        match verdict {
            Verdict::Keep => {}
            Verdict::SelfExcluded => {
                self.stats.self_excluded += 1;
                return Ok(());
            }
            Verdict::Excluded => {
                self.stats.excluded += 1;
                return Ok(());
            }
            Verdict::Outside => {
                self.stats.outside += 1;
                return Ok(());
            }
        }
        let process = self.cache.get(record.pid, record.process_create_time);
        let time_ms = record.timestamp.saturating_sub(UNIX_EPOCH_TICKS) / TICKS_PER_MS;
        let timed = self.live.as_ref().map(|_| std::time::Instant::now());
        let severity_id = self.filter.rules(
            record.operation,
            &path,
            target.as_deref(),
            record.pid,
            time_ms,
            &mut self.rules_buf,
        );
        if let (Some(live), Some(t)) = (&self.live, timed) {
            let lost = self.lost_before + self.seq.lost();
            live.health.observe(
                t.elapsed().as_nanos() as u64,
                !self.rules_buf.is_empty(),
                lost,
            );
        }
        if !self.rules_buf.is_empty() {
            self.stats.rule_matches += 1;
        }
        let (parent_folder, name) = paths::split(&path);
        let raw_path = match &path {
            std::borrow::Cow::Owned(_) => Some(shown.text.as_str()),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let view = EventView {
            record,
            path: &path,
            raw_path,
            path_exact: shown.exact,
            parent_folder,
            name,
            process: process.as_deref(),
            rules: &self.rules_buf,
            severity_id,
            target: target.as_deref(),
            target_exact: target_shown.as_ref().is_none_or(|t| t.exact),
        };
        self.line.clear();
        ocsf::write_event(&mut self.line, &view);
        self.out.write_all(&self.line)?;
        if let Some(sink) = self.sink.as_mut() {
            let key = EventKey {
                session: self.stats.sessions,
                sequence: record.sequence,
            };
            sink.send(key, self.line.strip_suffix(b"\n").unwrap_or(&self.line))?;
        }
        self.stats.reported += 1;
        Ok(())
    }

    /// The source reconnected to a new driver load: sequence numbers start over. Numbers the
    /// previous load's last health counted and that never arrived are lost (at an unload, the
    /// drain's tail): the old account is closed with that count first.
    pub fn new_session(&mut self) {
        if let Some(h) = self.last_health.take() {
            self.seq.finish(h.events_generated);
        }
        self.lost_before += self.seq.lost();
        self.out_of_order_before += self.seq.out_of_order();
        self.seq = SeqTracker::new();
        self.last_sequence = 0;
        self.stats.sessions += 1;
    }

    /// Closes the sequence account when the source knows how many numbers it handed out.
    pub fn close_session(&mut self, generated: u64) {
        self.seq.finish(generated);
    }

    /// Flushes the output (and the capture's buffered frames).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if let Some(s) = self.sink.as_mut() {
            s.flush()?;
        }
        if let Some(c) = self.capture.as_mut() {
            c.flush()?;
        }
        Ok(())
    }

    /// Flushes everything and closes the capture with its end frame.
    pub fn finish(&mut self, at: u64) -> io::Result<()> {
        self.out.flush()?;
        if let Some(c) = self.capture.take() {
            c.finish(at)?;
        }
        if let Some(s) = self.sink.as_mut() {
            s.finish()?;
        }
        Ok(())
    }

    /// The counters so far.
    pub fn stats(&self) -> PipelineStats {
        let mut s = self.stats.clone();
        s.dropped = self.lost_before + self.seq.lost();
        s.out_of_order = self.out_of_order_before + self.seq.out_of_order();
        s.content_version = self.filter.content_version();
        if let Some(live) = &self.live {
            (s.content_updates, s.content_update_failures) =
                live_content::counter_values(&live.counters);
        }
        s.untracked_writes = self.filter.untracked_writes();
        s.sink = self.sink.as_ref().map(|k| k.stats());
        s
    }

    /// The last health message received.
    pub fn last_health(&self) -> Option<&Health> {
        self.last_health.as_ref()
    }

    /// The highest sequence number received in the current session (what an ack acknowledges).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// Events output without their process because its lookup was still running.
    pub fn lookups_pending(&self) -> u64 {
        self.cache.pending()
    }

    pub fn content_version(&self) -> Option<u64> {
        self.filter.content_version()
    }
}

#[cfg(test)]
mod tests;
