//! Write sessions whose further `FAN_MODIFY` events the kernel is told to skip until they close.
//!
//! The kernel builds a `FAN_MODIFY` event inside every `write(2)` to a watched file, in the
//! writer's own system call, even when the event then merges with one already queued: on a
//! sequential 4 KiB-write workload that alone made the writer 48 % slower. So after the first
//! `FAN_MODIFY` of a file has been read, an ignore mark for `FAN_MODIFY` (surviving modification)
//! goes on its inode. `FAN_CLOSE_WRITE` is not ignored: the session still ends with a write
//! record, and that event takes the mark off, so the next session is reported from its first
//! write again.
//!
//! Inode marks pin their inodes, so their number is bounded: when the set is full, or the kernel
//! queue overflowed (a close-write may have been lost), every inode mark is flushed at once. A
//! stale mark (the file was renamed or deleted while its session was open) can only delay a write
//! record to the session's close, never lose it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::parse::{FAN_CLOSE_WRITE, FAN_MODIFY};
use crate::ffi::linux as sys;

/// Most write sessions quieted at a time (inode marks held by the group).
pub const MAX_QUIET_SESSIONS: usize = 4096;

/// What the quieting did, for the summary.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WriteSessionStats {
    /// Sessions whose later `FAN_MODIFY` events the kernel was told to skip.
    pub quieted: u64,
    /// Times every inode mark was flushed (set full, or after a queue overflow).
    pub flushes: u64,
    /// Marks the kernel refused (the file was gone or renamed): those sessions stay loud.
    pub mark_errors: u64,
}

/// The files (by path) whose write session is currently quiet.
pub struct WriteSessions {
    quiet: HashSet<Vec<u8>>,
    capacity: usize,
    stats: WriteSessionStats,
}

impl WriteSessions {
    pub fn new(capacity: usize) -> Self {
        Self {
            quiet: HashSet::new(),
            capacity,
            stats: WriteSessionStats::default(),
        }
    }

    pub fn stats(&self) -> WriteSessionStats {
        self.stats
    }

    /// Takes note of an event on the regular file at `path` (inside the watched paths).
    pub fn observe(&mut self, group: &File, mask: u64, path: &[u8]) {
        if mask & FAN_CLOSE_WRITE != 0 {
            // A failure means the name moved on; the next flush takes the mark off.
            if self.quiet.remove(path) {
                let _ = sys::fanotify_mark(
                    group,
                    libc::FAN_MARK_REMOVE
                        | libc::FAN_MARK_IGNORED_MASK
                        | libc::FAN_MARK_DONT_FOLLOW,
                    FAN_MODIFY,
                    as_path(path),
                );
            }
            return;
        }
        if mask & FAN_MODIFY == 0 || self.quiet.contains(path) {
            return;
        }
        if self.quiet.len() >= self.capacity {
            self.flush(group);
        }
        let added = sys::fanotify_mark(
            group,
            libc::FAN_MARK_ADD
                | libc::FAN_MARK_IGNORED_MASK
                | libc::FAN_MARK_IGNORED_SURV_MODIFY
                | libc::FAN_MARK_DONT_FOLLOW,
            FAN_MODIFY,
            as_path(path),
        );
        match added {
            Ok(()) => {
                self.quiet.insert(path.to_vec());
                self.stats.quieted += 1;
            }
            Err(_) => self.stats.mark_errors += 1,
        }
    }

    /// A quiet file was renamed: its session (and inode mark) follows it to the new name, so
    /// that its close-write still takes the mark off.
    pub fn renamed(&mut self, old: &[u8], new: &[u8]) {
        if self.quiet.remove(old) {
            self.quiet.insert(new.to_vec());
        }
    }

    /// Takes every inode mark off: after a queue overflow, or when the set is full.
    pub fn flush(&mut self, group: &File) {
        if self.quiet.is_empty() {
            return;
        }
        // Only inode marks go: the file-system marks that produce the events stay.
        if sys::fanotify_mark(group, libc::FAN_MARK_FLUSH, 0, Path::new("/")).is_err() {
            self.stats.mark_errors += 1;
        }
        self.quiet.clear();
        self.stats.flushes += 1;
    }
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}
