//! The fanotify group, its marks, and the encoding of its events into batches.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use fsense_proto::{BatchWriter, EventRecord, MAX_BATCH_BYTES, RecordFlags, Utf16Path};
use serde::Serialize;

use super::parse::{
    DirFidName, FAN_CLOSE_WRITE, FAN_CREATE, FAN_MODIFY, FAN_ONDIR, FAN_Q_OVERFLOW, FAN_RENAME,
    FanEvent, FanEvents,
};
use super::write_sessions::{MAX_QUIET_SESSIONS, WriteSessionStats, WriteSessions};
use super::{is_under, join_onto};
use crate::ffi::linux as sys;
use crate::pipeline::enrich::procfs::ProcClock;
use crate::pipeline::paths::linux_bytes_to_utf16le;
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
    /// Events that could not be given a path (their directory was deleted before the event was
    /// read, or could not be opened by handle): each takes a sequence number that is never
    /// delivered, so it is counted as dropped.
    pub unresolved: u64,
    /// Events whose directory was moved out of the watched paths before they were read, noticed
    /// only after they had been counted as outside (the move came in a later read): counted as
    /// dropped too.
    pub moved_away: u64,
    /// Events whose path was taken back to where it was when the event happened, because their
    /// directory was renamed later in the same read.
    pub re_rooted: u64,
    /// Directories whose path was too long for the kernel to name (`ENAMETOOLONG`) and was
    /// walked up to a watched root instead.
    pub long_paths: u64,
    /// Events whose process had exited before the event was read (`FAN_NOPIDFD`): reported
    /// with the `process_exited` flag and no process creation time.
    pub process_exited: u64,
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
    /// (device, inode) of each root, in the order of `roots`: how a walk up from a directory
    /// recognises a root.
    root_ids: Vec<(u64, u64)>,
    clock: ProcClock,
    self_pid: i32,
    next_sequence: u64,
    lost_since_batch: u64,
    stats: SourceStats,
    write_sessions: WriteSessions,
    read_buf: Vec<u8>,
    batch_buf: Vec<u8>,
    /// The events of the read being encoded, and the bytes of their paths.
    pending: Vec<Pending>,
    arena: Vec<u8>,
    /// Paths counted as outside in the previous read (bounded): a directory move out of the
    /// watched paths seen in this read turns those under it into drops.
    recent_outside: Vec<Vec<u8>>,
}

/// Most directory renames per read whose earlier events get their paths taken back.
const MAX_UNDONE_RENAMES: usize = 64;
/// Most paths remembered from the previous read's outside events.
const MAX_RECENT_OUTSIDE: usize = 1024;
/// Most levels walked up from a directory whose path is too long for the kernel to name.
const MAX_WALK_DEPTH: usize = 4096;

/// The process that caused an event, as known when the event was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    /// Its creation time (FILETIME ticks), read while its pidfd proved it was still that process.
    Started(u64),
    /// It had exited (no pidfd, or it died before /proc could be read).
    Exited,
    /// No pidfd was reported and /proc had nothing (kernels without `FAN_REPORT_PIDFD`).
    Unknown,
}

