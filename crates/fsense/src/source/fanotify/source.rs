//! The fanotify group, its marks, and the encoding of its events into batches.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fsense_proto::{BatchWriter, MAX_BATCH_BYTES, RecordFlags};
use serde::Serialize;

use super::dir_names::{DirNames, WalkEnd};
use super::moved_away::OutsideWindow;
use super::moved_in::{self, MovedIn};
use super::parse::{
    DirFidName, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_MODIFY, FAN_ONDIR, FAN_Q_OVERFLOW,
    FAN_RENAME, FanEvent, FanEvents, Fid,
};
use super::records::{self, Kind, Names};
use super::write_sessions::{MAX_QUIET_SESSIONS, WriteSessionStats, WriteSessions};
use super::{is_under, join_onto};
use crate::ffi::linux as sys;
use crate::pipeline::enrich::procfs::ProcClock;
use crate::time::now_ticks;

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("fsense watch needs root (CAP_SYS_ADMIN) for fanotify file-system marks")]
    NotPermitted,
    #[error(
        "this kernel does not offer fanotify with FAN_REPORT_DFID_NAME_TARGET and FAN_RENAME (Linux 5.17 or later): {0}"
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
    /// Outside events that could not be checked for a later move out of the watched paths (the
    /// bookkeeping's bound was hit): some may have been drops, so the dropped count is a lower
    /// bound when this is not zero.
    pub outside_unchecked: u64,
    /// Events of our own process (not reported, no sequence number).
    pub self_excluded: u64,
    /// Events that could not be given a path (their directory was deleted before the event was
    /// read, or could not be opened by handle): each takes a sequence number that is never
    /// delivered, so it is counted as dropped.
    pub unresolved: u64,
    /// Events whose directory was moved out of the watched paths before they were read, noticed
    /// only after they had been counted as outside (the move came in a later read, see
    /// `moved_away.rs`): counted as dropped too.
    pub moved_away: u64,
    /// Entries of directories moved into the watched paths, reported as moved in with them.
    pub moved_in_listed: u64,
    /// Directories moved in whose contents could not be listed in full (bound hit, unreadable).
    pub moved_in_not_listed: u64,
    /// Events whose path was taken back to where it was when the event happened, because their
    /// directory was renamed later in the same read.
    pub re_rooted: u64,
    /// Events whose directory was removed before the read, named through that directory's
    /// removal later in the same read (`rm -r`).
    pub named_by_removal: u64,
    /// Directories whose path was too long for the kernel to name (`ENAMETOOLONG`) and was
    /// walked up to a watched root instead.
    pub long_paths: u64,
    /// Of those, walks given up because the read's listing budget ran out: their events count
    /// as unresolved (dropped).
    pub walks_abandoned: u64,
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

impl SourceStats {
    /// Whether the dropped count is only a lower bound: a queue overflow lost an unknown number
    /// of events (at least one each), or outside events could not be checked.
    pub fn dropped_is_lower_bound(&self) -> bool {
        self.overflows > 0 || self.outside_unchecked > 0
    }
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
    /// Names of directories too deep for the kernel to name, across reads.
    dir_names: DirNames,
    /// Outside events waiting for the renames that could show they were inside.
    window: OutsideWindow,
    /// Entries of directories moved in, listed for the event being encoded.
    listed: Vec<MovedIn>,
    /// How many more entries of directories moved in may be listed: refilled at
    /// `MAX_LISTED_PER_READ` per second up to that many (moving one crowded directory in and out
    /// again must not make the sensor list it without limit).
    list_tokens: usize,
    list_refilled: std::time::Instant,
}

