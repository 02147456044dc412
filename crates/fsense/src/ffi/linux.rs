//! fanotify and a few process facts through `libc`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `sysconf(_SC_CLK_TCK)`: the unit of `/proc/PID/stat` times. 100 if the call fails.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer name and touches no caller memory.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
}

/// `fanotify_init`: a notification group. The returned file reads raw event records.
pub fn fanotify_init(flags: u32, event_f_flags: u32) -> io::Result<File> {
    // SAFETY: fanotify_init takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::fanotify_init(flags, event_f_flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel just created for us and nobody else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `fanotify_mark` on `path`.
pub fn fanotify_mark(group: &File, flags: u32, mask: u64, path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `group` is an open fanotify descriptor borrowed for the call; `c_path` is a valid
    // NUL-terminated string that outlives it.
    let rc = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            flags,
            mask,
            libc::AT_FDCWD,
            c_path.as_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout_ms` passes. Returns whether it is readable; an
/// interrupting signal counts as "not yet".
pub fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd on our stack, and we pass a count of 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(rc > 0 && pfd.revents & libc::POLLIN != 0)
}

/// The file system id (`statfs.f_fsid`) of the file system holding `file`, as the 8 bytes
/// fanotify reports in its info records.
pub fn fsid(file: &File) -> io::Result<[u8; 8]> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open for the duration of the call and `st` is a valid, writable statfs.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsid_t is two c_ints (8 bytes, checked by transmute at compile time) and any bit
    // pattern is a valid [u8; 8].
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(st.f_fsid) })
}

/// `open_by_handle_at(mount, handle, O_PATH)`: opens the object a fanotify file handle names.
/// `handle` is the opaque `f_handle` bytes; their length is checked against `MAX_HANDLE_SZ`.
pub fn open_by_handle(mount: &File, handle_type: i32, handle: &[u8]) -> io::Result<OwnedFd> {
    const MAX_HANDLE_SZ: usize = 128;
    if handle.is_empty() || handle.len() > MAX_HANDLE_SZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file handle of invalid length",
        ));
    }
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, built in u32
    // words so that it has the struct's 4-byte alignment.
    let mut words = vec![0u32; 2 + handle.len().div_ceil(4)];
    words[0] = handle.len() as u32;
    words[1] = handle_type as u32;
    for (i, b) in handle.iter().enumerate() {
        let word = &mut words[2 + i / 4];
        let mut bytes = word.to_ne_bytes();
        bytes[i % 4] = *b;
        *word = u32::from_ne_bytes(bytes);
    }
    // SAFETY: `words` is a 4-aligned buffer laid out as a `struct file_handle` whose
    // `handle_bytes` equals the bytes that follow; the kernel reads at most that much. `mount`
    // is an open descriptor for the duration of the call.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            words.as_mut_ptr().cast::<libc::file_handle>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of the pidfd a fanotify event carried (`FAN_REPORT_PIDFD`), so that it is
/// closed when dropped. Negative values (`FAN_NOPIDFD`, `FAN_EPIDFD`) are not descriptors.
///
/// Only for the pidfd field of an event this process just read from its own fanotify group: the
/// kernel installed that descriptor for the reader, and nothing else refers to it.
pub fn adopt_event_pidfd(raw: i32) -> Option<OwnedFd> {
    if raw < 0 {
        return None;
    }
    // SAFETY: per this function's contract `raw` is a descriptor the kernel just created for us
    // while copying the event out, owned by nobody else; OwnedFd closes it exactly once.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether the process a pidfd refers to has not exited yet (a zombie still counts: it keeps
/// its pid). `pidfd_send_signal` with signal 0 only checks.
pub fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: the syscall takes a descriptor borrowed for the call, signal 0, a null siginfo
    // (allowed) and flags 0; it touches no caller memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// `openat(dir, "..", O_PATH | O_DIRECTORY)`: the parent of a directory opened by handle.
pub fn open_parent(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor borrowed for the call; the name is a static
    // NUL-terminated string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c"..".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW)`: the subdirectory `name` of `dir`,
/// never through a symbolic link (a link there fails with `ENOTDIR`). `name` is one component.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    if name.is_empty() || name.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `dir` is an open descriptor borrowed for the call; `name` is a NUL-terminated
    // string that outlives it.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_are_positive() {
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn bad_handles_are_refused_before_the_call() {
        let dir = File::open("/").unwrap();
        assert!(open_by_handle(&dir, 1, &[]).is_err());
        assert!(open_by_handle(&dir, 1, &[0u8; 129]).is_err());
    }

    #[test]
    fn negative_pidfds_are_not_adopted() {
        assert!(adopt_event_pidfd(-1).is_none());
        assert!(adopt_event_pidfd(-2).is_none());
    }

    #[test]
    fn the_parent_of_a_directory_is_opened_relative_to_it() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let child = dir.path().join("c");
        std::fs::create_dir(&child).unwrap();
        let fd = File::open(&child).unwrap();
        let parent = File::from(open_parent(fd.as_fd()).unwrap());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            parent.metadata().unwrap().ino(),
            std::fs::metadata(dir.path()).unwrap().ino()
        );
    }

    #[test]
    fn a_subdirectory_is_opened_but_never_through_a_link() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("d"), dir.path().join("l")).unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let fd = File::open(dir.path()).unwrap();
        assert!(open_subdir(fd.as_fd(), b"d").is_ok());
        assert!(open_subdir(fd.as_fd(), b"l").is_err());
        assert!(open_subdir(fd.as_fd(), b"f").is_err());
        assert!(open_subdir(fd.as_fd(), b"a/b").is_err());
        assert!(open_subdir(fd.as_fd(), b"").is_err());
        assert!(open_subdir(fd.as_fd(), b"x\0y").is_err());
    }

    #[test]
    fn fsid_of_the_same_file_system_is_stable() {
        let a = File::open("/proc/self").unwrap();
        let b = File::open("/proc").unwrap();
        assert_eq!(fsid(&a).unwrap(), fsid(&b).unwrap());
    }
}
