//! Staged rollout on the fleet's real health (issue 29), the NATS side.
//!
//! - [`agent`]: what `watch` and `simulate` run with `--fleet`: a health document every
//!   `--health-interval-s` on `fsense.health.<host id>`, and the rollout record followed from
//!   the `fsense-rollout` key-value bucket into the live content checker's [`FleetGate`].
//! - [`controller`]: `fsense content rollout --fleet nats://... --release V`.
//!
//! The documents, their parsers and the gate arithmetic are the content crate's
//! (`fsense_content::fleet`); the connection options (TLS, credentials, reconnection pace) are
//! the NATS sink's ([`crate::output::sink::nats_connect`]), given a [`SinkConfig`] built here.
//!
//! [`FleetGate`]: crate::pipeline::live_content::FleetGate

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::output::sink::config::{SinkConfig, parse_url};
use crate::output::sink::options::check_creds_file;

#[cfg(all(feature = "nats", feature = "content", not(target_env = "msvc")))]
pub mod agent;
#[cfg(all(feature = "nats", feature = "content", not(target_env = "msvc")))]
pub mod controller;

/// `--fleet` and the options that go with it (`watch`, `simulate`).
#[derive(Args, Debug, Default, Clone)]
pub struct FleetArgs {
    /// Report health to the fleet's NATS server and install content only as its staged rollout
    /// admits: nats://HOST[:PORT] or tls://HOST[:PORT]. Needs --content-repo.
    #[arg(long, value_name = "URL", requires = "content_repo")]
    pub fleet: Option<String>,
    /// NATS credentials file for --fleet (as --nats-creds).
    #[arg(long, value_name = "FILE", requires = "fleet")]
    pub fleet_creds: Option<PathBuf>,
    /// CA certificates (PEM) for a tls:// --fleet server (as --nats-ca-file).
    #[arg(long, value_name = "FILE", requires = "fleet")]
    pub fleet_ca_file: Option<PathBuf>,
    /// This agent's id in the fleet (default: the machine's name). Decides its ring bucket.
    #[arg(long, value_name = "ID", requires = "fleet")]
    pub host_id: Option<String>,
    /// Seconds between two health documents (fractions allowed, 0.05 to 3600).
    #[arg(long, value_name = "S", default_value_t = 10.0, requires = "fleet")]
    pub health_interval_s: f64,
}

/// Where an agent or the controller connects, and as whom.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The sink's connection settings (its subject, stream and spool are not used).
    pub nats: SinkConfig,
    pub host_id: String,
    pub interval: Duration,
}

