//! The fleet protocol: what agents publish (health documents) and what the rollout controller
//! writes (rollout records), and the pure decisions both sides take from them.
//!
//! Both documents arrive from the network, so [`parse_health`] and [`parse_rollout`] treat them
//! as hostile: a size limit before parsing, `serde` with unknown fields refused, and every field
//! range-checked afterwards. They never panic (proptest properties below, fuzz target
//! `fleet_parse`). See `docs/content.md`, "Fleet protocol".

use serde::{Deserialize, Serialize};

/// Largest health document or rollout record accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 4096;
/// The only schema this code writes and reads.
pub const SCHEMA: u32 = 1;
/// Health documents go to `fsense.health.<host id>`.
pub const HEALTH_SUBJECT_PREFIX: &str = "fsense.health.";
/// The JetStream stream keeping the last health document per host.
pub const HEALTH_STREAM: &str = "FSENSE_HEALTH";
/// The JetStream key-value bucket the controller writes rollout records into.
pub const ROLLOUT_BUCKET: &str = "fsense-rollout";
/// The key of the one rollout record agents follow.
pub const ROLLOUT_KEY: &str = "current";
/// Longest host id.
pub const MAX_HOST_ID: usize = 64;
/// Most rings a rollout may have.
pub const MAX_RINGS: usize = 16;

/// The ring bucket of a host: FNV-1a (64-bit; offset basis 0xcbf29ce484222325, prime
/// 0x100000001b3) over the host id's UTF-8 bytes, modulo 100. Stable across builds, platforms
/// and Rust versions (std's `DefaultHasher` is not), so the controller and every agent agree.
pub fn ring_bucket(host_id: &str) -> u8 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in host_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % 100) as u8
}

/// A host id is 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting or ending with `.` and without
/// `..`: one NATS subject token, safe in file names and logs.
pub fn valid_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_HOST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !id.starts_with('.')
        && !id.ends_with('.')
        && !id.contains("..")
}

/// A machine name made into a host id: other characters become `-`, cut to 64 bytes.
pub fn host_id_from(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_HOST_ID)
        .collect();
    if id.is_empty() {
        id.push_str("unknown");
    }
    id
}

/// What an agent reports every `--health-interval-s`. Counters are cumulative since the agent
/// started (`started_ms`); the controller takes differences over a soak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthDoc {
    pub schema: u32,
    pub host: String,
    /// [`ring_bucket`] of `host` (checked on parse).
    pub bucket: u8,
    /// When the agent started, ms since the Unix epoch: a new value is a restart.
    pub started_ms: u64,
    /// Increases with every document of one agent run: an older one is a replay.
    pub seq: u64,
    /// The agent's reporting interval.
    pub interval_ms: u64,
    /// The rules version running (`null`: no content).
    pub content_version: Option<u64>,
    pub events: u64,
    pub drops: u64,
    /// Events that matched at least one rule.
    pub matches: u64,
    pub eval_errors: u64,
    /// Time spent evaluating rules, nanoseconds.
    pub eval_ns: u64,
    pub restarts: u64,
    pub update_failures: u64,
    /// Rollout records this agent ignored (unreadable, or not newer than the one it follows).
    pub records_ignored: u64,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the admitted hosts to report the release.
    Admitting,
    /// Every admitted host runs it; watching their health.
    Soaking,
    /// Every ring passed.
    Done,
    /// A gate failed: the admitted hosts roll back.
    Halted,
}

impl Phase {
    pub fn in_progress(self) -> bool {
        matches!(self, Self::Admitting | Self::Soaking)
    }
}

/// What the controller writes to [`ROLLOUT_BUCKET`]/[`ROLLOUT_KEY`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRecord {
    pub schema: u32,
    /// Increases with every record written: agents ignore one that is not newer.
    pub seq: u64,
    /// The rules version being rolled out.
    pub release: u64,
    /// The version the fleet ran before (`null`: none or unknown).
    pub previous: Option<u64>,
    /// Cumulative ring sizes in percent of the buckets.
    pub rings: Vec<u8>,
    /// Index into `rings` of the ring being admitted or soaked.
    pub ring: u32,
    /// Hosts whose bucket is below this install the release (0: none yet).
    pub admit_below: u8,
    pub phase: Phase,
    /// Hosts running `release` install their last known good.
    pub rollback: bool,
    /// Who writes this record.
    pub controller: String,
    /// When the controller last wrote, ms since the Unix epoch (its lease).
    pub heartbeat_ms: u64,
}

