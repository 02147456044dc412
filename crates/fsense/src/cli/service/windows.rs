//! The service manager side of `fsense service` (the `windows-service` crate): install,
//! uninstall, and the service's main function.

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceDependency, ServiceErrorControl, ServiceExitCode, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState, ServiceStatus,
    ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use super::{
    Control, ControlAnswer, DISPLAY_NAME, DRIVER_SERVICE_NAME, LOG_FILE, SERVICE_NAME, ServiceEnd,
    StopHandshake, data_dir, parse_watch, service_end,
};
use crate::cli::{Failure, watch};
use crate::ffi::service as ffi;

/// Restart after a failure: twice after 5 s, then after 60 s; the count resets after a day.
const RESTART_DELAYS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(5),
    Duration::from_secs(60),
];
const FAILURE_RESET: Duration = Duration::from_secs(24 * 60 * 60);
/// How long `uninstall` waits for a running service to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `watch` arguments the process was started with (`service run ...`), for the service
/// main function, which the dispatcher calls without them.
static WATCH_ARGS: OnceLock<Vec<String>> = OnceLock::new();

fn failure(what: &str, e: windows_service::Error) -> Failure {
    Failure::new(format!("{what}: {e}"))
}

pub fn install(launch_arguments: &[String]) -> Result<(), Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(format!("cannot find fsense.exe: {e}")))?;
    if let Some(parent) = data_dir().parent() {
        fsense_safefs::check_dir_path(parent).map_err(|e| Failure::new(e.to_string()))?;
    }
    ffi::ensure_admin_dir(&data_dir()).map_err(Failure::new)?;
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| failure("cannot open the service manager (run as administrator)", e))?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments: launch_arguments.iter().map(OsString::from).collect(),
        dependencies: vec![ServiceDependency::Service(DRIVER_SERVICE_NAME.into())],
        // LocalSystem.
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(|e| failure(&format!("cannot create service {SERVICE_NAME}"), e))?;
    service
        .set_description("Reads file events from the fsense driver and writes OCSF JSON lines")
        .map_err(|e| failure("cannot set the description", e))?;
    let actions = RESTART_DELAYS
        .iter()
        .map(|&delay| ServiceAction {
            action_type: ServiceActionType::Restart,
            delay,
        })
        .collect();
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(FAILURE_RESET),
            reboot_msg: None,
            command: None,
            actions: Some(actions),
        })
        .map_err(|e| failure("cannot set the recovery actions", e))?;
    // A stop with a failure exit code (not only a crash) triggers the recovery actions.
    service
        .set_failure_actions_on_non_crash_failures(true)
        .map_err(|e| failure("cannot enable recovery on failure exits", e))?;
    Ok(())
}

pub fn uninstall() -> Result<(), Failure> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| failure("cannot open the service manager (run as administrator)", e))?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(|e| failure(&format!("cannot open service {SERVICE_NAME}"), e))?;
    let status = service
        .query_status()
        .map_err(|e| failure("cannot query the service", e))?;
    if status.current_state != ServiceState::Stopped {
        // Already stopping is fine; the wait below covers it.
        let _ = service.stop();
        let end = Instant::now() + STOP_TIMEOUT;
        loop {
            let state = service
                .query_status()
                .map_err(|e| failure("cannot query the service", e))?
                .current_state;
            if state == ServiceState::Stopped {
                break;
            }
            if Instant::now() >= end {
                return Err(Failure::new(format!(
                    "service {SERVICE_NAME} did not stop within {} s",
                    STOP_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    service
        .delete()
        .map_err(|e| failure(&format!("cannot delete service {SERVICE_NAME}"), e))
}

/// `fsense service run ...`: hands the process to the service manager's dispatcher, which
/// calls [`service_main`] on its own thread and returns when the service has stopped.
pub fn run_dispatcher(watch: Vec<String>) -> Result<(), Failure> {
    let _ = WATCH_ARGS.set(watch);
    ffi::start_dispatcher(SERVICE_NAME, service_main).map_err(|e| {
        failure(
            "cannot connect to the service manager (`fsense service run` is started by it, not by hand)",
            e,
        )
    })
}

fn service_main(_arguments: Vec<OsString>) {
    // Nowhere to report this but the log, which may be what failed.
    if let Err(e) = run_service() {
        eprintln!("fsense service: {e}");
    }
}

/// `%ProgramData%\\fsense\\agent.log`, through the same rules as every output (review N14 /
/// driver review H2): the way to the directory checked (`fsense-safefs`: no reparse point), the
/// directory created for Administrators and SYSTEM only or, when it exists, refused unless one of
/// them owns it; the log opened without following a reparse point, refused unless one of them
/// owns it, and given their access list.
fn open_log() -> Result<std::fs::File, String> {
    let dir = data_dir();
    if let Some(parent) = dir.parent() {
        fsense_safefs::check_dir_path(parent).map_err(|e| e.to_string())?;
    }
    ffi::ensure_admin_dir(&dir)?;
    let log_path = dir.join(LOG_FILE);
    let log = fsense_safefs::append_private(&log_path).map_err(|e| e.to_string())?;
    ffi::restrict_admin_file(&log_path)?;
    Ok(log)
}

fn run_service() -> Result<(), String> {
    let log = open_log()?;
    // From here on, everything the agent says on stderr goes to the log.
    ffi::redirect_stderr(log)
        .map_err(|e| format!("cannot log to {}: {e}", data_dir().join(LOG_FILE).display()))?;
    eprintln!("fsense service: starting (pid {})", std::process::id());

    let handshake = StopHandshake::new();
    let handler = {
        let handshake = handshake.clone();
        move |control: ServiceControl| -> ServiceControlHandlerResult {
            let control = match control {
                ServiceControl::Stop => Control::Stop,
                ServiceControl::Shutdown => Control::Shutdown,
                ServiceControl::Interrogate => Control::Interrogate,
                _ => Control::Other,
            };
            match handshake.on_control(control) {
                ControlAnswer::Stopping | ControlAnswer::Accepted => {
                    ServiceControlHandlerResult::NoError
                }
                ControlAnswer::NotImplemented => ServiceControlHandlerResult::NotImplemented,
            }
        }
    };
    let status = service_control_handler::register(SERVICE_NAME, handler)
        .map_err(|e| format!("cannot register the control handler: {e}"))?;
    let report = |state: ServiceState, accept: ServiceControlAccept, exit: ServiceExitCode| {
        status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: exit,
            checkpoint: 0,
            wait_hint: Duration::from_secs(10),
            process_id: None,
        })
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::Win32(0),
    )
    .map_err(|e| format!("cannot report Running: {e}"))?;

    let args = WATCH_ARGS.get().cloned().unwrap_or_default();
    let outcome = parse_watch(&args)
        .and_then(|w| watch::run_until(w, handshake.flag()))
        .map(|_| ());
    if let Err(f) = &outcome {
        eprintln!("error: {}", f.message.replace(['\n', '\r'], " "));
    }
    let exit = match service_end(&outcome, handshake.stop_requested()) {
        ServiceEnd::Clean => {
            eprintln!("fsense service: stopped");
            ServiceExitCode::Win32(0)
        }
        ServiceEnd::Failed { code } => {
            eprintln!("fsense service: failed (exit {code}); the service manager restarts it");
            ServiceExitCode::ServiceSpecific(code)
        }
    };
    report(ServiceState::Stopped, ServiceControlAccept::empty(), exit)
        .map_err(|e| format!("cannot report Stopped: {e}"))
}
