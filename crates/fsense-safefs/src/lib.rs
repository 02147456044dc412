//! Files a privileged process creates and trusts.
//!
//! fsense runs as root (Linux) or as an administrator or LocalSystem (Windows), often in directories
//! that other users can write to. Every file it creates therefore goes through this crate:
//!
//! - [`create_private`]: a stream the program writes as it goes (event logs, captures, spools). The
//!   last path component is never followed if it is a symbolic link, an existing file is reused only
//!   when it is a regular file of ours with a single link (never someone else's file, never a FIFO or
//!   device), and the file ends up with mode 0600.
//! - [`write_atomic`]: a whole file (summaries, state, metadata, public keys): written to a private
//!   temporary file with a unique name in the same directory, synced, then renamed over the target.
//!   A rename replaces a planted symbolic link instead of following it.
//! - [`create_new_private`]: a file that must not exist yet (private keys).
//! - [`open_regular`]: reading a file that must be a regular file, without following a final
//!   symbolic link and without blocking on a FIFO.
//! - [`check_trusted_dir`] / [`ensure_private_dir`]: a directory whose contents the program trusts
//!   (the content state directory) must be ours and writable by nobody else, and every directory
//!   on the way to it must pass [`check_dir_path`].
//! - [`check_dir_path`]: every directory the program writes into (spool, state, outputs, and
//!   every directory on the way to them, from `/`): owned by root or this user, writable by no one
//!   else unless sticky (`/tmp`, where others cannot replace our entries), and no symbolic link
//!   on the way that another user owns. Links of root's or ours are followed and the way they lead
//!   is checked the same way. Directories that do not exist yet pass (we create them). Every
//!   function here that creates a file runs it on the file's directory first, so a link planted
//!   in an intermediate directory (`udir/logs -> /root-only`) is refused, not followed.
//!
//! On Windows the final component is opened with `FILE_FLAG_OPEN_REPARSE_POINT` and refused when it
//! is a reparse point (symbolic link, junction); ownership and modes are Unix notions, and the
//! administrators-and-SYSTEM ACL is applied by the consumer's FFI layer.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