/// Why a document was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    TooLarge(usize),
    Malformed(String),
    Invalid(&'static str),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge(n) => write!(f, "{n} bytes, over the {MAX_DOCUMENT_BYTES} byte limit"),
            Self::Malformed(why) => write!(f, "malformed: {why}"),
            Self::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let mut why = e.to_string();
        why.truncate(200);
        ProtocolError::Malformed(why)
    })
}

impl HealthDoc {
    /// The document as published (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl RolloutRecord {
    /// The record as written to the bucket (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Parses and checks a health document.
pub fn parse_health(bytes: &[u8]) -> Result<HealthDoc, ProtocolError> {
    let doc: HealthDoc = parse(bytes)?;
    if doc.schema != SCHEMA {
        return Err(ProtocolError::Invalid("unknown schema"));
    }
    if !valid_host_id(&doc.host) {
        return Err(ProtocolError::Invalid("bad host id"));
    }
    if doc.bucket != ring_bucket(&doc.host) {
        return Err(ProtocolError::Invalid("bucket does not match the host id"));
    }
    if doc.interval_ms == 0 || doc.interval_ms > 86_400_000 {
        return Err(ProtocolError::Invalid("interval out of range"));
    }
    Ok(doc)
}

/// Parses and checks a rollout record.
pub fn parse_rollout(bytes: &[u8]) -> Result<RolloutRecord, ProtocolError> {
    let record: RolloutRecord = parse(bytes)?;
    if record.schema != SCHEMA {
        return Err(ProtocolError::Invalid("unknown schema"));
    }
    if record.rings.is_empty() || record.rings.len() > MAX_RINGS {
        return Err(ProtocolError::Invalid("ring count out of range"));
    }
    let mut last = 0;
    for &percent in &record.rings {
        if percent <= last || percent > 100 {
            return Err(ProtocolError::Invalid("rings must increase within 1..=100"));
        }
        last = percent;
    }
    if record.ring as usize >= record.rings.len() {
        return Err(ProtocolError::Invalid("ring index out of range"));
    }
    if record.admit_below > 100 {
        return Err(ProtocolError::Invalid("admit_below over 100"));
    }
    if record.rollback && record.phase != Phase::Halted {
        return Err(ProtocolError::Invalid("rollback outside a halted rollout"));
    }
    if record.controller.len() > 128 || record.release == 0 {
        return Err(ProtocolError::Invalid("bad controller or release"));
    }
    Ok(record)
}

/// What an agent's content updater does under a rollout record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    /// Install nothing new.
    Hold,
    /// Install this release (verified through TUF) unless it runs already.
    Install(u64),
    /// If this release runs, make the last known good active.
    RollBack(u64),
}

/// The directive `record` gives a host in `bucket`.
pub fn directive(record: &RolloutRecord, bucket: u8) -> Directive {
    if record.rollback {
        Directive::RollBack(record.release)
    } else if bucket < record.admit_below {
        Directive::Install(record.release)
    } else {
        Directive::Hold
    }
}

/// An agent's follower of rollout records: the newest record wins, anything unreadable or not
/// newer is ignored and counted.
#[derive(Debug, Default)]
pub struct RecordFollower {
    last_seq: Option<u64>,
    pub ignored: u64,
}

