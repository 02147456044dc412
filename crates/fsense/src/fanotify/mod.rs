//! Linux source: fanotify, so the whole pipeline runs against a real kernel.
//!
//! The group is created with `FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME` and marks the whole file
//! system of each watched directory (`FAN_MARK_FILESYSTEM`: recursive, no races with new
//! subdirectories; needs CAP_SYS_ADMIN). Each event names its directory by file handle plus the
//! entry name; the directory is opened by handle (`open_by_handle_at`) and its current path read
//! from `/proc/self/fd`, and only events under the watched paths are kept.
//!
//! Writes: `FAN_MODIFY` for the first write of a session, after which the kernel is told to skip
//! the file's modifies until `FAN_CLOSE_WRITE` (see `write_sessions`), or close-write only
//! (`--writes close`).
//!
//! Events are encoded into the same fsense-proto batches the Windows driver sends, with this
//! source's own gap-free sequence numbers, so the pipeline cannot tell the sources apart.
//! `FAN_Q_OVERFLOW` (the kernel queue was full and dropped events) takes one sequence number, so
//! every overflow shows up as a gap: a drop is never silent, although the kernel does not say how
//! many events one overflow stands for (at least one).

pub mod parse;

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
