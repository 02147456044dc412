//! Unix: `O_NOFOLLOW`, `O_NONBLOCK`, `fstat` on the opened descriptor, modes and owners.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::OFlags;

use crate::SafeFsError;

/// `O_NOFOLLOW` makes opening a symbolic link fail (`ELOOP`); `O_NONBLOCK` makes opening a FIFO
/// with no peer fail or return at once instead of waiting (a regular file ignores it).
fn no_follow_flags() -> i32 {
    (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32
}

pub fn open_no_follow(path: &Path, options: &mut OpenOptions) -> Result<File, SafeFsError> {
    options
        .custom_flags(no_follow_flags())
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => SafeFsError::Link {
                path: path.to_path_buf(),
            },
            Some(code) if code == rustix::io::Errno::NXIO.raw_os_error() => {
                SafeFsError::NotRegular {
                    path: path.to_path_buf(),
                }
            }
            // `fs.protected_symlinks`: the kernel refuses another user's link in a sticky
            // directory with EACCES before `O_NOFOLLOW` would; it is still a planted link.
            _ if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
                SafeFsError::Link {
                    path: path.to_path_buf(),
                }
            }
            _ => SafeFsError::io("open", path, e),
        })
}

pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    // O_EXCL never follows a symbolic link at the last component, dangling or not.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(OFlags::CLOEXEC.bits() as i32)
        .mode(mode)
        .open(path)
}

pub fn check_own_regular_file(path: &Path, file: &File) -> Result<(), SafeFsError> {
    let meta = file
        .metadata()
        .map_err(|e| SafeFsError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(SafeFsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SafeFsError::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
        });
    }
    if meta.nlink() > 1 {
        return Err(SafeFsError::HardLinked {
            path: path.to_path_buf(),
            links: meta.nlink(),
        });
    }
    Ok(())
}

pub fn is_system_char_device(file: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    file.metadata()
        .is_ok_and(|m| m.file_type().is_char_device() && m.uid() == 0)
}

pub fn make_private(path: &Path, file: &File) -> Result<(), SafeFsError> {
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(|e| SafeFsError::io("set the mode of", path, e))
}

pub fn create_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

pub fn check_trusted_dir(dir: &Path, sticky_allowed: bool) -> Result<(), SafeFsError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| SafeFsError::io("inspect", dir, e))?;
    if meta.file_type().is_symlink() {
        return Err(SafeFsError::Link {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(SafeFsError::NotDirectory {
            path: dir.to_path_buf(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(SafeFsError::ForeignOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky_allowed && sticky) {
        return Err(SafeFsError::WritableByOthers {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) {
    // Best effort: some file systems refuse fsync on a directory; the rename itself is done.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Most symbolic links followed on one path (the kernel's own limit is 40).
const MAX_LINKS: usize = 40;

/// A directory on the way may be written by others only if it is sticky; it must belong to
/// root or to us.
fn check_way_dir(path: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), SafeFsError> {
    if meta.uid() != me && meta.uid() != 0 {
        return Err(SafeFsError::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(SafeFsError::WritableByOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Walks `dir` from `/` one component at a time, as the kernel resolves it: each directory is
/// checked with [`check_way_dir`]; a symbolic link must belong to root or to us, and the path it
/// holds is walked the same way; `..` goes to the parent of where the walk is. The first
/// component that does not exist ends the walk: nothing below it can have been planted.
pub fn check_dir_chain(dir: &Path) -> Result<(), SafeFsError> {
    let absolute = std::path::absolute(dir).map_err(|e| SafeFsError::io("resolve", dir, e))?;
    let me = rustix::process::geteuid().as_raw();
    let mut at = PathBuf::from("/");
    let root = std::fs::metadata(&at).map_err(|e| SafeFsError::io("inspect", &at, e))?;
    check_way_dir(&at, &root, me)?;
    let mut pending: VecDeque<OsString> = components_of(&absolute);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == "." || name.is_empty() {
            continue;
        }
        if name == ".." {
            at.pop();
            continue;
        }
        if name == "/" {
            at = PathBuf::from("/");
            continue;
        }
        let next = at.join(&name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SafeFsError::io("inspect", &next, e)),
        };
        if meta.file_type().is_symlink() {
            if meta.uid() != me && meta.uid() != 0 {
                return Err(SafeFsError::ForeignLink {
                    path: next,
                    owner: meta.uid(),
                });
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(SafeFsError::TooManyLinks {
                    path: dir.to_path_buf(),
                    limit: MAX_LINKS,
                });
            }
            let target = std::fs::read_link(&next)
                .map_err(|e| SafeFsError::io("read the link", &next, e))?;
            for part in components_of(&target).into_iter().rev() {
                pending.push_front(part);
            }
            continue;
        }
        if !meta.is_dir() {
            return Err(SafeFsError::NotDirectory { path: next });
        }
        check_way_dir(&next, &meta, me)?;
        at = next;
    }
    Ok(())
}

/// The components of `path` as names, `/` first for an absolute path.
fn components_of(path: &Path) -> VecDeque<OsString> {
    path.components()
        .map(|c| match c {
            Component::RootDir | Component::Prefix(_) => OsString::from("/"),
            Component::CurDir => OsString::from("."),
            Component::ParentDir => OsString::from(".."),
            Component::Normal(name) => name.to_owned(),
        })
        .collect()
}
