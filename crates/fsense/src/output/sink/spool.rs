//! The spool: an append-only log of the events a sink has not yet had acknowledged.
//!
//! Every event is appended here first (write-ahead) and published from here in order; an
//! acknowledgement moves the `acked` cursor, and segments wholly before it are deleted. With a
//! directory the log is a series of segment files (`<start>.spool`, the start being the log
//! position of the first frame) and an `acked` file holding the acknowledged position; without
//! one it lives in memory (the same code, lost with the process).
//!
//! Durability: appended frames are buffered in the process up to [`WRITE_CHUNK`] bytes and written
//! to the file at every `flush` (the sources flush after each burst of events); once written, a
//! killed process loses nothing. Files are `fdatasync`ed at most once a second, at every segment
//! change and when the spool closes: a power loss can lose the last second. The `acked` file is
//! rewritten at most every 200 ms, so a restart can publish again a few events the server already
//! has; their message ids make the server drop the copies (duplicate window).
//!
//! A full spool (`max_bytes`) drops its oldest segment, and counts the unacknowledged events in it.
//! On open, a torn last frame (a crash mid-write) is cut off; a damaged frame elsewhere ends its
//! segment there, and what follows it is reported as lost. Both count in `dropped` (at least one
//! event for a torn frame, plus every intact frame found past damage); a segment without a valid
//! header (a disk full or a power loss as it was created) is removed when empty, else set aside
//! as `<name>.damaged`, so it never blocks a start.
//!
//! A write that fails (a full disk, an I/O error) loses only the events not yet written: the
//! segment is cut back to its last whole frame, they are counted in `dropped`, and the spool goes
//! on. The directory must be private ([`files::prepare_dir`]).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frame::{self, FRAME_HEADER_LEN, MAX_ID, MAX_PAYLOAD};
use files::{MAX_SEGMENT_FILE, create_private, open_own, read_capped, read_exact_at};

mod files;

/// A segment file's first bytes.
const SEGMENT_MAGIC: [u8; 8] = *b"FSNSSPOL";
const SEGMENT_VERSION: u16 = 1;
/// Size of a segment file's header: magic, version, reserved, CRC-32 of the first 12 bytes.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// The acknowledged-position file: magic, position, CRC-32 of the first 12 bytes.
const ACKED_MAGIC: [u8; 4] = *b"FSAK";
const ACKED_FILE: &str = "acked";
/// Appended frames are written to the file in chunks of about this size (or at every flush).
pub const WRITE_CHUNK: usize = 64 << 10;
/// How much the reader takes from a segment at a time.
const READ_CHUNK: usize = 256 << 10;
const SYNC_EVERY: Duration = Duration::from_secs(1);
const SAVE_ACK_EVERY: Duration = Duration::from_millis(200);

/// A place in the log: a byte position (frames only, segment headers not counted) and the number
/// of events before it (counted from the first event this process saw in the spool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub pos: u64,
    pub event: u64,
}

/// An event read from the spool for publishing; `after` is what acknowledging it acknowledges.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: String,
    pub payload: Vec<u8>,
    pub after: Cursor,
}

enum Store {
    Memory(Vec<u8>),
    File { path: PathBuf, file: File },
}

struct Segment {
    /// Log position of the first frame.
    start: u64,
    /// Log position after the last frame (pending bytes included for the last segment).
    end: u64,
    first_event: u64,
    events: u64,
    store: Store,
}

/// Why an append failed, and whether the event is counted as dropped already.
enum Failed {
    /// Before the event was appended: it is not counted yet.
    Before(io::Error),
    /// Writing it (and the frames before it) out: counted with them.
    Counted(io::Error),
}

/// Where the spool lives and how big it may grow.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// `None`: in memory.
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
}

