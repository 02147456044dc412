//! `fsense content rollout --fleet nats://... --release V`: the staged rollout controller.
//!
//! It listens to the agents' health documents (`fsense.health.*`), then for each ring writes
//! the rollout record admitting the ring's buckets, waits until every admitted host reports the
//! release (a host that does not within `--install-timeout-s` counts as a failed install),
//! soaks, and checks the [`Gates`] on the ring's health over the soak against the hosts still on
//! the previous release. A failing ring halts the rollout and the record orders rollback.
//!
//! The record is the controller's state: a restarted controller resumes from the ring it names.
//! Every write is a compare-and-set on the key's revision, and the record carries a heartbeat:
//! a second controller is refused while the first one's heartbeat is fresh (`--lease-s`), and a
//! controller that loses the key to another stops. Deadlines count only time connected to
//! NATS: during an outage the controller waits and says so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use fsense_content::ContentError;
use fsense_content::fleet::gate::{self, Reports};
use fsense_content::fleet::protocol::{
    self, HEALTH_SUBJECT_PREFIX, HealthDoc, Phase, ROLLOUT_BUCKET, ROLLOUT_KEY, RolloutRecord,
};
use fsense_content::rollout::{FleetRollout, Gates, RingReport};
use futures_util::StreamExt;
use serde::Serialize;

use super::agent::now_ms;
use crate::output::sink::nats_connect::{self, Disconnects};

const TICK: Duration = Duration::from_millis(200);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The controller's result (`--summary-json`, and stdout).
#[derive(Debug, Serialize)]
pub struct FleetSummary {
    pub release: u64,
    pub previous: Option<u64>,
    /// Hosts that reported when the rollout started.
    pub hosts_known: u32,
    pub resumed: bool,
    pub halted_at_ring: Option<u32>,
    pub halt_reason: Option<String>,
    pub rolled_back: bool,
    /// Hosts of the halted rings that reported the previous release again.
    pub hosts_rolled_back: u32,
    /// From the halt to the last host back on the previous release, seconds.
    pub rollback_s: Option<f64>,
    /// From the first admission of the release to the last host back, seconds.
    pub bad_release_to_last_rollback_s: Option<f64>,
    /// Per ring: seconds from admission until every admitted host reported the release.
    pub admit_s: Vec<f64>,
    /// Health documents refused (unreadable, wrong host, replayed).
    pub documents_ignored: u64,
    pub gates: Gates,
    pub rings: Vec<RingReport>,
}

/// The health documents heard so far.
#[derive(Default)]
struct Heard {
    reports: Reports,
    ignored: u64,
}

impl Heard {
    fn offer(&mut self, subject: &str, bytes: &[u8]) {
        let Ok(doc) = protocol::parse_health(bytes) else {
            self.ignored += 1;
            return;
        };
        if subject.strip_prefix(HEALTH_SUBJECT_PREFIX) != Some(doc.host.as_str()) {
            self.ignored += 1;
            return;
        }
        if let Some(old) = self.reports.get(&doc.host)
            && (doc.started_ms, doc.seq) <= (old.started_ms, old.seq)
        {
            self.ignored += 1;
            return;
        }
        self.reports.insert(doc.host.clone(), doc);
    }
}

struct Controller {
    args: FleetRollout,
    client: async_nats::Client,
    kv: kv::Store,
    heard: Arc<Mutex<Heard>>,
    record: RolloutRecord,
    revision: u64,
    last_write: Instant,
    outage_said: bool,
}

fn failed(message: impl Into<String>) -> ContentError {
    ContentError::failed(message.into())
}

/// Runs a rollout to its end; returns the summary as JSON.
pub fn run(args: FleetRollout) -> Result<String, ContentError> {
    crate::output::sink::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the NATS runtime: {e}")))?;
    let summary_json = args.summary_json.clone();
    let summary = runtime.block_on(rollout(args))?;
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| failed(format!("cannot serialize the summary: {e}")))?;
    if let Some(path) = summary_json {
        write_summary(&path, &json)?;
    }
    Ok(json)
}

