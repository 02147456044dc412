//! The I/O a run performs, generated up front from the seed, so every delivered record can be
//! checked against the operation that caused it (the record's thread id is the operation id).

use std::sync::Arc;

use crate::changes::{
    CleanupOp, FILE_DELETE_ON_CLOSE, FILE_DISPOSITION_DELETE, FILE_DISPOSITION_ON_CLOSE,
    FILE_DISPOSITION_POSIX_SEMANTICS, FILE_END_OF_FILE_INFORMATION,
    FSCTL_DUPLICATE_EXTENTS_TO_FILE, FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX, FSCTL_GET_OBJECT_ID,
    FSCTL_GET_RETRIEVAL_POINTERS, FsctlOp, Hostile, MdlWriteOp, SetInfoKind, SetInfoOp,
};

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
const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
const STATUS_INFO_LENGTH_MISMATCH: i32 = 0xC000_0004_u32 as i32;
const STATUS_OBJECT_NAME_COLLISION: i32 = 0xC000_0035_u32 as i32;

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
    /// The name the write must report when it differs from the file's first name (after a
    /// rename through the same handle).
    pub name_le: Option<Arc<Vec<u8>>>,
}

/// One open, the writes through its handle, then what else the handle does (renames, links,
/// delete dispositions, MDL writes, clones, other FSCTLs), and its cleanup when the plan
/// models it (sessions on a file of their own, where the handle is the file's last).
pub struct Session {
    pub create: CreateOp,
    pub writes: Vec<WriteOp>,
    pub changes: Vec<PlannedOp>,
    pub cleanup: Option<CleanupOp>,
}

impl Session {
    /// Operations this session issues (each has an op id).
    pub fn op_count(&self) -> u64 {
        1 + self.writes.len() as u64 + self.changes.len() as u64 + u64::from(self.cleanup.is_some())
    }
}

/// What an operation id refers to.
#[derive(Clone, Debug)]
pub enum PlannedOp {
    Create(CreateOp),
    Write(WriteOp),
    SetInfo(SetInfoOp),
    Cleanup(CleanupOp),
    MdlWrite(MdlWriteOp),
    Fsctl(FsctlOp),
}

impl PlannedOp {
    /// The operation's kind, for findings.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Write(_) => "write",
            Self::SetInfo(_) => "set-information",
            Self::Cleanup(_) => "cleanup",
            Self::MdlWrite(_) => "MDL write",
            Self::Fsctl(_) => "FSCTL",
        }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Self::Create(o) => o.pid,
            Self::Write(o) => o.pid,
            Self::SetInfo(o) => o.pid,
            Self::Cleanup(o) => o.pid,
            Self::MdlWrite(o) => o.pid,
            Self::Fsctl(o) => o.pid,
        }
    }

    /// A rename, link, delete or clone that happened: it must arrive once or be counted dropped.
    pub fn must_report_change(&self) -> bool {
        match self {
            Self::SetInfo(o) => o.must_report(),
            Self::Cleanup(o) => o.deletes,
            Self::Fsctl(o) => o.must_report(),
            _ => false,
        }
    }

    /// A malformed buffer the driver must reject and count.
    pub fn is_hostile(&self) -> bool {
        match self {
            Self::SetInfo(o) => o.hostile.is_some(),
            Self::Fsctl(o) => o.hostile.is_some(),
            _ => false,
        }
    }
}

