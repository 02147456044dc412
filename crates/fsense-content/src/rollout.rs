//! Staged rollout: rings with health gates and automatic rollback, and a fleet simulator that runs
//! the real updater and engine on the real published content.
//!
//! A release moves through cumulative rings (e.g. 1 %, 10 %, 50 %, 100 % of the fleet). The hosts
//! that join at each step install the release with [`StateDir::update_to`] (TUF-verified,
//! validated, atomic), load it with [`StateDir::load_active`] and run it over a synthetic event
//! stream next to the previous release. Their health is aggregated and checked against
//! [`Gates`]; the first failing gate halts the rollout and every exposed host runs
//! [`StateDir::rollback`]. A release that fails a gate therefore reaches at most the hosts of the
//! ring where it failed: the first ring, for any fault the first ring can observe.
//!
//! Deterministic for a given seed: event streams, host order and injected faults come from a
//! seeded generator; the only measured quantity is evaluation time, whose gate has a wide margin
//! (and which is reported as `mean_eval_ns`, the one field that varies between runs).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::state::StateDir;
use crate::{ContentError, Engine, EventFacts, Operation, RuleSet, tuf};

/// Synthetic events each host processes when it joins a ring.
pub const DEFAULT_EVENTS_PER_HOST: u32 = 2_000;
/// What an injected "slow evaluation" fault costs, in nanoseconds.
const SLOW_FAULT_NS: u64 = 50_000_000;

/// Health gates. A ring passes when every one holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gates {
    /// Evaluation errors tolerated per event (valid content cannot fail to evaluate: zero).
    pub max_eval_error_rate: f64,
    /// Sensor restarts tolerated per host.
    pub max_restarts_per_host: f64,
    /// Dropped events tolerated per event.
    pub max_drop_rate: f64,
    /// Mean evaluation time per event, nanoseconds.
    pub max_mean_eval_ns: u64,
    /// Match rate allowed relative to the previous release: `new <= factor * old + slack`.
    pub max_match_rate_factor: f64,
    pub match_rate_slack: f64,
    /// Failed installs tolerated (TUF refusal, invalid content, I/O): zero.
    pub max_update_failures: u32,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            max_eval_error_rate: 0.0,
            max_restarts_per_host: 0.0,
            max_drop_rate: 0.001,
            max_mean_eval_ns: 100_000,
            max_match_rate_factor: 5.0,
            match_rate_slack: 0.01,
            max_update_failures: 0,
        }
    }
}

/// What the hosts of one ring step reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    pub hosts: u32,
    pub events: u64,
    pub eval_errors: u64,
    pub restarts: u64,
    pub drops: u64,
    pub update_failures: u32,
    pub matches_new: u64,
    /// Matches of the previous release over the same events (`None`: no previous release).
    pub matches_previous: Option<u64>,
    pub mean_eval_ns: u64,
}

impl Gates {
    /// The first gate `health` fails, as a readable reason.
    pub fn check(&self, health: &Health) -> Result<(), String> {
        let per_event = |n: u64| {
            if health.events == 0 {
                0.0
            } else {
                n as f64 / health.events as f64
            }
        };
        if health.update_failures > self.max_update_failures {
            return Err(format!(
                "{} hosts failed to install the release",
                health.update_failures
            ));
        }
        if per_event(health.eval_errors) > self.max_eval_error_rate {
            return Err(format!(
                "{} evaluation errors in {} events",
                health.eval_errors, health.events
            ));
        }
        if health.hosts > 0
            && health.restarts as f64 / f64::from(health.hosts) > self.max_restarts_per_host
        {
            return Err(format!(
                "{} sensor restarts on {} hosts",
                health.restarts, health.hosts
            ));
        }
        if per_event(health.drops) > self.max_drop_rate {
            return Err(format!(
                "{} dropped events in {}",
                health.drops, health.events
            ));
        }
        if health.mean_eval_ns > self.max_mean_eval_ns {
            return Err(format!(
                "mean evaluation time {} ns per event over {} ns",
                health.mean_eval_ns, self.max_mean_eval_ns
            ));
        }
        if let Some(previous) = health.matches_previous {
            let (new_rate, old_rate) = (per_event(health.matches_new), per_event(previous));
            if new_rate > self.max_match_rate_factor * old_rate + self.match_rate_slack {
                return Err(format!(
                    "match rate {new_rate:.4} against {old_rate:.4} for the previous release"
                ));
            }
        }
        Ok(())
    }
}

