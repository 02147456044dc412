//! Linux processes through `/proc`: start times (which, with the pid, name a process even after
//! pid reuse), image names and users. Parsing is safe code over the text the kernel writes.

use std::collections::HashMap;
use std::fs;

use crate::pipeline::enrich::lookup::{ProcessInfo, ProcessLookup};
use crate::time::UNIX_EPOCH_TICKS;

/// Converts `/proc/PID/stat` start times (clock ticks since boot) to FILETIME ticks. Built once
/// per run so that every conversion uses the same boot time.
#[derive(Debug, Clone, Copy)]
pub struct ProcClock {
    boot_ticks: u64,
    filetime_per_clock_tick: u64,
}

impl ProcClock {
    pub fn new() -> Self {
        let btime = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_btime(&s))
            .unwrap_or(0);
        let hz = crate::ffi::linux::clock_ticks_per_second().max(1);
        Self {
            boot_ticks: UNIX_EPOCH_TICKS.saturating_add(btime.saturating_mul(10_000_000)),
            filetime_per_clock_tick: 10_000_000 / hz,
        }
    }

    /// The creation time of the process that has `pid` now, in FILETIME ticks.
    pub fn start_time(&self, pid: u32) -> Option<u64> {
        let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
        let ticks = parse_stat_start_time(&stat)?;
        Some(
            self.boot_ticks
                .saturating_add(ticks.saturating_mul(self.filetime_per_clock_tick)),
        )
    }
}

impl Default for ProcClock {
    fn default() -> Self {
        Self::new()
    }
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Field 22 (`starttime`) of `/proc/PID/stat`. The command name (field 2) is in parentheses and
/// may itself contain `)` and spaces, so fields are counted from the last `)`.
pub fn parse_stat_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    // After ")" come field 3 (state) onwards; starttime is field 22.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The real uid from `/proc/PID/status`.
pub fn parse_status_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// uid -> user name from `/etc/passwd` text.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Live lookups in `/proc`.
pub struct ProcLookup {
    clock: ProcClock,
    users: Option<HashMap<u32, String>>,
}

impl ProcLookup {
    pub fn new() -> Self {
        Self {
            clock: ProcClock::new(),
            users: None,
        }
    }

    fn user_name(&mut self, uid: u32) -> Option<String> {
        let users = self.users.get_or_insert_with(|| {
            fs::read_to_string("/etc/passwd")
                .map(|t| parse_passwd(&t))
                .unwrap_or_default()
        });
        users.get(&uid).cloned()
    }
}

impl Default for ProcLookup {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessLookup for ProcLookup {
    fn lookup(&mut self, pid: u32, create_time: u64) -> Option<ProcessInfo> {
        if self.clock.start_time(pid)? != create_time {
            return None; // gone, and the pid now belongs to another process
        }
        let name = fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| {
                fs::read_to_string(format!("/proc/{pid}/comm"))
                    .ok()
                    .map(|s| s.trim_end_matches('\n').to_string())
            })?;
        let uid = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| parse_status_uid(&s));
        // Read the start time again: if the process was replaced while we read, say nothing.
        if self.clock.start_time(pid)? != create_time {
            return None;
        }
        Some(ProcessInfo {
            name,
            user: uid.and_then(|u| self.user_name(u)),
            uid: uid.map(|u| u.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            b"1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_stat_start_time(stat), Some(987_654));
        assert_eq!(parse_stat_start_time(b"1 (x) S 1"), None);
        assert_eq!(parse_stat_start_time(b"no paren"), None);
    }

    #[test]
    fn status_passwd_and_btime_parse() {
        assert_eq!(
            parse_status_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/sh\nbad\nann:x:1000:1000::/home/ann:/bin/sh\n",
        );
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&1000).map(String::as_str), Some("ann"));
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn our_own_process_is_found_and_a_wrong_start_time_is_not() {
        let clock = ProcClock::new();
        let me = std::process::id();
        let t = clock.start_time(me).expect("own /proc entry");
        let mut lookup = ProcLookup::new();
        let info = lookup.lookup(me, t).expect("own process");
        assert!(!info.name.is_empty());
        assert!(info.uid.is_some());
        assert_eq!(lookup.lookup(me, t + 1), None);
    }
}
