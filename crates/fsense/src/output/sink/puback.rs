//! JetStream's answer to one publish, read from the server's reply, and the token that says which
//! publish it answers.
//!
//! The NATS sink publishes each event with a reply subject of its own, `<inbox>.<token>` (one
//! wildcard subscription for all of them, a counter for the token), instead of one request per
//! event through async-nats' JetStream context: that halves the publisher's CPU per event, which
//! on a small host is CPU the server needs (BENCHMARKS.md, "Events into NATS"). So the answer is
//! parsed here. It is server input: anything that is not a well-formed answer is
//! [`PubAck::Unreadable`], never a panic.
//!
//! The answers (nats-server `JSPubAckResponse`): `{"stream":"S","seq":N}` with `"duplicate":true`
//! when the `Nats-Msg-Id` was already in the duplicate window, or `{"error":{"code":C,
//! "err_code":E,"description":"..."}}`.

use serde::Deserialize;

/// What the server said about one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubAck {
    /// Stored (or already stored: `duplicate`) at stream sequence `seq`.
    Stored { seq: u64, duplicate: bool },
    /// A JetStream API error: `err_code` is the JetStream error code (10077 and so on).
    ApiError {
        code: u64,
        err_code: u64,
        description: String,
    },
    /// Not an answer this sink understands, with why.
    Unreadable(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u64,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: Option<String>,
}

/// The answer in a reply's payload.
pub fn parse(payload: &[u8]) -> PubAck {
    match serde_json::from_slice::<Answer>(payload) {
        Ok(Answer { error: Some(e), .. }) => PubAck::ApiError {
            code: e.code,
            err_code: e.err_code,
            description: e.description.unwrap_or_default(),
        },
        // Stream sequences start at 1.
        Ok(Answer {
            seq: Some(seq),
            duplicate,
            ..
        }) if seq > 0 => PubAck::Stored { seq, duplicate },
        Ok(_) => PubAck::Unreadable("an acknowledgement without a stream sequence".into()),
        Err(e) => PubAck::Unreadable(format!("an acknowledgement that is not JSON: {e}")),
    }
}

/// The token of a reply delivered on `subject`, when it is `prefix` followed by a decimal token
/// (`prefix` ends with the dot).
pub fn reply_token(subject: &str, prefix: &str) -> Option<u64> {
    let digits = subject.strip_prefix(prefix)?;
    // `u64::from_str` takes a leading '+' and leading zeros; a token this sink wrote has
    // neither, so each token has exactly one subject.
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_servers_answers_are_read() {
        assert_eq!(
            parse(br#"{"stream":"FSENSE","seq":42}"#),
            PubAck::Stored {
                seq: 42,
                duplicate: false
            }
        );
        assert_eq!(
            parse(br#"{"stream":"FSENSE","domain":"hub","seq":7,"duplicate":true}"#),
            PubAck::Stored {
                seq: 7,
                duplicate: true
            }
        );
        assert_eq!(
            parse(
                br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"FSENSE","seq":0}"#
            ),
            PubAck::ApiError {
                code: 503,
                err_code: 10077,
                description: "maximum messages exceeded".into()
            }
        );
    }

    #[test]
    fn what_is_not_an_answer_is_unreadable() {
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"seq\":0}",
            b"{\"seq\":-1}",
            b"{\"seq\":\"5\"}",
            b"+OK",
            b"\xff\xfe",
        ] {
            assert!(matches!(parse(bad), PubAck::Unreadable(_)), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_the_decimal_tail_of_the_inbox() {
        assert_eq!(reply_token("_INBOX.abc.17", "_INBOX.abc."), Some(17));
        assert_eq!(reply_token("_INBOX.abc.0", "_INBOX.abc."), Some(0));
        for bad in [
            "_INBOX.abc.",
            "_INBOX.abc.+1",
            "_INBOX.abc.07",
            "_INBOX.abc.1x",
            "_INBOX.abd.1",
            "_INBOX.abc.1.2",
            "_INBOX.abc.99999999999999999999",
        ] {
            assert_eq!(reply_token(bad, "_INBOX.abc."), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_are_an_answer_or_unreadable(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let PubAck::Stored { seq, .. } = parse(&bytes) {
                prop_assert!(seq > 0);
            }
        }

        #[test]
        fn a_stored_answer_reads_back(seq in 1u64.., duplicate: bool, stream in "[A-Z_]{1,16}") {
            let json = serde_json::json!({"stream": stream, "seq": seq, "duplicate": duplicate});
            prop_assert_eq!(parse(json.to_string().as_bytes()), PubAck::Stored { seq, duplicate });
        }

        #[test]
        fn an_error_answer_reads_back(code in 0u64..1000, err_code: u64, description in ".{0,40}") {
            let json = serde_json::json!({"error": {"code": code, "err_code": err_code, "description": description}});
            prop_assert_eq!(
                parse(json.to_string().as_bytes()),
                PubAck::ApiError { code, err_code, description }
            );
        }

        #[test]
        fn a_token_reads_back(token: u64, prefix in "[A-Za-z0-9_]{1,22}\\.") {
            prop_assert_eq!(reply_token(&format!("{prefix}{token}"), &prefix), Some(token));
        }
    }
}
