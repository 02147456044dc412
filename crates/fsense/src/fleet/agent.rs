//! The fleet agent: publishes this sensor's health and follows the rollout record.
//!
//! One thread with its own single-threaded tokio runtime, so the pipeline never waits on the
//! network. Every interval it publishes a [`HealthDoc`] on `fsense.health.<host id>` (core NATS:
//! the `FSENSE_HEALTH` stream, which the agent creates if missing with one message kept per
//! subject, stores it). It watches the `fsense-rollout` bucket's record and, as a fallback when
//! the watch breaks, reads it once per interval; each readable, newer record becomes the order
//! of the live content checker's [`FleetGate`]. Without a server the sensor runs on: the first
//! failed connection is reported in one line, and the client keeps reconnecting in the
//! background.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv, stream};
use fsense_content::fleet::protocol::{
    self, Directive, HEALTH_STREAM, HEALTH_SUBJECT_PREFIX, HealthDoc, ROLLOUT_BUCKET, ROLLOUT_KEY,
    RecordFollower,
};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::FleetConfig;
use crate::output::sink::nats_connect::{self, Disconnects};
use crate::pipeline::live_content::{FleetGate, FleetHealth, Order, UpdateCounters};

/// A running agent; dropping it stops it (within about one JetStream request timeout).
pub struct Agent {
    stop: Arc<(AtomicBool, Notify)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.0.store(true, Ordering::SeqCst);
        self.stop.1.notify_waiters();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the agent reads and writes.
struct Shared {
    config: FleetConfig,
    bucket: u8,
    counters: Arc<UpdateCounters>,
    health: Arc<FleetHealth>,
    gate: Arc<FleetGate>,
    follower: std::sync::Mutex<RecordFollower>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the agent thread.
pub fn start(
    config: FleetConfig,
    counters: Arc<UpdateCounters>,
    health: Arc<FleetHealth>,
    gate: Arc<FleetGate>,
) -> Result<Agent, String> {
    crate::output::sink::install_crypto_provider();
    let bucket = protocol::ring_bucket(&config.host_id);
    eprintln!(
        "fsense: fleet: reporting health to {} as host {} (ring bucket {bucket}) every {:.2} s; content installs as the rollout admits",
        config.nats.url.shown,
        config.host_id,
        config.interval.as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the fleet runtime: {e}"))?;
    let stop = Arc::new((AtomicBool::new(false), Notify::new()));
    let shared = Arc::new(Shared {
        config,
        bucket,
        counters,
        health,
        gate,
        follower: std::sync::Mutex::new(RecordFollower::default()),
    });
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("fsense-fleet".into())
            .spawn(move || runtime.block_on(run(shared, stop)))
            .map_err(|e| format!("cannot start the fleet agent: {e}"))?
    };
    Ok(Agent {
        stop,
        thread: Some(thread),
    })
}

async fn run(shared: Arc<Shared>, stop: Arc<(AtomicBool, Notify)>) {
    let disconnects = Arc::new(Disconnects::default());
    let client = tokio::select! {
        c = nats_connect::connect(&shared.config.nats, &disconnects) => c,
        () = stop.1.notified() => return,
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fsense: fleet: {e}; running without the fleet");
            return;
        }
    };
    let js = jetstream::new(client.clone());
    let started_ms = now_ms();
    let subject = format!("{HEALTH_SUBJECT_PREFIX}{}", shared.config.host_id);
    let mut seq = 0u64;
    let mut stream_ready = false;
    let mut watch: Option<kv::Watch> = None;
    let mut store: Option<kv::Store> = None;
    let mut last_revision = 0u64;
    let mut tick = tokio::time::interval(shared.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.0.load(Ordering::SeqCst) {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.1.notified() => break,
            entry = next_entry(&mut watch) => {
                match entry {
                    Some(entry) => {
                        if entry.revision > last_revision {
                            last_revision = entry.revision;
                            offer(&shared, &entry.value);
                        }
                    }
                    None => watch = None,
                }
                continue;
            }
        }
        seq += 1;
        let doc = document(&shared, started_ms, seq);
        if let Ok(bytes) = serde_json::to_vec(&doc) {
            let _ = client.publish(subject.clone(), bytes.into()).await;
        }
        if client.connection_state() != async_nats::connection::State::Connected {
            continue;
        }
        if !stream_ready {
            stream_ready = bounded(js.get_or_create_stream(stream::Config {
                name: HEALTH_STREAM.into(),
                subjects: vec![format!("{HEALTH_SUBJECT_PREFIX}>")],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                ..Default::default()
            }))
            .await
            .is_some_and(|r| r.is_ok());
        }
        if store.is_none() {
            store = bounded(js.get_key_value(ROLLOUT_BUCKET))
                .await
                .and_then(Result::ok);
        }
        if let Some(kv) = &store {
            // The fallback read: a record the watch missed (or no watch).
            if let Some(Ok(Some(entry))) = bounded(kv.entry(ROLLOUT_KEY)).await
                && entry.revision > last_revision
            {
                last_revision = entry.revision;
                offer(&shared, &entry.value);
            }
            if watch.is_none() {
                watch = bounded(kv.watch(ROLLOUT_KEY)).await.and_then(Result::ok);
            }
        }
    }
    let _ = bounded(client.flush()).await;
}

/// The next record the watch delivers; `None` when it ended. Pending forever without a watch.
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match watch {
        Some(w) => match w.next().await {
            Some(Ok(entry)) if entry.operation == kv::Operation::Put => Some(entry),
            Some(Ok(_)) => std::future::pending().await,
            Some(Err(_)) | None => None,
        },
        None => std::future::pending().await,
    }
}

/// A JetStream request, given up after 2 s.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(2), f).await.ok()
}

fn offer(shared: &Shared, bytes: &[u8]) {
    let mut follower = shared
        .follower
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(directive) = follower.offer(bytes, shared.bucket) {
        shared.gate.set(match directive {
            Directive::Hold => Order::Hold,
            Directive::Install(v) => Order::Install(v),
            Directive::RollBack(v) => Order::RollBack(v),
        });
    }
}

fn document(shared: &Shared, started_ms: u64, seq: u64) -> HealthDoc {
    let h = &shared.health;
    let ignored = shared
        .follower
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .ignored;
    HealthDoc {
        schema: protocol::SCHEMA,
        host: shared.config.host_id.clone(),
        bucket: shared.bucket,
        started_ms,
        seq,
        interval_ms: (shared.config.interval.as_millis() as u64).max(1),
        content_version: shared.counters.active_version(),
        events: h.events.load(Ordering::Relaxed),
        drops: h.drops.load(Ordering::Relaxed),
        matches: h.matches.load(Ordering::Relaxed),
        eval_errors: h.eval_errors.load(Ordering::Relaxed),
        eval_ns: h.eval_ns.load(Ordering::Relaxed),
        restarts: 0,
        update_failures: shared.counters.failures.load(Ordering::Relaxed),
        records_ignored: ignored,
    }
}
