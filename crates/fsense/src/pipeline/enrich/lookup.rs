//! What a process lookup answers, and the trait each platform's lookup implements (`/proc` on
//! Linux, the Win32 process and token queries on Windows). Kept apart from the cache so the
//! platform lookups depend on these types only, not on the cache that uses them.

/// What we know about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Image file name (`word.exe`, `bash`).
    pub name: String,
    /// Account name (`DOMAIN\user`, `root`).
    pub user: Option<String>,
    /// Account id (SID string on Windows, numeric uid on Linux).
    pub uid: Option<String>,
}

/// Looks a process up on this machine.
pub trait ProcessLookup: Send {
    /// The process with this pid, if it exists and was created at `create_time` (FILETIME ticks).
    fn lookup(&mut self, pid: u32, create_time: u64) -> Option<ProcessInfo>;

    /// Like [`ProcessLookup::lookup`], but may answer "not known yet" instead of waiting; the
    /// cache then asks again for a later event of the same process.
    fn answer(&mut self, pid: u32, create_time: u64) -> Answer {
        Answer::Known(self.lookup(pid, create_time))
    }
}

/// What a lookup knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The process (or `None`: no such process).
    Known(Option<ProcessInfo>),
    /// Being looked up; ask again later.
    Pending,
}

/// No lookups: for events that did not happen on this machine (simulator, replays).
pub struct Offline;

impl ProcessLookup for Offline {
    fn lookup(&mut self, _pid: u32, _create_time: u64) -> Option<ProcessInfo> {
        None
    }
}