/// A rollout on the real fleet (`fsense content rollout --fleet nats://...`), run by the
/// `fsense` binary's controller (it owns the NATS client).
#[derive(Clone, Debug)]
pub struct FleetRollout {
    /// `nats://HOST[:PORT]` or `tls://...`.
    pub url: String,
    pub creds: Option<std::path::PathBuf>,
    pub ca_file: Option<std::path::PathBuf>,
    /// The rules version to roll out.
    pub release: u64,
    /// Cumulative ring sizes in percent of the ring buckets.
    pub rings: Vec<u8>,
    pub soak: std::time::Duration,
    /// How long admitted hosts have to report the release (connected time).
    pub install_timeout: std::time::Duration,
    /// How long to listen for the fleet before the first ring.
    pub discover: std::time::Duration,
    /// Hosts the fleet has: those that do not report count against every gate.
    pub expect_hosts: Option<u32>,
    /// A controller whose heartbeat is older than this is taken over.
    pub lease: std::time::Duration,
    pub summary_json: Option<std::path::PathBuf>,
    pub gates: Gates,
}

/// Parameters of a fleet simulation.
#[derive(Clone, Debug)]
pub struct SimulationConfig {
    pub fleet: u32,
    /// Cumulative ring sizes in percent, strictly increasing, each 1..=100.
    pub rings: Vec<u32>,
    pub seed: u64,
    /// Per-event probability of an injected fault on hosts running the new release.
    pub fault_rate: f64,
    pub events_per_host: u32,
}

/// One ring step of the simulation.
#[derive(Clone, Debug, Serialize)]
pub struct RingReport {
    /// 1-based ring number.
    pub ring: u32,
    pub percent: u32,
    /// Hosts running the release after this step (cumulative).
    pub hosts_total: u32,
    pub health: Health,
    pub passed: bool,
    pub reason: Option<String>,
}

/// The simulation's result (`--summary-json`).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub fleet: u32,
    pub seed: u64,
    pub fault_rate: f64,
    pub candidate_version: u64,
    pub previous_version: Option<u64>,
    /// Hosts that ever ran the candidate release.
    pub hosts_exposed: u32,
    /// Size of the first ring, the most a failing release may reach.
    pub first_ring_hosts: u32,
    /// 1-based ring whose gate failed, or null when the rollout completed.
    pub halted_at_ring: Option<u32>,
    pub halt_reason: Option<String>,
    pub rolled_back: bool,
    pub hosts_rolled_back: u32,
    /// The version the rollout leaves the exposed hosts on: the candidate, or after a rollback the
    /// previous release (null: no content). Rings ending below 100 % leave the rest of the fleet on
    /// the previous release.
    pub final_version: Option<u64>,
    pub gates: Gates,
    pub rings: Vec<RingReport>,
}

/// Cumulative host counts of each ring.
pub fn ring_sizes(fleet: u32, rings: &[u32]) -> Result<Vec<u32>, ContentError> {
    let bad = |detail: String| ContentError::failed(format!("--rings: {detail}"));
    if fleet == 0 {
        return Err(ContentError::failed("--fleet must be at least 1"));
    }
    if rings.is_empty() {
        return Err(bad("at least one ring".into()));
    }
    let mut sizes = Vec::with_capacity(rings.len());
    let mut last_percent = 0;
    for &percent in rings {
        if percent <= last_percent || percent > 100 {
            return Err(bad(format!(
                "percentages must increase within 1..=100, got {percent} after {last_percent}"
            )));
        }
        last_percent = percent;
        let hosts = (u64::from(fleet) * u64::from(percent)).div_ceil(100).max(1) as u32;
        sizes.push(hosts.max(sizes.last().copied().unwrap_or(0)));
    }
    Ok(sizes)
}

