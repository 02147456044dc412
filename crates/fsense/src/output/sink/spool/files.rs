//! The spool's files: its directory (checked like the content state directory), its lock, and
//! segment and `acked` files opened only as regular files of ours, read no further than a segment
//! can be long.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::super::frame::{FRAME_HEADER_LEN, MAX_ID, MAX_PAYLOAD};

const LOCK_FILE: &str = "lock";

/// The largest segment file the spool writes: a header, the largest segment (64 MiB), and the
/// frame that crossed that size. Recovery reads no more than this of any file.
pub const MAX_SEGMENT_FILE: u64 =
    super::SEGMENT_HEADER_LEN + (64 << 20) + (FRAME_HEADER_LEN + MAX_ID + MAX_PAYLOAD) as u64;

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::other(format!("refusing {}: {why}", path.display()))
}

/// Creates the directory if needed (mode 0700), checks that nobody else can write in it or
/// replace it (owned by root or this account, not writable by others, not a link; its parent
/// likewise unless sticky), and takes its lock.
pub fn prepare_dir(dir: &Path) -> io::Result<File> {
    fsense_safefs::ensure_private_dir(dir).map_err(io::Error::other)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = open_own(&lock_path, true)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("spool {} is in use by another fsense", dir.display()),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// A new file, mode 0600, refusing to follow a symlink planted at its name.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create_new(true);
    no_follow(&mut o);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// A new segment file holding `header`, synced with its directory entry. A header that cannot
/// be written (a full disk) leaves no file behind: a header-less segment would be refused at the
/// next start.
pub fn create_segment(dir: &Path, path: &Path, header: &[u8]) -> io::Result<File> {
    let mut file = match create_private(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // A leftover at the next segment's name (recovery set aside what it could not
            // read; the directory is ours alone): it holds nothing of the log.
            let _ = open_own(path, false)?;
            fs::remove_file(path)?;
            create_private(path)?
        }
        other => other?,
    };
    if let Err(e) = file.write_all(header).and_then(|()| file.sync_data()) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    sync_dir(dir);
    Ok(file)
}

/// An existing spool file (or the lock, created if `create`): opened without following a link
/// and without blocking on a FIFO, and refused unless it is a regular file of this account with
/// one link.
pub fn open_own(path: &Path, create: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(create);
    no_follow(&mut o);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(path).map_err(|e| match e.raw_os_error() {
        #[cfg(target_os = "linux")]
        Some(libc::ELOOP) => refused(path, "it is a symbolic link"),
        #[cfg(target_os = "linux")]
        Some(libc::ENXIO) => refused(path, "it is not a regular file"),
        _ => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(path, "it is not a regular file"));
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(refused(
                path,
                &format!("it belongs to another account (uid {})", meta.uid()),
            ));
        }
        if meta.nlink() > 1 {
            return Err(refused(
                path,
                &format!("it has {} hard links", meta.nlink()),
            ));
        }
    }
    Ok(file)
}

/// Up to `cap` bytes from the start of `file`, and whether there was more.
pub fn read_capped(file: &mut File, cap: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut v = Vec::new();
    Read::take(&mut *file, cap).read_to_end(&mut v)?;
    let more = file.metadata()?.len() > cap;
    Ok((v, more))
}

/// Best effort: a new or removed entry survives a power loss once its directory is synced.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(target_os = "linux")]
fn no_follow(o: &mut OpenOptions) {
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        o,
        libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
    );
}

#[cfg(not(target_os = "linux"))]
fn no_follow(_: &mut OpenOptions) {}

#[cfg(unix)]
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}
