//! The controller's arithmetic: which hosts a ring admits, and the [`Health`] of a ring from
//! what its hosts reported at the start and the end of the soak, for the existing [`Gates`].

use std::collections::BTreeMap;

use super::protocol::HealthDoc;
use crate::rollout::Health;

/// What the controller knows of one host: its newest document.
pub type Reports = BTreeMap<String, HealthDoc>;

/// Hosts of `reports` in buckets below `admit_below`.
pub fn admitted(reports: &Reports, admit_below: u8) -> Vec<&HealthDoc> {
    reports
        .values()
        .filter(|doc| doc.bucket < admit_below)
        .collect()
}

/// The counter difference `end - start`, or `end` when the host restarted in between.
fn delta(end: u64, start: Option<u64>) -> u64 {
    start.map_or(end, |s| end.saturating_sub(s))
}

/// The health of a ring over a soak: `start` and `end` hold the admitted hosts' documents at
/// the soak's start and end; `release` is the version they must run; `missing` admitted hosts
/// never reported it (each counts as a failed install); `previous` are documents of hosts still
/// on the previous release, whose match rate is the baseline.
pub fn ring_health(
    start: &Reports,
    end: &[&HealthDoc],
    release: u64,
    missing: u32,
    previous: &[&HealthDoc],
) -> Health {
    let mut health = Health {
        hosts: u32::try_from(end.len())
            .unwrap_or(u32::MAX)
            .saturating_add(missing),
        update_failures: missing,
        ..Health::default()
    };
    let mut eval_ns = 0u64;
    for doc in end {
        let before = start
            .get(&doc.host)
            .filter(|b| b.started_ms == doc.started_ms);
        if start
            .get(&doc.host)
            .is_some_and(|b| b.started_ms != doc.started_ms)
        {
            health.restarts += 1;
        }
        if doc.content_version != Some(release) {
            health.update_failures = health.update_failures.saturating_add(1);
        }
        health.events += delta(doc.events, before.map(|b| b.events));
        health.drops += delta(doc.drops, before.map(|b| b.drops));
        health.eval_errors += delta(doc.eval_errors, before.map(|b| b.eval_errors));
        health.restarts += delta(doc.restarts, before.map(|b| b.restarts));
        health.matches_new += delta(doc.matches, before.map(|b| b.matches));
        eval_ns = eval_ns.saturating_add(delta(doc.eval_ns, before.map(|b| b.eval_ns)));
        let failures = delta(doc.update_failures, before.map(|b| b.update_failures));
        health.update_failures = health
            .update_failures
            .saturating_add(u32::try_from(failures).unwrap_or(u32::MAX));
    }
    health.mean_eval_ns = eval_ns.checked_div(health.events).unwrap_or(0);
    let (old_events, old_matches) = previous.iter().fold((0u64, 0u64), |(e, m), doc| {
        (e.saturating_add(doc.events), m.saturating_add(doc.matches))
    });
    if old_events > 0 {
        let rate = old_matches as f64 / old_events as f64;
        health.matches_previous = Some((rate * health.events as f64).round() as u64);
    }
    health
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{SCHEMA, ring_bucket};
    use super::*;
    use crate::rollout::Gates;

    fn doc(host: &str, version: u64, events: u64, matches: u64) -> HealthDoc {
        HealthDoc {
            schema: SCHEMA,
            host: host.into(),
            bucket: ring_bucket(host),
            started_ms: 1,
            seq: 1,
            interval_ms: 1000,
            content_version: Some(version),
            events,
            drops: 0,
            matches,
            eval_errors: 0,
            eval_ns: events * 1000,
            restarts: 0,
            update_failures: 0,
            records_ignored: 0,
        }
    }

    #[test]
    fn a_ring_matching_everything_fails_against_the_previous_release() {
        let start: Reports = [("a".to_owned(), doc("a", 2, 100, 1))].into();
        let end = doc("a", 2, 1100, 1001);
        let old = doc("b", 1, 1000, 10);
        let health = ring_health(&start, &[&end], 2, 0, &[&old]);
        assert_eq!(health.events, 1000);
        assert_eq!(health.matches_new, 1000);
        assert_eq!(health.matches_previous, Some(10));
        assert!(Gates::default().check(&health).is_err());
        let fine = doc("a", 2, 1100, 11);
        assert_eq!(
            Gates::default().check(&ring_health(&start, &[&fine], 2, 0, &[&old])),
            Ok(())
        );
    }

    #[test]
    fn missing_hosts_restarts_and_wrong_versions_count_against_the_gate() {
        let start: Reports = [("a".to_owned(), doc("a", 2, 100, 1))].into();
        let end = doc("a", 2, 200, 2);
        assert_eq!(ring_health(&start, &[&end], 2, 1, &[]).update_failures, 1);
        let mut restarted = end.clone();
        restarted.started_ms = 2;
        assert_eq!(ring_health(&start, &[&restarted], 2, 0, &[]).restarts, 1);
        assert_eq!(ring_health(&start, &[&end], 3, 0, &[]).update_failures, 1);
    }
}
