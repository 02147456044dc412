//! What the root-only tests share: running a test in a private mount namespace on a fresh tmpfs,
//! so nothing they mount or watch leaks into the machine, and saying loudly when they cannot run.
#![allow(dead_code)] // each test binary uses part of it

use std::fs;
use std::path::Path;
use std::process::Command;

/// Whether this process runs as root (fanotify file-system marks and mounts need it).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs `test` in a private mount namespace: the test binary re-executes itself for this one
/// test under `unshare --mount`, with `inner_var` set. Without root it reports loudly that the
/// test did not run. The inner run leaves a marker, so a test-name mismatch (zero tests run)
/// cannot pass.
pub fn in_private_namespace(inner_var: &str, test_name: &str, test: impl FnOnce()) {
    if let Some(marker) = std::env::var_os(inner_var) {
        test();
        fs::write(marker, b"ran").unwrap();
        return;
    }
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED {test_name}: fanotify tests need root (CAP_SYS_ADMIN); run them as root ***\n"
        );
        return;
    }
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("ran");
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(inner_var, &marker)
        .status()
        .expect("unshare runs");
    assert!(status.success(), "{test_name} failed in its namespace");
    assert!(marker.exists(), "{test_name} did not run in its namespace");
}

/// A tmpfs mounted on a fresh directory (inside the private namespace), unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "fsense-test"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs failed");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
