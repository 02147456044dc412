//! What a NATS failure means for the events behind it: publish again soon, stop asking, or set
//! one event aside.
//!
//! The decision, for a security team that expects no loss, no hot loop and a clear signal:
//! - [`Verdict::Transient`]: the server is away, slow or electing a leader (no connection, a
//!   timeout, a broken pipe, "JetStream temporarily unavailable", "not the leader", no stream
//!   behind the subject because it was deleted: it is created again). Publishing starts again
//!   from the first unacknowledged event after a short pause; one stderr line per outage.
//! - [`Verdict::Refused`]: the server answered, and will answer the same until someone changes
//!   it: the stream does not take the subject, the subject belongs to another stream, JetStream
//!   is off for the account, the stream is full and discards new messages, a storage limit, and
//!   every JetStream API error not named here (an unknown answer is not retried hot). One
//!   stderr line with the server's reason, counted in `refused`; the events stay in the spool
//!   (counted in `spooled`; with `--spool-dir` kept for the next run). One probe message is
//!   sent every [`REFUSED_PAUSE`], so a fix on the server resumes delivery without a restart.
//! - [`Verdict::RejectEvent`]: this one event can never be stored (larger than the server's
//!   maximum payload or the stream's maximum message size). Holding it would block every event
//!   behind it forever, so it leaves the spool, counted in `rejected`, its id on stderr.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};

use super::puback::PubAck;

/// Between two attempts while the server refuses (each a single probe message).
pub const REFUSED_PAUSE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Transient,
    Refused,
    RejectEvent,
}

/// A failure with the words for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub verdict: Verdict,
    pub reason: String,
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Transient,
            reason: reason.into(),
        }
    }

    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Refused,
            reason: reason.into(),
        }
    }
}

/// JetStream API errors that say "later": the cluster is between leaders or the stream is gone
/// (the publisher creates it again).
const TRANSIENT_CODES: [ErrorCode; 5] = [
    ErrorCode::CLUSTER_NOT_AVAILABLE,
    ErrorCode::CLUSTER_NOT_LEADER,
    ErrorCode::CLUSTER_INCOMPLETE,
    ErrorCode::RAFT_GENERAL,
    ErrorCode::STREAM_NOT_FOUND,
];

/// JetStream API errors about one message, not the stream.
const EVENT_CODES: [ErrorCode; 1] = [ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM];

fn of_api_code(code: ErrorCode) -> Verdict {
    if TRANSIENT_CODES.contains(&code) {
        Verdict::Transient
    } else if EVENT_CODES.contains(&code) {
        Verdict::RejectEvent
    } else {
        Verdict::Refused
    }
}

/// A publish the client could not send.
pub fn of_send(e: &async_nats::PublishError) -> Failure {
    use async_nats::client::PublishErrorKind;
    let verdict = match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => Verdict::RejectEvent,
        // The subject was checked when the URL was read and the reply subject is the sink's
        // own: a subject the client refuses stays refused.
        PublishErrorKind::InvalidSubject => Verdict::Refused,
        // The connection's queue is closed: the client is going away or reconnecting.
        PublishErrorKind::Send => Verdict::Transient,
    };
    Failure {
        verdict,
        reason: describe(e),
    }
}

/// What an answer to a publish means: stored (`Ok`, with whether it was a duplicate) or a
/// failure (see [`PubAck`]).
pub fn of_answer(answer: &PubAck) -> Result<bool, Failure> {
    match answer {
        PubAck::Stored { duplicate, .. } => Ok(*duplicate),
        PubAck::ApiError {
            code,
            err_code,
            description,
        } => Err(Failure {
            verdict: of_api_code(ErrorCode(*err_code)),
            reason: format!("{description} (status code {code}, error code {err_code})"),
        }),
        // An answer that did not parse: try again.
        PubAck::Unreadable(why) => Err(Failure::transient(why.clone())),
    }
}

/// The server found no stream behind the subject (a 503 status instead of an answer): it was
/// deleted, or the cluster has no leader for it yet. The publisher creates it again.
pub fn no_stream() -> Failure {
    Failure::transient("no stream found for the subject (no responders)")
}

/// No answer within `after`.
pub fn timed_out(after: Duration) -> Failure {
    Failure::transient(format!(
        "timed out: no acknowledgement within {} s",
        after.as_secs()
    ))
}

/// Creating or looking up the stream failed.
pub fn of_stream(stream: &str, e: &CreateStreamError) -> Failure {
    let verdict = match e.kind() {
        CreateStreamErrorKind::EmptyStreamName
        | CreateStreamErrorKind::InvalidStreamName
        | CreateStreamErrorKind::DomainAndExternalSet => Verdict::Refused,
        // No responder for the JetStream API: JetStream is off on the server or the account.
        CreateStreamErrorKind::JetStreamUnavailable => {
            return Failure::refused(format!(
                "stream {stream}: JetStream is not enabled on the server or for this account"
            ));
        }
        CreateStreamErrorKind::JetStream(a) => match of_api_code(a.error_code()) {
            Verdict::Transient => Verdict::Transient,
            _ => Verdict::Refused,
        },
        CreateStreamErrorKind::TimedOut
        | CreateStreamErrorKind::Response
        | CreateStreamErrorKind::NotFound
        | CreateStreamErrorKind::ResponseParse => Verdict::Transient,
    };
    Failure {
        verdict,
        reason: format!("stream {stream}: {}", describe(e)),
    }
}

