//! `fsense service install|uninstall` and the service entry point: the consumer as a Windows
//! service that runs `fsense watch` as LocalSystem, starts at boot after the driver's service,
//! is restarted by the service manager when it fails, logs to `%ProgramData%\fsense` and stops
//! cleanly (final summary written) on a stop request.
//!
//! What can be decided without Windows lives here and is tested on every platform: the
//! service's names, how its command line is assembled from the user's `watch` arguments, the
//! stop handshake between the service manager's control handler and the running watch, and the
//! exit status reported at the end. The service manager calls are in `windows`.
// The service runs on Windows only; elsewhere this module is compiled for its tests and for the
// one-line "Windows-only" answer.
#![cfg_attr(not(windows), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use super::{Cli, Command, Failure, WatchArgs};

#[cfg(windows)]
mod windows;

/// The consumer service's name (`sc.exe query fsense-agent`); the scripts use the same.
pub const SERVICE_NAME: &str = "fsense-agent";
/// What the service manager shows.
pub const DISPLAY_NAME: &str = "fsense agent (file event sensor consumer)";
/// The driver's service (inf/fsense.inf `ServiceName`): the agent starts after it.
pub const DRIVER_SERVICE_NAME: &str = "fsense";
/// Files under the data directory.
pub const LOG_FILE: &str = "agent.log";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";

/// `fsense service <command>`
#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Install the agent service (auto-start, LocalSystem, after the driver, restarted on
    /// failure) running `fsense watch` with the given arguments.
    Install {
        /// The `fsense watch` arguments (directories and options), e.g.
        /// `--args C:\Users --content-repo ... --state-dir ...`. Without --output and
        /// --summary-json, events and the summary go to %ProgramData%\fsense.
        #[arg(long = "args", value_name = "WATCH-ARG", num_args = 1.., required = true,
              allow_hyphen_values = true)]
        watch: Vec<String>,
    },
    /// Stop and remove the agent service.
    Uninstall,
    /// The service's entry point (what the service manager starts; not for interactive use).
    #[command(hide = true)]
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        watch: Vec<String>,
    },
}

pub fn run(command: ServiceCommand) -> Result<ExitCode, Failure> {
    #[cfg(windows)]
    {
        match command {
            ServiceCommand::Install { watch } => {
                let watch = watch_arguments(&watch, &data_dir())?;
                windows::install(&launch_arguments(&watch))?;
                println!(
                    "installed service {SERVICE_NAME} (auto-start after {DRIVER_SERVICE_NAME}); start it with `sc.exe start {SERVICE_NAME}`"
                );
            }
            ServiceCommand::Uninstall => {
                windows::uninstall()?;
                println!("removed service {SERVICE_NAME}");
            }
            ServiceCommand::Run { watch } => windows::run_dispatcher(watch)?,
        }
        Ok(ExitCode::SUCCESS)
    }
    #[cfg(not(windows))]
    {
        let _ = command;
        Err(Failure::new(
            "fsense service is Windows-only (on Linux, run `fsense watch` under systemd)",
        ))
    }
}

/// `%ProgramData%\fsense`: logs, and events and summary unless the arguments say otherwise.
pub fn data_dir() -> PathBuf {
    let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
    PathBuf::from(base).join("fsense")
}

