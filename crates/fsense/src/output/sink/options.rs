//! The sink options of `fsense watch`, `simulate` and `replay`, and the sink they build.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::EventSink;
use super::config::{SinkConfig, parse_url};

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
        if let Some(creds) = &self.nats_creds {
            check_creds_file(creds)?;
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
            meanwhile: "spooling events",
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

/// A credentials file holds a secret (the NKey seed): refused, as ssh refuses a private key, when
/// another account owns it or group or others may read or write it. On Windows the file's ACL is
/// not checked (README).
#[cfg(unix)]
pub fn check_creds_file(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let me = effective_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "refusing --nats-creds {}: it belongs to another account (uid {}); it must be owned by root or uid {me}",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "refusing --nats-creds {}: group or others may access it (mode {mode:04o}); it holds a secret: chmod 600 it",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_creds_file(_: &std::path::Path) -> Result<(), String> {
    Ok(())
}

#[cfg(target_os = "linux")]
fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(all(unix, not(target_os = "linux")))]
fn effective_uid() -> u32 {
    0
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