/// One event of a read, resolved before it is encoded.
#[derive(Debug, Clone)]
struct Pending {
    mask: u64,
    pid: i32,
    actor: Actor,
    /// The path in `arena`; `None` when it could not be resolved.
    path: Option<Range<usize>>,
    /// Renames: the path before the rename.
    old_path: Option<Range<usize>>,
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
        // FAN_REPORT_PIDFD (5.15) names the process as of the event, not as of the read.
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_REPORT_DFID_NAME
            | libc::FAN_REPORT_PIDFD
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK;
        let event_f_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        let group =
            sys::fanotify_init(flags, event_f_flags).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => WatchError::NotPermitted,
                _ => WatchError::Unsupported(e),
            })?;
        let mask = match writes {
            WriteEvents::FirstAndClose => {
                FAN_CREATE | FAN_RENAME | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ONDIR
            }
            WriteEvents::CloseOnly => FAN_CREATE | FAN_RENAME | FAN_CLOSE_WRITE | FAN_ONDIR,
        };
        let mut mounts: Vec<([u8; 8], File)> = Vec::new();
        let mut roots = Vec::new();
        let mut root_ids = Vec::new();
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
            let meta = handle.metadata().map_err(err)?;
            root_ids.push((meta.dev(), meta.ino()));
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
            root_ids,
            clock: ProcClock::new(),
            self_pid: std::process::id() as i32,
            next_sequence: 1,
            lost_since_batch: 0,
            stats: SourceStats::default(),
            write_sessions: WriteSessions::new(MAX_QUIET_SESSIONS),
            read_buf: vec![0u8; 256 * 1024],
            batch_buf: vec![0u8; MAX_BATCH_BYTES],
            pending: Vec::new(),
            arena: Vec::new(),
            recent_outside: Vec::new(),
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
        // Metadata, the pidfd record, and two of (info header, fsid, handle header, the largest
        // handle (MAX_HANDLE_SZ), the longest name with its NUL) for a rename, rounded up.
        const MAX_EVENT_LEN: usize = 1024;
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

    /// Turns the events of one read into batches, in three passes: resolve every event's
    /// path and process now (pass 1), take back the paths of events whose directory was renamed
    /// later in this read (pass 2), then encode (pass 3).
    fn encode_read(
        &mut self,
        len: usize,
        emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let events = self.resolve_read(len);
        self.undo_later_renames();
        self.encode_pending(emit)?;
        self.stats.kernel_events += events;
        self.stats.queue_high_water = self.stats.queue_high_water.max(events);
        self.stats.generated = self.next_sequence - 1;
        self.stats.write_sessions = self.write_sessions.stats();
        Ok(events)
    }

    /// Pass 1: parses the read, takes (and closes) every pidfd, and resolves paths.
    fn resolve_read(&mut self, len: usize) -> u64 {
        let Self {
            mounts,
            roots,
            root_ids,
            clock,
            self_pid,
            stats,
            read_buf,
            pending,
            arena,
            ..
        } = self;
        pending.clear();
        arena.clear();
        let mut caches = ReadCaches::default();
        let mut events = 0u64;
        for item in FanEvents::new(&read_buf[..len]) {
            let event = match item {
                Ok(e) => e,
                Err(_) => {
                    // The kernel wrote this buffer; a parse error means a layout this build does
                    // not know. Pidfds in the unparsed rest cannot be found, so they stay open.
                    stats.parse_errors += 1;
                    break;
                }
            };
            events += 1;
            // Taken first, so that every pidfd is closed whatever happens to its event.
            let pidfd = event.owned_pidfd().and_then(sys::adopt_event_pidfd);
            if event.mask & FAN_Q_OVERFLOW != 0 {
                pending.push(Pending {
                    mask: event.mask,
                    pid: 0,
                    actor: Actor::Unknown,
                    path: None,
                    old_path: None,
                });
                continue;
            }
            if event.pid == *self_pid {
                stats.self_excluded += 1;
                continue;
            }
            // The pidfd is closed inside, once the process is known.
            let actor = actor_of(&event, pidfd, clock, &mut caches);
            let mut resolve = |dfid: Option<DirFidName<'_>>, arena: &mut Vec<u8>| {
                let dfid = dfid?;
                let dir = resolve_dir(mounts, roots, root_ids, stats, &mut caches, &dfid)?;
                let start = arena.len();
                join_onto(dir, dfid.name, arena);
                Some(start..arena.len())
            };
            let (path, old_path) = if event.mask & FAN_RENAME != 0 {
                let new = resolve(event.new_dir_fid_name, arena);
                (new, resolve(event.old_dir_fid_name, arena))
            } else {
                (resolve(event.dir_fid_name, arena), None)
            };
            pending.push(Pending {
                mask: event.mask,
                pid: event.pid,
                actor,
                path,
                old_path,
            });
        }
        events
    }

    /// Pass 2: a directory renamed after some events of this read happened in it made those
    /// events resolve to its new place; they happened at the old one. Renames are undone from
    /// the last to the first, each for the events before it. A directory moved out of the
    /// watched paths also turns the previous read's outside events under it into drops.
    fn undo_later_renames(&mut self) {
        let Self {
            roots,
            stats,
            pending,
            arena,
            recent_outside,
            next_sequence,
            lost_since_batch,
            ..
        } = self;
        let renames: Vec<usize> = pending
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.mask & (FAN_RENAME | FAN_ONDIR) == FAN_RENAME | FAN_ONDIR
                    && p.path.is_some()
                    && p.old_path.is_some()
            })
            .map(|(i, _)| i)
            .take(MAX_UNDONE_RENAMES)
            .collect();
        let inside = |p: &[u8]| roots.iter().any(|r| is_under(p, r));
        for &r in renames.iter().rev() {
            let (Some(new), Some(old)) = (pending[r].path.clone(), pending[r].old_path.clone())
            else {
                continue;
            };
            let new_dir = arena[new].to_vec();
            let old_dir = arena[old].to_vec();
            for earlier in &mut pending[..r] {
                for slot in [&mut earlier.path, &mut earlier.old_path] {
                    let Some(range) = slot.clone() else { continue };
                    if !is_under(&arena[range.clone()], &new_dir) {
                        continue;
                    }
                    let start = arena.len();
                    arena.extend_from_slice(&old_dir);
                    arena.extend_from_within(range.start + new_dir.len()..range.end);
                    *slot = Some(start..arena.len());
                    stats.re_rooted += 1;
                }
            }
            // The previous read resolved its paths after this move (its event came too late
            // for that read): what it counted as outside under the new place was inside.
            if inside(&old_dir) && !inside(&new_dir) {
                let before = recent_outside.len();
                recent_outside.retain(|p| !is_under(p, &new_dir));
                let lost = (before - recent_outside.len()) as u64;
                stats.moved_away += lost;
                stats.outside -= lost.min(stats.outside);
                *next_sequence += lost;
                *lost_since_batch += lost;
            }
        }
    }

    /// Pass 3: sequence numbers and batches.
    fn encode_pending(&mut self, emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let Self {
            group,
            roots,
            next_sequence,
            lost_since_batch,
            stats,
            write_sessions,
            batch_buf,
            pending,
            arena,
            recent_outside,
            ..
        } = self;
        recent_outside.clear();
        let mut batch = BatchWriter::new(batch_buf).map_err(io::Error::other)?;
        let mut utf16 = Vec::new();
        let mut old_utf16 = Vec::new();
        for p in pending.iter() {
            if p.mask & FAN_Q_OVERFLOW != 0 {
                stats.overflows += 1;
                // A lost close-write would leave its session quiet for good.
                write_sessions.flush(group);
                *next_sequence += 1;
                *lost_since_batch += 1;
                continue;
            }
            let Some(range) = p.path.clone() else {
                // Seen but not attributable: a drop, never only a counter of its own.
                stats.unresolved += 1;
                *next_sequence += 1;
                *lost_since_batch += 1;
                continue;
            };
            let path = &arena[range];
            let old_path = p.old_path.clone().map(|r| &arena[r]);
            let renamed = p.mask & FAN_RENAME != 0;
            let inside = |path: &[u8]| roots.iter().any(|r| is_under(path, r));
            if !(inside(path) || old_path.is_some_and(inside)) {
                stats.outside += 1;
                if recent_outside.len() < MAX_RECENT_OUTSIDE {
                    recent_outside.push(path.to_vec());
                }
                continue;
            }
            if p.mask & FAN_ONDIR == 0 {
                match (renamed, old_path) {
                    (true, Some(old)) => write_sessions.renamed(old, path),
                    _ => write_sessions.observe(group, p.mask, path),
                }
            }
            linux_bytes_to_utf16le(path, &mut utf16);
            let (units, cut) = Utf16Path::truncating(&utf16, usize::MAX);
            old_utf16.clear();
            if let Some(old) = old_path {
                linux_bytes_to_utf16le(old, &mut old_utf16);
            }
            let (old_units, old_cut) = Utf16Path::truncating(&old_utf16, usize::MAX);
            let pid = u32::try_from(p.pid).unwrap_or(0);
            let now = now_ticks();
            let mut records = [None, None];
            if p.mask & (FAN_CREATE | FAN_RENAME) != 0 {
                let mut r = if renamed {
                    let mut r = EventRecord::create(units, old_units);
                    r.flags.insert(RecordFlags::RENAMED);
                    if old_cut {
                        r.flags.insert(RecordFlags::PATH_TRUNCATED);
                    }
                    r
                } else {
                    let mut r = EventRecord::create(units, Utf16Path::EMPTY);
                    r.information = FILE_CREATED;
                    r
                };
                if p.mask & FAN_ONDIR != 0 {
                    r.flags.insert(RecordFlags::DIRECTORY);
                }
                records[0] = Some(r);
            }
            if p.mask & (FAN_MODIFY | FAN_CLOSE_WRITE) != 0 && p.mask & FAN_ONDIR == 0 {
                records[1] = Some(EventRecord::write(units, Utf16Path::EMPTY));
            }
            for mut r in records.into_iter().flatten() {
                if cut {
                    r.flags.insert(RecordFlags::PATH_TRUNCATED);
                }
                r.sequence = *next_sequence;
                r.timestamp = now;
                r.pid = pid;
                match p.actor {
                    Actor::Started(t) => r.process_create_time = t,
                    Actor::Exited => r.flags.insert(RecordFlags::PROCESS_EXITED),
                    Actor::Unknown => {}
                }
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
            if p.actor == Actor::Exited {
                stats.process_exited += 1;
            }
        }
        if !batch.is_empty() {
            let n = batch
                .finish(std::mem::take(lost_since_batch))
                .map_err(io::Error::other)?;
            emit(&batch_buf[..n])?;
        }
        Ok(())
    }
}