/// Checks `--fleet URL` (no subject: the fleet's subjects are fixed) and builds the connection
/// settings the sink would build for it, with the sink's checks of the credentials and CA files.
pub fn nats_config(
    url: &str,
    creds: Option<&PathBuf>,
    ca_file: Option<&PathBuf>,
) -> Result<SinkConfig, String> {
    let shown = crate::output::sink::config::redact_url(url);
    let Some(after_scheme) = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
    else {
        return Err(format!(
            "invalid --fleet {shown:?}: expected nats://HOST[:PORT] or tls://HOST[:PORT]"
        ));
    };
    if after_scheme.trim_end_matches('/').contains('/') {
        return Err(format!(
            "invalid --fleet {shown:?}: no subject expected (nats://HOST[:PORT] or tls://HOST[:PORT])"
        ));
    }
    let url = parse_url(&format!("{}/fsense.health", url.trim_end_matches('/')))
        .map_err(|e| e.replace("--sink", "--fleet"))?;
    for f in [creds, ca_file].into_iter().flatten() {
        std::fs::metadata(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    }
    if let Some(creds) = creds {
        check_creds_file(creds).map_err(|e| e.replace("--nats-creds", "--fleet-creds"))?;
    }
    if ca_file.is_some() && !url.tls {
        return Err("--fleet-ca-file needs a tls:// --fleet URL".into());
    }
    Ok(SinkConfig {
        url,
        creds: creds.cloned(),
        ca_file: ca_file.cloned(),
        stream: "FSENSE_HEALTH".into(),
        replicas: 1,
        spool: crate::output::sink::spool::SpoolConfig {
            dir: None,
            max_bytes: 0,
        },
        drain: Duration::ZERO,
        host: crate::output::sink::host_name(),
        run: 0,
        meanwhile: "retrying",
    })
}

impl FleetArgs {
    /// The agent's configuration (`None`: no `--fleet`).
    pub fn config(&self) -> Result<Option<FleetConfig>, String> {
        let Some(url) = &self.fleet else {
            return Ok(None);
        };
        let nats = nats_config(url, self.fleet_creds.as_ref(), self.fleet_ca_file.as_ref())?;
        if !(0.05..=3600.0).contains(&self.health_interval_s) {
            return Err(format!(
                "--health-interval-s {} is not within 0.05..=3600",
                self.health_interval_s
            ));
        }
        let host_id = match &self.host_id {
            Some(id) => {
                if !valid_host_id(id) {
                    return Err(format!(
                        "invalid --host-id {id:?}: 1 to 64 of A-Z a-z 0-9 . _ - (no leading, trailing or double dot)"
                    ));
                }
                id.clone()
            }
            None => default_host_id(),
        };
        Ok(Some(FleetConfig {
            nats,
            host_id,
            interval: Duration::from_secs_f64(self.health_interval_s),
        }))
    }
}

#[cfg(all(feature = "content", not(target_env = "msvc")))]
fn valid_host_id(id: &str) -> bool {
    fsense_content::fleet::protocol::valid_host_id(id)
}

#[cfg(all(feature = "content", not(target_env = "msvc")))]
fn default_host_id() -> String {
    fsense_content::fleet::protocol::host_id_from(&crate::output::sink::host_name())
}

#[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
fn valid_host_id(_: &str) -> bool {
    true
}

#[cfg(not(all(feature = "content", not(target_env = "msvc"))))]
fn default_host_id() -> String {
    crate::output::sink::host_name()
}

/// Starts the agent `args` ask for on `live` (its checker must have been started with a gate).
pub fn attach(
    args: &FleetArgs,
    live: &mut crate::pipeline::live_content::LiveRules,
    gate: std::sync::Arc<crate::pipeline::live_content::FleetGate>,
) -> Result<(), String> {
    let Some(config) = args.config()? else {
        return Ok(());
    };
    #[cfg(all(feature = "nats", feature = "content", not(target_env = "msvc")))]
    {
        let agent = agent::start(config, live.counters.clone(), live.health.clone(), gate)?;
        live.attach_agent(Box::new(agent));
        Ok(())
    }
    #[cfg(not(all(feature = "nats", feature = "content", not(target_env = "msvc"))))]
    {
        let _ = (config, live, gate);
        Err("this build of fsense has no fleet support (features `nats` and `content`)".into())
    }
}

/// `fsense content ...`, with the fleet controller for `rollout --fleet nats://...`.
#[cfg(all(feature = "content", not(target_env = "msvc")))]
pub fn run_content(cmd: fsense_content::cli::ContentCommand) -> std::process::ExitCode {
    #[cfg(feature = "nats")]
    let runner: Option<fsense_content::cli::FleetRunner> = Some(controller::run);
    #[cfg(not(feature = "nats"))]
    let runner = None;
    fsense_content::cli::run_with(cmd, runner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_urls_take_no_subject() {
        let c = nats_config("nats://127.0.0.1:4333", None, None).unwrap();
        assert_eq!(c.url.server, "nats://127.0.0.1:4333");
        assert!(nats_config("nats://127.0.0.1:4333/x", None, None).is_err());
        let e = nats_config("http://h", None, None).unwrap_err();
        assert!(e.contains("--fleet"), "{e}");
        // The fleet's subject is the program's own: an error shows what the user typed.
        let e = nats_config("bogus://x", None, None).unwrap_err();
        assert!(!e.contains("fsense.health"), "{e}");
        assert!(e.contains("\"bogus://x\""), "{e}");
        assert!(nats_config("tls://h:1", None, None).unwrap().url.tls);
    }
}
