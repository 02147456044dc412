//! The simulated kernel's bookkeeping for one run: pool, names, contexts, events, threads,
//! handles, the filter registration and the communication port.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use windows_sys::Wdk::Storage::FileSystem::Minifilters::{
    PFLT_CONNECT_NOTIFY, PFLT_DISCONNECT_NOTIFY, PFLT_FILTER_UNLOAD_CALLBACK,
    PFLT_INSTANCE_SETUP_CALLBACK, PFLT_POST_OPERATION_CALLBACK, PFLT_PRE_OPERATION_CALLBACK,
};

/// One pool allocation.
pub struct Allocation {
    pub size: usize,
    pub tag: u32,
}

/// A context allocated by FltAllocateContext.
pub struct Context {
    pub refs: u32,
    pub size: usize,
    /// The stream it is attached to (the file object's FsContext), if any.
    pub attached_to: Option<usize>,
}

/// A synchronization event (auto-reset).
#[derive(Default)]
pub struct SimEvent {
    pub signalled: Mutex<bool>,
    pub cv: Condvar,
}

impl SimEvent {
    pub fn set(&self) {
        if let Ok(mut s) = self.signalled.lock() {
            *s = true;
            self.cv.notify_one();
        }
    }

    /// Waits up to `timeout` (None = forever); consumes the signal. True if signalled.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let Ok(mut s) = self.signalled.lock() else {
            return false;
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        while !*s {
            match deadline {
                None => match self.cv.wait(s) {
                    Ok(g) => s = g,
                    Err(_) => return false,
                },
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    match self.cv.wait_timeout(s, d - now) {
                        Ok((g, _)) => s = g,
                        Err(_) => return false,
                    }
                }
            }
        }
        *s = false;
        true
    }
}

/// A system thread created by the driver.
pub struct SimThread {
    pub join: Option<JoinHandle<()>>,
    pub object_refs: u32,
}

/// The callbacks the driver registered.
#[derive(Clone, Copy)]
pub struct Registration {
    pub pre_create: PFLT_PRE_OPERATION_CALLBACK,
    pub post_create: PFLT_POST_OPERATION_CALLBACK,
    pub pre_write: PFLT_PRE_OPERATION_CALLBACK,
    pub post_write: PFLT_POST_OPERATION_CALLBACK,
    pub pre_set_info: PFLT_PRE_OPERATION_CALLBACK,
    pub post_set_info: PFLT_POST_OPERATION_CALLBACK,
    pub pre_cleanup: PFLT_PRE_OPERATION_CALLBACK,
    pub post_cleanup: PFLT_POST_OPERATION_CALLBACK,
    pub pre_fsctl: PFLT_PRE_OPERATION_CALLBACK,
    pub post_fsctl: PFLT_POST_OPERATION_CALLBACK,
    pub pre_prepare_mdl_write: PFLT_PRE_OPERATION_CALLBACK,
    pub post_prepare_mdl_write: PFLT_POST_OPERATION_CALLBACK,
    pub unload: PFLT_FILTER_UNLOAD_CALLBACK,
    pub instance_setup: PFLT_INSTANCE_SETUP_CALLBACK,
    pub stream_contexts_registered: bool,
}

/// What the simulated file system knows of one file (keyed by its stream, FsContext), for the
/// delete semantics a filter observes (`ifs/irp-mj-cleanup`, the `delete` sample's post-cleanup
/// check).
#[derive(Debug, Default, Clone)]
pub struct SimFile {
    pub open_handles: u32,
    /// The delete disposition (FileDispositionInformation(Ex) without ON_CLOSE).
    pub delete_pending: bool,
    /// The disposition was set with FILE_DISPOSITION_POSIX_SEMANTICS: the name goes away at
    /// the cleanup of this handle even if others stay open.
    pub posix: bool,
    /// FILE_DELETE_ON_CLOSE on the open handle (from the create, or set / cleared by
    /// FileDispositionInformationEx with FILE_DISPOSITION_ON_CLOSE). The plan gives a file whose
    /// deletion it checks a single handle, so one flag per file models it.
    pub delete_on_close: bool,
    /// Gone: every query on it fails with STATUS_FILE_DELETED.
    pub deleted: bool,
}