/// The process of an event: with a pidfd, its start time read from /proc while the pidfd shows
/// it is still the process that caused the event (a live process keeps its pid, so the /proc
/// entry read before the check was its own).
fn actor_of(
    event: &FanEvent<'_>,
    pidfd: Option<OwnedFd>,
    clock: &ProcClock,
    caches: &mut ReadCaches,
) -> Actor {
    let pid = u32::try_from(event.pid).unwrap_or(0);
    match (event.pidfd, pidfd) {
        // FAN_NOPIDFD: the process had exited (FAN_EPIDFD, a pidfd that could not be made, say
        // because of the descriptor limit, falls through to the lookup without a pidfd).
        (Some(libc::FAN_NOPIDFD), None) => Actor::Exited,
        (_, Some(fd)) => {
            if let Some(&t) = caches.start_times.get(&event.pid) {
                return Actor::Started(t);
            }
            match clock.start_time(pid) {
                Some(t) if sys::pidfd_alive(fd.as_fd()) => {
                    caches.start_times.insert(event.pid, t);
                    Actor::Started(t)
                }
                _ => Actor::Exited,
            }
        }
        // No pidfd: the process that has the pid now, as before.
        (_, None) => match clock.start_time(pid) {
            Some(t) => Actor::Started(t),
            None => Actor::Unknown,
        },
    }
}

