//! The fanotify group, its marks, and the encoding of its events into batches.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fsense_proto::{BatchWriter, EventRecord, MAX_BATCH_BYTES, RecordFlags, Utf16Path};
use serde::Serialize;

use super::parse::{
    DirFidName, FAN_CLOSE_WRITE, FAN_CREATE, FAN_MODIFY, FAN_ONDIR, FAN_Q_OVERFLOW, FanEvents,
};
use super::write_sessions::{MAX_QUIET_SESSIONS, WriteSessionStats, WriteSessions};
use super::{is_under, join};
use crate::ffi::linux as sys;
use crate::paths::linux_bytes_to_utf16le;
use crate::procfs::ProcClock;
use crate::time::now_ticks;

/// `IoStatus.Information` of a create that created the file (what the driver reports).
const FILE_CREATED: u64 = 2;

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("fsense watch needs root (CAP_SYS_ADMIN) for fanotify file-system marks")]
    NotPermitted,
    #[error(
        "this kernel does not offer fanotify with FAN_REPORT_DFID_NAME (Linux 5.9 or later): {0}"
    )]
    Unsupported(io::Error),
    #[error("cannot watch {path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Which kernel events stand for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEvents {
    /// `FAN_MODIFY` for the first write of a session (the rest quieted), and `FAN_CLOSE_WRITE`.
    FirstAndClose,
    /// `FAN_CLOSE_WRITE` only.
    CloseOnly,
}

/// What the source saw besides events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStats {
    /// Events read from the kernel.
    pub kernel_events: u64,
    /// `FAN_Q_OVERFLOW` events: each stands for at least one lost event.
    pub overflows: u64,
    /// Events outside the watched paths (the mark covers the whole file system).
    pub outside: u64,
    /// Events of our own process (not reported, no sequence number).
    pub self_excluded: u64,
    /// Events whose directory could no longer be opened (deleted before we looked).
    pub unresolved: u64,
    /// Reads whose bytes did not parse (the rest of that read was skipped).
    pub parse_errors: u64,
    /// Most events returned by one read: a lower bound of the kernel queue's high-water mark.
    pub queue_high_water: u64,
    /// Sequence numbers handed out (records plus overflows).
    pub generated: u64,
    /// Write sessions whose repeated `FAN_MODIFY` events the kernel was told to skip.
    pub write_sessions: WriteSessionStats,
}

/// A fanotify group watching some directories.
pub struct FanotifySource {
    group: File,
    /// One open directory per watched file system, for `open_by_handle_at`.
    mounts: Vec<([u8; 8], File)>,
    roots: Vec<Vec<u8>>,
    clock: ProcClock,
    self_pid: i32,
    next_sequence: u64,
    lost_since_batch: u64,
    stats: SourceStats,
    write_sessions: WriteSessions,
    read_buf: Vec<u8>,
    batch_buf: Vec<u8>,
}

/// Per-read caches: one directory lookup and one /proc read per distinct key and read.
#[derive(Default)]
struct ReadCaches {
    dirs: HashMap<Vec<u8>, Option<Vec<u8>>>,
    start_times: HashMap<i32, u64>,
}

