//! Repositories on a web server: `--repo http://...` or `https://...`.
//!
//! A `tough` transport on `reqwest` with rustls: the platform's trust store (through
//! `rustls-platform-verifier`), plus the certificates of `--ca-file` for a private CA. The server is
//! untrusted like any TUF mirror: `tough` verifies everything this returns exactly as it verifies
//! local files, so a tampered, truncated or rolled-back file is refused by TUF; this module only
//! bounds how long a slow or dead server can hold an update:
//!
//! - connecting: [`HttpSettings::connect_timeout`] (default 10 s);
//! - each request, connect to last byte: [`HttpSettings::timeout`] (default 30 s);
//! - [`HttpSettings::tries`] attempts per file (default 3), 0.5 s then 1 s apart, and only for
//!   failures a retry can fix (connection refused or reset, timeout, HTTP 5xx, a body cut short);
//! - at most 16 MiB per file (`tough` applies its lower per-role limits on top).
//!
//! - one [`HttpSettings::deadline`] for a whole update, every file and retry (default 120 s).
//!
//! Worst case per file with the defaults: 3 × 30 s + 1.5 s; per update: the deadline.

use std::path::PathBuf;
use std::time::Duration;

use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use crate::ContentError;

/// Largest file fetched.
const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;

/// Timeouts, retries and trust for HTTP(S) repositories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub tries: u32,
    /// The whole update (every file, every retry) ends by then.
    pub deadline: Duration,
    /// PEM certificates of a private CA, trusted in addition to the platform's store.
    pub ca_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            tries: 3,
            deadline: Duration::from_secs(120),
            ca_file: None,
        }
    }
}

/// The transport.
#[derive(Debug, Clone)]
pub(crate) struct HttpFiles {
    client: reqwest::Client,
    tries: u32,
}

impl HttpFiles {
    pub(crate) fn new(settings: &HttpSettings) -> Result<Self, ContentError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(ca_file) = &settings.ca_file {
            let pem =
                std::fs::read(ca_file).map_err(|e| ContentError::io("cannot read", ca_file, e))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ContentError::failed(format!("{}: not PEM certificates: {e}", ca_file.display()))
            })?;
            if certificates.is_empty() {
                return Err(ContentError::failed(format!(
                    "{} holds no PEM certificate",
                    ca_file.display()
                )));
            }
            builder = builder.tls_certs_merge(certificates);
        }
        let client = builder
            .build()
            .map_err(|e| ContentError::failed(format!("cannot set up HTTPS: {e}")))?;
        Ok(Self {
            client,
            tries: settings.tries.max(1),
        })
    }

    /// One attempt: `Ok` with the body, or the error and whether another attempt may help.
    async fn attempt(&self, url: &Url) -> Result<Vec<u8>, (TransportError, bool)> {
        let other = |cause: String, retry: bool| {
            (
                TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), cause),
                retry,
            )
        };
        let mut response = match self.client.get(url.clone()).send().await {
            Ok(response) => response,
            Err(e) => return Err(other(describe(&e), e.is_connect() || e.is_timeout())),
        };
        let status = response.status();
        if matches!(status.as_u16(), 403 | 404 | 410) {
            return Err((
                TransportError::new_with_cause(
                    TransportErrorKind::FileNotFound,
                    url.clone(),
                    format!("HTTP {status}"),
                ),
                false,
            ));
        }
        if !status.is_success() {
            return Err(other(format!("HTTP {status}"), status.is_server_error()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_FETCH_BYTES as u64)
        {
            return Err(other(format!("over {MAX_FETCH_BYTES} bytes"), false));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_FETCH_BYTES {
                        return Err(other(format!("over {MAX_FETCH_BYTES} bytes"), false));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err(other(describe(&e), true)),
            }
        }
    }
}

/// reqwest's error with its causes (the interesting part, e.g. "connection refused" or the
/// certificate problem, is in the sources).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[tough::async_trait]
impl Transport for HttpFiles {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let mut backoff = Duration::from_millis(500);
        let mut tries_left = self.tries;
        loop {
            tries_left -= 1;
            match self.attempt(&url).await {
                Ok(body) => {
                    return Ok(Box::pin(futures::stream::iter(std::iter::once(Ok(
                        tough::Bytes::from(body),
                    )))));
                }
                Err((err, retry)) if retry && tries_left > 0 => {
                    let _ = err;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err((err, _)) => return Err(err),
            }
        }
    }
}

/// `true` if a `--repo` argument names a web server.
pub fn is_http_url(arg: &str) -> bool {
    let lower = arg.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}
