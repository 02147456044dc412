//! How the NATS sink connects: the client's options (timeouts, reconnection pace, TLS or the
//! refusal of TLS on a `nats://` URL, credentials), the first connection (one line when the
//! server is not there) and a new connection after the publisher failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::Notify;

use super::config::SinkConfig;
use super::nats_failure;
use super::nats_guard;
use super::one_line;

/// Acknowledgements outstanding at most (the client's command queue is twice that).
pub const WINDOW: usize = 8192;
/// The longest wait between two reconnection attempts (async-nats' default goes up to 4 s, and
/// every second of it is a second of events waiting after the server is back).
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What the client's event callback tells the publisher: the connection was lost (what was in
/// flight on it will never be acknowledged).
#[derive(Default)]
pub struct Disconnects {
    pub count: AtomicU64,
    pub wake: Notify,
    /// TLS handshakes refused because a `nats://` server asked for TLS (see `nats_guard`).
    pub tls_demanded: Arc<AtomicU64>,
}

pub async fn options(
    config: &SinkConfig,
    disconnects: &Arc<Disconnects>,
) -> Result<ConnectOptions, String> {
    let mut o = match &config.creds {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => ConnectOptions::new(),
    };
    if config.url.tls {
        // rustls has two crypto providers here; `start` chose ring for the process.
        o = o.require_tls(true);
    } else {
        // A plain-text URL: a server asking for TLS is refused, not followed (nats_guard).
        o = o.tls_client_config(nats_guard::refusing_tls(disconnects.tls_demanded.clone())?);
    }
    if let Some(ca) = &config.ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    let told = disconnects.clone();
    Ok(o.connection_timeout(Duration::from_secs(2))
        .client_capacity(WINDOW * 2)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let told = told.clone();
            async move {
                if matches!(event, Event::Disconnected) {
                    told.count.fetch_add(1, Ordering::SeqCst);
                    told.wake.notify_one();
                }
            }
        })
        .name("fsense"))
}

/// The wait before connection attempt `attempt` (1 for the first). async-nats waits this long
/// before every attempt, the first connection's included: the first is immediate, then 100 ms
/// more per failed attempt up to [`MAX_RECONNECT_DELAY`].
fn reconnect_delay(attempt: usize) -> Duration {
    let failed = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    (Duration::from_millis(100) * failed.min(10)).min(MAX_RECONNECT_DELAY)
}

/// Connects; a server that does not answer now, or refuses the TLS handshake or the
/// credentials, is reported in one line and retried in the background.
pub async fn connect(
    config: &SinkConfig,
    disconnects: &Arc<Disconnects>,
) -> Result<Client, String> {
    match options(config, disconnects)
        .await?
        .connect(config.url.server.as_str())
        .await
    {
        Ok(c) => Ok(c),
        Err(e) => {
            if disconnects.tls_demanded.load(Ordering::SeqCst) > 0 {
                eprintln!(
                    "fsense: {}",
                    nats_guard::tls_demanded_line(&config.url.shown)
                );
            } else {
                eprintln!(
                    "fsense: {}",
                    one_line(&nats_failure::describe_connect(
                        &config.url.shown,
                        config.meanwhile,
                        &e
                    ))
                );
            }
            options(config, disconnects)
                .await?
                .retry_on_initial_connect()
                .connect(config.url.server.as_str())
                .await
                .map_err(|e| format!("cannot connect to NATS: {}", one_line(&e.to_string())))
        }
    }
}

/// A CA file the TLS connection could not use is a usage error now, not an outage later.
pub fn check_ca_file(path: &std::path::Path) -> Result<(), String> {
    use async_nats::rustls::pki_types::{CertificateDer, pem::PemObject};
    let bad = |why: String| format!("--nats-ca-file {}: {why}", path.display());
    let mut certificates = 0;
    for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        c.map_err(|e| bad(e.to_string()))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(())
}

/// A new runtime and client after a failure: connecting goes on in the background.
pub fn reconnect(
    config: &SinkConfig,
) -> Result<(tokio::runtime::Runtime, Client, Arc<Disconnects>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the NATS runtime: {e}"))?;
    let disconnects = Arc::new(Disconnects::default());
    let client = runtime.block_on(async {
        options(config, &disconnects)
            .await?
            .retry_on_initial_connect()
            .connect(config.url.server.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))
    })?;
    Ok((runtime, client, disconnects))
}

#[cfg(test)]
mod tests {
    use super::{MAX_RECONNECT_DELAY, reconnect_delay};
    use std::time::Duration;

    #[test]
    fn the_first_connection_attempt_does_not_wait() {
        // async-nats counts the first attempt as 1 and sleeps this long before it: a wait here
        // delayed every start (and every first reconnect) by 100 ms.
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(5), Duration::from_millis(400));
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }
}