/// What opening a spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Unacknowledged events left by an earlier run, to be published first.
    pub pending: u64,
    /// Torn-tail bytes cut off the last segment.
    pub torn_bytes: u64,
    /// Unacknowledged events lost to damage (a torn or damaged frame and the intact frames
    /// past it, a segment set aside): a lower bound, counted in `dropped` too.
    pub lost: u64,
    /// What was found and done, one line each.
    pub damage: Vec<String>,
}

pub struct Spool {
    dir: Option<PathBuf>,
    /// Held while the spool is open: one process per spool directory.
    _lock: Option<File>,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// Whether the last segment is one this process writes (a new one could not be made at
    /// open, e.g. on a full disk: the next append tries again).
    writable: bool,
    /// Frames appended to the last segment but not yet written to its file.
    unwritten: Vec<u8>,
    /// End of the readable log (everything written to the store).
    written: Cursor,
    /// End of the log, unwritten bytes included.
    end: Cursor,
    read: Cursor,
    acked: Cursor,
    acked_saved: u64,
    last_ack_save: Instant,
    last_sync: Instant,
    dropped: u64,
    /// Read-ahead: bytes of the log from `read_buf_at` on, loaded by one read. The log is
    /// append-only, so they stay valid; a publisher taking a few events at a time (as many as
    /// were just acknowledged) reads and checks each frame once instead of a whole chunk per call.
    read_buf: Vec<u8>,
    read_buf_at: u64,
}

impl Spool {
    /// Opens (or creates) the spool, recovering what an earlier run left.
    pub fn open(config: &SpoolConfig) -> io::Result<(Self, Recovery)> {
        let max_bytes = config.max_bytes.max(1);
        let segment_bytes = (max_bytes / 8).clamp(64 << 10, 64 << 20);
        let mut spool = Self {
            dir: config.dir.clone(),
            _lock: None,
            max_bytes,
            segment_bytes,
            segments: VecDeque::new(),
            writable: false,
            unwritten: Vec::with_capacity(WRITE_CHUNK + 4096),
            written: Cursor::default(),
            end: Cursor::default(),
            read: Cursor::default(),
            acked: Cursor::default(),
            acked_saved: 0,
            last_ack_save: Instant::now(),
            last_sync: Instant::now(),
            dropped: 0,
            read_buf: Vec::new(),
            read_buf_at: 0,
        };
        let mut recovery = Recovery::default();
        if let Some(dir) = config.dir.clone() {
            spool._lock = Some(files::prepare_dir(&dir)?);
            spool.recover(&dir, &mut recovery)?;
            spool.dropped = recovery.lost;
        }
        if let Err(e) = spool.start_segment() {
            // A full disk must not keep the sensor from starting: appends try again, and what
            // they cannot keep is counted.
            recovery.damage.push(format!(
                "cannot start a new segment ({e}); trying again at the next event"
            ));
        }
        recovery.pending = spool.pending();
        Ok((spool, recovery))
    }