/// Why a file or directory was refused, or what failed. Every message names the path and reads as
/// one line.
#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("refusing {path}: it is a symbolic link or reparse point")]
    Link { path: PathBuf },
    #[error("refusing {path}: it is a symbolic link of another user (uid {owner})")]
    ForeignLink { path: PathBuf, owner: u32 },
    #[error("refusing {path}: more than {limit} symbolic links on the way")]
    TooManyLinks { path: PathBuf, limit: usize },
    #[error("refusing {path}: it is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("refusing {path}: it is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("refusing {path}: it belongs to another user (uid {owner})")]
    ForeignOwner { path: PathBuf, owner: u32 },
    #[error("refusing {path}: it has {links} hard links")]
    HardLinked { path: PathBuf, links: u64 },
    #[error("refusing {path}: it is writable by other users (mode {mode:04o})")]
    WritableByOthers { path: PathBuf, mode: u32 },
    #[error("refusing {path}: it already exists")]
    Exists { path: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SafeFsError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Who may read a file written with [`write_atomic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Owner only (0600): anything that names files, and anything secret.
    Private,
    /// Everyone may read (0644): public material such as a repository's root metadata.
    Public,
}

impl Visibility {
    fn mode(self) -> u32 {
        match self {
            Self::Private => 0o600,
            Self::Public => 0o644,
        }
    }
}

/// Opens `path` for writing from the start, creating it with mode 0600.
///
/// An existing file is reused (truncated) only if it is a regular file owned by this user with one
/// link; a symbolic link, a FIFO, another user's file or a hard link to one is refused. A
/// character device owned by root (`/dev/null`) is written as it is.
pub fn create_private(path: &Path) -> Result<File, SafeFsError> {
    check_dir_path(&parent_of(path))?;
    let file = imp::open_no_follow(path, OpenOptions::new().write(true).create(true))?;
    // A character device of root's that the caller named itself (`--output /dev/null`): only
    // root makes device nodes, and a planted link to one was refused by the open.
    if imp::is_system_char_device(&file) {
        return Ok(file);
    }
    imp::check_own_regular_file(path, &file)?;
    file.set_len(0)
        .map_err(|e| SafeFsError::io("truncate", path, e))?;
    imp::make_private(path, &file)?;
    Ok(file)
}

/// Like [`create_private`], but appends to an existing file instead of truncating it (spools).
pub fn append_private(path: &Path) -> Result<File, SafeFsError> {
    check_dir_path(&parent_of(path))?;
    let file = imp::open_no_follow(
        path,
        OpenOptions::new().read(true).append(true).create(true),
    )?;
    imp::check_own_regular_file(path, &file)?;
    imp::make_private(path, &file)?;
    Ok(file)
}

/// Creates `path`, which must not exist (not even as a dangling symbolic link), with mode 0600.
pub fn create_new_private(path: &Path) -> Result<File, SafeFsError> {
    check_dir_path(&parent_of(path))?;
    imp::create_new(path, 0o600).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => SafeFsError::Exists {
            path: path.to_path_buf(),
        },
        _ => SafeFsError::io("create", path, e),
    })
}

/// Opens `path` for reading; it must be a regular file and is not followed if it is a symbolic link.
/// Opening never blocks (a FIFO is refused, not waited on).
pub fn open_regular(path: &Path) -> Result<File, SafeFsError> {
    let file = imp::open_no_follow(path, OpenOptions::new().read(true))?;
    let meta = file
        .metadata()
        .map_err(|e| SafeFsError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(SafeFsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Replaces `path` with `bytes` atomically: readers see the old file or the new one, never a part,
/// and a symbolic link planted at `path` is replaced, not followed. The directory is synced after
/// the rename, so the new file survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], visibility: Visibility) -> Result<(), SafeFsError> {
    let (tmp_path, mut tmp) = create_temp_beside(path, visibility)?;
    let written = tmp
        .write_all(bytes)
        .and_then(|()| tmp.sync_all())
        .map_err(|e| SafeFsError::io("write", &tmp_path, e));
    drop(tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    rename_into_place(&tmp_path, path)
}

/// A new private file beside `path` with a name no other process or thread uses, for a caller that
/// fills it and then calls [`rename_into_place`].
pub fn create_temp_beside(
    path: &Path,
    visibility: Visibility,
) -> Result<(PathBuf, File), SafeFsError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = parent_of(path);
    check_dir_path(&dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // A collision with a leftover from a crashed process is possible in principle: try a few names.
    for _ in 0..16 {
        let unique = format!(
            ".{name}.{}.{nanos:08x}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp_path = dir.join(unique);
        match imp::create_new(&tmp_path, visibility.mode()) {
            Ok(file) => return Ok((tmp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(SafeFsError::io("create", &tmp_path, e)),
        }
    }
    Err(SafeFsError::Exists {
        path: dir.join(format!(".{name}.*.tmp")),
    })
}

/// Renames `tmp_path` over `path` and syncs the directory.
pub fn rename_into_place(tmp_path: &Path, path: &Path) -> Result<(), SafeFsError> {
    if let Err(e) = std::fs::rename(tmp_path, path) {
        let _ = std::fs::remove_file(tmp_path);
        return Err(SafeFsError::io("replace", path, e));
    }
    imp::sync_dir(&parent_of(path));
    Ok(())
}

/// Checks that the program may trust what `dir` holds: a real directory (not a link), owned by this
/// user or root, writable by no one else; and the way to it passes [`check_dir_path`].
pub fn check_trusted_dir(dir: &Path) -> Result<(), SafeFsError> {
    check_dir_path(&parent_of(dir))?;
    imp::check_trusted_dir(dir, false)
}

/// Checks every directory on the way to `dir`, and `dir` itself if it exists, as a place this
/// program may write into (see the crate documentation). The error names the first directory or
/// link that fails, in one line.
///
/// On Windows, where owners and modes are not checked here (the consumer's FFI layer applies
/// the ACLs), a reparse point (symbolic link, junction) on the way is refused.
pub fn check_dir_path(dir: &Path) -> Result<(), SafeFsError> {
    imp::check_dir_chain(dir)
}

/// Creates `dir` (mode 0700) if it does not exist, then [`check_trusted_dir`]. The way to it is
/// checked before anything is created.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SafeFsError> {
    check_dir_path(&parent_of(dir))?;
    match imp::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(SafeFsError::io("create", dir, e)),
    }
    check_trusted_dir(dir)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(all(test, unix))]
mod parent_tests;
#[cfg(all(test, unix))]
mod tests;