/// The server port the driver created.
#[derive(Clone, Copy)]
pub struct ServerPort {
    pub handle: isize,
    pub connect: PFLT_CONNECT_NOTIFY,
    pub disconnect: PFLT_DISCONNECT_NOTIFY,
    pub cookie: usize,
    pub open: bool,
}

/// Everything the simulated kernel tracks during one run.
#[derive(Default)]
pub struct World {
    pub allocations: HashMap<usize, Allocation>,
    /// Name-information structures handed out and not yet released (address -> the boxed data).
    pub name_infos: HashMap<usize, crate::ffi::name_storage::NameInfoStorage>,
    pub contexts: HashMap<usize, Context>,
    /// Stream (FsContext) -> attached context address.
    pub stream_contexts: HashMap<usize, usize>,
    pub events: HashMap<usize, Arc<SimEvent>>,
    /// Thread object address -> thread.
    pub threads: HashMap<usize, SimThread>,
    /// Handles the driver holds (threads, registry keys).
    pub open_handles: HashMap<usize, HandleKind>,
    pub security_descriptors: HashMap<usize, u32>,
    pub registration: Option<Registration>,
    pub filter_handle: isize,
    /// The driver object DriverEntry was called with.
    pub driver_object: usize,
    /// Filter handles FltUnregisterFilter released: any later use is a stale handle.
    pub retired_filters: Vec<isize>,
    pub filter_started: bool,
    pub server_port: Option<ServerPort>,
    /// Volume instance handle -> attached?
    pub instances: Vec<(isize, bool)>,
    pub registry_path: Vec<u16>,
    pub queue_capacity: u32,
    /// `BatchRecords` in the service key; 0 = not set.
    pub batch_records: u32,
    pub next_handle: usize,
    /// Last health message the driver handed to FltSendMessage, delivered or not.
    pub last_health: Option<Vec<u8>>,
    pub unloading: bool,
    /// The kernel call to fail during load, and how many pool allocations happened so far.
    pub fail_point: Option<crate::FailPoint>,
    pub pool_allocations: u32,
    pub callbacks_in_flight: u32,
    pub refused_connections: u32,
    /// See [`crate::Tuning::fail_every_nth_batch`].
    pub fail_every_nth_batch: u32,
    /// Batch messages handed to FltSendMessage for a connected consumer, and those it failed.
    pub batch_sends: u64,
    pub failed_batch_sends: u64,
    /// Files of the simulated volume with an open handle or a delete in progress.
    pub files: HashMap<usize, SimFile>,
}

/// What a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleKind {
    Thread(usize),
    /// A key opened by absolute path (ZwOpenKey): the service key's root.
    RegistryKey,
    /// The service's `Parameters` key (IoOpenDriverRegistryKey): where the settings live.
    ParametersKey,
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

/// Locks the world. Panics only if a previous holder panicked, which already failed the run.
pub fn world() -> MutexGuard<'static, Option<World>> {
    WORLD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` on the world if a run is in progress.
pub fn with_world<R>(f: impl FnOnce(&mut World) -> R) -> Option<R> {
    world().as_mut().map(f)
}

pub fn reset(queue_capacity: u32, batch_records: u32) {
    *world() = Some(World {
        queue_capacity,
        batch_records,
        registry_path: "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\fsense"
            .encode_utf16()
            .collect(),
        next_handle: 0x1000,
        ..World::default()
    });
}

pub fn take() -> Option<World> {
    world().take()
}

impl World {
    pub fn new_handle(&mut self) -> usize {
        self.next_handle += 4;
        self.next_handle
    }
}
