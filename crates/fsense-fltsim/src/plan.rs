//! The I/O a run performs, generated up front from the seed, so every delivered record can be
//! checked against the operation that caused it (the record's thread id is the operation id).

use std::sync::Arc;

/// The volume name every simulated path starts with.
pub const VOLUME: &str = "\\Device\\HarddiskVolume3";

/// Process id of the simulated consumer (its own I/O must not be reported).
pub const CONSUMER_PID: u32 = 7777;
/// The System process: paging writes come from it.
pub const SYSTEM_PID: u32 = 4;
/// Share of all operations that target a volume the driver does not attach to.
const FILES: usize = 64;

/// How the name information for a file comes back from the Filter Manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameShape {
    Valid,
    /// `Length` odd.
    OddLength,
    /// `Length` > `MaximumLength`.
    LengthAboveMaximum,
    /// `Buffer` null with a non-zero `Length`.
    NullBuffer,
    /// The query itself fails.
    QueryFails,
}

impl NameShape {
    pub fn is_valid(self) -> bool {
        self == NameShape::Valid
    }
}

/// A file of the simulated volume.
pub struct FileSpec {
    pub path: Arc<Vec<u16>>,
    /// The same path as UTF-16LE bytes, as a record carries it.
    pub path_le: Vec<u8>,
    pub shape: NameShape,
    /// The stream's identity (FILE_OBJECT.FsContext).
    pub stream_key: usize,
}

#[derive(Debug, Clone)]
pub struct CreateOp {
    pub op_id: u32,
    pub pid: u32,
    pub file: usize,
    pub stream_key: usize,
    pub shape: NameShape,
    pub desired_access: u32,
    pub disposition: u32,
    pub options: u32,
    pub share_access: u16,
    pub status: i32,
    pub information: u64,
    /// The stream is a directory (even when FILE_DIRECTORY_FILE was not asked for).
    pub directory_stream: bool,
    /// `SL_OPEN_TARGET_DIRECTORY`: opens the parent directory of a rename or link target.
    pub target_directory: bool,
}

/// STATUS_REPARSE: a success code for an open that was not done (a link was traversed).
pub const STATUS_REPARSE: i32 = 0x104;

impl CreateOp {
    /// The file was opened (a success other than STATUS_REPARSE).
    pub fn opened(&self) -> bool {
        self.status >= 0 && self.status != STATUS_REPARSE
    }
}

#[derive(Debug, Clone)]
pub struct WriteOp {
    pub op_id: u32,
    pub pid: u32,
    pub file: usize,
    /// The create whose handle this write uses.
    pub create_op: u32,
    pub offset: u64,
    pub length: u32,
    pub bytes_written: u64,
    pub status: i32,
    pub paging_io: bool,
    pub post_at_dispatch: bool,
    /// Tried first as a fast I/O write that a filter below disallows: the Filter Manager calls
    /// post-write with STATUS_FLT_DISALLOW_FAST_IO, then the I/O manager reissues the write as an
    /// IRP (`ifs/disallowing-a-fast-i-o-operation-in-a-preoperation-callback-routine`).
    pub fast_io_fallback: bool,
}

/// One open and the writes through its handle.
pub struct Session {
    pub create: CreateOp,
    pub writes: Vec<WriteOp>,
}

/// What an operation id refers to.
#[derive(Clone)]
pub enum PlannedOp {
    Create(CreateOp),
    Write(WriteOp),
}

pub struct Plan {
    pub files: Vec<FileSpec>,
    pub threads: Vec<Vec<Session>>,
    /// Indexed by op id.
    pub ops: Vec<PlannedOp>,
}

/// splitmix64: small, fast, deterministic; good enough to pick test shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn file_spec(i: usize) -> FileSpec {
    let volume = VOLUME;
    let (path, shape) = match i % 16 {
        0 if i == 0 => {
            // The longest path NT allows: 32,767 units.
            let mut p = utf16(&format!("{volume}\\long"));
            while p.len() < fsense_proto::MAX_PATH_UNITS {
                p.push(if p.len().is_multiple_of(100) {
                    u16::from(b'\\')
                } else {
                    u16::from(b'a')
                });
            }
            p.truncate(fsense_proto::MAX_PATH_UNITS);
            (p, NameShape::Valid)
        }
        1 => {
            let mut p = utf16(&format!("{volume}\\odd\\"));
            p.extend_from_slice(&[0xD800, u16::from(b'x'), 0xDC00, 0xDC00]);
            (p, NameShape::Valid)
        }
        2 => (
            utf16(&format!("{volume}\\データ\\résumé {i} 🦀.docx")),
            NameShape::Valid,
        ),
        3 => (Vec::new(), NameShape::Valid),
        4 => (
            utf16(&format!("{volume}\\hostile\\odd{i}")),
            NameShape::OddLength,
        ),
        5 => (
            utf16(&format!("{volume}\\hostile\\max{i}")),
            NameShape::LengthAboveMaximum,
        ),
        6 => (
            utf16(&format!("{volume}\\hostile\\null{i}")),
            NameShape::NullBuffer,
        ),
        7 => (
            utf16(&format!("{volume}\\gone\\file{i}")),
            NameShape::QueryFails,
        ),
        8 => (
            utf16(&format!("{volume}\\-leading dash\\ spaces \\file{i}")),
            NameShape::Valid,
        ),
        _ => (
            utf16(&format!("{volume}\\Users\\sim\\dir{}\\file {i}.txt", i % 5)),
            NameShape::Valid,
        ),
    };
    FileSpec {
        path_le: path.iter().flat_map(|u| u.to_le_bytes()).collect(),
        path: Arc::new(path),
        shape,
        stream_key: 0x5_0000 + i * 16,
    }
}

