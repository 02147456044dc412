//! The contents of a directory moved into the watched paths (review N13).
//!
//! Moving a directory in is one rename event: the files it brings get no event of their own, so a
//! create rule (`**/*.docm`) never saw them. When a directory is renamed from outside the watched
//! paths (or from a place that could not be named) to inside them, its contents are listed, as
//! they are when the event is read, and each entry is reported as moved in with it: a rename from
//! its old place to its new one, which is what happened to it and what create rules match.
//!
//! The listing is bounded: at most [`MAX_LISTED_PER_READ`] entries per read and per second (the
//! source's token bucket) and [`MAX_LIST_DEPTH`] levels, symbolic links are not followed, and a directory that could not be
//! listed in full (bound hit, unreadable, path too long) is counted in `moved_in_not_listed`.

use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// Most entries listed per read, over all directories moved in during it, and per second.
pub const MAX_LISTED_PER_READ: usize = 4096;
/// Most levels listed below a directory moved in.
pub const MAX_LIST_DEPTH: usize = 32;

/// One entry found under a directory moved in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedIn {
    /// Its path now, inside the watched paths.
    pub path: Vec<u8>,
    /// Its path before the move (empty when the old place is unknown).
    pub old_path: Vec<u8>,
    pub is_dir: bool,
}

/// Lists what `new_dir` holds (it was at `old_dir`) into `out`, within `budget` entries (used up
/// as it goes). Returns how many directories could not be listed in full.
pub fn list(new_dir: &[u8], old_dir: &[u8], budget: &mut usize, out: &mut Vec<MovedIn>) -> u64 {
    let mut not_listed = 0;
    // (path now, old path, depth below `new_dir`)
    let mut stack = vec![(new_dir.to_vec(), old_dir.to_vec(), 0usize)];
    while let Some((dir, old, depth)) = stack.pop() {
        let listing = fs::read_dir(Path::new(std::ffi::OsStr::from_bytes(&dir)));
        let Ok(listing) = listing else {
            not_listed += 1;
            continue;
        };
        for entry in listing {
            let Ok(entry) = entry else {
                not_listed += 1;
                break;
            };
            if *budget == 0 {
                not_listed += 1 + stack.len() as u64;
                return not_listed;
            }
            *budget -= 1;
            let name = entry.file_name().into_vec();
            let join = |base: &[u8]| {
                if base.is_empty() {
                    return Vec::new();
                }
                let mut p = base.to_vec();
                if !p.ends_with(b"/") {
                    p.push(b'/');
                }
                p.extend_from_slice(&name);
                p
            };
            let (path, old_path) = (join(&dir), join(&old));
            // The type from the listing: a symbolic link is an entry, never followed.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                if depth + 1 < MAX_LIST_DEPTH {
                    stack.push((path.clone(), old_path.clone(), depth + 1));
                } else {
                    not_listed += 1;
                }
            }
            out.push(MovedIn {
                path,
                old_path,
                is_dir,
            });
        }
    }
    not_listed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(p: &Path) -> Vec<u8> {
        p.as_os_str().as_bytes().to_vec()
    }

    #[test]
    fn every_entry_is_listed_with_its_old_path() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("pkg");
        fs::create_dir_all(pkg.join("sub")).unwrap();
        fs::write(pkg.join("a.docm"), b"x").unwrap();
        fs::write(pkg.join("sub").join("b.docm"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", pkg.join("link")).unwrap();
        let mut budget = 100;
        let mut out = Vec::new();
        assert_eq!(list(&b(&pkg), b"/old/pkg", &mut budget, &mut out), 0);
        let mut found: Vec<(Vec<u8>, Vec<u8>, bool)> = out
            .into_iter()
            .map(|m| (m.path, m.old_path, m.is_dir))
            .collect();
        found.sort();
        let mut want = vec![
            (b(&pkg.join("a.docm")), b"/old/pkg/a.docm".to_vec(), false),
            (b(&pkg.join("link")), b"/old/pkg/link".to_vec(), false),
            (b(&pkg.join("sub")), b"/old/pkg/sub".to_vec(), true),
            (
                b(&pkg.join("sub/b.docm")),
                b"/old/pkg/sub/b.docm".to_vec(),
                false,
            ),
        ];
        want.sort();
        assert_eq!(found, want);
        assert_eq!(budget, 96);
    }

    #[test]
    fn the_budget_bounds_the_listing_and_the_rest_is_counted() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..10 {
            fs::write(d.path().join(format!("f{i}")), b"").unwrap();
        }
        let mut budget = 4;
        let mut out = Vec::new();
        assert_eq!(list(&b(d.path()), b"", &mut budget, &mut out), 1);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|m| m.old_path.is_empty()));
    }
}
