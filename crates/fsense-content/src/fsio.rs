//! File helpers the distribution code shares: safefs refusals as content errors, bounded reads
//! of regular files, hashing, and syncing files and directories.

use std::io::Read;
use std::path::Path;

use fsense_safefs::SafeFsError;

use crate::{ContentError, ErrorKind};

/// A refusal from `fsense-safefs` (a file or directory we must not trust or touch), or its I/O
/// failure, as this crate's error.
pub(crate) fn safefs_error(err: SafeFsError) -> ContentError {
    let refused = !matches!(err, SafeFsError::Io { .. });
    let err = ContentError::failed(err.to_string());
    if refused {
        err.with_kind(ErrorKind::Refused)
    } else {
        err
    }
}

/// Reads a file that must be a regular file (no symbolic link, FIFO or device) of at most `limit`
/// bytes.
pub(crate) fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ContentError> {
    let file = fsense_safefs::open_regular(path).map_err(safefs_error)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ContentError::io("cannot read", path, e))?;
    if bytes.len() as u64 > limit {
        return Err(ContentError::refused(format!(
            "{} is over {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

pub(crate) fn is_not_found(err: &SafeFsError) -> bool {
    matches!(err, SafeFsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn fsync_file(path: &Path) -> Result<(), ContentError> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| ContentError::io("cannot sync", path, e))
}

/// Syncs a directory so that renames in it are durable (a no-op where directories cannot be
/// opened, e.g. Windows, whose rename is journaled by NTFS).
pub(crate) fn fsync_dir(path: &Path) -> Result<(), ContentError> {
    match std::fs::File::open(path) {
        Ok(dir) => match dir.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if cfg!(windows) => {
                let _ = e;
                Ok(())
            }
            Err(e) => Err(ContentError::io("cannot sync", path, e)),
        },
        Err(_) if cfg!(windows) => Ok(()),
        Err(e) => Err(ContentError::io("cannot open", path, e)),
    }
}