    fn recover(&mut self, dir: &Path, recovery: &mut Recovery) -> io::Result<()> {
        let acked_pos = read_acked(dir).unwrap_or(0);
        let mut starts = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(start) = name
                .strip_suffix(".spool")
                .and_then(|s| s.parse::<u64>().ok())
            {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        let mut event = 0u64;
        let mut acked = None;
        let last = starts.len().saturating_sub(1);
        for (i, &start) in starts.iter().enumerate() {
            let path = dir.join(segment_name(start));
            let mut file = open_own(&path, false)?;
            let (bytes, longer) = read_capped(&mut file, MAX_SEGMENT_FILE)?;
            let Some(body) = check_segment_header(&bytes) else {
                drop(file);
                set_aside(&path, &bytes, start, acked_pos, recovery)?;
                continue;
            };
            let mut positions = Vec::new();
            let scan = frame::scan(body, |f| {
                positions.push(f.id.len() + f.payload.len() + FRAME_HEADER_LEN)
            });
            let good = scan.good_len as u64;
            if good < body.len() as u64 || longer {
                let cut = body.len() as u64 - good;
                let lost = lost_past(&body[scan.good_len..], start + good, acked_pos);
                recovery.lost += lost;
                if i == last && scan.error.is_none() && !longer {
                    recovery.torn_bytes += cut;
                    recovery.damage.push(format!(
                        "{}: torn last frame ({cut} bytes, a crash while writing) cut off: {}",
                        path.display(),
                        lost_words(lost)
                    ));
                } else {
                    recovery.damage.push(format!(
                        "{}: {}{cut} bytes after byte {} unreadable ({}): {}",
                        path.display(),
                        if longer {
                            "longer than a segment can be; "
                        } else {
                            ""
                        },
                        SEGMENT_HEADER_LEN + good,
                        scan.error
                            .map_or_else(|| "torn frame".to_string(), |e| e.to_string()),
                        lost_words(lost)
                    ));
                }
                file.set_len(SEGMENT_HEADER_LEN + good)?;
            }
            let end = start + good;
            if end <= acked_pos || scan.frames == 0 {
                drop(file);
                fs::remove_file(&path)?;
                continue;
            }
            let mut seg_acked_events = 0u64;
            let mut at = start;
            for len in &positions {
                if at + *len as u64 > acked_pos {
                    break;
                }
                at += *len as u64;
                seg_acked_events += 1;
            }
            if acked.is_none() {
                acked = Some(Cursor {
                    pos: at.max(start),
                    event: event + seg_acked_events,
                });
            }
            self.segments.push_back(Segment {
                start,
                end,
                first_event: event,
                events: scan.frames,
                store: Store::File { path, file },
            });
            event += scan.frames;
        }
        let end = Cursor {
            pos: self.segments.back().map_or(acked_pos, |s| s.end),
            event,
        };
        let acked = acked.unwrap_or(end);
        self.acked = acked;
        self.read = acked;
        self.acked_saved = acked.pos;
        self.written = end;
        self.end = end;
        Ok(())
    }

    /// Starts a new last segment at the end of the log.
    fn start_segment(&mut self) -> io::Result<()> {
        self.write_out()?;
        let start = self.end.pos;
        let store = match &self.dir {
            None => Store::Memory(Vec::new()),
            Some(dir) => {
                if let Some(Store::File { file, .. }) = self.segments.back().map(|s| &s.store) {
                    file.sync_data()?;
                }
                let path = dir.join(segment_name(start));
                let file = files::create_segment(dir, &path, &segment_header())?;
                Store::File { path, file }
            }
        };
        self.segments.push_back(Segment {
            start,
            end: start,
            first_event: self.end.event,
            events: 0,
            store,
        });
        self.writable = true;
        Ok(())
    }

    /// Appends one event. A spool at its limit first drops its oldest events (counted). On an
    /// error the events that could not be kept (this one included) are counted in `dropped`
    /// and the spool stays usable.
    pub fn append(&mut self, id: &[u8], payload: &[u8]) -> io::Result<()> {
        match self.try_append(id, payload) {
            Ok(()) => Ok(()),
            // Not appended at all (a new segment could not be made): it is lost here.
            Err(Failed::Before(e)) => {
                self.dropped += 1;
                Err(e)
            }
            // Appended, then lost with the unwritten frames (counted by `write_out`).
            Err(Failed::Counted(e)) => Err(e),
        }
    }

    fn try_append(&mut self, id: &[u8], payload: &[u8]) -> Result<(), Failed> {
        if payload.len() > MAX_PAYLOAD || id.is_empty() || id.len() > MAX_ID {
            return Err(Failed::Before(io::Error::new(
                io::ErrorKind::InvalidInput,
                "event too large for the spool",
            )));
        }
        if !self.writable {
            self.start_segment().map_err(Failed::Before)?;
        }
        let need = frame::encoded_len(id, payload) as u64;
        if need > self.max_bytes {
            self.dropped += 1;
            return Ok(());
        }
        while self.total_bytes() + need > self.max_bytes {
            if self.segments.len() == 1 {
                self.start_segment().map_err(Failed::Before)?;
            }
            self.drop_oldest().map_err(Failed::Before)?;
        }
        if self.current_len() >= self.segment_bytes {
            self.start_segment().map_err(Failed::Before)?;
        }
        let Some(last) = self.segments.back_mut() else {
            return Err(Failed::Before(io::Error::other(
                "spool has no open segment",
            )));
        };
        let target = match &mut last.store {
            Store::Memory(v) => v,
            Store::File { .. } => &mut self.unwritten,
        };
        frame::encode(target, id, payload)
            .map_err(|e| Failed::Before(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        last.end += need;
        last.events += 1;
        self.end = Cursor {
            pos: last.end,
            event: self.end.event + 1,
        };
        if matches!(last.store, Store::Memory(_)) {
            self.written = self.end;
        } else if self.unwritten.len() >= WRITE_CHUNK {
            self.write_out().map_err(Failed::Counted)?;
        }
        Ok(())
    }

    fn current_len(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.end - s.start)
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.end - s.start).sum()
    }

    /// Drops the oldest segment (never the last one), counting its unacknowledged events.
    fn drop_oldest(&mut self) -> io::Result<()> {
        if self.segments.len() < 2 {
            return Ok(());
        }
        let Some(seg) = self.segments.pop_front() else {
            return Ok(());
        };
        let seg_end_event = seg.first_event + seg.events;
        self.dropped += seg_end_event.saturating_sub(self.acked.event.max(seg.first_event));
        let next = self
            .segments
            .front()
            .map(|s| Cursor {
                pos: s.start,
                event: s.first_event,
            })
            .unwrap_or(self.end);
        if self.acked.pos < next.pos {
            self.acked = next;
        }
        if self.read.pos < next.pos {
            self.read = next;
        }
        if let Store::File { path, file } = seg.store {
            drop(file);
            fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Writes buffered frames to the segment file, so a reader (and a restart) sees them.
    fn write_out(&mut self) -> io::Result<()> {
        if self.unwritten.is_empty() {
            self.written = self.end;
            return Ok(());
        }
        if let Some(Segment {
            store: Store::File { file, .. },
            start,
            events,
            end,
            ..
        }) = self.segments.back_mut()
            && let Err(e) = file.write_all(&self.unwritten)
        {
            // Cut the file back to its last whole frame (a partial write would tear the log)
            // and give up the unwritten frames, counted: the next writes go after that frame.
            let lost = self.end.event - self.written.event;
            let _ = file.set_len(SEGMENT_HEADER_LEN + (self.written.pos - *start));
            let _ = file.seek(io::SeekFrom::End(0));
            *events -= lost;
            *end = self.written.pos;
            self.end = self.written;
            self.dropped += lost;
            self.unwritten.clear();
            return Err(e);
        }
        self.unwritten.clear();
        self.written = self.end;
        Ok(())
    }

    /// Makes every appended event readable and crash-safe (written to the file); syncs to disk
    /// if the last sync is more than a second old.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes everything, syncs the last segment and saves the acknowledged position.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write_out()?;
        if let Some(Segment {
            store: Store::File { file, .. },
            ..
        }) = self.segments.back()
        {
            file.sync_data()?;
        }
        self.last_sync = Instant::now();
        self.save_acked()
    }

    /// Reads up to `max` events after the read cursor (only what is written) into `out`.
    pub fn read_next(&mut self, max: usize, out: &mut Vec<Outgoing>) -> io::Result<usize> {
        let mut n = 0;
        while n < max && self.read.pos < self.written.pos {
            let Some(i) = self.segments.iter().position(|s| self.read.pos < s.end) else {
                break;
            };
            let seg = &self.segments[i];
            if self.read.pos < seg.start {
                self.read = Cursor {
                    pos: seg.start,
                    event: seg.first_event,
                };
            }
            let readable_end = seg.end.min(self.written.pos);
            let available = (readable_end - self.read.pos) as usize;
            if available == 0 {
                break;
            }
            let mut want = available.min(READ_CHUNK);
            // Start from the read-ahead when it holds the read position.
            let mut reuse = self.read_buf_at <= self.read.pos
                && self.read.pos < self.read_buf_at + self.read_buf.len() as u64;
            loop {
                if !reuse {
                    load(
                        &seg.store,
                        seg.start,
                        self.read.pos,
                        want,
                        &mut self.read_buf,
                    )?;
                    self.read_buf_at = self.read.pos;
                }
                // Only bytes of this segment that are written (a damaged segment is cut short).
                let from = (self.read.pos - self.read_buf_at) as usize;
                let to = self
                    .read_buf
                    .len()
                    .min((readable_end - self.read_buf_at) as usize);
                let mut at = self.read;
                let mut got = 0;
                let scan = frame::scan_at_most(&self.read_buf[from..to], (max - n) as u64, |f| {
                    at.pos += (FRAME_HEADER_LEN + f.id.len() + f.payload.len()) as u64;
                    at.event += 1;
                    out.push(Outgoing {
                        id: String::from_utf8_lossy(f.id).into_owned(),
                        payload: f.payload.to_vec(),
                        after: at,
                    });
                    got += 1;
                });
                if got == 0 && scan.error.is_none() && reuse {
                    // The read-ahead ends inside a frame: load from here.
                    reuse = false;
                    continue;
                }
                if got == 0 && scan.error.is_none() && want < available {
                    // One frame larger than a read chunk.
                    want = available.min(FRAME_HEADER_LEN + MAX_ID + MAX_PAYLOAD);
                    continue;
                }
                if got == 0 {
                    // Our own frames, damaged after they were written: end the segment here.
                    let seg = &mut self.segments[i];
                    let lost = (seg.first_event + seg.events).saturating_sub(self.read.event);
                    self.dropped += lost;
                    seg.end = self.read.pos;
                    seg.events -= lost;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("spool segment damaged, {lost} events lost"),
                    ));
                }
                self.read = at;
                n += got;
                break;
            }
        }
        Ok(n)
    }

