//! Issue 24, N10: the directories on the way to a file root writes. The review planted, as
//! `nobody`, a link `udir/logs -> rootonly` and ran `--output udir/logs/events.json`: root
//! truncated and refilled `rootonly/events.json`. Needs root (to make files of another account).

use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::Path;

use super::*;

const NOBODY: u32 = 65_534;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every way of creating a file under `dir` is refused with a message naming `culprit`.
fn assert_every_create_refused(dir: &Path, culprit: &Path) {
    let file = dir.join("events.json");
    let results = [
        ("create_private", create_private(&file).map(drop)),
        ("append_private", append_private(&file).map(drop)),
        ("create_new_private", create_new_private(&file).map(drop)),
        (
            "write_atomic",
            write_atomic(&file, b"x", Visibility::Private),
        ),
        ("check_dir_path", check_dir_path(dir)),
        ("ensure_private_dir", ensure_private_dir(&dir.join("sub"))),
    ];
    for (call, result) in results {
        let err = result.expect_err(call);
        let text = err.to_string();
        assert!(
            text.contains(&culprit.display().to_string()),
            "{call}: `{text}` should name {}",
            culprit.display()
        );
        assert!(!text.contains('\n'));
    }
}

/// The review's reproduction, in a sticky world-writable directory (like `/tmp`) where
/// `nobody` may create entries: a link of `nobody`'s is not followed; root's own link is.
#[test]
fn a_link_planted_by_another_account_on_the_way_is_refused() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    mkdir(&shared, 0o1777);
    let root_only = dir.path().join("rootonly");
    mkdir(&root_only, 0o700);
    fs::write(root_only.join("events.json"), b"ROOT-ONLY-SECRET-LOG").unwrap();
    let planted = shared.join("logs");
    symlink(&root_only, &planted).unwrap();
    lchown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();

    assert_every_create_refused(&planted, &planted);
    assert_eq!(
        fs::read(root_only.join("events.json")).unwrap(),
        b"ROOT-ONLY-SECRET-LOG"
    );
    let err = create_private(&planted.join("events.json")).unwrap_err();
    assert!(err.to_string().contains("another user"), "{err}");
    // As the last component it is a planted link too, also where `fs.protected_symlinks`
    // makes the kernel answer EACCES before `O_NOFOLLOW` would.
    for result in [create_private(&planted), append_private(&planted)] {
        assert!(
            matches!(result, Err(SafeFsError::Link { .. })),
            "{result:?}"
        );
    }

    // The same link made by root itself is followed (as `/var/run -> /run` is).
    let own = shared.join("own-logs");
    symlink(&root_only, &own).unwrap();
    create_private(&own.join("summary.json")).unwrap();
    assert!(root_only.join("summary.json").is_file());
}

/// A directory on the way that another account owns, or that others may write (not sticky),
/// is refused wherever it is in the path, not only as the last parent.
#[test]
fn a_foreign_or_writable_directory_anywhere_on_the_way_is_refused() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("udir");
    mkdir(&foreign, 0o755);
    lchown(&foreign, Some(NOBODY), Some(NOBODY)).unwrap();
    let deep = foreign.join("a/b");
    fs::create_dir_all(&deep).unwrap();
    assert_every_create_refused(&deep, &foreign);

    let writable = dir.path().join("open");
    mkdir(&writable, 0o777);
    let below = writable.join("x");
    mkdir(&below, 0o700);
    assert_every_create_refused(&below, &writable);
}

/// The way through a link is checked after the link: a link of root's that leads into a
/// directory of another account is refused at that directory.
#[test]
fn the_directories_a_link_leads_to_are_checked_too() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("udir");
    mkdir(&foreign, 0o755);
    lchown(&foreign, Some(NOBODY), Some(NOBODY)).unwrap();
    let link = dir.path().join("to-udir");
    symlink(&foreign, &link).unwrap();
    assert_every_create_refused(&link, &foreign);

    // `..` after a link is resolved where the link led, as the kernel does.
    let good = dir.path().join("good");
    mkdir(&good, 0o700);
    let inner = good.join("inner");
    mkdir(&inner, 0o700);
    let to_inner = foreign.join("to-inner");
    symlink(&inner, &to_inner).unwrap();
    lchown(&to_inner, Some(NOBODY), Some(NOBODY)).unwrap();
    assert!(check_dir_path(&to_inner.join("..")).is_err());
    check_dir_path(&link.join("..").join("good").join("inner")).unwrap_err();
    check_dir_path(&inner.join("..")).unwrap();
}

/// Directories that do not exist yet are fine (this process creates them); a trusted path
/// with `.` and `..` in it is accepted.
#[test]
fn a_trusted_path_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not/yet/there");
    check_dir_path(&missing).unwrap();
    ensure_private_dir(&missing).unwrap();
    check_dir_path(&dir.path().join("not/./yet/../yet/there")).unwrap();
    create_private(&missing.join("events.json")).unwrap();
    check_dir_path(Path::new("/dev")).unwrap();
    create_private(Path::new("/dev/null")).unwrap();
}