impl Plan {
    /// `events` operations (creates and writes) over `threads` threads.
    pub fn generate(events: u64, threads: u32, seed: u64) -> Self {
        let files: Vec<FileSpec> = (0..FILES).map(file_spec).collect();
        let threads = threads.max(1) as u64;
        let mut rng = Rng(seed ^ 0x5EED_F5E5);
        let mut ops: Vec<PlannedOp> = Vec::new();
        let mut per_thread = Vec::new();
        for t in 0..threads {
            let budget = events / threads + u64::from(t < events % threads);
            let mut sessions = Vec::new();
            let mut used = 0;
            while used < budget {
                let session = Self::session(&mut rng, &files, &mut ops, budget - used);
                used += 1 + session.writes.len() as u64;
                sessions.push(session);
            }
            per_thread.push(sessions);
        }
        Plan {
            files,
            threads: per_thread,
            ops,
        }
    }

    fn session(
        rng: &mut Rng,
        files: &[FileSpec],
        ops: &mut Vec<PlannedOp>,
        budget: u64,
    ) -> Session {
        let file = rng.below(files.len() as u64) as usize;
        let pid = if rng.chance(5) {
            CONSUMER_PID
        } else {
            1000 + rng.below(50) as u32
        };
        let directory = rng.chance(5);
        let desired_access = match rng.below(10) {
            0..=4 => 0x0010_0002, // FILE_WRITE_DATA | SYNCHRONIZE
            5..=8 => 0x0012_0089, // FILE_GENERIC_READ
            _ => 0x4000_0000,     // GENERIC_WRITE
        };
        let failed = rng.chance(10);
        let reparse = !failed && rng.chance(3);
        let target_directory = rng.chance(3);
        // A directory opened without FILE_DIRECTORY_FILE: only the file system can tell.
        let directory_stream = directory || target_directory || rng.chance(3);
        let create = CreateOp {
            op_id: ops.len() as u32,
            pid,
            file,
            stream_key: files[file].stream_key,
            shape: files[file].shape,
            desired_access,
            disposition: rng.below(6) as u32,
            options: (rng.below(1 << 24) as u32 & !1) | u32::from(directory),
            share_access: rng.below(8) as u16,
            status: if failed {
                0xC000_0034_u32 as i32
            } else if reparse {
                STATUS_REPARSE
            } else {
                0
            },
            information: if failed || reparse {
                0
            } else {
                1 + rng.below(2)
            },
            directory_stream,
            target_directory,
        };
        ops.push(PlannedOp::Create(create.clone()));
        let mut writes = Vec::new();
        if create.opened() && !directory_stream {
            let n = rng.below(4).min(budget.saturating_sub(1));
            for _ in 0..n {
                let paging_io = rng.chance(10);
                let length = match rng.below(4) {
                    0 => 0,
                    1 => u32::MAX,
                    _ => rng.below(1 << 20) as u32,
                };
                let offset = match rng.below(4) {
                    0 => u64::MAX - rng.below(1 << 12),
                    _ => rng.below(1 << 40),
                };
                let write_failed = rng.chance(5);
                let w = WriteOp {
                    op_id: ops.len() as u32,
                    pid: if paging_io { SYSTEM_PID } else { pid },
                    file,
                    create_op: create.op_id,
                    offset,
                    length,
                    bytes_written: if write_failed { 0 } else { u64::from(length) },
                    status: if write_failed {
                        0xC000_007F_u32 as i32
                    } else {
                        0
                    },
                    paging_io,
                    post_at_dispatch: rng.chance(50),
                    // From the op id, not the generator: the rest of the plan stays as it was.
                    fast_io_fallback: !paging_io && ops.len() % 7 == 3,
                };
                ops.push(PlannedOp::Write(w.clone()));
                writes.push(w);
            }
        }
        Session { create, writes }
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.len() as u64
    }
}
