//! Linux source: fanotify, so the whole pipeline runs against a real kernel.
//!
//! The group is created with `FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME_TARGET | FAN_REPORT_PIDFD`
//! and marks the whole file system of each watched directory (`FAN_MARK_FILESYSTEM`: recursive,
//! no races with new subdirectories; needs CAP_SYS_ADMIN) for creates, deletes (`FAN_DELETE`),
//! renames (`FAN_RENAME`, Linux 5.17) and writes. Creates, deletes and renames also carry the
//! entry's own file handle (`FAN_REPORT_TARGET_FID`, 5.17): how a create is told to be a hard
//! link, and how events in a directory removed before the read are named (`records`). Each event names its directory by file handle plus the entry name (a rename: the
//! old and the new directory and name); the directory is opened by handle (`open_by_handle_at`)
//! when the event is read and its current path read from `/proc/self/fd`, or, when that path is
//! too long for the kernel to name, found by walking up (`openat(dir, "..")`) to a watched root,
//! with bounded work (`dir_names`). Only events under the watched paths are kept; a directory
//! moved into them is listed (`moved_in`), and outside events are judged against the directory
//! moves read after them (`moved_away`).
//!
//! Every event of a read is resolved before any is encoded: a directory renamed later in the same
//! read made earlier events in it resolve to its new place, so their paths are taken back to the
//! old one; a move out of the watched paths noticed reads later turns the "outside" events it
//! explains into drops (`moved_away`).
//!
//! Writes: `FAN_MODIFY` for the first write of a session, after which the kernel is told to skip
//! the file's modifies until `FAN_CLOSE_WRITE` (see `write_sessions`), or close-write only
//! (`--writes close`).
//!
//! Processes: the pidfd each event carries names the process as of the event; its start time is
//! read while the pidfd shows it alive, then the pidfd is closed. `FAN_NOPIDFD` (it had exited)
//! marks the record `PROCESS_EXITED`.
//!
//! Events are encoded into the same fsense-proto batches the Windows driver sends, with this
//! source's own gap-free sequence numbers, so the pipeline cannot tell the sources apart. A drop
//! is never silent: `FAN_Q_OVERFLOW` (the kernel queue was full and dropped events; it does not
//! say how many, at least one, so the summary then calls the count a lower bound), an event whose
//! directory could not be opened any more or named within the walk's budget, and an event found
//! to have been counted as outside because its directory moved each take a sequence number that
//! is never delivered, so they are counted as dropped in the summary and the live line. Events the kernel merges while they wait in its queue (repeated modifies of one file)
//! are not losses: the merged event stands for them.

pub mod parse;

#[cfg(target_os = "linux")]
mod dir_names;
#[cfg(target_os = "linux")]
mod moved_away;
#[cfg(target_os = "linux")]
mod moved_in;
#[cfg(target_os = "linux")]
mod records;
#[cfg(target_os = "linux")]
mod source;
#[cfg(target_os = "linux")]
mod write_sessions;
#[cfg(target_os = "linux")]
pub use source::{FanotifySource, SourceStats, WatchError, WriteEvents};

/// Whether `path` is `root` or lies under it (byte-wise, on `/` boundaries).
pub fn is_under(path: &[u8], root: &[u8]) -> bool {
    if root == b"/" {
        return path.starts_with(b"/");
    }
    path.starts_with(root) && matches!(path.get(root.len()), None | Some(b'/'))
}

/// `dir` + `/` + `name`, or `dir` itself when `name` is `.` (an event on the directory).
pub fn join(dir: &[u8], name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    join_onto(dir, name, out);
}

/// [`join`], appended to what `out` already holds.
pub fn join_onto(dir: &[u8], name: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(dir);
    if name == b"." || name.is_empty() {
        return;
    }
    if !dir.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_respects_component_boundaries() {
        assert!(is_under(b"/w/a", b"/w"));
        assert!(is_under(b"/w", b"/w"));
        assert!(!is_under(b"/wx/a", b"/w"));
        assert!(is_under(b"/anything", b"/"));
    }

    #[test]
    fn join_handles_root_and_dot() {
        let mut out = Vec::new();
        join(b"/", b"a", &mut out);
        assert_eq!(out, b"/a");
        join(b"/w", b"-n\nx", &mut out);
        assert_eq!(out, b"/w/-n\nx");
        join(b"/w", b".", &mut out);
        assert_eq!(out, b"/w");
    }
}
