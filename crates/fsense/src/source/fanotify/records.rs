//! What records one fanotify event becomes, and which creates are hard links.
//!
//! - `FAN_CREATE`: a create, or a link (below).
//! - `FAN_RENAME`: a rename, `path` the old name and `target` the new one (as the Windows driver
//!   reports it).
//! - `FAN_DELETE`: a delete of the name (the file itself may live on under another link or while
//!   a descriptor is open; Linux removes the name at once, so that is what is reported).
//! - `FAN_MODIFY` / `FAN_CLOSE_WRITE` on a file: a write.
//!
//! **Hard links.** fanotify has no link event: a new name for an existing file is a `FAN_CREATE`
//! like any other. With `FAN_REPORT_TARGET_FID` (Linux 5.17) a create also carries the entry's
//! own file handle, so the file can be opened by handle and its link count read. Of the creates of
//! one file in a read, all are links when the file had names before the read (its link count now,
//! less the creates, plus the deletes of the read, is above zero); otherwise the first is the
//! file's own create and the rest are links. Limits, stated where they are reported
//! (`docs/ocsf.md`): a file created and linked in two different reads, its create read after the
//! link was made, is reported as a link; a file deleted before its create was read cannot be
//! opened and is reported as a create; and the existing name is known only when the kernel names
//! the file by another of its names (`/proc/self/fd` of the handle's descriptor shows the name
//! the kernel has cached for it, often the new one), else the record's `path` is empty and
//! flagged `NAME_QUERY_FAILED`.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use fsense_proto::{EventRecord, Operation, RecordFlags, Utf16Path};

use super::parse::{
    FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_MODIFY, FAN_ONDIR, FAN_RENAME, Fid,
};
use crate::ffi::linux as sys;
use crate::pipeline::paths::linux_bytes_to_utf16le;

/// `IoStatus.Information` of a create that created the file (what the driver reports).
const FILE_CREATED: u64 = 2;

/// The key of a file handle: fsid, type, bytes.
pub(super) fn fid_key(fid: &Fid<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(12 + fid.handle.len());
    key.extend_from_slice(&fid.fsid);
    key.extend_from_slice(&fid.handle_type.to_ne_bytes());
    key.extend_from_slice(fid.handle);
    key
}

/// What the creates and deletes of one read did to one file.
#[derive(Debug, Default)]
pub(super) struct FileTally {
    pub creates: u32,
    pub deletes: u32,
    /// Creates of this file classified so far.
    pub seen: u32,
    /// Names the file had before the read, from its link count now (`None`: not read yet).
    pub names_before: Option<i64>,
    /// Another name of the file, when the kernel gave one that differs from every created name.
    pub other_name: Option<Vec<u8>>,
}

/// Counts, per file handle, the creates and deletes of a read (non-directories only).
pub(super) fn tally<'k>(
    keys: impl Iterator<Item = (&'k [u8], u64)>,
) -> HashMap<Vec<u8>, FileTally> {
    let mut files: HashMap<Vec<u8>, FileTally> = HashMap::new();
    for (key, mask) in keys {
        if mask & FAN_ONDIR != 0 {
            continue;
        }
        if mask & FAN_CREATE != 0 {
            files.entry(key.to_vec()).or_default().creates += 1;
        } else if mask & FAN_DELETE != 0
            && let Some(t) = files.get_mut(key)
        {
            t.deletes += 1;
        }
    }
    files
}

/// Whether this create (of the file `key`, at `new_name`) is a hard link; reads the file's link
/// count and another of its names on first use. `mount` opens the handle.
pub(super) fn classify_create(
    files: &mut HashMap<Vec<u8>, FileTally>,
    key: &[u8],
    new_name: &[u8],
    open: impl FnOnce() -> Option<std::os::fd::OwnedFd>,
) -> Option<Option<Vec<u8>>> {
    let t = files.get_mut(key)?;
    if t.names_before.is_none() {
        let (nlink, name) = match open() {
            Some(fd) => {
                let name = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok();
                let nlink = File::from(fd).metadata().map(|m| m.nlink()).unwrap_or(0);
                (nlink, name.map(|n| n.as_os_str().as_bytes().to_vec()))
            }
            None => (0, None),
        };
        t.names_before = Some(
            i64::try_from(nlink).unwrap_or(i64::MAX) - i64::from(t.creates) + i64::from(t.deletes),
        );
        t.other_name = name.filter(|n| !n.ends_with(b" (deleted)"));
    }
    t.seen += 1;
    let is_link = t.names_before.is_some_and(|n| n > 0) || t.seen > 1;
    is_link.then(|| t.other_name.clone().filter(|n| n != new_name))
}

/// What [`name_in_removed_dirs`] needs of one event.
pub(super) struct Naming<'p> {
    pub mask: u64,
    pub fid: Option<&'p [u8]>,
    pub path: &'p mut Option<std::ops::Range<usize>>,
    pub lost_dir: Option<&'p (Vec<u8>, Vec<u8>)>,
}