impl FanotifySource {
    /// Creates the group and marks the file system of every directory.
    pub fn open(dirs: &[PathBuf], writes: WriteEvents) -> Result<Self, WatchError> {
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_REPORT_DFID_NAME
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK;
        let event_f_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        let group =
            sys::fanotify_init(flags, event_f_flags).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => WatchError::NotPermitted,
                _ => WatchError::Unsupported(e),
            })?;
        let mask = match writes {
            WriteEvents::FirstAndClose => FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ONDIR,
            WriteEvents::CloseOnly => FAN_CREATE | FAN_CLOSE_WRITE | FAN_ONDIR,
        };
        let mut mounts: Vec<([u8; 8], File)> = Vec::new();
        let mut roots = Vec::new();
        for dir in dirs {
            let err = |source| WatchError::Path {
                path: dir.clone(),
                source,
            };
            let canonical = fs::canonicalize(dir).map_err(err)?;
            if !canonical.is_dir() {
                return Err(err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                )));
            }
            let handle = File::open(&canonical).map_err(err)?;
            let fsid = sys::fsid(&handle).map_err(err)?;
            if !mounts.iter().any(|(id, _)| *id == fsid) {
                sys::fanotify_mark(
                    &group,
                    libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                    mask,
                    &canonical,
                )
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EPERM) => WatchError::NotPermitted,
                    Some(libc::ENODEV | libc::EXDEV | libc::EOPNOTSUPP) => err(io::Error::new(
                        e.kind(),
                        format!("its file system cannot report file handles to fanotify ({e})"),
                    )),
                    _ => err(e),
                })?;
                mounts.push((fsid, handle));
            }
            roots.push(canonical.as_os_str().as_bytes().to_vec());
        }
        Ok(Self {
            group,
            mounts,
            roots,
            clock: ProcClock::new(),
            self_pid: std::process::id() as i32,
            next_sequence: 1,
            lost_since_batch: 0,
            stats: SourceStats::default(),
            write_sessions: WriteSessions::new(MAX_QUIET_SESSIONS),
            read_buf: vec![0u8; 256 * 1024],
            batch_buf: vec![0u8; MAX_BATCH_BYTES],
        })
    }

    /// The watched directories, canonical.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        self.roots
            .iter()
            .map(|r| Path::new(std::ffi::OsStr::from_bytes(r)))
    }

    /// Waits up to `timeout_ms` for events.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<bool> {
        sys::wait_readable(self.group.as_fd(), timeout_ms)
    }

    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    /// Reads the events the kernel has queued right now and hands the resulting batches to
    /// `emit`, in order. Returns the number of kernel events read. Stops after a bounded number
    /// of reads, so that a file system busy without pause cannot keep the caller from checking
    /// for a stop request (what is left is read on the next call).
    pub fn drain(&mut self, emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
        const MAX_READS: usize = 256;
        // Metadata, info header, fsid, handle header, the largest handle (MAX_HANDLE_SZ) and
        // the longest name with its NUL, rounded up.
        const MAX_EVENT_LEN: usize = 512;
        let mut total = 0;
        for _ in 0..MAX_READS {
            let n = match self.group.read(&mut self.read_buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += self.encode_read(n, emit)?;
            // Room left for another event means the queue was empty when the kernel stopped
            // copying: what arrived since waits for the next round instead of being read one
            // event at a time while a writer keeps going.
            if n + MAX_EVENT_LEN <= self.read_buf.len() {
                break;
            }
        }
        Ok(total)
    }

    /// Turns the events of one read into batches.
    fn encode_read(
        &mut self,
        len: usize,
        emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let Self {
            group,
            mounts,
            roots,
            clock,
            self_pid,
            next_sequence,
            lost_since_batch,
            stats,
            write_sessions,
            read_buf,
            batch_buf,
        } = self;
        let mut caches = ReadCaches::default();
        let mut batch = BatchWriter::new(batch_buf).map_err(io::Error::other)?;
        let mut path = Vec::new();
        let mut utf16 = Vec::new();
        let mut events = 0u64;
        for item in FanEvents::new(&read_buf[..len]) {
            let event = match item {
                Ok(e) => e,
                Err(_) => {
                    stats.parse_errors += 1;
                    break;
                }
            };
            events += 1;
            if event.mask & FAN_Q_OVERFLOW != 0 {
                stats.overflows += 1;
                // A lost close-write would leave its session quiet for good.
                write_sessions.flush(group);
                *next_sequence += 1;
                *lost_since_batch += 1;
                continue;
            }
            if event.pid == *self_pid {
                stats.self_excluded += 1;
                continue;
            }
            let Some(dfid) = event.dir_fid_name else {
                stats.unresolved += 1;
                continue;
            };
            let Some(dir) = resolve_dir(mounts, &mut caches, &dfid) else {
                stats.unresolved += 1;
                continue;
            };
            join(dir, dfid.name, &mut path);
            if !roots.iter().any(|r| is_under(&path, r)) {
                stats.outside += 1;
                continue;
            }
            if event.mask & FAN_ONDIR == 0 {
                write_sessions.observe(group, event.mask, &path);
            }
            linux_bytes_to_utf16le(&path, &mut utf16);
            let (units, cut) = Utf16Path::truncating(&utf16, usize::MAX);
            let pid = u32::try_from(event.pid).unwrap_or(0);
            let create_time = *caches
                .start_times
                .entry(event.pid)
                .or_insert_with(|| clock.start_time(pid).unwrap_or(0));
            let now = now_ticks();
            let mut records = [None, None];
            if event.mask & FAN_CREATE != 0 {
                let mut r = EventRecord::create(units, Utf16Path::EMPTY);
                r.information = FILE_CREATED;
                if event.mask & FAN_ONDIR != 0 {
                    r.flags.insert(RecordFlags::DIRECTORY);
                }
                records[0] = Some(r);
            }
            if event.mask & (FAN_MODIFY | FAN_CLOSE_WRITE) != 0 && event.mask & FAN_ONDIR == 0 {
                records[1] = Some(EventRecord::write(units, Utf16Path::EMPTY));
            }
            for mut r in records.into_iter().flatten() {
                if cut {
                    r.flags.insert(RecordFlags::PATH_TRUNCATED);
                }
                r.sequence = *next_sequence;
                r.timestamp = now;
                r.pid = pid;
                r.process_create_time = create_time;
                if batch.remaining() < r.encoded_len() {
                    let n = batch
                        .finish(std::mem::take(lost_since_batch))
                        .map_err(io::Error::other)?;
                    emit(&batch_buf[..n])?;
                    batch = BatchWriter::new(batch_buf).map_err(io::Error::other)?;
                }
                batch.push(&r).map_err(io::Error::other)?;
                *next_sequence += 1;
            }
        }
        stats.kernel_events += events;
        stats.queue_high_water = stats.queue_high_water.max(events);
        stats.generated = *next_sequence - 1;
        stats.write_sessions = write_sessions.stats();
        if !batch.is_empty() {
            let n = batch
                .finish(std::mem::take(lost_since_batch))
                .map_err(io::Error::other)?;
            emit(&batch_buf[..n])?;
        }
        Ok(events)
    }
}

/// The current path of the directory a file handle names, via the per-read cache.
fn resolve_dir<'c>(
    mounts: &[([u8; 8], File)],
    caches: &'c mut ReadCaches,
    dfid: &DirFidName<'_>,
) -> Option<&'c [u8]> {
    let mut key = Vec::with_capacity(12 + dfid.handle.len());
    key.extend_from_slice(&dfid.fsid);
    key.extend_from_slice(&dfid.handle_type.to_ne_bytes());
    key.extend_from_slice(dfid.handle);
    caches
        .dirs
        .entry(key)
        .or_insert_with(|| {
            let (_, mount) = mounts.iter().find(|(id, _)| *id == dfid.fsid)?;
            let fd = sys::open_by_handle(mount, dfid.handle_type, dfid.handle).ok()?;
            let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
            Some(link.as_os_str().as_bytes().to_vec())
        })
        .as_deref()
}