impl RecordFollower {
    /// The directive of `bytes` when it is a readable record newer than the last one taken.
    pub fn offer(&mut self, bytes: &[u8], bucket: u8) -> Option<Directive> {
        match parse_rollout(bytes) {
            Ok(record) if self.last_seq.is_none_or(|last| record.seq > last) => {
                self.last_seq = Some(record.seq);
                Some(directive(&record, bucket))
            }
            _ => {
                self.ignored += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(seq: u64) -> RolloutRecord {
        RolloutRecord {
            schema: SCHEMA,
            seq,
            release: 7,
            previous: Some(6),
            rings: vec![1, 10, 50, 100],
            ring: 1,
            admit_below: 10,
            phase: Phase::Admitting,
            rollback: false,
            controller: "c".into(),
            heartbeat_ms: 1,
        }
    }

    fn health(host: &str) -> HealthDoc {
        HealthDoc {
            schema: SCHEMA,
            host: host.into(),
            bucket: ring_bucket(host),
            started_ms: 1,
            seq: 1,
            interval_ms: 1000,
            content_version: Some(6),
            events: 10,
            drops: 0,
            matches: 1,
            eval_errors: 0,
            eval_ns: 100,
            restarts: 0,
            update_failures: 0,
            records_ignored: 0,
        }
    }

    #[test]
    fn the_ring_bucket_is_fnv1a_mod_100() {
        // FNV-1a 64 of "" is the offset basis; of "a" it is 0xaf63dc4c8601ec8c (published
        // test vectors).
        assert_eq!(ring_bucket(""), (0xcbf2_9ce4_8422_2325u64 % 100) as u8);
        assert_eq!(ring_bucket("a"), (0xaf63_dc4c_8601_ec8cu64 % 100) as u8);
    }

    #[test]
    fn records_and_documents_round_trip() {
        let r = record(3);
        assert_eq!(parse_rollout(&serde_json::to_vec(&r).unwrap()), Ok(r));
        let h = health("agent-01");
        assert_eq!(parse_health(&serde_json::to_vec(&h).unwrap()), Ok(h));
    }

    #[test]
    fn hostile_documents_are_refused() {
        let mut h = health("agent-01");
        h.bucket = (h.bucket + 1) % 100;
        assert!(parse_health(&serde_json::to_vec(&h).unwrap()).is_err());
        let mut text = serde_json::to_string(&health("agent-01")).unwrap();
        text.insert_str(1, "\"extra\":1,");
        assert!(parse_health(text.as_bytes()).is_err());
        assert!(parse_health(br#"{"schema":"1"}"#).is_err());
        let huge = format!("{{\"host\":\"{}\"}}", "a".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(
            parse_health(huge.as_bytes()),
            Err(ProtocolError::TooLarge(huge.len()))
        );
        let mut r = record(1);
        r.rings = vec![10, 5];
        assert!(parse_rollout(&serde_json::to_vec(&r).unwrap()).is_err());
        let mut r = record(1);
        r.rollback = true;
        assert!(parse_rollout(&serde_json::to_vec(&r).unwrap()).is_err());
    }

    #[test]
    fn the_follower_takes_only_newer_records() {
        let mut f = RecordFollower::default();
        let r5 = serde_json::to_vec(&record(5)).unwrap();
        assert_eq!(f.offer(&r5, 3), Some(Directive::Install(7)));
        assert_eq!(f.offer(&r5, 3), None, "a replay");
        assert_eq!(f.offer(&serde_json::to_vec(&record(4)).unwrap(), 3), None);
        assert_eq!(f.offer(b"{\"seq\": []}", 3), None);
        assert_eq!(f.ignored, 3);
        assert_eq!(
            f.offer(&serde_json::to_vec(&record(6)).unwrap(), 50),
            Some(Directive::Hold)
        );
    }

    proptest! {
        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_health(&bytes);
            let _ = parse_rollout(&bytes);
            let mut f = RecordFollower::default();
            let _ = f.offer(&bytes, 1);
        }

        #[test]
        fn a_parsed_health_document_is_consistent(host in "[a-z0-9_.-]{0,70}", bucket in 0u8..=255, interval in 0u64..100_000) {
            let mut h = health("x");
            h.host = host.clone();
            h.bucket = bucket;
            h.interval_ms = interval;
            if let Ok(doc) = parse_health(&serde_json::to_vec(&h).unwrap()) {
                prop_assert!(valid_host_id(&doc.host));
                prop_assert_eq!(doc.bucket, ring_bucket(&host));
                prop_assert!(doc.bucket < 100);
                prop_assert!(doc.interval_ms > 0);
            }
        }

        #[test]
        fn a_parsed_record_is_consistent(rings in proptest::collection::vec(0u8..=120, 0..20), ring in 0u32..20, admit in 0u8..=255, rollback: bool) {
            let mut r = record(1);
            r.rings = rings;
            r.ring = ring;
            r.admit_below = admit;
            r.rollback = rollback;
            r.phase = if rollback { Phase::Halted } else { Phase::Soaking };
            if let Ok(r) = parse_rollout(&serde_json::to_vec(&r).unwrap()) {
                prop_assert!((r.ring as usize) < r.rings.len());
                prop_assert!(r.rings.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(r.admit_below <= 100);
            }
        }

        #[test]
        fn buckets_are_below_100(host in ".{0,80}") {
            prop_assert!(ring_bucket(&host) < 100);
            let id = host_id_from(&host);
            prop_assert!(id.len() <= MAX_HOST_ID && !id.is_empty());
        }
    }
}