fn has_option(args: &[String], name: &str) -> bool {
    args.iter().any(|a| {
        a == name
            || a.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// The `watch` arguments the service runs with: the user's, plus `--output` and
/// `--summary-json` under `data_dir` when they are not given (a service has no console).
/// Checked by the real `watch` parser, so a mistake fails the install, not every start.
pub fn watch_arguments(given: &[String], data_dir: &Path) -> Result<Vec<String>, Failure> {
    let mut args = given.to_vec();
    for (option, file) in [("--output", EVENTS_FILE), ("--summary-json", SUMMARY_FILE)] {
        if !has_option(given, option) {
            args.push(option.to_owned());
            args.push(data_dir.join(file).display().to_string());
        }
    }
    let watch = parse_watch(&args)?;
    if let Some(url) = &watch.out.sink.sink
        && url::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
    {
        // The service's command line is its ImagePath in the registry, which every local
        // account can read: a secret there is no secret.
        return Err(Failure::new(
            "refusing to store NATS credentials from --sink in the service's command line (its \
             registry ImagePath is readable by every local account): put them in a --nats-creds \
             file",
        ));
    }
    Ok(args)
}

/// The service's command line after the executable: `service run -- <watch arguments>` (the
/// `--` keeps every watch argument, whatever it starts with, an argument of `watch`).
pub fn launch_arguments(watch: &[String]) -> Vec<String> {
    ["service", "run", "--"]
        .into_iter()
        .map(str::to_owned)
        .chain(watch.iter().cloned())
        .collect()
}

/// Parses `watch` arguments exactly as `fsense watch ...` would.
pub fn parse_watch(args: &[String]) -> Result<WatchArgs, Failure> {
    let argv = ["fsense", "watch"]
        .into_iter()
        .map(str::to_owned)
        .chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Watch(w),
        }) => Ok(w),
        Ok(_) => Err(Failure::new(
            "the service arguments are not `watch` arguments",
        )),
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            Err(Failure::new(format!(
                "invalid service arguments for `fsense watch`: {}",
                first.strip_prefix("error: ").unwrap_or(first)
            )))
        }
    }
}

/// A control request from the service manager, as far as the agent cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stop,
    Shutdown,
    Interrogate,
    Other,
}

/// The answer to a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAnswer {
    /// Accepted; the watch is stopping (it drains, writes the summary, then the service
    /// reports Stopped).
    Stopping,
    Accepted,
    NotImplemented,
}

/// The stop handshake: the control handler (a service-manager thread) raises the flag that the
/// running watch polls between two waits; the watch then delivers what is queued, writes the
/// final summary and returns, and the service reports how it ended.
#[derive(Debug, Clone, Default)]
pub struct StopHandshake {
    stop: Arc<AtomicBool>,
}

impl StopHandshake {
    pub fn new() -> Self {
        Self::default()
    }

    /// The flag `watch` runs until.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn on_control(&self, control: Control) -> ControlAnswer {
        match control {
            Control::Stop | Control::Shutdown => {
                self.stop.store(true, Ordering::SeqCst);
                ControlAnswer::Stopping
            }
            Control::Interrogate => ControlAnswer::Accepted,
            Control::Other => ControlAnswer::NotImplemented,
        }
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// How the service ends, as reported to the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEnd {
    /// Stopped on request: no recovery action.
    Clean,
    /// A failure (service-specific exit code): the recovery actions restart the service.
    Failed { code: u32 },
}