/// Names events whose directory was removed before the read (`rm -r`: the entries' deletes, then
/// the directory's): the removal of a directory in the same read carries the directory's own
/// handle (`FAN_REPORT_TARGET_FID`) and its name, so the events inside it, which name it by that
/// handle, get its path. (The kernel may have merged the directory's removal into its creation,
/// earlier in the queue than the events inside it, so position does not matter.) A removed
/// directory inside a removed directory is named in a later round; at most [`MAX_ROUNDS`] rounds
/// (nesting levels). Returns how many events it named.
pub(super) fn name_in_removed_dirs<'p>(
    events: impl Iterator<Item = Naming<'p>>,
    arena: &mut Vec<u8>,
) -> u64 {
    const MAX_ROUNDS: usize = 32;
    let mut events: Vec<Naming<'p>> = events.collect();
    if !events
        .iter()
        .any(|e| e.path.is_none() && e.lost_dir.is_some())
    {
        return 0;
    }
    let mut named = 0;
    let removed_dir = |e: &Naming<'_>| e.mask & (FAN_DELETE | FAN_ONDIR) == FAN_DELETE | FAN_ONDIR;
    let mut removed: HashMap<Vec<u8>, std::ops::Range<usize>> = HashMap::new();
    for e in events.iter().filter(|e| removed_dir(e)) {
        if let (Some(fid), Some(path)) = (e.fid, e.path.clone()) {
            removed.insert(fid.to_vec(), path);
        }
    }
    for _ in 0..MAX_ROUNDS {
        let mut progress = false;
        for e in events.iter_mut() {
            if e.path.is_some() {
                continue;
            }
            let Some((dir, name)) = e.lost_dir else {
                continue;
            };
            let Some(dir_path) = removed.get(dir).cloned() else {
                continue;
            };
            let dir_bytes = arena[dir_path].to_vec();
            let start = arena.len();
            super::join_onto(&dir_bytes, name, arena);
            *e.path = Some(start..arena.len());
            named += 1;
            progress = true;
            if removed_dir(e)
                && let Some(fid) = e.fid
            {
                removed.insert(fid.to_vec(), start..arena.len());
            }
        }
        if !progress {
            break;
        }
    }
    named
}

/// What [`find_links`] needs of one event.
pub(super) struct LinkCheck<'p> {
    pub mask: u64,
    pub fid: Option<&'p [u8]>,
    pub path: Option<std::ops::Range<usize>>,
    pub link: &'p mut Option<Option<std::ops::Range<usize>>>,
}

/// Marks the creates of a read that are hard links (see the module notes), with the file's
/// existing name in `arena` when known.
pub(super) fn find_links<'p>(
    events: impl Iterator<Item = LinkCheck<'p>>,
    mounts: &[([u8; 8], File)],
    arena: &mut Vec<u8>,
) {
    let mut events: Vec<LinkCheck<'p>> = events.collect();
    let mut files = tally(events.iter().filter_map(|e| Some((e.fid?, e.mask))));
    if files.is_empty() {
        return;
    }
    for e in events.iter_mut() {
        let (Some(key), Some(range)) = (e.fid, e.path.clone()) else {
            continue;
        };
        if e.mask & FAN_CREATE == 0 {
            continue;
        }
        let new_name = arena[range].to_vec();
        let open = || {
            let (fsid, rest) = key.split_first_chunk::<8>()?;
            let (handle_type, handle) = rest.split_first_chunk::<4>()?;
            let fid = Fid {
                fsid: *fsid,
                handle_type: i32::from_ne_bytes(*handle_type),
                handle,
            };
            open_fid(mounts, &fid)
        };
        if let Some(other) = classify_create(&mut files, key, &new_name, open) {
            *e.link = Some(other.map(|name| {
                let start = arena.len();
                arena.extend_from_slice(&name);
                start..arena.len()
            }));
        }
    }
}

/// Reusable buffers for the UTF-16 forms of an event's names.
#[derive(Default)]
pub(super) struct Names {
    path: Vec<u8>,
    target: Vec<u8>,
}

/// What kind of record an event (or a listed entry moved in with it) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Create,
    /// A hard link; the existing name when known.
    Link,
    Rename,
    Delete,
}

