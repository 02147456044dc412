//! The host's per-thread CPU clock, for timing driver callbacks ([`crate::verifier`]). A leaf:
//! it imports nothing from the simulator, so the verifier can use it without an import circle.

use std::time::Duration;

/// CPU time the calling thread has used (None where the host cannot say, and under Miri).
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(all(unix, not(miri)))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec to a valid local.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
        }
        None
    }
    #[cfg(not(all(unix, not(miri))))]
    None
}
