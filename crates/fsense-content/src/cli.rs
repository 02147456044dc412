//! The `fsense content ...` commands. The `fsense` binary mounts [`ContentCommand`] and calls
//! [`run`]; every outcome is one line on stdout (success) or stderr (`error: ...`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::rollout::{self, FleetRollout, SimulationConfig};
use crate::signing::{self, SignatureCount};
use crate::state::{StateDir, UpdateOutcome};
use crate::tuf::RepoLocation;
use crate::{ContentError, tuf};

/// `fsense content <command>`
#[derive(clap::Subcommand, Debug)]
pub enum ContentCommand {
    /// Create the signing keys and the initial signed DIR/root.json (the trust anchor).
    Keygen {
        /// Directory for root.json and the private keys (must not hold keys yet).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Make N targets keys (DIR/targets-1.key ... DIR/targets-N.key) instead of one.
        #[arg(long, value_name = "N", requires = "targets_threshold",
              value_parser = clap::value_parser!(u8).range(1..=16))]
        targets_keys: Option<u8>,
        /// How many of the N targets keys must sign each release.
        #[arg(long, value_name = "K", requires = "targets_keys",
              value_parser = clap::value_parser!(u8).range(1..=16))]
        targets_threshold: Option<u8>,
    },
    /// Validate a rules file and stage it as the next release, for the targets key holders to sign.
    Stage {
        /// The rules file (TOML).
        #[arg(value_name = "RULES.toml")]
        rules: PathBuf,
        /// Directory made by `keygen` (its root.json anchors the repository).
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        #[arg(long, value_name = "REPO")]
        repo: PathBuf,
    },
    /// Add one targets key's signature to the staged release.
    Sign {
        #[arg(long, value_name = "REPO")]
        repo: PathBuf,
        /// One targets key (DIR/targets-N.key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Sign only if the staged rules file's sha256 is HEX (`sha256sum` of what you reviewed).
        #[arg(long, value_name = "HEX")]
        expect_sha256: Option<String>,
    },
    /// Publish a rules file as the newest release (one targets key), or, without RULES, the
    /// staged release once enough targets keys signed it.
    Publish {
        /// The rules file (TOML); without it, the staged release is published.
        #[arg(value_name = "RULES.toml")]
        rules: Option<PathBuf>,
        /// Directory made by `keygen`.
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// Repository directory (created on first publish).
        #[arg(long, value_name = "REPO")]
        repo: PathBuf,
    },
    /// Write the next root version, moving some or all roles to the keys of NEWDIR.
    Rotate {
        #[arg(long, value_name = "REPO")]
        repo: PathBuf,
        /// The current keys directory (its root key signs the new root).
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// A directory made by `keygen`: its root.json pins the new keys, its root key co-signs.
        #[arg(long, value_name = "NEWDIR")]
        new_keys: PathBuf,
        /// Move only this role (default: every role).
        #[arg(long, value_name = "ROLE")]
        role: Option<RotatedRole>,
    },
    /// Fetch the newest release through TUF and validate it again.
    Verify {
        /// Repository directory, or its http:// or https:// URL.
        #[arg(long, value_name = "REPO|URL")]
        repo: std::ffi::OsString,
        /// Trusted root metadata (KEYS/root.json).
        #[arg(long, value_name = "ROOT")]
        root: PathBuf,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Install the newest release into a sensor state directory (verified, validated, atomic).
    Update {
        /// Repository directory, or its http:// or https:// URL.
        #[arg(long, value_name = "REPO|URL")]
        repo: std::ffi::OsString,
        #[arg(long, value_name = "ROOT")]
        root: PathBuf,
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Make the last known good content active again.
    Rollback {
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// Roll a release out in rings over the fleet (`--fleet nats://...`), admitting each ring
    /// on the health its agents report; or, with `--simulate` (or a number as --fleet), simulate
    /// the rollout of the newest release over that many in-process sensors.
    Rollout {
        /// nats://HOST[:PORT] (or tls://...) of the fleet; with --simulate, the number of
        /// simulated sensors.
        #[arg(long, value_name = "URL|N")]
        fleet: String,
        /// Simulate the fleet in this process (the old behaviour; implied by a number as --fleet).
        #[arg(long)]
        simulate: bool,
        /// Cumulative ring sizes in percent of the fleet, increasing, ending at 100.
        #[arg(
            long,
            value_name = "PERCENTS",
            value_delimiter = ',',
            default_value = "1,10,50,100"
        )]
        rings: Vec<u32>,
        /// The repository (simulation).
        #[arg(long, value_name = "REPO")]
        repo: Option<PathBuf>,
        /// Trusted root metadata (simulation).
        #[arg(long, value_name = "ROOT")]
        root: Option<PathBuf>,
        /// Seed of the deterministic simulation.
        #[arg(long, value_name = "S", default_value_t = 0)]
        seed: u64,
        /// Per-event probability of an injected fault on sensors running the new release (0..=1).
        #[arg(long, value_name = "RATE", default_value_t = 0.0)]
        inject_fault: f64,
        /// Synthetic events each sensor processes per ring step.
        #[arg(long, value_name = "N", default_value_t = rollout::DEFAULT_EVENTS_PER_HOST)]
        events_per_host: u32,
        /// Where to write the summary (JSON); printed to stdout as well.
        #[arg(long, value_name = "F")]
        summary_json: Option<PathBuf>,
        #[command(flatten)]
        real: FleetRolloutArgs,
    },
}