/// SplitMix64: a tiny, well-distributed, seedable generator; the simulation needs nothing more.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
}

/// One synthetic file event.
#[derive(Clone, Debug)]
struct SynthEvent {
    operation: Operation,
    path: String,
    pid: u32,
    time_ms: u64,
}

/// A plausible desktop workload: documents, temp files, binaries, and now and then one process
/// writing many files quickly.
fn synthetic_events(seed: u64, count: u32) -> Vec<SynthEvent> {
    const DIRS: &[&str] = &[
        r"C:\Users\ann\Documents",
        r"C:\Users\ann\AppData\Local\Temp",
        r"C:\Users\bob\Downloads",
        r"C:\Program Files\App",
        r"C:\Windows\Temp",
        r"D:\data\projects",
    ];
    const EXTENSIONS: &[&str] = &[
        "txt", "docx", "docm", "xlsx", "xlsm", "pdf", "exe", "dll", "tmp", "log", "jpg", "lnk",
        "ps1", "js", "dat",
    ];
    let mut rng = Rng::new(seed);
    let mut events = Vec::with_capacity(count as usize);
    let mut time_ms = 0u64;
    let mut burst_left = 0u32;
    let mut burst_pid = 0u32;
    for _ in 0..count {
        time_ms += rng.below(20);
        if burst_left == 0 && rng.below(500) == 0 {
            burst_left = 50 + rng.below(200) as u32;
            burst_pid = 9000 + rng.below(100) as u32;
        }
        let (operation, pid) = if burst_left > 0 {
            burst_left -= 1;
            (Operation::Write, burst_pid)
        } else if rng.below(3) == 0 {
            (Operation::Create, 1000 + rng.below(50) as u32)
        } else {
            (Operation::Write, 1000 + rng.below(50) as u32)
        };
        let path = format!(
            r"{}\file{}.{}",
            rng.pick(DIRS),
            rng.below(1000),
            rng.pick(EXTENSIONS)
        );
        events.push(SynthEvent {
            operation,
            path,
            pid,
            time_ms,
        });
    }
    events
}

/// Faults a host can suffer while running the new release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    EvalError,
    Restart,
    Drop,
    Slow,
}

/// Runs one host's event stream on `rules` (and on `previous` for comparison), injecting faults.
fn run_host(
    state: &StateDir,
    rules: RuleSet,
    previous: Option<&RuleSet>,
    events: &[SynthEvent],
    rng: &mut Rng,
    fault_rate: f64,
    health: &mut Health,
) -> Result<(), ContentError> {
    if let Some(previous) = previous {
        let mut engine = Engine::new(previous.clone());
        let matches: u64 = events
            .iter()
            .map(|e| engine.evaluate(&facts(e)).len() as u64)
            .sum();
        *health.matches_previous.get_or_insert(0) += matches;
    }
    let mut engine = Engine::new(rules);
    let mut eval_ns = 0u64;
    for event in events {
        health.events += 1;
        let fault = (fault_rate > 0.0 && rng.unit() < fault_rate).then(|| {
            [Fault::EvalError, Fault::Restart, Fault::Drop, Fault::Slow][rng.below(4) as usize]
        });
        match fault {
            Some(Fault::Drop) => {
                health.drops += 1;
                continue;
            }
            Some(Fault::Restart) => {
                // The sensor process dies and comes back: it reloads the active content from disk.
                health.restarts += 1;
                engine = Engine::new(state.load_active()?);
            }
            _ => {}
        }
        let started = Instant::now();
        let matched = engine.evaluate(&facts(event)).len() as u64;
        eval_ns += started.elapsed().as_nanos() as u64;
        match fault {
            Some(Fault::EvalError) => health.eval_errors += 1,
            Some(Fault::Slow) => {
                eval_ns += SLOW_FAULT_NS;
                health.matches_new += matched;
            }
            _ => health.matches_new += matched,
        }
    }
    health.mean_eval_ns = health.mean_eval_ns.saturating_add(eval_ns);
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ContentError> {
    std::fs::create_dir_all(to).map_err(|e| ContentError::io("cannot create", to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| ContentError::io("cannot list", from, e))? {
        let entry = entry.map_err(|e| ContentError::io("cannot list", from, e))?;
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .map_err(|e| ContentError::io("cannot copy to", &dest, e))?;
        }
    }
    Ok(())
}

fn facts(event: &SynthEvent) -> EventFacts<'_> {
    EventFacts {
        operation: event.operation,
        path: &event.path,
        pid: event.pid,
        time_ms: event.time_ms,
    }
}