/// A watch that ends without a stop request has failed, even when it returned success: the
/// service manager must restart it.
pub fn service_end(outcome: &Result<(), Failure>, stop_requested: bool) -> ServiceEnd {
    match outcome {
        Ok(()) if stop_requested => ServiceEnd::Clean,
        Ok(()) => ServiceEnd::Failed { code: 1 },
        Err(f) => ServiceEnd::Failed {
            code: u32::from(f.code.max(1)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn missing_output_and_summary_go_to_the_data_directory() {
        let dir = Path::new("/pd/fsense");
        let args = watch_arguments(&strings(&["/watched", "--exclude", "**/*.tmp"]), dir).unwrap();
        assert_eq!(
            args,
            strings(&[
                "/watched",
                "--exclude",
                "**/*.tmp",
                "--output",
                "/pd/fsense/events.jsonl",
                "--summary-json",
                "/pd/fsense/summary.json",
            ])
        );
    }

    #[test]
    fn given_output_and_summary_are_kept_in_either_spelling() {
        let given = strings(&["/w", "--output=/o.jsonl", "--summary-json", "/s.json"]);
        assert_eq!(watch_arguments(&given, Path::new("/pd")).unwrap(), given);
    }

    #[test]
    fn bad_watch_arguments_fail_the_install_in_one_line() {
        let e =
            watch_arguments(&strings(&["/w", "--no-such-option"]), Path::new("/pd")).unwrap_err();
        assert!(
            e.message.starts_with("invalid service arguments"),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'));
        let e = watch_arguments(&[], Path::new("/pd")).unwrap_err();
        assert!(e.message.contains("required"), "{}", e.message);
    }

    #[test]
    fn credentials_in_the_sink_url_are_never_stored_in_the_service_command_line() {
        for url in [
            "nats://fsense:S3cret@127.0.0.1:4222/fsense.ev",
            "tls://token@nats.example/fsense.ev",
        ] {
            let e =
                watch_arguments(&strings(&["/w", "--sink", url]), Path::new("/pd")).unwrap_err();
            assert!(e.message.contains("--nats-creds"), "{}", e.message);
            assert!(
                !e.message.contains("S3cret") && !e.message.contains("token"),
                "{}",
                e.message
            );
        }
        let plain = strings(&["/w", "--sink", "nats://127.0.0.1:4222/fsense.ev"]);
        assert!(watch_arguments(&plain, Path::new("/pd")).is_ok());
    }

    #[test]
    fn the_launch_command_line_parses_back_to_the_same_watch() {
        let watch = watch_arguments(
            &strings(&[
                "/a dir/with space",
                "--update-interval-s",
                "60",
                "--exclude",
                "*.tmp",
            ]),
            Path::new("/pd"),
        )
        .unwrap();
        let argv = std::iter::once("fsense".to_owned()).chain(launch_arguments(&watch));
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Service(ServiceCommand::Run { watch: back }) = cli.command else {
            panic!("not `service run`: {:?}", cli.command);
        };
        assert_eq!(back, watch);
        let parsed = parse_watch(&back).unwrap();
        assert_eq!(parsed.dirs, vec![PathBuf::from("/a dir/with space")]);
    }

    #[test]
    fn install_takes_every_watch_argument_after_args() {
        let argv = [
            "fsense",
            "service",
            "install",
            "--args",
            "--exclude",
            "**/x",
            "C:\\Users",
        ];
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Service(ServiceCommand::Install { watch }) = cli.command else {
            panic!("not `service install`: {:?}", cli.command);
        };
        assert_eq!(watch, strings(&["--exclude", "**/x", "C:\\Users"]));
    }

    #[test]
    fn stop_and_shutdown_raise_the_flag_interrogate_does_not() {
        let handshake = StopHandshake::new();
        let flag = handshake.flag();
        assert_eq!(
            handshake.on_control(Control::Interrogate),
            ControlAnswer::Accepted
        );
        assert_eq!(
            handshake.on_control(Control::Other),
            ControlAnswer::NotImplemented
        );
        assert!(!flag.load(Ordering::SeqCst));
        assert_eq!(handshake.on_control(Control::Stop), ControlAnswer::Stopping);
        assert!(flag.load(Ordering::SeqCst) && handshake.stop_requested());
        let other = StopHandshake::new();
        assert_eq!(other.on_control(Control::Shutdown), ControlAnswer::Stopping);
        assert!(other.stop_requested());
    }

    #[test]
    fn the_stop_flag_ends_a_waiting_loop_on_another_thread() {
        let handshake = StopHandshake::new();
        let flag = handshake.flag();
        let watcher = std::thread::spawn(move || {
            let mut polls = 0u32;
            while !flag.load(Ordering::SeqCst) && polls < 10_000 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                polls += 1;
            }
            polls < 10_000
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        handshake.on_control(Control::Stop);
        assert!(watcher.join().unwrap(), "the loop did not see the stop");
    }

    #[test]
    fn only_a_requested_stop_is_clean() {
        assert_eq!(service_end(&Ok(()), true), ServiceEnd::Clean);
        assert_eq!(service_end(&Ok(()), false), ServiceEnd::Failed { code: 1 });
        let failed = Err(Failure::new("cannot open the port"));
        assert_eq!(service_end(&failed, true), ServiceEnd::Failed { code: 2 });
    }

    #[test]
    fn the_service_command_is_windows_only_elsewhere() {
        if cfg!(windows) {
            return;
        }
        let e = run(ServiceCommand::Uninstall).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("Windows-only"));
    }
}
