//! What keeps a hostile or broken NATS peer from taking the sensor down.
//!
//! - [`refusing_tls`]: the TLS settings of a `nats://` connection. A server (or anyone on the
//!   path) whose INFO says `tls_required` made async-nats build a rustls configuration with no
//!   crypto provider chosen, which panics (review N1). A `nats://` URL asks for plain text: the
//!   handshake is refused by our own verifier, counted, and said in one line.
//! - [`supervise`] and the panic hook: a panic in the publisher thread (ours, or in the NATS
//!   client's tasks that run on it) no longer aborts the process. The consumer unwinds (the
//!   workspace profiles leave `panic = "abort"` to the driver image); the hook counts panics of
//!   that thread and keeps their raw text off stderr, and the supervisor starts the publisher
//!   again, counted as `publisher_restarts`, while the pipeline goes on spooling.
//! - [`bound_inbound`]: async-nats buffers a whole inbound message of whatever size its header
//!   declares, with no option to limit it (review N8: 1.5 GiB from one message). A watchdog on
//!   the client's byte and message counters drops the connection when more than
//!   [`MAX_INBOUND`] bytes arrive without completing a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use async_nats::rustls::{
    self, ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// The most the server may send without completing a message (an acknowledgement is ~100 bytes,
/// a stream's description a few KiB; the server's own `max_payload` is 1 MiB by default).
pub const MAX_INBOUND: u64 = 8 << 20;
/// How often the watchdog looks.
const INBOUND_CHECK: Duration = Duration::from_millis(10);

/// Runs (as a task on the publisher's runtime) until dropped: whenever more than
/// [`MAX_INBOUND`] bytes came in since the last whole message, forces a reconnection, which
/// frees what the client buffered, and says so (one line, then at most one a minute). The bound
/// is approximate: what arrives within one check (and the buffer's doubling) comes on top.
/// An INFO line is not covered during a (re)connection: that is bounded by the connection
/// timeout (2 s) only.
pub async fn bound_inbound(client: async_nats::Client, shown: String) {
    let stats = client.statistics();
    let counters = || {
        (
            stats.in_bytes.load(Ordering::Relaxed),
            stats.in_messages.load(Ordering::Relaxed),
        )
    };
    let mut mark = counters();
    let mut told_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(INBOUND_CHECK).await;
        let now = counters();
        if now.1 != mark.1 {
            mark = now;
            continue;
        }
        if now.0.saturating_sub(mark.0) > MAX_INBOUND {
            if told_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                eprintln!(
                    "fsense: NATS at {shown} sent over {} MiB without completing a message: connection dropped \
                     (a hostile or broken server, or someone on the path of a nats:// connection; use tls://)",
                    MAX_INBOUND >> 20
                );
                told_at = Some(Instant::now());
            }
            let _ = client.force_reconnect().await;
            mark = counters();
        }
    }
}

/// The publisher thread's name: the panic hook recognises it by this.
pub const THREAD_NAME: &str = "fsense-nats";

/// Panics seen on the publisher thread (in this process).
static PANICS: AtomicU64 = AtomicU64::new(0);
/// The last one's message and place, cut short (it may carry a peer's bytes).
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Panics on the publisher thread so far.
pub fn panics() -> u64 {
    PANICS.load(Ordering::SeqCst)
}

/// Installs (once: the first call decides) a panic hook that counts the publisher thread's panics
/// and keeps their text for the supervisor's one line. Every other thread's panic goes to the hook
/// that was there, then, with `abort_others` (the `fsense` binary), aborts the process as the
/// `panic = "abort"` build did: a part that is not restarted must not die alone and leave the rest
/// waiting for it.
pub fn install_panic_hook(abort_others: bool) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(THREAD_NAME) {
                previous(info);
                if abort_others {
                    std::process::abort();
                }
                return;
            }
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let mut text: String = format!("{what}{place}").chars().take(300).collect();
            if let Ok(mut last) = LAST_PANIC.lock() {
                std::mem::swap(&mut *last, &mut text);
            }
            PANICS.fetch_add(1, Ordering::SeqCst);
        }));
    });
}