/// Simulates the rollout of the newest release in `repo` over a fleet (see the module docs).
pub fn simulate(
    repo: &Path,
    root: &Path,
    config: &SimulationConfig,
) -> Result<Summary, ContentError> {
    simulate_with(repo, root, config, &Gates::default())
}

pub fn simulate_with(
    repo: &Path,
    root: &Path,
    config: &SimulationConfig,
    gates: &Gates,
) -> Result<Summary, ContentError> {
    if !(0.0..=1.0).contains(&config.fault_rate) {
        return Err(ContentError::failed("--inject-fault must be within 0..=1"));
    }
    let sizes = ring_sizes(config.fleet, &config.rings)?;
    // The controller reads the release list through TUF like any client.
    let candidate = tuf::verify(repo, root)?;
    let candidate_version = candidate.rules.version();
    let previous_version = {
        let trusted = std::fs::read(root).map_err(|e| ContentError::io("cannot read", root, e))?;
        let repository = tuf::block_on(tuf::load_repository(repo, &trusted, None))??;
        tuf::releases(&repository).get(1).map(|(v, _)| *v)
    };

    // Host state lives in memory-backed storage when there is some: the simulation measures the
    // content, not the disk.
    let shm = Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("fsense-fleet-");
    let fleet_dir = if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
    .map_err(|e| ContentError::failed(format!("cannot create the fleet directory: {e}")))?;
    // Before the rollout the fleet runs the previous release: one real install, cloned per host.
    let baseline = match previous_version {
        Some(version) => {
            let template = StateDir::open_volatile(&fleet_dir.path().join("baseline"))?;
            template.update_to(repo, root, Some(version), &mut |_| {})?;
            Some((template.load_active()?, template))
        }
        None => None,
    };
    let mut order: Vec<u32> = (0..config.fleet).collect();
    let mut rng = Rng::new(config.seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }

    let mut summary = Summary {
        fleet: config.fleet,
        seed: config.seed,
        fault_rate: config.fault_rate,
        candidate_version,
        previous_version,
        hosts_exposed: 0,
        first_ring_hosts: sizes.first().copied().unwrap_or(0),
        halted_at_ring: None,
        halt_reason: None,
        rolled_back: false,
        hosts_rolled_back: 0,
        final_version: Some(candidate_version),
        gates: gates.clone(),
        rings: Vec::new(),
    };
    let mut exposed: Vec<StateDir> = Vec::new();
    let mut done = 0usize;
    for (index, (&size, &percent)) in sizes.iter().zip(&config.rings).enumerate() {
        let mut health = Health::default();
        for &host in order.get(done..size as usize).unwrap_or_default() {
            let host_seed = config.seed ^ (u64::from(host) + 1).wrapping_mul(0xA24B_AED4_963E_E407);
            let mut host_rng = Rng::new(host_seed);
            let state = StateDir::open_volatile(&fleet_dir.path().join(format!("host-{host}")))?;
            health.hosts += 1;
            if let Some((_, template)) = &baseline {
                copy_tree(template.path(), state.path())?;
            }
            let previous = baseline.as_ref().map(|(rules, _)| rules);
            let installed = state.update_to(repo, root, Some(candidate_version), &mut |_| {});
            exposed.push(state.clone());
            summary.hosts_exposed += 1;
            let rules = match installed.and_then(|_| state.load_active()) {
                Ok(rules) => rules,
                Err(_) => {
                    health.update_failures += 1;
                    continue;
                }
            };
            let events = synthetic_events(host_seed, config.events_per_host);
            run_host(
                &state,
                rules,
                previous,
                &events,
                &mut host_rng,
                config.fault_rate,
                &mut health,
            )?;
        }
        done = size as usize;
        health.mean_eval_ns = health.mean_eval_ns.checked_div(health.events).unwrap_or(0);
        let verdict = gates.check(&health);
        let passed = verdict.is_ok();
        summary.rings.push(RingReport {
            ring: index as u32 + 1,
            percent,
            hosts_total: size,
            health,
            passed,
            reason: verdict.as_ref().err().cloned(),
        });
        if let Err(reason) = verdict {
            summary.halted_at_ring = Some(index as u32 + 1);
            summary.halt_reason = Some(reason);
            for state in &exposed {
                state.rollback()?;
                if state.active_version()? != previous_version {
                    return Err(ContentError::failed(format!(
                        "host {} did not roll back",
                        state.path().display()
                    )));
                }
                summary.hosts_rolled_back += 1;
            }
            summary.rolled_back = true;
            summary.final_version = previous_version;
            break;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_are_cumulative_ceilings() {
        assert_eq!(
            ring_sizes(1000, &[1, 10, 50, 100]).unwrap(),
            [10, 100, 500, 1000]
        );
        assert_eq!(ring_sizes(7, &[1, 10, 50, 100]).unwrap(), [1, 1, 4, 7]);
        assert!(ring_sizes(10, &[10, 5]).is_err());
        assert!(ring_sizes(10, &[0, 100]).is_err());
        assert!(ring_sizes(10, &[50, 101]).is_err());
        assert!(ring_sizes(0, &[100]).is_err());
    }

    #[test]
    fn gates_catch_each_unhealthy_signal() {
        let gates = Gates::default();
        let healthy = Health {
            hosts: 10,
            events: 10_000,
            matches_new: 100,
            matches_previous: Some(90),
            mean_eval_ns: 500,
            ..Health::default()
        };
        assert_eq!(gates.check(&healthy), Ok(()));
        let cases = [
            Health {
                eval_errors: 1,
                ..healthy.clone()
            },
            Health {
                restarts: 1,
                ..healthy.clone()
            },
            Health {
                drops: 11,
                ..healthy.clone()
            },
            Health {
                mean_eval_ns: 200_000,
                ..healthy.clone()
            },
            Health {
                matches_new: 10_000,
                ..healthy.clone()
            },
            Health {
                update_failures: 1,
                ..healthy.clone()
            },
        ];
        for unhealthy in cases {
            assert!(gates.check(&unhealthy).is_err(), "{unhealthy:?}");
        }
        // Without a previous release there is nothing to compare the match rate with.
        assert_eq!(
            gates.check(&Health {
                matches_new: 10_000,
                matches_previous: None,
                ..healthy
            }),
            Ok(())
        );
    }

    #[test]
    fn synthetic_stream_is_deterministic_and_varied() {
        let a = synthetic_events(42, 3000);
        let b = synthetic_events(42, 3000);
        assert_eq!(
            a.iter().map(|e| &e.path).collect::<Vec<_>>(),
            b.iter().map(|e| &e.path).collect::<Vec<_>>()
        );
        assert!(a.iter().any(|e| e.operation == Operation::Create));
        assert!(a.iter().any(|e| e.path.ends_with(".docm")));
        assert!(a.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    }
}