fn write_summary(path: &std::path::Path, json: &str) -> Result<(), ContentError> {
    fsense_safefs::write_atomic(
        path,
        format!("{json}\n").as_bytes(),
        fsense_safefs::Visibility::Private,
    )
    .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

async fn rollout(args: FleetRollout) -> Result<FleetSummary, ContentError> {
    let nats = super::nats_config(&args.url, args.creds.as_ref(), args.ca_file.as_ref())
        .map_err(failed)?;
    let disconnects = Arc::new(Disconnects::default());
    let client = nats_connect::connect(&nats, &disconnects)
        .await
        .map_err(failed)?;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let mut health = client
        .subscribe(format!("{HEALTH_SUBJECT_PREFIX}*"))
        .await
        .map_err(|e| failed(format!("cannot subscribe to the health documents: {e}")))?;
    {
        let heard = heard.clone();
        tokio::spawn(async move {
            while let Some(m) = health.next().await {
                heard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .offer(m.subject.as_str(), &m.payload);
            }
        });
    }
    let js = jetstream::new(client.clone());
    let mut said = false;
    let kv = loop {
        let store = match js.get_key_value(ROLLOUT_BUCKET).await {
            Ok(s) => Ok(s),
            Err(_) => create_bucket(&js).await,
        };
        match store {
            Ok(s) => break s,
            Err(e) if !said => {
                eprintln!(
                    "fsense: rollout: cannot open the {ROLLOUT_BUCKET} bucket at {} ({e}); waiting for NATS",
                    nats.url.shown
                );
                said = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let controller_id = format!(
        "{}:{}:{}",
        crate::output::sink::host_name(),
        std::process::id(),
        now_ms()
    );
    let (record, revision, resumed) = claim(&kv, &args, &controller_id).await?;
    let mut c = Controller {
        args,
        client,
        kv,
        heard,
        record,
        revision,
        last_write: Instant::now(),
        outage_said: false,
    };
    c.drive(resumed).await
}

/// Creates the rollout bucket: the stream a JetStream key-value bucket is (what async-nats'
/// `create_key_value` makes, one value per key), created directly because `create_key_value`
/// first reads the account information, which it cannot parse from nats-server 2.9.
async fn create_bucket(js: &jetstream::Context) -> Result<kv::Store, String> {
    use jetstream::stream::{Config, DiscardPolicy, StorageType};
    js.get_or_create_stream(Config {
        name: format!("KV_{ROLLOUT_BUCKET}"),
        subjects: vec![format!("$KV.{ROLLOUT_BUCKET}.>")],
        max_messages_per_subject: 1,
        max_message_size: protocol::MAX_DOCUMENT_BYTES as i32,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.get_key_value(ROLLOUT_BUCKET)
        .await
        .map_err(|e| e.to_string())
}

/// Takes the rollout record for `args.release`: a new rollout, or the resumption of one whose
/// controller's heartbeat is older than the lease. Refuses while another controller is live.
async fn claim(
    kv: &kv::Store,
    args: &FleetRollout,
    controller: &str,
) -> Result<(RolloutRecord, u64, bool), ContentError> {
    let entry = kv
        .entry(ROLLOUT_KEY)
        .await
        .map_err(|e| failed(format!("cannot read the rollout record: {e}")))?;
    let existing = entry
        .as_ref()
        .filter(|e| e.operation == kv::Operation::Put)
        .and_then(|e| protocol::parse_rollout(&e.value).ok());
    let fresh =
        |r: &RolloutRecord| now_ms().saturating_sub(r.heartbeat_ms) < args.lease.as_millis() as u64;
    let mut resumed = false;
    let record = match existing {
        Some(r) if r.phase.in_progress() && fresh(&r) => {
            return Err(ContentError::refused(format!(
                "controller {} is rolling out release {} (ring {}, heartbeat {} ms ago); refusing a second controller",
                r.controller,
                r.release,
                r.ring + 1,
                now_ms().saturating_sub(r.heartbeat_ms)
            )));
        }
        Some(r) if r.release == args.release && r.phase.in_progress() => {
            eprintln!(
                "fsense: rollout: resuming release {} at ring {} ({:?}); its controller {} stopped",
                r.release,
                r.ring + 1,
                r.phase,
                r.controller
            );
            resumed = true;
            RolloutRecord {
                seq: r.seq + 1,
                controller: controller.into(),
                heartbeat_ms: now_ms(),
                ..r
            }
        }
        Some(r) if r.release == args.release => {
            return Err(ContentError::refused(format!(
                "release {} was rolled out already ({:?}); publish a new release to roll out again",
                r.release, r.phase
            )));
        }
        other => RolloutRecord {
            schema: protocol::SCHEMA,
            seq: other.as_ref().map_or(1, |r| r.seq + 1),
            release: args.release,
            previous: None,
            rings: args.rings.clone(),
            ring: 0,
            admit_below: 0,
            phase: Phase::Admitting,
            rollback: false,
            controller: controller.into(),
            heartbeat_ms: now_ms(),
        },
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| failed(e.to_string()))?;
    let written = match &entry {
        Some(e) => kv
            .update(ROLLOUT_KEY, bytes.into(), e.revision)
            .await
            .map_err(|e| e.to_string()),
        None => kv
            .create(ROLLOUT_KEY, bytes.into())
            .await
            .map_err(|e| e.to_string()),
    };
    match written {
        Ok(revision) => Ok((record, revision, resumed)),
        Err(e) => Err(ContentError::refused(format!(
            "another controller took the rollout record first ({e})"
        ))),
    }
}

impl Controller {
    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn reports(&self) -> Reports {
        self.heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reports
            .clone()
    }

    /// Writes the record (compare-and-set); retries through outages; an error only when
    /// another controller wrote in between.
    async fn write(&mut self) -> Result<(), ContentError> {
        loop {
            self.record.seq += 1;
            self.record.heartbeat_ms = now_ms();
            let bytes = serde_json::to_vec(&self.record).map_err(|e| failed(e.to_string()))?;
            match self
                .kv
                .update(ROLLOUT_KEY, bytes.into(), self.revision)
                .await
            {
                Ok(revision) => {
                    self.revision = revision;
                    self.last_write = Instant::now();
                    if self.outage_said {
                        eprintln!("fsense: rollout: NATS is back; going on");
                        self.outage_said = false;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    return Err(ContentError::refused(format!(
                        "another controller wrote the rollout record of release {}; stopping",
                        self.record.release
                    )));
                }
                Err(e) => {
                    if !self.outage_said {
                        eprintln!(
                            "fsense: rollout: cannot write the rollout record ({e}); NATS unreachable? waiting"
                        );
                        self.outage_said = true;
                    }
                    self.record.seq -= 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// One tick: sleeps, keeps the heartbeat, and tells whether the time counts (connected).
    async fn tick(&mut self) -> Result<bool, ContentError> {
        tokio::time::sleep(TICK).await;
        if self.last_write.elapsed() >= self.args.lease / 3 {
            self.write().await?;
        }
        let connected = self.connected();
        if !connected && !self.outage_said {
            eprintln!("fsense: rollout: NATS unreachable; waiting (deadlines paused)");
            self.outage_said = true;
        }
        Ok(connected)
    }

    async fn drive(&mut self, resumed: bool) -> Result<FleetSummary, ContentError> {
        let release = self.args.release;
        // Discovery: listen for the fleet before admitting anyone.
        let mut waited = Duration::ZERO;
        let mut last_progress = Instant::now();
        while waited < self.args.discover {
            if self.tick().await? {
                waited += TICK;
            }
            let known = self.reports().len() as u32;
            if self.args.expect_hosts.is_some_and(|n| known >= n) {
                break;
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                eprintln!("fsense: rollout: discovering the fleet: {known} hosts report");
                last_progress = Instant::now();
            }
        }
        let reports = self.reports();
        if self.record.previous.is_none() {
            let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
            for v in reports.values().filter_map(|d| d.content_version) {
                if v != release {
                    *counts.entry(v).or_default() += 1;
                }
            }
            self.record.previous = counts.into_iter().max_by_key(|(_, n)| *n).map(|(v, _)| v);
        }
        let previous = self.record.previous;
        let hosts_known = reports.len() as u32;
        let missing = self
            .args
            .expect_hosts
            .map_or(0, |n| n.saturating_sub(hosts_known));
        eprintln!(
            "fsense: rollout: release {release} over {hosts_known} hosts (previous release {}), rings {:?} %",
            previous.map_or_else(|| "none".into(), |v| v.to_string()),
            self.record.rings
        );
        let mut summary = FleetSummary {
            release,
            previous,
            hosts_known,
            resumed,
            halted_at_ring: None,
            halt_reason: None,
            rolled_back: false,
            hosts_rolled_back: 0,
            rollback_s: None,
            bad_release_to_last_rollback_s: None,
            admit_s: Vec::new(),
            documents_ignored: 0,
            gates: self.args.gates.clone(),
            rings: Vec::new(),
        };
        let first_admission = Instant::now();
        let rings = self.record.rings.clone();
        let start_ring = self.record.ring as usize;
        for (index, &percent) in rings.iter().enumerate().skip(start_ring) {
            let label = format!("ring {}/{} ({percent} %)", index + 1, rings.len());
            self.record.ring = index as u32;
            self.record.admit_below = percent;
            self.record.phase = Phase::Admitting;
            self.write().await?;
            let admitted_at = Instant::now();
            let mut waited = Duration::ZERO;
            let mut last_line = String::new();
            let mut last_progress = Instant::now();
            loop {
                let reports = self.reports();
                let ring = gate::admitted(&reports, percent);
                let on = ring
                    .iter()
                    .filter(|d| d.content_version == Some(release))
                    .count();
                if on == ring.len() {
                    break;
                }
                if waited >= self.args.install_timeout {
                    eprintln!(
                        "fsense: rollout: {label}: {} of {} hosts never reported release {release}; counted against the gate",
                        ring.len() - on,
                        ring.len()
                    );
                    break;
                }
                let line = format!(
                    "fsense: rollout: {label}: {on} of {} hosts on release {release}, waiting ({:.0} s of {:.0} s)",
                    ring.len(),
                    waited.as_secs_f64(),
                    self.args.install_timeout.as_secs_f64()
                );
                if line != last_line || last_progress.elapsed() >= PROGRESS_EVERY * 5 {
                    eprintln!("{line}");
                    last_line = line;
                    last_progress = Instant::now();
                }
                if self.tick().await? {
                    waited += TICK;
                }
            }
            summary.admit_s.push(admitted_at.elapsed().as_secs_f64());
            // Soak.
            self.record.phase = Phase::Soaking;
            self.write().await?;
            let start: Reports = self
                .reports()
                .into_iter()
                .filter(|(_, d)| d.bucket < percent)
                .collect();
            let mut soaked = Duration::ZERO;
            let mut last_progress = Instant::now();
            let (health, verdict) = loop {
                let reports = self.reports();
                let end = gate::admitted(&reports, percent);
                let old: Vec<&HealthDoc> = reports
                    .values()
                    .filter(|d| d.bucket >= percent && d.content_version == previous)
                    .collect();
                let health = gate::ring_health(&start, &end, release, missing, &old);
                let verdict = self.args.gates.check(&health);
                if soaked >= self.args.soak {
                    break (health, verdict);
                }
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    eprintln!(
                        "fsense: rollout: {label}: soaking {:.0} s of {:.0} s; {} hosts, {} events, gates so far: {}",
                        soaked.as_secs_f64(),
                        self.args.soak.as_secs_f64(),
                        health.hosts,
                        health.events,
                        verdict.as_ref().err().map_or("ok", String::as_str)
                    );
                    last_progress = Instant::now();
                }
                if self.tick().await? {
                    soaked += TICK;
                }
            };
            let passed = verdict.is_ok();
            summary.rings.push(RingReport {
                ring: index as u32 + 1,
                percent: u32::from(percent),
                hosts_total: health.hosts,
                health,
                passed,
                reason: verdict.as_ref().err().cloned(),
            });
            eprintln!(
                "fsense: rollout: {label}: {}",
                match &verdict {
                    Ok(()) => "passed".to_owned(),
                    Err(reason) => format!("FAILED: {reason}; halting and rolling back"),
                }
            );
            if let Err(reason) = verdict {
                let halted = Instant::now();
                summary.halted_at_ring = Some(index as u32 + 1);
                summary.halt_reason = Some(reason);
                self.record.phase = Phase::Halted;
                self.record.rollback = true;
                self.write().await?;
                summary.rolled_back = true;
                let exposed: Vec<String> = start.keys().cloned().collect();
                let mut waited = Duration::ZERO;
                loop {
                    let reports = self.reports();
                    let still = exposed
                        .iter()
                        .filter(|h| {
                            reports
                                .get(*h)
                                .is_none_or(|d| d.content_version == Some(release))
                        })
                        .count();
                    summary.hosts_rolled_back = (exposed.len() - still) as u32;
                    if still == 0 {
                        summary.rollback_s = Some(halted.elapsed().as_secs_f64());
                        summary.bad_release_to_last_rollback_s =
                            Some(first_admission.elapsed().as_secs_f64());
                        break;
                    }
                    if waited >= self.args.install_timeout {
                        eprintln!(
                            "fsense: rollout: {still} hosts still report release {release} after the rollback order"
                        );
                        break;
                    }
                    if self.tick().await? {
                        waited += TICK;
                    }
                }
                break;
            }
        }
        if summary.halted_at_ring.is_none() {
            self.record.phase = Phase::Done;
            self.write().await?;
        }
        summary.documents_ignored = self
            .heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ignored;
        let _ = self.client.flush().await;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(host: &str, started: u64, seq: u64) -> Vec<u8> {
        serde_json::to_vec(&HealthDoc {
            schema: protocol::SCHEMA,
            host: host.into(),
            bucket: protocol::ring_bucket(host),
            started_ms: started,
            seq,
            interval_ms: 100,
            content_version: Some(1),
            events: 0,
            drops: 0,
            matches: 0,
            eval_errors: 0,
            eval_ns: 0,
            restarts: 0,
            update_failures: 0,
            records_ignored: 0,
        })
        .unwrap()
    }

    #[test]
    fn replayed_foreign_and_broken_documents_are_counted_and_ignored() {
        let mut heard = Heard::default();
        heard.offer("fsense.health.a", &doc("a", 5, 2));
        heard.offer("fsense.health.a", &doc("a", 5, 2)); // replay
        heard.offer("fsense.health.a", &doc("a", 5, 1)); // older
        heard.offer("fsense.health.a", &doc("a", 4, 9)); // an earlier run
        heard.offer("fsense.health.b", &doc("a", 5, 3)); // b speaking for a
        heard.offer("fsense.health.a", b"{\"schema\": true}");
        assert_eq!(heard.ignored, 5);
        assert_eq!(heard.reports["a"].seq, 2);
        heard.offer("fsense.health.a", &doc("a", 6, 1)); // a restart
        assert_eq!(heard.reports["a"].started_ms, 6);
    }
}