/// The records of one event, in the order they happened: a namespace record, a write, and a
/// delete. The kernel merges the events of one name and one file while they wait in its queue
/// (a file created, written and deleted before the read is one event, `FAN_CREATE |
/// FAN_MODIFY | FAN_CLOSE_WRITE | FAN_DELETE`); with `FAN_REPORT_TARGET_FID` only events of the
/// same file merge, and a file is deleted after it was created, so that is the order. `path` is
/// the entry's (new) name; `other` the old name of a rename, the existing name of a link.
pub(super) fn build<'b>(
    mask: u64,
    kind: Option<Kind>,
    path: &[u8],
    other: Option<&[u8]>,
    names: &'b mut Names,
) -> [Option<EventRecord<'b>>; 3] {
    let is_dir = mask & FAN_ONDIR != 0;
    // The record's path and target, by kind.
    let (rec_path, rec_target): (Option<&[u8]>, Option<&[u8]>) = match kind {
        Some(Kind::Rename | Kind::Link) => (other, Some(path)),
        _ => (Some(path), None),
    };
    linux_bytes_to_utf16le(rec_path.unwrap_or(b""), &mut names.path);
    names.target.clear();
    if let Some(t) = rec_target {
        linux_bytes_to_utf16le(t, &mut names.target);
    }
    let (units, cut) = Utf16Path::truncating(&names.path, usize::MAX);
    let (target, target_cut) = Utf16Path::truncating(&names.target, usize::MAX);
    let mut records = [None, None, None];
    if let Some(kind) = kind {
        let operation = match kind {
            Kind::Create => Operation::Create,
            Kind::Link => Operation::Link,
            Kind::Rename => Operation::Rename,
            Kind::Delete => Operation::Delete,
        };
        let mut r = EventRecord::blank(operation, units, Utf16Path::EMPTY);
        r.target = target;
        if kind == Kind::Create {
            r.information = FILE_CREATED;
        }
        if rec_path.is_none() {
            r.flags.insert(RecordFlags::NAME_QUERY_FAILED);
        }
        if target_cut {
            r.flags.insert(RecordFlags::TARGET_TRUNCATED);
        }
        if is_dir {
            r.flags.insert(RecordFlags::DIRECTORY);
        }
        records[0] = Some(r);
    }
    if mask & (FAN_MODIFY | FAN_CLOSE_WRITE) != 0 && !is_dir {
        records[1] = Some(EventRecord::write(units, Utf16Path::EMPTY));
    }
    // Deleted after it was created (a merged event; a delete alone is the namespace record).
    if mask & FAN_DELETE != 0 && matches!(kind, Some(Kind::Create | Kind::Link)) {
        // A link's new name is the one deleted.
        let deleted = match kind {
            Some(Kind::Link) => target,
            _ => units,
        };
        let mut r = EventRecord::blank(Operation::Delete, deleted, Utf16Path::EMPTY);
        if is_dir {
            r.flags.insert(RecordFlags::DIRECTORY);
        }
        if (kind == Some(Kind::Link) && target_cut) || (kind == Some(Kind::Create) && cut) {
            r.flags.insert(RecordFlags::PATH_TRUNCATED);
        }
        records[2] = Some(r);
    }
    for r in records.iter_mut().take(2).flatten() {
        if cut {
            r.flags.insert(RecordFlags::PATH_TRUNCATED);
        }
    }
    records
}

/// The namespace kind of an event's mask (a link is decided by [`classify_create`]).
pub(super) fn kind_of(mask: u64) -> Option<Kind> {
    if mask & FAN_RENAME != 0 {
        Some(Kind::Rename)
    } else if mask & FAN_CREATE != 0 {
        Some(Kind::Create)
    } else if mask & FAN_DELETE != 0 {
        Some(Kind::Delete)
    } else {
        None
    }
}

/// Opens a file handle of one of the watched file systems (`O_PATH`).
pub(super) fn open_fid(mounts: &[([u8; 8], File)], fid: &Fid<'_>) -> Option<std::os::fd::OwnedFd> {
    let (_, mount) = mounts.iter().find(|(id, _)| *id == fid.fsid)?;
    sys::open_by_handle(mount, fid.handle_type, fid.handle).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(
        files: &mut HashMap<Vec<u8>, FileTally>,
        key: &[u8],
        nlink_file: Option<&std::path::Path>,
    ) -> bool {
        classify_create(files, key, b"/new", || {
            nlink_file.map(|p| std::fs::File::open(p).unwrap().into())
        })
        .is_some()
    }

    #[test]
    fn of_the_creates_of_a_new_file_the_first_is_the_create_and_the_rest_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        std::fs::hard_link(&a, dir.path().join("b")).unwrap();
        // touch a; ln a b, both in one read: link count 2, two creates.
        let mut files = tally([(&b"k"[..], FAN_CREATE), (&b"k"[..], FAN_CREATE)].into_iter());
        assert!(!classify(&mut files, b"k", Some(&a)));
        assert!(classify(&mut files, b"k", Some(&a)));
        // ln a c of a file that existed before the read: one create, link count 2.
        let mut files = tally([(&b"k"[..], FAN_CREATE)].into_iter());
        assert!(classify(&mut files, b"k", Some(&a)));
        // A plain new file: link count 1.
        let lone = dir.path().join("lone");
        std::fs::write(&lone, b"x").unwrap();
        let mut files = tally([(&b"k"[..], FAN_CREATE)].into_iter());
        assert!(!classify(&mut files, b"k", Some(&lone)));
        // ln a b; rm a in one read of a file that existed before: link count 1, one create,
        // one delete: it had a name before, so the create is a link.
        let mut files = tally([(&b"k"[..], FAN_CREATE), (&b"k"[..], FAN_DELETE)].into_iter());
        assert!(classify(&mut files, b"k", Some(&lone)));
        // Gone before the read: cannot be told, reported as a create.
        let mut files = tally([(&b"k"[..], FAN_CREATE)].into_iter());
        assert!(!classify(&mut files, b"k", None));
        // Directories are never links.
        let files = tally([(&b"k"[..], FAN_CREATE | FAN_ONDIR)].into_iter());
        assert!(files.is_empty());
    }
}
