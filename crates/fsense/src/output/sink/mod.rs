//! Sinks: where events go besides the output file, one message per event.
//!
//! The pipeline hands every reported event to an [`EventSink`] as its OCSF JSON object (the
//! output line without its newline) with the event's [`EventKey`]. A sink owns its delivery:
//! the NATS JetStream sink ([`nats`]) appends each event to a [`spool`] first and publishes from
//! there, so an event leaves the spool only when the server acknowledged it. A Kafka sink would
//! implement the same trait; the sources (watch, simulate, replay) do not change.

use std::io;

use serde::Serialize;

pub mod config;
pub mod frame;
#[cfg(all(feature = "nats", not(target_env = "msvc")))]
pub mod nats;
#[cfg(all(feature = "nats", not(target_env = "msvc")))]
pub mod nats_connect;
#[cfg(all(feature = "nats", not(target_env = "msvc")))]
pub mod nats_failure;
#[cfg(all(feature = "nats", not(target_env = "msvc")))]
pub mod nats_guard;
pub mod options;
pub mod puback;
pub mod spool;

/// What identifies one event across runs: a replay of the same events yields the same keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKey {
    /// The pipeline's driver session (1 for the first; a reconnect to a reloaded driver adds 1).
    pub session: u64,
    /// The event's sequence number in that session.
    pub sequence: u64,
}

/// Counters of a sink, as written to the summary JSON under `"sink"`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SinkStats {
    /// Messages sent to the server (a retry after a failure counts again).
    pub published: u64,
    /// Events the server acknowledged (each counted once).
    pub acknowledged: u64,
    /// Events in the spool not yet acknowledged (at the end of a run: left for the next run).
    pub spooled: u64,
    /// Events dropped, oldest first, because the spool was full.
    pub spool_dropped: u64,
    /// Acknowledgements saying the server already had the event (a republish after a failure).
    pub duplicates: u64,
    /// Unacknowledged events an earlier run left in the spool, published by this one.
    pub recovered: u64,
    /// Events the server will never store (larger than it accepts): taken out of the spool so
    /// they do not block the events behind them, counted here, not delivered.
    pub rejected: u64,
    /// Answers refusing the stream or a publish for good (the stream does not take the
    /// subject, it is full, JetStream is off...): the events stay in the spool.
    pub refused: u64,
    /// Times the publisher failed (a panic, in it or in the NATS client) and was started again;
    /// the events stay in the spool meanwhile, the watch goes on.
    pub publisher_restarts: u64,
}

/// A destination for events. `send` must not wait on the network: a sink that cannot deliver
/// keeps (spools) what it was given and says so in its counters.
pub trait EventSink: Send {
    /// Takes one event: its key and its OCSF JSON object.
    fn send(&mut self, key: EventKey, event: &[u8]) -> io::Result<()>;
    /// Makes what was sent so far durable and visible to the publisher (end of a burst).
    fn flush(&mut self) -> io::Result<()>;
    /// The counters so far.
    fn stats(&self) -> SinkStats;
    /// Delivers what it can (bounded by the sink's drain time), then stops.
    fn finish(&mut self) -> io::Result<SinkStats>;
}

/// A message for stderr from text a peer chose (a NATS server's error, a stream's subjects): on
/// one line, with control, C1 and bidi characters escaped (the same rule as `cli::one_line`).
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || crate::output::json::is_escaped_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Chooses rustls' crypto provider for the whole process (ring), once; later calls do nothing.
///
/// rustls is built with two providers here (ring for async-nats, aws-lc-rs for the content
/// crate's HTTPS), so `ClientConfig::builder()` panics unless one is installed: async-nats calls
/// it when a `nats://` server's INFO says `tls_required` (review N1). `main` calls this at start;
/// the sink calls it again for library users.
#[cfg(all(feature = "nats", not(target_env = "msvc")))]
pub fn install_crypto_provider() {
    let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
}

/// Builds each event's message id: `HOST/RUN/SESSION/SEQUENCE`.
///
/// `RUN` names where the events came from: for a live source, the time the consumer started (100 ns
/// ticks, hex); for a replay, the time the capture was started, so replaying the same capture
/// again gives the same ids and the server drops the copies.
#[derive(Debug, Clone)]
pub struct MessageIds {
    prefix: String,
}

impl MessageIds {
    pub fn new(host: &str, run: u64) -> Self {
        Self {
            prefix: format!("{}/{run:x}/", header_safe(host)),
        }
    }

    /// Writes the id of `key` into `out`.
    pub fn write(&self, key: EventKey, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        out.push_str(&self.prefix);
        let _ = write!(out, "{}/{}", key.session, key.sequence);
    }
}

/// A host name as a header value: letters, digits, `.`, `-`, `_`; anything else becomes `_`.
fn header_safe(host: &str) -> String {
    let s: String = host
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "unknown".into() } else { s }
}

/// This machine's name, for message ids.
pub fn host_name() -> String {
    #[cfg(unix)]
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_string();
        }
    }
    for var in ["COMPUTERNAME", "HOSTNAME"] {
        if let Ok(s) = std::env::var(var)
            && !s.is_empty()
        {
            return s;
        }
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_host_run_session_and_sequence() {
        let ids = MessageIds::new("web 01/x", 0xabc);
        let mut s = String::new();
        ids.write(
            EventKey {
                session: 2,
                sequence: 17,
            },
            &mut s,
        );
        assert_eq!(s, "web_01_x/abc/2/17");
        assert_eq!(MessageIds::new("", 1).prefix, "unknown/1/");
    }

    #[test]
    fn peer_text_reaches_stderr_escaped() {
        // N7: a server's error or a stream's subjects carried ESC/BEL/CSI sequences to stderr.
        let hostile = "x\x1b]0;PWNED\x07\x1b[2K\u{9b}1m\r\n\u{202e}y";
        let line = one_line(hostile);
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{line}"
        );
        assert_eq!(
            line,
            "x\\u{1b}]0;PWNED\\u{7}\\u{1b}[2K\\u{9b}1m\\u{d}\\u{a}\\u{202e}y"
        );
    }
}
