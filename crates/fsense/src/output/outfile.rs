//! Files this program writes: event logs, captures and summaries.
//!
//! fsense runs as root or as an administrator, often with outputs in directories other users can
//! write to. Every output goes through `fsense-safefs`: a symbolic link (or reparse point) planted
//! at the path is refused or replaced, never followed; another user's file, a hard link, a FIFO
//! is refused (a character device of root's such as `/dev/null` is written as it is); new files
//! are private (mode 0600 on Unix; on Windows an ACL that grants only Administrators and SYSTEM),
//! since they name every file under the watched trees. The directory an output goes into, and
//! every directory on the way to it, must be one this program may write into (review N10): a
//! symbolic link of another user's, a directory another user owns or can write to (unless sticky,
//! like `/tmp`) is refused in one line naming it, at start.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use fsense_safefs::Visibility;

/// Checks, before anything is written, the directory `path` would be written into and every
/// directory on the way to it (`fsense_safefs::check_dir_path`: owned by root or this user, not
/// writable by others unless sticky, no symbolic link of another user's on the way; on Windows no
/// reparse point). The error names the directory that failed, in one line. The create functions
/// below check again when they run; this is for outputs written only at the end (summaries), so
/// that a bad one is refused at start, not after the run.
pub fn check_dir_of(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fsense_safefs::check_dir_path(dir).map_err(|e| e.to_string())
}

/// A stream written as the program runs (`--output`, `--capture`), created or truncated.
pub fn create_stream(path: &Path) -> Result<File, String> {
    let file = fsense_safefs::create_private(path).map_err(|e| e.to_string())?;
    restrict(path, &file)?;
    Ok(file)
}

/// A whole file (`--summary-json`) written to a private temporary file and renamed into place.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let (tmp_path, mut tmp) =
        fsense_safefs::create_temp_beside(path, Visibility::Private).map_err(|e| e.to_string())?;
    let filled = restrict(&tmp_path, &tmp).and_then(|()| {
        tmp.write_all(bytes)
            .and_then(|()| tmp.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp_path.display()))
    });
    drop(tmp);
    if let Err(e) = filled {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    fsense_safefs::rename_into_place(&tmp_path, path).map_err(|e| e.to_string())
}

/// Windows: replaces the file's inherited ACL with one for Administrators and SYSTEM only.
#[cfg(windows)]
fn restrict(path: &Path, file: &File) -> Result<(), String> {
    crate::ffi::windows::restrict_to_administrators(file)
        .map_err(|e| format!("cannot restrict access to {}: {e}", path.display()))
}

/// Unix: `fsense-safefs` already created the file with mode 0600.
#[cfg(not(windows))]
fn restrict(_path: &Path, _file: &File) -> Result<(), String> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn streams_and_whole_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("events.json");
        create_stream(&stream).unwrap();
        assert_eq!(mode(&stream), 0o600);
        let summary = dir.path().join("summary.json");
        write_whole(&summary, b"{}\n").unwrap();
        assert_eq!(mode(&summary), 0o600);
        assert_eq!(std::fs::read(&summary).unwrap(), b"{}\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_others_can_write_is_refused_and_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_dir_of(&open.join("summary.json")).unwrap_err();
        assert!(err.contains(&open.display().to_string()), "{err}");
        assert!(err.contains("writable by other users"), "{err}");
        assert_eq!(err.lines().count(), 1);
        assert!(check_dir_of(&dir.path().join("summary.json")).is_ok());
        assert!(check_dir_of(Path::new("relative.json")).is_ok());
    }

    #[test]
    fn a_planted_symlink_is_neither_followed_nor_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        let link = dir.path().join("out");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = create_stream(&link).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        // A whole file replaces the link itself.
        write_whole(&link, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }
}
