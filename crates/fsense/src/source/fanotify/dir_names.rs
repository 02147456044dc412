//! Naming a directory whose path is too long for the kernel to name (`ENAMETOOLONG` from
//! `/proc/self/fd`): walk up (`openat(dir, "..")`) to a watched root, finding each level's name in
//! its parent.
//!
//! Finding a name means listing the parent, and anyone who can create files under a watched root
//! can make a level hold thousands of entries: listing every level for every event made each event
//! cost milliseconds of CPU (review N4). So the work is bounded:
//! - every directory met while listing a parent is remembered by (device, inode) with its parent's
//!   inode and its name, across reads, so a level is listed once, not once per event (a cached
//!   name is used only after checking that the parent still holds that inode under it);
//! - at most [`MAX_SCANNED_PER_READ`] entries are listed per read, and no more than that per second
//!   over time (a token bucket: a new directory in a crowded parent makes the parent be listed
//!   again, and that must not be repeatable without limit): a walk that would need more is
//!   abandoned, and its event counts as unresolved, i.e. dropped, never silently lost;
//! - the cache holds at most [`MAX_CACHED`] names and starts over when full.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt};
use std::time::Instant;

use crate::ffi::linux as sys;

/// Most levels walked up from a directory.
const MAX_WALK_DEPTH: usize = 4096;
/// Most directory entries listed per read, over all walks of that read, and per second.
pub const MAX_SCANNED_PER_READ: usize = 65_536;
/// Most directory names remembered.
pub const MAX_CACHED: usize = 16_384;

/// Why a walk gave no path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkEnd {
    /// No watched root above the directory, or it changed under the walk.
    NotFound,
    /// The read's listing budget ran out.
    Abandoned,
}

/// (device, inode) of a directory.
type DirId = (u64, u64);

/// Names of directories learned by listing their parents.
pub struct DirNames {
    /// (device, inode) of a directory -> (its parent's inode, its name there).
    names: HashMap<DirId, (u64, Box<[u8]>)>,
    scanned_this_read: usize,
    /// Entries that may still be listed: refilled at [`MAX_SCANNED_PER_READ`] per second up to
    /// that many, and never more than that per read.
    tokens: usize,
    refilled: Instant,
}

impl Default for DirNames {
    fn default() -> Self {
        Self {
            names: HashMap::new(),
            scanned_this_read: 0,
            tokens: MAX_SCANNED_PER_READ,
            refilled: Instant::now(),
        }
    }
}

impl DirNames {
    /// A new read: its listing budget is refilled for the time since the last refill (the
    /// names stay).
    pub fn new_read(&mut self) {
        self.scanned_this_read = 0;
        let earned = self.refilled.elapsed().as_secs_f64() * MAX_SCANNED_PER_READ as f64;
        if earned >= 1.0 {
            self.tokens = MAX_SCANNED_PER_READ.min(self.tokens.saturating_add(earned as usize));
            self.refilled = Instant::now();
        }
    }

    /// Entries listed in this read so far.
    #[cfg(test)]
    pub fn scanned(&self) -> usize {
        self.scanned_this_read
    }

    /// The path of `dir` below the watched root it lies under.
    pub fn walk_up_to_root(
        &mut self,
        dir: OwnedFd,
        roots: &[Vec<u8>],
        root_ids: &[(u64, u64)],
    ) -> Result<Vec<u8>, WalkEnd> {
        let mut names: Vec<Box<[u8]>> = Vec::new();
        let mut current = File::from(dir);
        let meta = current.metadata().map_err(|_| WalkEnd::NotFound)?;
        let mut id = (meta.dev(), meta.ino());
        if let Some(path) = self.cached_path(id, roots, root_ids) {
            return Ok(path);
        }
        for _ in 0..MAX_WALK_DEPTH {
            if let Some(i) = root_ids.iter().position(|r| *r == id) {
                let mut path = roots.get(i).ok_or(WalkEnd::NotFound)?.clone();
                for name in names.iter().rev() {
                    if !path.ends_with(b"/") {
                        path.push(b'/');
                    }
                    path.extend_from_slice(name);
                }
                return Ok(path);
            }
            let parent =
                File::from(sys::open_parent(current.as_fd()).map_err(|_| WalkEnd::NotFound)?);
            let parent_meta = parent.metadata().map_err(|_| WalkEnd::NotFound)?;
            let parent_id = (parent_meta.dev(), parent_meta.ino());
            if parent_id == id {
                return Err(WalkEnd::NotFound); // the top of the file system: no watched root above
            }
            names.push(self.name_in(&parent, parent_meta.ino(), id)?);
            current = parent;
            id = parent_id;
        }
        Err(WalkEnd::NotFound)
    }