/// The current path of the directory a file handle names, via the per-read cache. A path too
/// long for the kernel to name is found by walking up from the directory to a watched root.
fn resolve_dir<'c>(
    mounts: &[([u8; 8], File)],
    roots: &[Vec<u8>],
    root_ids: &[(u64, u64)],
    stats: &mut SourceStats,
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
            match fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
                Ok(link) => Some(link.as_os_str().as_bytes().to_vec()),
                Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                    stats.long_paths += 1;
                    walk_up_to_root(fd, roots, root_ids)
                }
                Err(_) => None,
            }
        })
        .as_deref()
}

/// The path of `dir` below the watched root it lies under, found from the directory itself:
/// `..` is opened relative to each level, and the level's name is looked up in its parent by
/// inode. `None` when no watched root is above it (or the walk fails).
fn walk_up_to_root(dir: OwnedFd, roots: &[Vec<u8>], root_ids: &[(u64, u64)]) -> Option<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut current = File::from(dir);
    for _ in 0..MAX_WALK_DEPTH {
        let meta = current.metadata().ok()?;
        let id = (meta.dev(), meta.ino());
        if let Some(i) = root_ids.iter().position(|r| *r == id) {
            let mut path = roots.get(i)?.clone();
            for name in names.iter().rev() {
                if !path.ends_with(b"/") {
                    path.push(b'/');
                }
                path.extend_from_slice(name);
            }
            return Some(path);
        }
        let parent = File::from(sys::open_parent(current.as_fd()).ok()?);
        let parent_meta = parent.metadata().ok()?;
        if (parent_meta.dev(), parent_meta.ino()) == id {
            return None; // the top of the file system: no watched root above
        }
        names.push(name_in(&parent, meta.ino())?);
        current = parent;
    }
    None
}

/// The name under which `parent` holds inode `ino`.
fn name_in(parent: &File, ino: u64) -> Option<Vec<u8>> {
    let listing = fs::read_dir(format!("/proc/self/fd/{}", parent.as_raw_fd())).ok()?;
    listing
        .filter_map(Result::ok)
        .find(|e| e.ino() == ino)
        .map(|e| e.file_name().as_bytes().to_vec())
}
