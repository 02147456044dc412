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
    /// `server` as messages show it: a password (or a token) replaced by `***`.
    pub shown: String,
    pub tls: bool,
    pub subject: String,
}

/// Parses `nats://HOST[:PORT]/SUBJECT` (or `tls://`).
pub fn parse_url(text: &str) -> Result<SinkUrl, String> {
    let bad = |why: &str| {
        format!(
            "invalid --sink {:?}: {why} (expected nats://HOST:PORT/SUBJECT)",
            redact_url(text)
        )
    };
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
    let server = format!("{scheme}://{userinfo}{host}:{port}");
    Ok(SinkUrl {
        shown: redact_url(&server),
        server,
        tls,
        subject,
    })
}

/// `text` with the secret of its user information replaced by `***`: the password of
/// `user:password@`, or the whole of `token@` (a NATS token is given as a user name alone).
/// Works on text that is not a valid URL too (the error for a malformed `--sink` shows it).
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return text.to_string();
    };
    let shown_user = match authority[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{shown_user}{}", &text[..scheme_end + 3], &rest[at..])
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
    /// What the owner does while the first connection fails, for the line that says so.
    pub meanwhile: &'static str,
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
        assert_eq!(u.shown, "tls://me:***@nats.example.com:4222");
        assert!(u.tls);
    }

    proptest::proptest! {
        /// Whatever the user, password and host, the password is not in what is shown, and any
        /// text is handled without a panic.
        #[test]
        fn a_password_is_never_shown(
            user in "[a-z]{1,8}",
            password in "PW[A-Za-z0-9._~!$&'()*+,;=-]{6,12}",
            host in "[a-z]{1,8}",
            rest in "[a-z/.]{0,10}",
        ) {
            let url = format!("nats://{user}:{password}@{host}:4222/{rest}");
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains(&password), "{}", shown);
            proptest::prop_assert!(shown.starts_with(&format!("nats://{user}:***@{host}")), "{}", shown);
            if let Ok(u) = parse_url(&url) {
                proptest::prop_assert!(!u.shown.contains(&password), "{}", u.shown);
            }
            if let Err(e) = parse_url(&url) {
                proptest::prop_assert!(!e.contains(&password), "{}", e);
            }
        }

        #[test]
        fn any_text_is_redacted_without_a_panic(text in ".{0,80}") {
            let _ = redact_url(&text);
            let _ = parse_url(&text);
        }
    }

    #[test]
    fn passwords_and_tokens_never_appear_in_what_is_shown() {
        // N11: `cannot reach NATS at nats://fsense:S3cretPassw0rd@...` and the parse error
        // printed the password.
        for (text, shown) in [
            (
                "nats://fsense:S3cretPassw0rd@127.0.0.1:14299/x",
                "nats://fsense:***@127.0.0.1:14299/x",
            ),
            ("nats://s3cr3tToken@h:1/x", "nats://***@h:1/x"),
            ("nats://u:p@ss@h/x", "nats://u:***@h/x"),
            ("nats://h:1/x", "nats://h:1/x"),
            ("nats://h:1/a@b", "nats://h:1/a@b"),
            ("no scheme:pw@h", "no scheme:pw@h"),
        ] {
            assert_eq!(redact_url(text), shown, "{text}");
        }
        let e = parse_url("nats://fsense:S3cretPassw0rd@127.0.0.1:14299/bad subject").unwrap_err();
        assert!(!e.contains("S3cret"), "{e}");
        assert!(e.contains("fsense:***@127.0.0.1"), "{e}");
        let u = parse_url("nats://tok@h/x").unwrap();
        assert_eq!(
            (u.server.as_str(), u.shown.as_str()),
            ("nats://tok@h:4222", "nats://***@h:4222")
        );
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