    /// Everything up to `after` is acknowledged: free what is no longer needed.
    pub fn ack(&mut self, after: Cursor) -> io::Result<()> {
        if after.pos <= self.acked.pos {
            return Ok(());
        }
        self.acked = after;
        if self.read.pos < after.pos {
            self.read = after;
        }
        while self.segments.len() > 1 && self.segments[0].end <= self.acked.pos {
            if let Some(Segment {
                store: Store::File { path, file },
                ..
            }) = self.segments.pop_front()
            {
                drop(file);
                fs::remove_file(path)?;
            }
        }
        if self.last_ack_save.elapsed() >= SAVE_ACK_EVERY {
            self.save_acked()?;
        }
        Ok(())
    }

    /// Publishing failed: read again from the first unacknowledged event.
    pub fn rewind(&mut self) {
        self.read = self.acked;
    }

    fn save_acked(&mut self) -> io::Result<()> {
        self.last_ack_save = Instant::now();
        let Some(dir) = &self.dir else { return Ok(()) };
        if self.acked.pos == self.acked_saved {
            return Ok(());
        }
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&ACKED_MAGIC);
        b[4..12].copy_from_slice(&self.acked.pos.to_le_bytes());
        let crc = crc32fast::hash(&b[..12]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        let tmp = dir.join("acked.tmp");
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f = create_private(&tmp)?;
        f.write_all(&b)?;
        drop(f);
        fs::rename(&tmp, dir.join(ACKED_FILE))?;
        self.acked_saved = self.acked.pos;
        Ok(())
    }

