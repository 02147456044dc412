//! Windows: the final component is opened as the reparse point itself and refused if it is one.
//! Owners and modes are Unix notions; the ACL is set by the consumer's FFI layer.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::SafeFsError;

const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x0000_0400;

fn refuse_reparse(path: &Path, file: &File) -> Result<(), SafeFsError> {
    let meta = file
        .metadata()
        .map_err(|e| SafeFsError::io("inspect", path, e))?;
    if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(SafeFsError::Link {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

pub fn open_no_follow(path: &Path, options: &mut OpenOptions) -> Result<File, SafeFsError> {
    let file = options
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
        .map_err(|e| SafeFsError::io("open", path, e))?;
    refuse_reparse(path, &file)?;
    Ok(file)
}

pub fn create_new(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

pub fn check_own_regular_file(path: &Path, file: &File) -> Result<(), SafeFsError> {
    refuse_reparse(path, file)?;
    if !file
        .metadata()
        .map_err(|e| SafeFsError::io("inspect", path, e))?
        .is_file()
    {
        return Err(SafeFsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

pub fn is_system_char_device(_file: &File) -> bool {
    false
}

pub fn make_private(_path: &Path, _file: &File) -> Result<(), SafeFsError> {
    Ok(())
}

pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

pub fn check_trusted_dir(dir: &Path, _sticky_allowed: bool) -> Result<(), SafeFsError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| SafeFsError::io("inspect", dir, e))?;
    if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(SafeFsError::Link {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(SafeFsError::NotDirectory {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

pub fn sync_dir(_dir: &Path) {}

/// Refuses a reparse point (symbolic link, junction) in any directory on the way to `dir`; the
/// first component that does not exist ends the walk.
pub fn check_dir_chain(dir: &Path) -> Result<(), SafeFsError> {
    let absolute = std::path::absolute(dir).map_err(|e| SafeFsError::io("resolve", dir, e))?;
    let mut ways: Vec<&Path> = absolute.ancestors().collect();
    ways.reverse();
    for way in ways {
        if way.parent().is_none() {
            continue; // the volume root
        }
        let meta = match std::fs::symlink_metadata(way) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SafeFsError::io("inspect", way, e)),
        };
        if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
            return Err(SafeFsError::Link {
                path: way.to_path_buf(),
            });
        }
        if !meta.is_dir() {
            return Err(SafeFsError::NotDirectory {
                path: way.to_path_buf(),
            });
        }
    }
    Ok(())
}
