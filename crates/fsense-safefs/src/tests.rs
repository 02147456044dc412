//! Unix behaviour of each entry point, including the attacks it exists for.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::*;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn create_private_makes_an_owner_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    create_private(&path).unwrap().write_all(b"x").unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(fs::read(&path).unwrap(), b"x");
}

#[test]
fn create_private_truncates_our_own_file_and_makes_it_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    fs::write(&path, b"old contents").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    create_private(&path).unwrap().write_all(b"new").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn create_private_refuses_a_planted_symlink_and_leaves_its_target_alone() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"secret").unwrap();
    let planted = dir.path().join("events.json");
    symlink(&victim, &planted).unwrap();
    let err = create_private(&planted).unwrap_err();
    assert!(matches!(err, SafeFsError::Link { .. }), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"secret");
    // A dangling link must not create its target either.
    let dangling = dir.path().join("dangling");
    symlink(dir.path().join("created-by-us"), &dangling).unwrap();
    assert!(create_private(&dangling).is_err());
    assert!(!dir.path().join("created-by-us").exists());
}

#[test]
fn create_private_refuses_a_hard_link() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"secret").unwrap();
    let planted = dir.path().join("events.json");
    fs::hard_link(&victim, &planted).unwrap();
    let err = create_private(&planted).unwrap_err();
    assert!(
        matches!(err, SafeFsError::HardLinked { links: 2, .. }),
        "{err}"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"secret");
}

#[test]
fn create_private_refuses_a_fifo_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let err = create_private(&fifo).unwrap_err();
    assert!(matches!(err, SafeFsError::NotRegular { .. }), "{err}");
    let err = open_regular(&fifo).unwrap_err();
    assert!(matches!(err, SafeFsError::NotRegular { .. }), "{err}");
}

#[test]
fn create_private_refuses_another_users_file() {
    if !is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    fs::write(&theirs, b"their data").unwrap();
    rustix::fs::chown(
        &theirs,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let err = create_private(&theirs).unwrap_err();
    assert!(
        matches!(err, SafeFsError::ForeignOwner { owner: 65534, .. }),
        "{err}"
    );
    assert_eq!(fs::read(&theirs).unwrap(), b"their data");
}

#[test]
fn append_private_keeps_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool");
    append_private(&path).unwrap().write_all(b"a").unwrap();
    append_private(&path).unwrap().write_all(b"b").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"ab");
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn create_new_private_refuses_anything_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    create_new_private(&key).unwrap();
    assert_eq!(mode_of(&key), 0o600);
    assert!(matches!(
        create_new_private(&key),
        Err(SafeFsError::Exists { .. })
    ));
    let dangling = dir.path().join("dangling");
    symlink(dir.path().join("elsewhere"), &dangling).unwrap();
    assert!(matches!(
        create_new_private(&dangling),
        Err(SafeFsError::Exists { .. })
    ));
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn write_atomic_replaces_a_planted_symlink_instead_of_following_it() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"secret").unwrap();
    let planted = dir.path().join("summary.json");
    symlink(&victim, &planted).unwrap();
    write_atomic(&planted, b"{}\n", Visibility::Private).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"secret");
    assert!(
        !fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&planted).unwrap(), b"{}\n");
    assert_eq!(mode_of(&planted), 0o600);
    write_atomic(&planted, b"pub", Visibility::Public).unwrap();
    assert_eq!(mode_of(&planted), 0o644);
}

#[test]
fn write_atomic_from_many_threads_leaves_one_whole_file_and_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let path = &path;
            s.spawn(move || {
                for _ in 0..50 {
                    write_atomic(path, &[t; 4096], Visibility::Private).unwrap();
                }
            });
        }
    });
    let mut bytes = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert!(bytes.iter().all(|b| *b == bytes[0]), "a torn file");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
}

#[test]
fn trusted_dir_rules() {
    let top = tempfile::tempdir().unwrap();
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let state = top.path().join("state");
    ensure_private_dir(&state).unwrap();
    assert_eq!(mode_of(&state), 0o700);
    check_trusted_dir(&state).unwrap();

    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    let err = check_trusted_dir(&state).unwrap_err();
    assert!(
        matches!(err, SafeFsError::WritableByOthers { mode: 0o777, .. }),
        "{err}"
    );
    // Sticky does not excuse the directory itself, only its parent.
    fs::set_permissions(&state, fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(check_trusted_dir(&state).is_err());
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();

    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(
        check_trusted_dir(&state),
        Err(SafeFsError::WritableByOthers { .. })
    ));
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    check_trusted_dir(&state).unwrap();

    let link = top.path().join("link");
    symlink(&state, &link).unwrap();
    assert!(matches!(
        check_trusted_dir(&link),
        Err(SafeFsError::Link { .. })
    ));
}

#[test]
fn trusted_dir_refuses_another_users_directory() {
    if !is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let state = top.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    rustix::fs::chown(&state, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
    let err = check_trusted_dir(&state).unwrap_err();
    assert!(
        matches!(err, SafeFsError::ForeignOwner { owner: 65534, .. }),
        "{err}"
    );
}

#[test]
fn errors_read_as_one_line_naming_the_path() {
    let err = SafeFsError::Link {
        path: "/tmp/x".into(),
    };
    assert_eq!(
        err.to_string(),
        "refusing /tmp/x: it is a symbolic link or reparse point"
    );
}

#[test]
fn create_private_writes_to_dev_null_as_it_is() {
    let mut f = create_private(Path::new("/dev/null")).unwrap();
    f.write_all(b"discarded").unwrap();
    assert_eq!(
        mode_of(Path::new("/dev/null")) & 0o666,
        0o666,
        "its mode was changed"
    );
}