/// The options of a rollout on the real fleet.
#[derive(clap::Args, Debug, Clone)]
pub struct FleetRolloutArgs {
    /// The rules version to roll out (it must be published in the agents' repository).
    #[arg(long, value_name = "V")]
    release: Option<u64>,
    /// Seconds each ring runs the release before its gates are checked.
    #[arg(long, value_name = "S", default_value_t = 300.0)]
    soak_s: f64,
    /// Seconds admitted hosts have to report the release; those that do not count against the gate.
    #[arg(long, value_name = "S", default_value_t = 600.0)]
    install_timeout_s: f64,
    /// Seconds to listen for the fleet's health before the first ring.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    discover_s: f64,
    /// Hosts the fleet has; any that do not report count against every ring's gate.
    #[arg(long, value_name = "N")]
    expect_hosts: Option<u32>,
    /// Seconds after which a silent controller's rollout may be resumed by another.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    lease_s: f64,
    /// Mean evaluation time per event the release may take, nanoseconds.
    #[arg(long, value_name = "NS", default_value_t = 100_000)]
    max_mean_eval_ns: u64,
    /// NATS credentials file.
    #[arg(long, value_name = "FILE")]
    fleet_creds: Option<PathBuf>,
    /// CA certificates (PEM) for a tls:// --fleet.
    #[arg(long, value_name = "FILE")]
    fleet_ca_file: Option<PathBuf>,
}