pub struct Plan {
    /// The shared files first ([`FILES`]), then one file per session that renames, links or
    /// deletes (so its outcome does not depend on how threads interleave).
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

/// Percent of sessions that work on a file of their own and rename, link or delete it.
const CHANGE_SESSION_PERCENT: u64 = 12;
/// Operations a change session may take at most (create, a write, up to four changes, cleanup).
const CHANGE_SESSION_MAX_OPS: u64 = 8;

fn private_file(n: usize, index: usize) -> FileSpec {
    let path = utf16(&format!("{VOLUME}\\Users\\sim\\victims\\doc{n} ✓.docx"));
    FileSpec {
        path_le: path.iter().flat_map(|u| u.to_le_bytes()).collect(),
        path: Arc::new(path),
        shape: NameShape::Valid,
        stream_key: 0x7_0000_0000 + index * 16,
    }
}

fn le(units: &[u16]) -> Arc<Vec<u8>> {
    Arc::new(units.iter().flat_map(|u| u.to_le_bytes()).collect())
}

/// `path` with its final component replaced by `name`.
fn sibling(path: &[u16], name: &str) -> Vec<u16> {
    let dir_end = path
        .iter()
        .rposition(|&u| u == u16::from(b'\\'))
        .unwrap_or(0);
    let mut p = path.get(..=dir_end).unwrap_or(&[]).to_vec();
    p.extend(name.encode_utf16());
    p
}

impl Plan {
    /// `events` operations over `threads` threads: creates and writes, and next to them renames
    /// (to a new extension too), hard links, deletes (disposition, delete-on-close, POSIX,
    /// cancelled), MDL writes, block clones and other FSCTLs, hostile buffers included.
    pub fn generate(events: u64, threads: u32, seed: u64) -> Self {
        let mut files: Vec<FileSpec> = (0..FILES).map(file_spec).collect();
        let threads = threads.max(1) as u64;
        let mut rng = Rng(seed ^ 0x5EED_F5E5);
        // New choices draw from their own stream, so the creates and writes stay as they were.
        let mut extra = Rng(seed ^ 0xC4A9_6E5D);
        let mut ops: Vec<PlannedOp> = Vec::new();
        let mut per_thread = Vec::new();
        for t in 0..threads {
            let budget = events / threads + u64::from(t < events % threads);
            let mut sessions = Vec::new();
            let mut used = 0;
            while used < budget {
                let left = budget - used;
                let session =
                    if left >= CHANGE_SESSION_MAX_OPS && extra.chance(CHANGE_SESSION_PERCENT) {
                        Self::change_session(&mut extra, &mut files, &mut ops)
                    } else {
                        let mut s = Self::session(&mut rng, &files, &mut ops, left);
                        let room = left.saturating_sub(s.op_count());
                        Self::handle_extras(&mut extra, &mut ops, &mut s, room);
                        s
                    };
                used += session.op_count();
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

    /// MDL writes, FSCTLs (clones among them) and set-information classes the sensor ignores,
    /// through a shared file's handle after its writes.
    fn handle_extras(extra: &mut Rng, ops: &mut Vec<PlannedOp>, s: &mut Session, room: u64) {
        let c = &s.create;
        if !c.opened() || c.directory_stream || room == 0 {
            return;
        }
        let (pid, file, create_op) = (c.pid, c.file, c.op_id);
        let mut room = room;
        if room > 0 && extra.chance(8) {
            let op = MdlWriteOp {
                op_id: ops.len() as u32,
                pid,
                file,
                create_op,
                offset: extra.below(1 << 30),
                length: 1 + extra.below(1 << 16) as u32,
                irp_fallback: extra.chance(40),
                post_at_dispatch: extra.chance(50),
            };
            ops.push(PlannedOp::MdlWrite(op.clone()));
            s.changes.push(PlannedOp::MdlWrite(op));
            room -= 1;
        }
        if room > 0 && extra.chance(6) {
            let code = match extra.below(10) {
                0..=5 => FSCTL_DUPLICATE_EXTENTS_TO_FILE,
                6 | 7 => FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX,
                8 => FSCTL_GET_OBJECT_ID,
                _ => FSCTL_GET_RETRIEVAL_POINTERS,
            };
            let clone = matches!(
                code,
                FSCTL_DUPLICATE_EXTENTS_TO_FILE | FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX
            );
            let hostile = (clone && extra.chance(20)).then(|| match extra.below(3) {
                0 => Hostile::FsctlShort,
                1 => Hostile::FsctlNullBuffer,
                _ if code == FSCTL_DUPLICATE_EXTENTS_TO_FILE_EX => Hostile::FsctlSizeMismatch,
                _ => Hostile::FsctlShort,
            });
            let op = FsctlOp {
                op_id: ops.len() as u32,
                pid,
                file,
                create_op,
                code,
                target_offset: extra.below(1 << 20) * 4096,
                byte_count: (1 + extra.below(256)) * 65536,
                source_offset: extra.below(1 << 20) * 4096,
                hostile,
                status: if hostile.is_some() {
                    STATUS_INVALID_PARAMETER
                } else {
                    0
                },
                post_at_dispatch: extra.chance(50),
            };
            ops.push(PlannedOp::Fsctl(op.clone()));
            s.changes.push(PlannedOp::Fsctl(op));
            room -= 1;
        }
        if room > 0 && extra.chance(4) {
            let op = SetInfoOp {
                op_id: ops.len() as u32,
                pid,
                file,
                create_op,
                kind: SetInfoKind::Other {
                    class: FILE_END_OF_FILE_INFORMATION,
                },
                source: Arc::new(Vec::new()),
                source_le: Arc::new(Vec::new()),
                target: None,
                target_le: None,
                hostile: None,
                status: 0,
                post_at_dispatch: extra.chance(50),
            };
            ops.push(PlannedOp::SetInfo(op.clone()));
            s.changes.push(PlannedOp::SetInfo(op));
        }
    }

    /// A session on a file of its own: open for writing (and delete), a write, then one of the
    /// patterns attacks leave (rename to a new extension, rename then delete, hard link, delete
    /// by disposition / on close / POSIX, a delete asked for and withdrawn), a hostile
    /// set-information buffer now and then, and the cleanup where a delete becomes real.
    fn change_session(
        extra: &mut Rng,
        files: &mut Vec<FileSpec>,
        ops: &mut Vec<PlannedOp>,
    ) -> Session {
        let index = files.len();
        let spec = private_file(index - FILES, index);
        let mut name = spec.path.clone();
        files.push(spec);
        let pid = 1000 + extra.below(50) as u32;
        let scenario = extra.below(8);
        let delete_on_close = matches!(scenario, 5 | 7);
        let create = CreateOp {
            op_id: ops.len() as u32,
            pid,
            file: index,
            stream_key: files[index].stream_key,
            shape: NameShape::Valid,
            desired_access: 0x0011_0002, // FILE_WRITE_DATA | DELETE | SYNCHRONIZE
            disposition: 2,              // FILE_CREATE
            options: if delete_on_close {
                FILE_DELETE_ON_CLOSE
            } else {
                0
            },
            share_access: 7,
            status: 0,
            information: 2, // FILE_CREATED
            directory_stream: false,
            target_directory: false,
        };
        ops.push(PlannedOp::Create(create.clone()));
        let mut session = Session {
            create,
            writes: Vec::new(),
            changes: Vec::new(),
            cleanup: None,
        };
        let create_id = session.create.op_id;
        let write = |ops: &mut Vec<PlannedOp>, extra: &mut Rng, name_le: Option<Arc<Vec<u8>>>| {
            let length = 1 + extra.below(1 << 16) as u32;
            let w = WriteOp {
                op_id: ops.len() as u32,
                pid,
                file: index,
                create_op: create_id,
                offset: extra.below(1 << 20),
                length,
                bytes_written: u64::from(length),
                status: 0,
                paging_io: false,
                post_at_dispatch: extra.chance(50),
                fast_io_fallback: false,
                name_le,
            };
            ops.push(PlannedOp::Write(w.clone()));
            w
        };
        if extra.chance(70) {
            let w = write(ops, extra, None);
            session.writes.push(w);
        }
        let mut set_info = |ops: &mut Vec<PlannedOp>,
                            extra: &mut Rng,
                            name: &Arc<Vec<u16>>,
                            kind: SetInfoKind,
                            target: Option<Vec<u16>>,
                            hostile: Option<Hostile>,
                            status: i32| {
            let op = SetInfoOp {
                op_id: ops.len() as u32,
                pid,
                file: index,
                create_op: create_id,
                kind,
                source: name.clone(),
                source_le: le(name),
                target_le: target.as_deref().map(le),
                target: target.map(Arc::new),
                hostile,
                status,
                post_at_dispatch: extra.chance(50),
            };
            ops.push(PlannedOp::SetInfo(op.clone()));
            session.changes.push(PlannedOp::SetInfo(op));
        };
        let n = index - FILES;
        if extra.chance(15) {
            let hostile = match extra.below(5) {
                0 => Hostile::NameLongerThanBuffer,
                1 => Hostile::OddNameLength,
                2 => Hostile::NameLengthNearMax,
                3 => Hostile::ShorterThanHeader,
                _ => Hostile::Unaligned,
            };
            let kind = if extra.chance(50) {
                SetInfoKind::Rename {
                    ex: extra.chance(50),
                    replace: false,
                }
            } else {
                SetInfoKind::Link {
                    ex: extra.chance(50),
                }
            };
            let target = sibling(&name, &format!("hostile{n}.txt"));
            set_info(
                ops,
                extra,
                &name,
                kind,
                Some(target),
                Some(hostile),
                STATUS_INFO_LENGTH_MISMATCH,
            );
        }
        let mut deletes = delete_on_close;
        let mut cancelled = false;
        let posix = scenario == 6;
        match scenario {
            0 | 1 => {
                // Ransomware: the same name with a new extension; sometimes the rename fails.
                let mut new = name.to_vec();
                new.extend(".locked".encode_utf16());
                let fails = scenario == 0 && extra.chance(10);
                let status = if fails {
                    STATUS_OBJECT_NAME_COLLISION
                } else {
                    0
                };
                let kind = SetInfoKind::Rename {
                    ex: extra.chance(50),
                    replace: !fails,
                };
                set_info(ops, extra, &name, kind, Some(new.clone()), None, status);
                if !fails {
                    name = Arc::new(new);
                }
                if scenario == 1 {
                    set_info(
                        ops,
                        extra,
                        &name,
                        SetInfoKind::Disposition { delete: true },
                        None,
                        None,
                        0,
                    );
                    deletes = true;
                }
            }
            2 => {
                let target = sibling(&name, &format!("link{n}.docx"));
                let kind = SetInfoKind::Link {
                    ex: extra.chance(50),
                };
                set_info(ops, extra, &name, kind, Some(target), None, 0);
            }
            3 => {
                set_info(
                    ops,
                    extra,
                    &name,
                    SetInfoKind::Disposition { delete: true },
                    None,
                    None,
                    0,
                );
                deletes = true;
            }
            4 => {
                set_info(
                    ops,
                    extra,
                    &name,
                    SetInfoKind::Disposition { delete: true },
                    None,
                    None,
                    0,
                );
                set_info(
                    ops,
                    extra,
                    &name,
                    SetInfoKind::Disposition { delete: false },
                    None,
                    None,
                    0,
                );
                cancelled = true;
            }
            6 => {
                let flags = FILE_DISPOSITION_DELETE | FILE_DISPOSITION_POSIX_SEMANTICS;
                set_info(
                    ops,
                    extra,
                    &name,
                    SetInfoKind::DispositionEx { flags },
                    None,
                    None,
                    0,
                );
                deletes = true;
            }
            7 => {
                // Delete-on-close withdrawn through FileDispositionInformationEx.
                let flags = FILE_DISPOSITION_ON_CLOSE;
                set_info(
                    ops,
                    extra,
                    &name,
                    SetInfoKind::DispositionEx { flags },
                    None,
                    None,
                    0,
                );
                deletes = false;
                cancelled = true;
            }
            _ => {}
        }
        // After a rename, writes through the handle report the new name.
        if !Arc::ptr_eq(&name, &files[index].path) && extra.chance(60) {
            let w = write(ops, extra, Some(le(&name)));
            session.changes.push(PlannedOp::Write(w));
        }
        let cleanup = CleanupOp {
            op_id: ops.len() as u32,
            pid,
            file: index,
            create_op: session.create.op_id,
            name_le: le(&name),
            deletes,
            posix,
            cancelled,
            post_at_dispatch: extra.chance(50),
        };
        ops.push(PlannedOp::Cleanup(cleanup.clone()));
        session.cleanup = Some(cleanup);
        session
    }

    fn session(
        rng: &mut Rng,
        files: &[FileSpec],
        ops: &mut Vec<PlannedOp>,
        budget: u64,
    ) -> Session {
        // The shared files only: the files after them belong to one change session each.
        let file = rng.below(FILES.min(files.len()) as u64) as usize;
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
                    name_le: None,
                };
                ops.push(PlannedOp::Write(w.clone()));
                writes.push(w);
            }
        }
        Session {
            create,
            writes,
            changes: Vec::new(),
            cleanup: None,
        }
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.len() as u64
    }
}
