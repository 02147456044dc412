//! The sink options of `fsense watch`, `simulate` and `replay`, and the sink they build.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::EventSink;

/// `--sink` and the options that go with it.
#[derive(Args, Debug, Default, Clone)]
pub struct SinkArgs {
    /// Also publish every event to NATS JetStream: nats://HOST[:PORT]/SUBJECT, or tls://... for
    /// TLS. One message per event, the OCSF JSON object as payload.
    #[arg(long, value_name = "URL")]
    pub sink: Option<String>,
    /// NATS credentials file (JWT and NKey seed, as `nsc` writes them).
    #[arg(long, value_name = "FILE", requires = "sink")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificates (PEM) to verify the NATS server's TLS certificate with.
    #[arg(long, value_name = "FILE", requires = "sink")]
    pub nats_ca_file: Option<PathBuf>,
    /// The JetStream stream, created if missing (file storage, 2 minutes duplicate window).
    #[arg(long, value_name = "NAME", default_value = "FSENSE", requires = "sink")]
    pub nats_stream: String,
    /// Replicas of the stream when it is created (1, 3 or 5 in a cluster).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "sink")]
    pub nats_replicas: usize,
    /// Keep unacknowledged events in DIR (survives a crash) instead of in memory.
    #[arg(long, value_name = "DIR", requires = "sink")]
    pub spool_dir: Option<PathBuf>,
    /// The spool's size limit: when full it drops its oldest events (counted as spool_dropped).
    #[arg(long, value_name = "N", default_value_t = 1024, requires = "sink")]
    pub spool_max_mb: u64,
    /// At the end of a run, how long to keep trying to deliver while no acknowledgement comes.
    #[arg(long, value_name = "SECS", default_value_t = 30, requires = "sink")]
    pub sink_drain_secs: u64,
}

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
    pub spool: super::spool::SpoolConfig,
    pub drain: Duration,
    pub host: String,
    /// What names the source in message ids (see [`super::MessageIds`]).
    pub run: u64,
}

impl SinkArgs {
    /// The configuration the options ask for (`None`: no `--sink`). Checks everything that can be
    /// checked without the network.
    pub fn config(&self, run: u64) -> Result<Option<SinkConfig>, String> {
        let Some(text) = &self.sink else {
            return Ok(None);
        };
        let url = parse_url(text)?;
        if self.nats_stream.is_empty()
            || !self
                .nats_stream
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\'))
        {
            return Err(format!("invalid --nats-stream {:?}", self.nats_stream));
        }
        if !(1..=5).contains(&self.nats_replicas) {
            return Err(format!(
                "--nats-replicas {} is not 1 to 5",
                self.nats_replicas
            ));
        }
        if self.spool_max_mb == 0 {
            return Err("--spool-max-mb must be at least 1".into());
        }
        for f in [&self.nats_creds, &self.nats_ca_file].into_iter().flatten() {
            std::fs::metadata(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        }
        if self.nats_ca_file.is_some() && !url.tls {
            return Err("--nats-ca-file needs a tls:// --sink URL".into());
        }
        Ok(Some(SinkConfig {
            url,
            creds: self.nats_creds.clone(),
            ca_file: self.nats_ca_file.clone(),
            stream: self.nats_stream.clone(),
            replicas: self.nats_replicas,
            spool: super::spool::SpoolConfig {
                dir: self.spool_dir.clone(),
                max_bytes: self.spool_max_mb.saturating_mul(1 << 20),
            },
            drain: Duration::from_secs(self.sink_drain_secs),
            host: super::host_name(),
            run,
        }))
    }

    /// Starts the sink the options ask for, if any.
    pub fn open(&self, run: u64) -> Result<Option<Box<dyn EventSink>>, String> {
        let Some(config) = self.config(run)? else {
            return Ok(None);
        };
        start(config).map(Some)
    }
}

/// Starts the sink `args` ask for, if any, and hands it to the pipeline.
pub fn attach(
    pipeline: &mut crate::pipeline::Pipeline,
    args: &SinkArgs,
    run: u64,
) -> Result<(), String> {
    if let Some(sink) = args.open(run)? {
        pipeline.set_sink(sink);
    }
    Ok(())
}

#[cfg(all(feature = "nats", not(target_env = "msvc")))]
fn start(config: SinkConfig) -> Result<Box<dyn EventSink>, String> {
    Ok(Box::new(super::nats::NatsSink::start(config)?))
}

#[cfg(not(all(feature = "nats", not(target_env = "msvc"))))]
fn start(_: SinkConfig) -> Result<Box<dyn EventSink>, String> {
    Err("this build of fsense has no NATS support (feature `nats`)".into())
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