/// The last panic's text (escaped for stderr).
pub fn last_panic() -> String {
    let text = LAST_PANIC
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    super::one_line(&text)
}

/// How a run of the publisher ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Finished or aborted as asked: the thread ends.
    Done,
    /// A panic (caught here, or counted by the hook in one of the client's tasks): start again.
    Failed,
}

/// Runs `run` until it ends [`Ended::Done`]; after a failure (a panic included), counts it in
/// `restarts`, says so (one line, then at most one a minute), waits `pause` unless `ending()`,
/// and runs it again. `ending()` says the sink is stopping: then a few more tries at most.
pub fn supervise(
    restarts: &AtomicU64,
    pause: Duration,
    ending: impl Fn() -> bool,
    mut run: impl FnMut() -> Ended,
) {
    let mut told_at: Option<Instant> = None;
    let mut while_ending = 0;
    loop {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut run));
        if matches!(ran, Ok(Ended::Done)) {
            return;
        }
        let n = restarts.fetch_add(1, Ordering::SeqCst) + 1;
        if told_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            eprintln!(
                "fsense: NATS publisher failed ({}); started again ({n} so far, counted as publisher_restarts), events stay in the spool",
                last_panic()
            );
            told_at = Some(Instant::now());
        }
        if ending() {
            while_ending += 1;
            if while_ending > 3 {
                return;
            }
        }
        let until = Instant::now() + pause;
        while Instant::now() < until && !ending() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Refuses every server certificate: what a `nats://` connection uses when the server asks for
/// TLS. Counts each refusal in `demanded`.
#[derive(Debug)]
struct RefuseTls {
    demanded: Arc<AtomicU64>,
    schemes: Vec<SignatureScheme>,
}

const REFUSAL: &str = "the server requires TLS but --sink says nats:// (plain text)";

impl ServerCertVerifier for RefuseTls {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.demanded.fetch_add(1, Ordering::SeqCst);
        Err(rustls::Error::General(REFUSAL.into()))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(REFUSAL.into()))
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(REFUSAL.into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The TLS settings of a `nats://` connection: any handshake is refused (and counted in
/// `demanded`). Built with an explicit provider, so it never depends on a process default.
pub fn refusing_tls(demanded: Arc<AtomicU64>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RefuseTls { demanded, schemes }))
        .with_no_client_auth())
}

/// The line said when a `nats://` server asked for TLS.
pub fn tls_demanded_line(shown: &str) -> String {
    format!(
        "NATS at {shown} requires TLS, but --sink says nats://: refused (no TLS on a plain-text URL); \
         use tls://... with --nats-ca-file. Spooling events until it answers in plain text"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_panicking_run_is_started_again_and_counted() {
        install_panic_hook(false);
        let before = panics();
        let restarts = AtomicU64::new(0);
        let mut runs = 0;
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                supervise(
                    &restarts,
                    Duration::from_millis(1),
                    || false,
                    || {
                        runs += 1;
                        if runs <= 2 {
                            panic!("hostile \x1b]0;x\x07 input");
                        }
                        Ended::Done
                    },
                );
                (runs, restarts.load(Ordering::SeqCst))
            })
            .unwrap();
        let (runs, restarts) = handle
            .join()
            .expect("the panic did not escape the supervisor");
        assert_eq!((runs, restarts), (3, 2));
        assert!(panics() >= before + 2);
        let text = last_panic();
        assert!(text.contains("hostile") && !text.contains('\x1b'), "{text}");
    }

    #[test]
    fn a_failure_while_ending_stops_after_a_few_tries() {
        let restarts = AtomicU64::new(0);
        let mut runs = 0;
        supervise(
            &restarts,
            Duration::ZERO,
            || true,
            || {
                runs += 1;
                Ended::Failed
            },
        );
        assert_eq!(runs, 4);
        assert_eq!(restarts.load(Ordering::SeqCst), 4);
    }
}