    /// Saves the acknowledged position if it moved since it was last saved.
    pub fn sync_acked(&mut self) -> io::Result<()> {
        self.save_acked()
    }

    /// Counts events that could not be delivered at all (the server refuses them).
    pub fn count_dropped(&mut self, n: u64) {
        self.dropped += n;
    }

    /// Events appended and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.end.event - self.acked.event
    }

    /// Whether every written event has been read (published) at least once since the last rewind.
    pub fn caught_up(&self) -> bool {
        self.read.pos >= self.written.pos
    }

    /// Events dropped because the spool was full (or damaged).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes the spool holds.
    pub fn bytes(&self) -> u64 {
        self.total_bytes()
    }
}

fn segment_name(start: u64) -> String {
    format!("{start:020}.spool")
}

fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The frames of a segment file, if its header is intact.
pub fn check_segment_header(bytes: &[u8]) -> Option<&[u8]> {
    let h = bytes.get(..SEGMENT_HEADER_LEN as usize)?;
    (h == segment_header()).then(|| &bytes[SEGMENT_HEADER_LEN as usize..])
}

fn read_acked(dir: &Path) -> Option<u64> {
    let mut f = open_own(&dir.join(ACKED_FILE), false).ok()?;
    let (b, _) = read_capped(&mut f, 16).ok()?;
    if b.len() != 16 || b[0..4] != ACKED_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(b[12..16].try_into().ok()?);
    if crc32fast::hash(&b[..12]) != crc {
        return None;
    }
    Some(u64::from_le_bytes(b[4..12].try_into().ok()?))
}

