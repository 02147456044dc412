//! What a sink is configured with: the parsed `--sink` URL and everything else a sink needs
//! besides the events (built by [`super::options`] from the command line).

use std::path::PathBuf;
use std::time::Duration;

use super::spool::SpoolConfig;

/// A parsed `--sink` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkUrl {
    /// What the NATS client connects to: `nats://[user:pass@]host:port` or `tls://...`.
    pub server: String,
    pub tls: bool,
    pub subject: String,
}

/// Parses `nats://HOST[:PORT]/SUBJECT` (or `tls://`).
pub fn parse_url(text: &str) -> Result<SinkUrl, String> {
    let bad =
        |why: &str| format!("invalid --sink {text:?}: {why} (expected nats://HOST:PORT/SUBJECT)");
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    let tls = match url.scheme() {
        "nats" => false,
        "tls" => true,
        other => return Err(bad(&format!("unsupported scheme {other:?}"))),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    let port = url.port().unwrap_or(4222);
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    let subject = url.path().trim_start_matches('/');
    if subject.is_empty() {
        return Err(bad("no subject"));
    }
    let subject = percent_decode(subject).ok_or_else(|| bad("bad escape in the subject"))?;
    if !subject.split('.').all(|t| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
    }) {
        return Err(bad(
            "the subject must be dot-separated tokens without spaces or wildcards",
        ));
    }
    let userinfo = match (url.username(), url.password()) {
        ("", None) => String::new(),
        (u, None) => format!("{u}@"),
        (u, Some(p)) => format!("{u}:{p}@"),
    };
    let scheme = if tls { "tls" } else { "nats" };
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => host.to_string(),
    };
    Ok(SinkUrl {
        server: format!("{scheme}://{userinfo}{host}:{port}"),
        tls,
        subject,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Everything a sink needs besides the events.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub url: SinkUrl,
    pub creds: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub stream: String,
    pub replicas: usize,
    pub spool: SpoolConfig,
    pub drain: Duration,
    pub host: String,
    /// What names the source in message ids (see [`super::MessageIds`]).
    pub run: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_server_and_subject() {
        let u = parse_url("nats://127.0.0.1:4333/fsense.events").unwrap();
        assert_eq!(u.server, "nats://127.0.0.1:4333");
        assert_eq!(u.subject, "fsense.events");
        assert!(!u.tls);
        let u = parse_url("tls://me:pw@nats.example.com/ev").unwrap();
        assert_eq!(u.server, "tls://me:pw@nats.example.com:4222");
        assert!(u.tls);
    }

    #[test]
    fn malformed_urls_are_refused() {
        for bad in [
            "127.0.0.1:4222/x",
            "http://h/x",
            "nats://h",
            "nats://h/",
            "nats:///x",
            "nats://h/a..b",
            "nats://h/a.*",
            "nats://h/a%20b",
            "nats://h:99999/x",
            "nats://h/x?y=1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} accepted");
        }
    }
}