fn seconds(flag: &str, value: f64) -> Result<std::time::Duration, ContentError> {
    if !(0.0..=86_400.0 * 30.0).contains(&value) {
        return Err(ContentError::failed(format!(
            "--{flag} {value} is not within 0..=2592000"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

impl FleetRolloutArgs {
    fn rollout(
        self,
        url: String,
        rings: &[u32],
        summary_json: Option<PathBuf>,
    ) -> Result<FleetRollout, ContentError> {
        let release = self
            .release
            .filter(|v| *v > 0)
            .ok_or_else(|| ContentError::failed("--fleet URL needs --release V (V > 0)"))?;
        rollout::ring_sizes(100, rings)?;
        if rings.len() > crate::fleet::protocol::MAX_RINGS {
            return Err(ContentError::failed(format!(
                "--rings: at most {} rings",
                crate::fleet::protocol::MAX_RINGS
            )));
        }
        Ok(FleetRollout {
            url,
            creds: self.fleet_creds,
            ca_file: self.fleet_ca_file,
            release,
            rings: rings.iter().map(|&p| p as u8).collect(),
            soak: seconds("soak-s", self.soak_s)?,
            install_timeout: seconds("install-timeout-s", self.install_timeout_s)?,
            discover: seconds("discover-s", self.discover_s)?,
            expect_hosts: self.expect_hosts,
            lease: seconds("lease-s", self.lease_s)?.max(std::time::Duration::from_millis(300)),
            summary_json,
            gates: rollout::Gates {
                max_mean_eval_ns: self.max_mean_eval_ns,
                ..rollout::Gates::default()
            },
        })
    }
}

/// How an HTTP(S) repository is reached (ignored for a directory).
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// PEM certificates of a private CA, trusted in addition to the platform's store.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Seconds one request may take, connecting included (3 tries per file).
    #[arg(long, value_name = "S", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_s: u64,
}

impl HttpArgs {
    fn settings(&self) -> crate::http::HttpSettings {
        let timeout = std::time::Duration::from_secs(self.timeout_s);
        crate::http::HttpSettings {
            connect_timeout: timeout.min(std::time::Duration::from_secs(10)),
            timeout,
            ca_file: self.ca_file.clone(),
            ..crate::http::HttpSettings::default()
        }
    }
}

/// A top-level TUF role, as `rotate --role` names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotatedRole {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl RotatedRole {
    fn role_type(self) -> tough::schema::RoleType {
        use tough::schema::RoleType;
        match self {
            Self::Root => RoleType::Root,
            Self::Targets => RoleType::Targets,
            Self::Snapshot => RoleType::Snapshot,
            Self::Timestamp => RoleType::Timestamp,
        }
    }
}

fn signatures_line(count: SignatureCount) -> String {
    format!(
        "{} of {} targets signatures needed{}",
        count.present,
        count.needed,
        if count.met() {
            "; ready to publish"
        } else {
            ""
        }
    )
}

/// Runs one `fsense content ...` command; returns the process exit code (0 ok, 2 invalid content
/// or refused, 1 other failure) after printing one-line errors to stderr as `error: ...`.
pub fn run(cmd: ContentCommand) -> ExitCode {
    run_with(cmd, None)
}

/// What runs a rollout on the real fleet (the `fsense` binary's NATS controller).
pub type FleetRunner = fn(FleetRollout) -> Result<String, ContentError>;

/// [`run`], with the controller for `rollout --fleet nats://...`.
pub fn run_with(cmd: ContentCommand, run_fleet: Option<FleetRunner>) -> ExitCode {
    match execute(cmd, run_fleet) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn execute(cmd: ContentCommand, run_fleet: Option<FleetRunner>) -> Result<String, ContentError> {
    match cmd {
        ContentCommand::Keygen {
            out_dir,
            targets_keys,
            targets_threshold,
        } => {
            let targets = match (targets_keys, targets_threshold) {
                (Some(keys), Some(threshold)) => tuf::TargetsKeys::Shared { keys, threshold },
                _ => tuf::TargetsKeys::Single,
            };
            let root = tuf::keygen_with(&out_dir, targets)?;
            Ok(format!(
                "keys written to {}; trust anchor {}",
                out_dir.display(),
                root.display()
            ))
        }
        ContentCommand::Stage { rules, keys, repo } => {
            let staged = signing::stage(&rules, &keys, &repo, &tuf::Lifetimes::default())?;
            Ok(format!(
                "staged rules version {} in {}; {}",
                staged.rules_version,
                repo.display(),
                signatures_line(staged.signatures)
            ))
        }
        ContentCommand::Sign {
            repo,
            key,
            expect_sha256,
        } => {
            let signed = signing::sign_expecting(&repo, &key, expect_sha256.as_deref())?;
            let release = &signed.release;
            Ok(format!(
                "release {} (rules version {}, sha256 {}, {} bytes): {}; {}",
                release.name,
                release.version,
                release.sha256,
                release.length,
                if signed.added {
                    "signature added"
                } else {
                    "this key had signed already; nothing added"
                },
                signatures_line(signed.signatures)
            ))
        }
        ContentCommand::Rotate {
            repo,
            keys,
            new_keys,
            role,
        } => {
            let version =
                signing::rotate(&keys, &new_keys, &repo, role.map(RotatedRole::role_type))?;
            Ok(format!(
                "wrote root version {version} to {} ({} moved to the keys of {}); {} now holds the new root",
                repo.display(),
                role.map_or_else(
                    || "every role".to_owned(),
                    |r| format!("{r:?}").to_lowercase()
                ),
                new_keys.display(),
                new_keys.join(tuf::ROOT_FILE).display()
            ))
        }
        ContentCommand::Publish { rules, keys, repo } => {
            let published = match rules {
                Some(rules) => tuf::publish(&rules, &keys, &repo)?,
                None => signing::publish_staged(&keys, &repo, &tuf::Lifetimes::default())?,
            };
            Ok(format!(
                "published rules version {} to {} (targets metadata v{}, snapshot v{}, timestamp v{})",
                published.rules_version,
                repo.display(),
                published.metadata.targets,
                published.metadata.snapshot,
                published.metadata.timestamp
            ))
        }
        ContentCommand::Verify { repo, root, http } => {
            let fetched = tuf::verify_at(&RepoLocation::parse(&repo, &http.settings()), &root)?;
            Ok(format!(
                "ok: rules version {} ({} rules) verified through TUF and valid",
                fetched.rules.version(),
                fetched.rules.len()
            ))
        }
        ContentCommand::Update {
            repo,
            root,
            state_dir,
            http,
        } => Ok(
            match StateDir::open(&state_dir)?
                .update_from(&RepoLocation::parse(&repo, &http.settings()), &root)?
            {
                UpdateOutcome::Installed {
                    from: Some(from),
                    to,
                } => format!("installed rules version {to} (was {from})"),
                UpdateOutcome::Installed { from: None, to } => {
                    format!("installed rules version {to}")
                }
                UpdateOutcome::UpToDate { version } => {
                    format!("up to date: rules version {version}")
                }
                UpdateOutcome::SkippedRolledBack { newest, active } => format!(
                    "not installing rules version {newest}: it was rolled back here; active version {}",
                    active.map_or_else(|| "none".to_owned(), |v| v.to_string())
                ),
            },
        ),
        ContentCommand::Rollback { state_dir } => {
            let done = StateDir::open(&state_dir)?.rollback()?;
            Ok(match done.to {
                Some(to) => format!("rolled back from rules version {} to {to}", done.from),
                None => format!(
                    "rolled back from rules version {}; no content is active now",
                    done.from
                ),
            })
        }
        ContentCommand::Rollout {
            fleet,
            simulate,
            rings,
            repo,
            root,
            seed,
            inject_fault,
            events_per_host,
            summary_json,
            real,
        } => {
            let simulated = simulate || fleet.parse::<u32>().is_ok();
            if !simulated {
                let run = run_fleet.ok_or_else(|| {
                    ContentError::failed("this build of fsense has no fleet support (NATS)")
                })?;
                return run(real.rollout(fleet, &rings, summary_json)?);
            }
            let fleet = fleet.parse::<u32>().map_err(|_| {
                ContentError::failed(format!(
                    "--simulate needs --fleet N (a number), not {fleet:?}"
                ))
            })?;
            let (Some(repo), Some(root)) = (repo, root) else {
                return Err(ContentError::failed(
                    "a simulated rollout needs --repo REPO and --root ROOT",
                ));
            };
            let config = SimulationConfig {
                fleet,
                rings,
                seed,
                fault_rate: inject_fault,
                events_per_host,
            };
            let summary = rollout::simulate(&repo, &root, &config)?;
            let json = serde_json::to_string_pretty(&summary)
                .map_err(|e| ContentError::failed(format!("cannot serialize the summary: {e}")))?;
            if let Some(path) = summary_json {
                fsense_safefs::write_atomic(
                    &path,
                    format!("{json}\n").as_bytes(),
                    fsense_safefs::Visibility::Private,
                )
                .map_err(crate::fsio::safefs_error)?;
            }
            Ok(json)
        }
    }
}