    /// The path of directory `id` from the cached names alone, checked by opening it down from
    /// its root one component at a time (no link followed) and comparing the inode: one call per
    /// level instead of the walk's four. `None` when the cache does not reach a root or the way
    /// changed (then the walk runs and refreshes the cache).
    fn cached_path(
        &self,
        id: (u64, u64),
        roots: &[Vec<u8>],
        root_ids: &[(u64, u64)],
    ) -> Option<Vec<u8>> {
        let mut chain: Vec<&[u8]> = Vec::new();
        let mut at = id;
        let root = loop {
            if let Some(i) = root_ids.iter().position(|r| *r == at) {
                break i;
            }
            if chain.len() >= MAX_WALK_DEPTH {
                return None;
            }
            let (parent_ino, name) = self.names.get(&at)?;
            chain.push(name);
            at = (at.0, *parent_ino);
        };
        let root_path = roots.get(root)?;
        let mut fd: OwnedFd = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(std::ffi::OsStr::from_bytes(root_path))
            .ok()?
            .into();
        let mut path = root_path.clone();
        for name in chain.iter().rev() {
            fd = sys::open_subdir(fd.as_fd(), name).ok()?;
            if !path.ends_with(b"/") {
                path.push(b'/');
            }
            path.extend_from_slice(name);
        }
        let meta = File::from(fd).metadata().ok()?;
        ((meta.dev(), meta.ino()) == id).then_some(path)
    }

