//! Files this program writes: event logs, captures and summaries.
//!
//! fsense runs as root or as an administrator, often with outputs in directories other users can
//! write to. Every output goes through `fsense-safefs`: a symbolic link (or reparse point) planted
//! at the path is refused or replaced, never followed; another user's file, a hard link, a FIFO
//! is refused (a character device of root's such as `/dev/null` is written as it is); new files
//! are private (mode 0600 on Unix; on Windows an ACL that grants only Administrators and SYSTEM),
//! since they name every file under the watched trees.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use fsense_safefs::Visibility;

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
