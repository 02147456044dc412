//! The `fsense-pkgcheck` binary: exit 0 when clean, 1 with one line per finding, 2 with a single
//! `error: ...` line when the input cannot be checked at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pkgcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsense-pkgcheck"))
        .args(args)
        .output()
        .expect("run fsense-pkgcheck")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn scratch(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fsense-pkgcheck-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_clean_inf_exits_zero() {
    let inf = repo("inf/fsense.inf");
    let out = pkgcheck(&["inf", inf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).trim_end().ends_with(": ok"));
}

#[test]
fn findings_exit_one_with_a_line_each() {
    let shipped = std::fs::read_to_string(repo("inf/fsense.inf")).unwrap();
    let broken = shipped
        .replacen("StartType      = 3", "StartType      = 0", 1)
        .replacen("ErrorControl   = 1", "ErrorControl   = 3", 1);
    let path = scratch("broken.inf", broken.as_bytes());
    let out = pkgcheck(&["inf", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains("StartType is `0`") && stdout.contains("ErrorControl is `3`"));
}

#[test]
fn an_inf_stating_another_minimum_fails() {
    let shipped = std::fs::read_to_string(repo("inf/fsense.inf")).unwrap();
    let stale = shipped.replacen(
        "Minimum Windows: Windows 10 version 2004 (build 19041).",
        "A primitive driver package (Windows 10 1903+).",
        1,
    );
    let path = scratch("stale.inf", stale.as_bytes());
    let out = pkgcheck(&["inf", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains("claims Windows 10 1903 as the minimum"),
        "{stdout}"
    );
}

#[test]
fn the_scripts_match_the_inf() {
    let out = pkgcheck(&[
        "scripts",
        repo("windows").to_str().unwrap(),
        "--inf",
        repo("inf/fsense.inf").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn unreadable_input_is_one_error_line_and_exit_two() {
    let not_pe = scratch("not-a-driver.sys", b"plain text, not a PE image");
    for args in [
        vec!["image", not_pe.to_str().unwrap()],
        vec!["fix-checksum", not_pe.to_str().unwrap()],
        vec!["image", "/nonexistent/fsense.sys"],
        vec!["report", not_pe.to_str().unwrap()],
        vec!["image", "--arch", "arm64", not_pe.to_str().unwrap()],
    ] {
        let out = pkgcheck(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    // fix-checksum must not have touched the file it refused.
    assert_eq!(
        std::fs::read(&not_pe).unwrap(),
        b"plain text, not a PE image"
    );
}

#[test]
fn fix_checksum_writes_the_checksum() {
    // Smallest thing with MZ and PE signatures: the sum is 0x5a4d + 0x0040 + 0x4550 plus the length.
    let mut image = vec![0u8; 0x100];
    image[..2].copy_from_slice(b"MZ");
    image[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    image[0x40..0x44].copy_from_slice(b"PE\0\0");
    let path = scratch("tiny.sys", &image);
    let out = pkgcheck(&["fix-checksum", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let fixed = std::fs::read(&path).unwrap();
    let field = 0x40 + 24 + 64;
    assert_eq!(
        u32::from_le_bytes(fixed[field..field + 4].try_into().unwrap()),
        0x9fdd + 0x100
    );
    assert!(text(&out.stdout).contains("0x00000000 -> 0x0000a0dd"));
}