    /// The name under which `parent` (inode `parent_ino`) holds directory `id`.
    fn name_in(
        &mut self,
        parent: &File,
        parent_ino: u64,
        id: (u64, u64),
    ) -> Result<Box<[u8]>, WalkEnd> {
        let parent_dir = format!("/proc/self/fd/{}", parent.as_raw_fd());
        if let Some((cached_parent, name)) = self.names.get(&id)
            && *cached_parent == parent_ino
        {
            // Still there under that name (a rename within the parent would have changed it)?
            let entry = std::path::Path::new(&parent_dir).join(std::ffi::OsStr::from_bytes(name));
            if fs::symlink_metadata(entry).is_ok_and(|m| m.ino() == id.1 && m.dev() == id.0) {
                return Ok(name.clone());
            }
        }
        let listing = fs::read_dir(&parent_dir).map_err(|_| WalkEnd::NotFound)?;
        let mut found = None;
        for entry in listing {
            let Ok(entry) = entry else { continue };
            if self.tokens == 0 || self.scanned_this_read >= MAX_SCANNED_PER_READ {
                return found.ok_or(WalkEnd::Abandoned);
            }
            self.scanned_this_read += 1;
            self.tokens -= 1;
            // Remember every subdirectory met (from the listing's type, no extra call): its
            // siblings' events need the same listing.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir {
                continue;
            }
            let name = entry.file_name().into_vec().into_boxed_slice();
            if entry.ino() == id.1 {
                found = Some(name.clone());
            }
            if self.names.len() >= MAX_CACHED {
                self.names.clear();
            }
            self.names.insert((id.0, entry.ino()), (parent_ino, name));
        }
        found.ok_or(WalkEnd::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn id(p: &std::path::Path) -> (u64, u64) {
        let m = fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    fn open(p: &std::path::Path) -> OwnedFd {
        File::open(p).unwrap().into()
    }

    #[test]
    fn a_level_is_listed_once_for_all_its_subdirectories() {
        let root = tempfile::tempdir().unwrap();
        let crowded = root.path().join("crowded");
        fs::create_dir(&crowded).unwrap();
        for i in 0..200 {
            fs::write(crowded.join(format!("f{i}")), b"").unwrap();
        }
        for i in 0..50 {
            fs::create_dir(crowded.join(format!("leaf{i}"))).unwrap();
        }
        let roots = vec![root.path().as_os_str().as_bytes().to_vec()];
        let root_ids = vec![id(root.path())];
        let mut names = DirNames::default();
        names.new_read();
        for i in 0..50 {
            let leaf = crowded.join(format!("leaf{i}"));
            let path = names
                .walk_up_to_root(open(&leaf), &roots, &root_ids)
                .unwrap();
            assert_eq!(path, leaf.as_os_str().as_bytes());
        }
        // One listing of `crowded` (250 entries) and one of the root (1), not 50 of each.
        assert!(names.scanned() <= 251 + 1, "{}", names.scanned());
        // Later walks take the cached names, checked from the root down: nothing listed.
        names.new_read();
        let leaf = crowded.join("leaf7");
        let path = names
            .walk_up_to_root(open(&leaf), &roots, &root_ids)
            .unwrap();
        assert_eq!(path, leaf.as_os_str().as_bytes());
        assert_eq!(names.scanned(), 0);
    }

    #[test]
    fn a_renamed_directory_is_not_named_from_a_stale_cache() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("a")).unwrap();
        let roots = vec![root.path().as_os_str().as_bytes().to_vec()];
        let root_ids = vec![id(root.path())];
        let mut names = DirNames::default();
        let a = root.path().join("a");
        names.walk_up_to_root(open(&a), &roots, &root_ids).unwrap();
        fs::rename(&a, root.path().join("b")).unwrap();
        let path = names
            .walk_up_to_root(open(&root.path().join("b")), &roots, &root_ids)
            .unwrap();
        assert_eq!(path, root.path().join("b").as_os_str().as_bytes());
        // A directory swapped for a link to it is not taken from the cache through the link.
        fs::create_dir(root.path().join("b").join("c")).unwrap();
        let c = root.path().join("b").join("c");
        names.walk_up_to_root(open(&c), &roots, &root_ids).unwrap();
        let real = tempfile::tempdir().unwrap();
        fs::rename(root.path().join("b"), real.path().join("b")).unwrap();
        std::os::unix::fs::symlink(real.path().join("b"), root.path().join("b")).unwrap();
        let moved = real.path().join("b").join("c");
        assert!(
            names
                .walk_up_to_root(open(&moved), &roots, &root_ids)
                .is_err()
        );
    }

    #[test]
    fn a_walk_over_the_budget_is_abandoned_not_finished() {
        let root = tempfile::tempdir().unwrap();
        let crowded = root.path().join("crowded");
        fs::create_dir(&crowded).unwrap();
        fs::create_dir(crowded.join("leaf")).unwrap();
        let roots = vec![root.path().as_os_str().as_bytes().to_vec()];
        let root_ids = vec![id(root.path())];
        let mut names = DirNames {
            tokens: 0,
            ..DirNames::default()
        };
        let end = names
            .walk_up_to_root(open(&crowded.join("leaf")), &roots, &root_ids)
            .unwrap_err();
        assert_eq!(end, WalkEnd::Abandoned);
        // A new read right away earns (almost) nothing: still abandoned.
        names.new_read();
        assert!(names.tokens < 1000, "{}", names.tokens);
        names.tokens = 0;
        assert_eq!(
            names.walk_up_to_root(open(&crowded.join("leaf")), &roots, &root_ids),
            Err(WalkEnd::Abandoned)
        );
        // Time earns the budget back.
        names.refilled = Instant::now() - std::time::Duration::from_secs(2);
        names.new_read();
        assert_eq!(names.tokens, MAX_SCANNED_PER_READ);
        assert!(
            names
                .walk_up_to_root(open(&crowded.join("leaf")), &roots, &root_ids)
                .is_ok()
        );
    }

    #[test]
    fn no_watched_root_above_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let roots = vec![root.path().as_os_str().as_bytes().to_vec()];
        let root_ids = vec![id(root.path())];
        let mut names = DirNames::default();
        assert_eq!(
            names.walk_up_to_root(open(other.path()), &roots, &root_ids),
            Err(WalkEnd::NotFound)
        );
    }
}