/// Unacknowledged events lost in `rest`, the bytes of a segment from log position `at` on that
/// could not be read in order: the frame that starts there (damaged or torn) and every intact
/// frame found past it, those before `acked` excepted.
fn lost_past(rest: &[u8], at: u64, acked: u64) -> u64 {
    if rest.is_empty() {
        return 0;
    }
    let mut lost = u64::from(at >= acked);
    frame::resync(rest.get(1..).unwrap_or_default(), |off, _| {
        if at + 1 + off as u64 >= acked {
            lost += 1;
        }
    });
    lost
}

fn lost_words(lost: u64) -> String {
    match lost {
        0 => "no unacknowledged event lost".into(),
        n => format!("at least {n} unacknowledged events lost (counted as spool_dropped)"),
    }
}

/// A segment without a valid header: removed when it holds no frame (created, then the disk
/// was full or the power went before its header was written), else renamed `<name>.damaged`
/// for a look. Either way it no longer blocks the name the spool writes next.
fn set_aside(
    path: &Path,
    bytes: &[u8],
    start: u64,
    acked: u64,
    recovery: &mut Recovery,
) -> io::Result<()> {
    // Its frames (if any survive) are lost: the header that vouches for them is not there.
    let mut lost = 0;
    frame::resync(bytes, |off, _| {
        if start + (off as u64).saturating_sub(SEGMENT_HEADER_LEN) >= acked {
            lost += 1;
        }
    });
    recovery.lost += lost;
    if lost == 0 && bytes.len() <= SEGMENT_HEADER_LEN as usize {
        fs::remove_file(path)?;
        recovery.damage.push(format!(
            "{}: a segment without its header ({} bytes; a full disk or a power loss as it was created) removed",
            path.display(),
            bytes.len()
        ));
        return Ok(());
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(".damaged");
    fs::rename(path, &aside)?;
    recovery.damage.push(format!(
        "{}: not a spool segment ({} bytes), set aside as {}: {}",
        path.display(),
        bytes.len(),
        Path::new(&aside).display(),
        lost_words(lost)
    ));
    Ok(())
}

/// Reads `len` bytes of the log from `pos` out of a segment starting at `start`.
fn load(store: &Store, start: u64, pos: u64, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    let off = (pos - start) as usize;
    buf.clear();
    match store {
        Store::Memory(v) => {
            let slice = v.get(off..off + len).ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "spool read past its end")
            })?;
            buf.extend_from_slice(slice);
        }
        Store::File { file, .. } => {
            buf.resize(len, 0);
            read_exact_at(file, buf, SEGMENT_HEADER_LEN + off as u64)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