/// The error and what it carries, on one line, without repeating itself.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    if let Some(inner) = e.source() {
        let inner = inner.to_string();
        if !s.contains(&inner) {
            s = format!("{s}: {inner}");
        }
    }
    s.replace(['\n', '\r'], " ")
}

/// Why the first connection failed, worded as what it is: a TLS handshake refused, an
/// authorization violation, or a server that is not there; `meanwhile` says what the caller does
/// until it connects ("spooling events" for the sink, "retrying" for the fleet's connection).
pub fn describe_connect(server: &str, meanwhile: &str, e: &async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind;
    match e.kind() {
        ConnectErrorKind::AuthorizationViolation => format!(
            "NATS at {server}: authorization violation, the server refused the credentials; \
             {meanwhile} until it accepts them"
        ),
        ConnectErrorKind::Authentication => format!(
            "NATS at {server}: cannot authenticate with the credentials ({}); \
             {meanwhile} until it works",
            describe(e)
        ),
        _ => match tls_error(e) {
            Some(why) => format!(
                "NATS at {server}: TLS handshake refused: {why}; {meanwhile} until it succeeds"
            ),
            None => format!(
                "cannot reach NATS at {server}: {}; {meanwhile} until it answers",
                describe(e)
            ),
        },
    }
}

/// The TLS error behind a connect error: its own kind, or the I/O error the handshake gave.
fn tls_error(e: &async_nats::ConnectError) -> Option<String> {
    let source = std::error::Error::source(e)?;
    let from_handshake = source
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
        .map(|t| t.to_string());
    match e.kind() {
        async_nats::ConnectErrorKind::Tls => Some(from_handshake.unwrap_or(source.to_string())),
        _ => from_handshake,
    }
    .map(|s| s.replace(['\n', '\r'], " "))
}

/// Whether a stream subject (with `*` and `>` wildcards) takes `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u64) -> async_nats::jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": code, "description": "test"
        }))
        .unwrap()
    }

    fn answer_with(code: u64) -> Failure {
        of_answer(&PubAck::ApiError {
            code: 400,
            err_code: code,
            description: "test".into(),
        })
        .unwrap_err()
    }

    #[test]
    fn a_server_that_is_away_or_electing_is_transient() {
        // Not the leader, cluster not available, stream not found.
        for code in [10008, 10009, 10059] {
            assert_eq!(answer_with(code).verdict, Verdict::Transient, "{code}");
        }
        assert_eq!(no_stream().verdict, Verdict::Transient);
        assert_eq!(
            timed_out(Duration::from_secs(5)).verdict,
            Verdict::Transient
        );
        assert_eq!(
            of_answer(&PubAck::Unreadable("x".into()))
                .unwrap_err()
                .verdict,
            Verdict::Transient
        );
        assert_eq!(
            of_send(&async_nats::PublishError::new(
                async_nats::client::PublishErrorKind::Send
            ))
            .verdict,
            Verdict::Transient
        );
    }

    #[test]
    fn a_stream_that_will_not_take_the_events_is_refused() {
        // Stream full with discard new ("maximum messages exceeded"), storage exceeded, and a
        // code this table does not know.
        for code in [10077, 10047, 10999] {
            let f = answer_with(code);
            assert_eq!(f.verdict, Verdict::Refused, "{code}");
            assert!(f.reason.contains("test"), "{f:?}");
            assert!(f.reason.contains(&code.to_string()), "{f:?}");
        }
        let overlap = CreateStreamError::new(CreateStreamErrorKind::JetStream(api(10065)));
        assert_eq!(of_stream("S", &overlap).verdict, Verdict::Refused);
        let off = CreateStreamError::new(CreateStreamErrorKind::JetStreamUnavailable);
        assert_eq!(of_stream("S", &off).verdict, Verdict::Refused);
        let slow = CreateStreamError::new(CreateStreamErrorKind::TimedOut);
        assert_eq!(of_stream("S", &slow).verdict, Verdict::Transient);
    }

    #[test]
    fn an_event_too_large_is_rejected_alone() {
        assert_eq!(answer_with(10054).verdict, Verdict::RejectEvent);
        assert_eq!(
            of_send(&async_nats::PublishError::new(
                async_nats::client::PublishErrorKind::MaxPayloadExceeded
            ))
            .verdict,
            Verdict::RejectEvent
        );
    }

    #[test]
    fn stream_subjects_match_like_nats() {
        assert!(subject_matches("fsense.events", "fsense.events"));
        assert!(subject_matches("fsense.*", "fsense.events"));
        assert!(subject_matches("fsense.>", "fsense.a.b"));
        assert!(subject_matches(">", "x"));
        assert!(!subject_matches("fsense.*", "fsense.a.b"));
        assert!(!subject_matches("fsense.>", "fsense"));
        assert!(!subject_matches("fsense", "fsense.events"));
    }
}