/// Most directory renames per read whose earlier events get their paths taken back.
const MAX_UNDONE_RENAMES: usize = 64;
/// The kernel queue's length when `/proc/sys/fs/fanotify/max_queued_events` cannot be read.
const DEFAULT_QUEUE_EVENTS: u64 = 16_384;

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
    /// Creates and deletes of files: the entry's own file handle (`records::fid_key`).
    fid: Option<Vec<u8>>,
    /// Creates found to be hard links, with the file's existing name when known.
    link: Option<Option<Range<usize>>>,
    /// An event whose directory could not be opened: the directory's handle key and the entry
    /// name, to name it through a removal of that directory later in the read.
    lost_dir: Option<(Vec<u8>, Vec<u8>)>,
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
        // FAN_REPORT_DFID_NAME_TARGET adds the entry's own handle to creates and deletes
        // (Linux 5.17, as FAN_RENAME): how a create is told to be a hard link.
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_REPORT_DFID_NAME_TARGET
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
                FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ONDIR
            }
            WriteEvents::CloseOnly => {
                FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_CLOSE_WRITE | FAN_ONDIR
            }
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
            dir_names: DirNames::default(),
            window: OutsideWindow::new(queue_capacity()),
            listed: Vec::new(),
            list_tokens: moved_in::MAX_LISTED_PER_READ,
            list_refilled: std::time::Instant::now(),
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
                Ok(0) => {
                    self.settle_outside(true, 0, 0);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.settle_outside(true, 0, 0);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // Room left for another event means the queue was empty when the kernel stopped
            // copying: what arrived since waits for the next round instead of being read one
            // event at a time while a writer keeps going.
            let queue_empty = n + MAX_EVENT_LEN <= self.read_buf.len();
            total += self.encode_read(n, queue_empty, emit)?;
            if queue_empty {
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
        queue_empty: bool,
        emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let read_at = self.stats.kernel_events;
        let events = self.resolve_read(len);
        self.undo_later_renames();
        self.encode_pending(read_at, emit)?;
        self.settle_outside(queue_empty, read_at, events);
        self.stats.kernel_events += events;
        self.stats.queue_high_water = self.stats.queue_high_water.max(events);
        self.stats.generated = self.next_sequence - 1;
        self.stats.write_sessions = self.write_sessions.stats();
        Ok(events)
    }

    /// Judges the outside events whose window closed (all when the queue was empty): those whose
    /// directory was inside when they happened become drops.
    fn settle_outside(&mut self, queue_empty: bool, read_at: u64, events: u64) {
        if self.window.is_empty() {
            return;
        }
        let roots = &self.roots;
        let inside = |p: &[u8]| roots.iter().any(|r| is_under(p, r));
        let judged = self.window.end_read(read_at, events, queue_empty, &inside);
        self.count_moved_away(judged);
    }

    fn count_moved_away(&mut self, judged: super::moved_away::Judged) {
        let lost = judged.moved_away;
        self.stats.moved_away += lost;
        self.stats.outside -= lost.min(self.stats.outside);
        self.stats.outside_unchecked += judged.unchecked;
        self.next_sequence += lost;
        self.lost_since_batch += lost;
        self.stats.generated = self.next_sequence - 1;
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
            dir_names,
            ..
        } = self;
        pending.clear();
        arena.clear();
        dir_names.new_read();
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
                    fid: None,
                    link: None,
                    lost_dir: None,
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
                let dir = resolve_dir(
                    mounts,
                    (roots, root_ids),
                    stats,
                    dir_names,
                    &mut caches,
                    &dfid,
                )?;
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
            // Directories' handles too: a removed directory names the events inside it.
            let fid = event
                .fid
                .filter(|_| event.mask & (FAN_CREATE | FAN_DELETE) != 0)
                .map(|f| records::fid_key(&f));
            let lost_dir = match (&path, event.dir_fid_name) {
                (None, Some(d)) if event.mask & FAN_RENAME == 0 => Some((
                    records::fid_key(&Fid {
                        fsid: d.fsid,
                        handle_type: d.handle_type,
                        handle: d.handle,
                    }),
                    d.name.to_vec(),
                )),
                _ => None,
            };
            pending.push(Pending {
                mask: event.mask,
                pid: event.pid,
                actor,
                path,
                old_path,
                fid,
                link: None,
                lost_dir,
            });
        }
        stats.named_by_removal += records::name_in_removed_dirs(
            pending.iter_mut().map(|p| records::Naming {
                mask: p.mask,
                fid: p.fid.as_deref(),
                path: &mut p.path,
                lost_dir: p.lost_dir.as_ref(),
            }),
            arena,
        );
        // Which creates are hard links: needs every create and delete of the read first.
        records::find_links(
            pending.iter_mut().map(|p| records::LinkCheck {
                mask: p.mask,
                fid: p.fid.as_deref(),
                path: p.path.clone(),
                link: &mut p.link,
            }),
            mounts,
            arena,
        );
        events
    }

    /// Pass 2: a directory renamed after some events of this read happened in it made those
    /// events resolve to its new place; they happened at the old one. Renames are undone from
    /// the last to the first, each for the events before it. (Moves noticed in later reads are
    /// `moved_away.rs`'s.)
    fn undo_later_renames(&mut self) {
        let Self {
            stats,
            pending,
            arena,
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
        }
    }

    /// Pass 3: sequence numbers and batches.
    fn encode_pending(
        &mut self,
        read_at: u64,
        emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
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
            window,
            listed,
            list_tokens,
            list_refilled,
            ..
        } = self;
        let mut batch = BatchWriter::new(batch_buf).map_err(io::Error::other)?;
        let mut names = Names::default();
        let earned = list_refilled.elapsed().as_secs_f64() * moved_in::MAX_LISTED_PER_READ as f64;
        if earned >= 1.0 {
            *list_tokens =
                moved_in::MAX_LISTED_PER_READ.min(list_tokens.saturating_add(earned as usize));
            *list_refilled = std::time::Instant::now();
        }
        let list_budget = list_tokens;
        let inside = |path: &[u8]| roots.iter().any(|r| is_under(path, r));
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
            let is_dir = p.mask & FAN_ONDIR != 0;
            if renamed
                && is_dir
                && let Some(old) = old_path
            {
                let early = window.dir_renamed(read_at, old, path, &inside);
                stats.moved_away += early.moved_away;
                stats.outside -= early.moved_away.min(stats.outside);
                stats.outside_unchecked += early.unchecked;
                *next_sequence += early.moved_away;
                *lost_since_batch += early.moved_away;
            }
            if !(inside(path) || old_path.is_some_and(inside)) {
                stats.outside += 1;
                let dir = path.rsplit_once_slash();
                if !window.hold(read_at, dir) {
                    stats.outside_unchecked += 1;
                }
                continue;
            }
            if !is_dir {
                match (renamed, old_path) {
                    (true, Some(old)) => write_sessions.renamed(old, path),
                    _ => write_sessions.observe(group, p.mask, path),
                }
            }
            // A directory moved in from outside brings its contents without events of their own.
            listed.clear();
            if renamed && is_dir && inside(path) && !old_path.is_some_and(inside) {
                let not_listed = moved_in::list(path, old_path.unwrap_or(b""), list_budget, listed);
                stats.moved_in_listed += listed.len() as u64;
                stats.moved_in_not_listed += not_listed;
            }
            let pid = u32::try_from(p.pid).unwrap_or(0);
            // The event itself, then what it moved in with it.
            for k in 0..=listed.len() {
                let (path, old_path, mask) = match k.checked_sub(1).and_then(|i| listed.get(i)) {
                    None => (path, old_path, p.mask),
                    Some(m) if m.old_path.is_empty() => {
                        (&m.path[..], None, FAN_CREATE | dir_bit(m.is_dir))
                    }
                    Some(m) => (
                        &m.path[..],
                        Some(&m.old_path[..]),
                        FAN_RENAME | dir_bit(m.is_dir),
                    ),
                };
                let mut kind = records::kind_of(mask);
                let mut other = old_path;
                if k == 0
                    && let Some(link) = &p.link
                {
                    kind = Some(Kind::Link);
                    other = link.clone().map(|r| &arena[r]);
                }
                let now = now_ticks();
                let records = records::build(mask, kind, path, other, &mut names);
                for mut r in records.into_iter().flatten() {
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

/// `FAN_ONDIR` for a directory.
fn dir_bit(is_dir: bool) -> u64 {
    if is_dir { FAN_ONDIR } else { 0 }
}

/// The directory part of a path (the path itself when it has no `/` past the first byte).
trait DirPart {
    fn rsplit_once_slash(&self) -> &[u8];
}

impl DirPart for [u8] {
    fn rsplit_once_slash(&self) -> &[u8] {
        match self.iter().rposition(|&b| b == b'/') {
            Some(0) | None => self,
            Some(i) => &self[..i],
        }
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
/// long for the kernel to name is found by walking up from the directory to a watched root
/// (`dir_names.rs`, bounded).
fn resolve_dir<'c>(
    mounts: &[([u8; 8], File)],
    (roots, root_ids): (&[Vec<u8>], &[(u64, u64)]),
    stats: &mut SourceStats,
    dir_names: &mut DirNames,
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
                    match dir_names.walk_up_to_root(fd, roots, root_ids) {
                        Ok(path) => Some(path),
                        Err(WalkEnd::Abandoned) => {
                            stats.walks_abandoned += 1;
                            None
                        }
                        Err(WalkEnd::NotFound) => None,
                    }
                }
                Err(_) => None,
            }
        })
        .as_deref()
}

/// `max_queued_events` of fanotify groups (the queue a group gets without
/// `FAN_UNLIMITED_QUEUE`).
fn queue_capacity() -> u64 {
    fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_QUEUE_EVENTS)
}
