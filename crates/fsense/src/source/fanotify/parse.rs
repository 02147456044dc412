//! Safe parsing of the variable-length records `read(2)` returns from a fanotify group created
//! with `FAN_REPORT_DFID_NAME | FAN_REPORT_PIDFD`. Every length comes from the kernel but is still checked: a record
//! never reads past its own `event_len`, nor an info record past its `len`.
//!
//! Layout (native endian): `struct fanotify_event_metadata` (24 bytes: u32 event_len, u8 vers,
//! u8 reserved, u16 metadata_len, u64 mask, i32 fd, i32 pid), then info records, each
//! `struct fanotify_event_info_header` (u8 info_type, u8 pad, u16 len) followed, for the
//! directory-fid-and-name type, by an 8-byte fsid, `struct file_handle` (u32 handle_bytes,
//! i32 handle_type, handle bytes) and a NUL-terminated name, padded to `len`. A `FAN_RENAME`
//! event carries two such records, of the old-directory and new-directory types, instead of one.
//! With `FAN_REPORT_TARGET_FID` a create, delete or rename also carries the entry's own file
//! handle (the plain fid type: fsid and `struct file_handle`, no name).
//! The pidfd type holds one i32: a pidfd the reader now owns and must close, or `FAN_NOPIDFD` /
//! `FAN_EPIDFD` (negative) when the process had exited or no pidfd could be made.

use std::fmt;

pub const FAN_MODIFY: u64 = 0x0000_0002;
pub const FAN_CLOSE_WRITE: u64 = 0x0000_0008;
pub const FAN_CREATE: u64 = 0x0000_0100;
pub const FAN_DELETE: u64 = 0x0000_0200;
pub const FAN_Q_OVERFLOW: u64 = 0x0000_4000;
pub const FAN_RENAME: u64 = 0x1000_0000;
pub const FAN_ONDIR: u64 = 0x4000_0000;

/// The metadata version this parser understands.
pub const FANOTIFY_METADATA_VERSION: u8 = 3;
/// Size of `struct fanotify_event_metadata`.
pub const METADATA_LEN: usize = 24;

const INFO_TYPE_FID: u8 = 1;
const INFO_TYPE_DFID_NAME: u8 = 2;
const INFO_TYPE_PIDFD: u8 = 4;
const INFO_TYPE_OLD_DFID_NAME: u8 = 10;
const INFO_TYPE_NEW_DFID_NAME: u8 = 12;
const INFO_HEADER_LEN: usize = 4;
const FSID_LEN: usize = 8;
const HANDLE_HEADER_LEN: usize = 8;

/// Directory file handle plus entry name: where the event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFidName<'a> {
    pub fsid: [u8; 8],
    pub handle_type: i32,
    /// The opaque `f_handle` bytes.
    pub handle: &'a [u8],
    /// The entry name, without its NUL. `.` when the event is on the directory itself.
    pub name: &'a [u8],
}

/// A file handle without a name: the entry a create, delete or rename was about
/// (`FAN_REPORT_TARGET_FID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fid<'a> {
    pub fsid: [u8; 8],
    pub handle_type: i32,
    /// The opaque `f_handle` bytes.
    pub handle: &'a [u8],
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanEvent<'a> {
    /// Offset of the event inside the buffer.
    pub offset: usize,
    pub mask: u64,
    pub fd: i32,
    pub pid: i32,
    pub dir_fid_name: Option<DirFidName<'a>>,
    /// `FAN_RENAME`: the directory and name the entry had.
    pub old_dir_fid_name: Option<DirFidName<'a>>,
    /// `FAN_RENAME`: the directory and name the entry has now.
    pub new_dir_fid_name: Option<DirFidName<'a>>,
    /// `FAN_REPORT_TARGET_FID`: the entry itself (a created entry, for instance).
    pub fid: Option<Fid<'a>>,
    /// `FAN_REPORT_PIDFD`: a pidfd of the process that caused the event (owned by the reader
    /// from now on), or a negative value when there is none (the process had exited).
    pub pidfd: Option<i32>,
}

impl FanEvent<'_> {
    /// Every non-negative pidfd the event carries: descriptors the reader must close.
    pub fn owned_pidfd(&self) -> Option<i32> {
        self.pidfd.filter(|&fd| fd >= 0)
    }
}

/// Why a buffer could not be parsed further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanParseError {
    pub what: FanParseErrorKind,
    /// Offset in the buffer of the field at fault.
    pub offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanParseErrorKind {
    Truncated,
    UnsupportedVersion(u8),
    BadEventLength(u32),
    BadMetadataLength(u16),
    BadInfoLength(u16),
    BadHandleLength(u32),
    NameNotTerminated,
}

impl fmt::Display for FanParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.what {
            FanParseErrorKind::Truncated => write!(f, "truncated fanotify event")?,
            FanParseErrorKind::UnsupportedVersion(v) => {
                write!(f, "unsupported fanotify metadata version {v}")?
            }
            FanParseErrorKind::BadEventLength(l) => write!(f, "bad fanotify event length {l}")?,
            FanParseErrorKind::BadMetadataLength(l) => {
                write!(f, "bad fanotify metadata length {l}")?
            }
            FanParseErrorKind::BadInfoLength(l) => write!(f, "bad fanotify info length {l}")?,
            FanParseErrorKind::BadHandleLength(l) => write!(f, "bad file handle length {l}")?,
            FanParseErrorKind::NameNotTerminated => write!(f, "file name without its NUL")?,
        }
        write!(f, " at byte offset {}", self.offset)
    }
}

impl std::error::Error for FanParseError {}

/// Iterates the events in a buffer; stops after the first error.
pub struct FanEvents<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> FanEvents<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for FanEvents<'a> {
    type Item = Result<FanEvent<'a>, FanParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let result = parse_event(self.buf, self.pos);
        match result {
            Ok((event, len)) => {
                self.pos += len;
                Some(Ok(event))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn err(what: FanParseErrorKind, offset: usize) -> FanParseError {
    FanParseError { what, offset }
}

/// Reads `N` bytes at `at`. A read past the end is reported at the end of `buf` at the latest,
/// so error offsets always lie inside the caller's buffer.
fn array<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], FanParseError> {
    let truncated = err(FanParseErrorKind::Truncated, at.min(buf.len()));
    let end = at.checked_add(N).ok_or(truncated)?;
    let slice = buf.get(at..end).ok_or(truncated)?;
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    Ok(out)
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, FanParseError> {
    array(buf, at).map(u16::from_ne_bytes)
}
fn u32_at(buf: &[u8], at: usize) -> Result<u32, FanParseError> {
    array(buf, at).map(u32::from_ne_bytes)
}
fn i32_at(buf: &[u8], at: usize) -> Result<i32, FanParseError> {
    array(buf, at).map(i32::from_ne_bytes)
}
fn u64_at(buf: &[u8], at: usize) -> Result<u64, FanParseError> {
    array(buf, at).map(u64::from_ne_bytes)
}

/// Parses the event at `start`; returns it and its length.
fn parse_event(buf: &[u8], start: usize) -> Result<(FanEvent<'_>, usize), FanParseError> {
    let event_len = u32_at(buf, start)?;
    let version = *buf
        .get(start + 4)
        .ok_or(err(FanParseErrorKind::Truncated, buf.len()))?;
    if version != FANOTIFY_METADATA_VERSION {
        return Err(err(
            FanParseErrorKind::UnsupportedVersion(version),
            start + 4,
        ));
    }
    let metadata_len = u16_at(buf, start + 6)?;
    let len = event_len as usize;
    if usize::from(metadata_len) < METADATA_LEN {
        return Err(err(
            FanParseErrorKind::BadMetadataLength(metadata_len),
            start + 6,
        ));
    }
    if len < usize::from(metadata_len) || len > buf.len() - start {
        return Err(err(FanParseErrorKind::BadEventLength(event_len), start));
    }
    // Everything below reads inside the event's own bytes.
    let event = &buf[start..start + len];
    let mask = u64_at(event, 8).map_err(|e| shift(e, start))?;
    let fd = i32_at(event, 16).map_err(|e| shift(e, start))?;
    let pid = i32_at(event, 20).map_err(|e| shift(e, start))?;
    let mut dir_fid_name = None;
    let mut old_dir_fid_name = None;
    let mut new_dir_fid_name = None;
    let mut pidfd = None;
    let mut fid = None;
    let mut at = usize::from(metadata_len);
    while at < len {
        let info_type = event[at];
        let info_len = u16_at(event, at + 2).map_err(|e| shift(e, start))?;
        let ilen = usize::from(info_len);
        if ilen < INFO_HEADER_LEN || ilen > len - at {
            return Err(err(
                FanParseErrorKind::BadInfoLength(info_len),
                start + at + 2,
            ));
        }
        let info = &event[at..at + ilen];
        let slot = match info_type {
            INFO_TYPE_DFID_NAME => Some(&mut dir_fid_name),
            INFO_TYPE_OLD_DFID_NAME => Some(&mut old_dir_fid_name),
            INFO_TYPE_NEW_DFID_NAME => Some(&mut new_dir_fid_name),
            _ => None,
        };
        match slot {
            Some(slot) if slot.is_none() => {
                *slot = Some(parse_dfid_name(info).map_err(|e| shift(e, start + at))?);
            }
            Some(_) => {}
            None if info_type == INFO_TYPE_PIDFD && pidfd.is_none() => {
                pidfd = Some(i32_at(info, INFO_HEADER_LEN).map_err(|e| shift(e, start + at))?);
            }
            None if info_type == INFO_TYPE_FID && fid.is_none() => {
                fid = Some(parse_handle(info).map_err(|e| shift(e, start + at))?.0);
            }
            None => {}
        }
        at += ilen;
    }
    Ok((
        FanEvent {
            offset: start,
            mask,
            fd,
            pid,
            dir_fid_name,
            old_dir_fid_name,
            new_dir_fid_name,
            fid,
            pidfd,
        },
        len,
    ))
}

/// The fsid and file handle of an info record, and the offset right after the handle.
fn parse_handle(info: &[u8]) -> Result<(Fid<'_>, usize), FanParseError> {
    let fsid = array::<FSID_LEN>(info, INFO_HEADER_LEN)?;
    let handle_at = INFO_HEADER_LEN + FSID_LEN;
    let handle_bytes = u32_at(info, handle_at)?;
    let handle_type = i32_at(info, handle_at + 4)?;
    let data_at = handle_at + HANDLE_HEADER_LEN;
    let handle = usize::try_from(handle_bytes)
        .ok()
        .and_then(|n| Some(data_at..data_at.checked_add(n)?))
        .and_then(|r| info.get(r))
        .ok_or(err(
            FanParseErrorKind::BadHandleLength(handle_bytes),
            handle_at,
        ))?;
    Ok((
        Fid {
            fsid,
            handle_type,
            handle,
        },
        data_at + handle.len(),
    ))
}

fn parse_dfid_name(info: &[u8]) -> Result<DirFidName<'_>, FanParseError> {
    let (
        Fid {
            fsid,
            handle_type,
            handle,
        },
        name_at,
    ) = parse_handle(info)?;
    let rest = &info[name_at..];
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(err(FanParseErrorKind::NameNotTerminated, name_at))?;
    Ok(DirFidName {
        fsid,
        handle_type,
        handle,
        name: &rest[..nul],
    })
}

fn shift(mut e: FanParseError, by: usize) -> FanParseError {
    e.offset += by;
    e
}

/// (fsid, handle type, handle bytes, name) of an event to encode.
pub type DfidParts<'a> = (&'a [u8; 8], i32, &'a [u8], &'a [u8]);

/// One info record of an event to encode.
#[derive(Debug, Clone, Copy)]
pub enum InfoRecord<'a> {
    DirFidName(DfidParts<'a>),
    OldDirFidName(DfidParts<'a>),
    NewDirFidName(DfidParts<'a>),
    /// The entry's own handle: (fsid, handle type, handle bytes).
    Fid(&'a [u8; 8], i32, &'a [u8]),
    Pidfd(i32),
}

/// Builds event bytes the way the kernel lays them out (tests, fuzz seeds, benchmarks).
pub fn encode_event(out: &mut Vec<u8>, mask: u64, pid: i32, dfid: Option<DfidParts<'_>>) {
    let info: Vec<InfoRecord<'_>> = dfid.into_iter().map(InfoRecord::DirFidName).collect();
    encode_event_with(out, mask, pid, &info);
}

/// Like [`encode_event`], with any info records, in order.
pub fn encode_event_with(out: &mut Vec<u8>, mask: u64, pid: i32, info: &[InfoRecord<'_>]) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(FANOTIFY_METADATA_VERSION);
    out.push(0);
    out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
    out.extend_from_slice(&mask.to_ne_bytes());
    out.extend_from_slice(&(-1i32).to_ne_bytes());
    out.extend_from_slice(&pid.to_ne_bytes());
    for record in info {
        let info_start = out.len();
        let (info_type, dfid) = match *record {
            InfoRecord::DirFidName(d) => (INFO_TYPE_DFID_NAME, Some(d)),
            InfoRecord::OldDirFidName(d) => (INFO_TYPE_OLD_DFID_NAME, Some(d)),
            InfoRecord::NewDirFidName(d) => (INFO_TYPE_NEW_DFID_NAME, Some(d)),
            InfoRecord::Fid(..) => (INFO_TYPE_FID, None),
            InfoRecord::Pidfd(_) => (INFO_TYPE_PIDFD, None),
        };
        out.push(info_type);
        out.push(0);
        out.extend_from_slice(&0u16.to_ne_bytes());
        match (record, dfid) {
            (_, Some((fsid, handle_type, handle, name))) => {
                out.extend_from_slice(fsid);
                out.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
                out.extend_from_slice(&handle_type.to_ne_bytes());
                out.extend_from_slice(handle);
                out.extend_from_slice(name);
                out.push(0);
            }
            (InfoRecord::Pidfd(fd), None) => out.extend_from_slice(&fd.to_ne_bytes()),
            (InfoRecord::Fid(fsid, handle_type, handle), None) => {
                out.extend_from_slice(&fsid[..]);
                out.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
                out.extend_from_slice(&handle_type.to_ne_bytes());
                out.extend_from_slice(handle);
            }
            _ => {}
        }
        while !(out.len() - info_start).is_multiple_of(4) {
            out.push(0);
        }
        let info_len = (out.len() - info_start) as u16;
        out[info_start + 2..info_start + 4].copy_from_slice(&info_len.to_ne_bytes());
    }
    let event_len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&event_len.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_create_event_parses() {
        let mut buf = Vec::new();
        encode_event(
            &mut buf,
            FAN_CREATE,
            42,
            Some((&[1; 8], 1, &[9, 9, 9, 9, 9, 9, 9, 9], b"a b")),
        );
        encode_event(&mut buf, FAN_Q_OVERFLOW, 0, None);
        let events: Vec<_> = FanEvents::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(events.len(), 2);
        let dfid = events[0].dir_fid_name.unwrap();
        assert_eq!((events[0].mask, events[0].pid), (FAN_CREATE, 42));
        assert_eq!(dfid.name, b"a b");
        assert_eq!(dfid.handle.len(), 8);
        assert_eq!(events[1].mask, FAN_Q_OVERFLOW);
        assert_eq!(events[1].dir_fid_name, None);
    }

    #[test]
    fn a_name_without_nul_is_an_error() {
        let mut buf = Vec::new();
        encode_event(
            &mut buf,
            FAN_CREATE,
            1,
            Some((&[0; 8], 1, &[1, 2, 3, 4], b"abc")),
        );
        // The name "abc\0" fills the record exactly: replace the NUL.
        let nul = buf.len() - 1;
        buf[nul] = b'x';
        let e = FanEvents::new(&buf).next().unwrap().unwrap_err();
        assert_eq!(e.what, FanParseErrorKind::NameNotTerminated);
        assert_eq!(e.offset, METADATA_LEN + 4 + 8 + 8 + 4);
    }

    #[test]
    fn a_rename_carries_both_names_and_a_pidfd() {
        let mut buf = Vec::new();
        encode_event_with(
            &mut buf,
            FAN_RENAME,
            7,
            &[
                InfoRecord::Pidfd(5),
                InfoRecord::OldDirFidName((&[1; 8], 1, &[1, 1, 1, 1], b"download.part")),
                InfoRecord::NewDirFidName((&[1; 8], 1, &[2, 2, 2, 2], b"download.docm")),
            ],
        );
        encode_event_with(&mut buf, FAN_CREATE, 8, &[InfoRecord::Pidfd(-1)]);
        let events: Vec<_> = FanEvents::new(&buf).collect::<Result<_, _>>().unwrap();
        let rename = events[0];
        assert_eq!(rename.dir_fid_name, None);
        assert_eq!(rename.old_dir_fid_name.unwrap().name, b"download.part");
        assert_eq!(rename.old_dir_fid_name.unwrap().handle, &[1, 1, 1, 1]);
        assert_eq!(rename.new_dir_fid_name.unwrap().name, b"download.docm");
        assert_eq!(rename.new_dir_fid_name.unwrap().handle, &[2, 2, 2, 2]);
        assert_eq!((rename.pidfd, rename.owned_pidfd()), (Some(5), Some(5)));
        assert_eq!((events[1].pidfd, events[1].owned_pidfd()), (Some(-1), None));
    }

    #[test]
    fn a_create_with_the_entry_handle_carries_both_handles() {
        let mut buf = Vec::new();
        encode_event_with(
            &mut buf,
            FAN_CREATE,
            3,
            &[
                InfoRecord::DirFidName((&[1; 8], 1, &[1, 1, 1, 1], b"link")),
                InfoRecord::Fid(&[1; 8], 2, &[7, 7, 7, 7, 7]),
            ],
        );
        encode_event_with(
            &mut buf,
            FAN_DELETE,
            3,
            &[InfoRecord::Fid(&[2; 8], 3, &[8; 128])],
        );
        let events: Vec<_> = FanEvents::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(events[0].dir_fid_name.unwrap().name, b"link");
        let fid = events[0].fid.unwrap();
        assert_eq!(
            (fid.fsid, fid.handle_type, fid.handle),
            ([1; 8], 2, &[7u8; 5][..])
        );
        assert_eq!(events[1].fid.unwrap().handle.len(), 128);
        assert_eq!(events[1].dir_fid_name, None);
        // A handle longer than its record is an error, not a read past it.
        let mut bad = Vec::new();
        encode_event_with(
            &mut bad,
            FAN_DELETE,
            3,
            &[InfoRecord::Fid(&[2; 8], 3, &[8; 4])],
        );
        let at = METADATA_LEN + 4 + 8;
        bad[at..at + 4].copy_from_slice(&64u32.to_ne_bytes());
        let e = FanEvents::new(&bad).next().unwrap().unwrap_err();
        assert_eq!(e.what, FanParseErrorKind::BadHandleLength(64));
    }

    #[test]
    fn a_pidfd_record_too_short_for_its_value_is_an_error() {
        let mut buf = Vec::new();
        encode_event_with(&mut buf, FAN_CREATE, 1, &[InfoRecord::Pidfd(3)]);
        // Shrink the info record to its header: the i32 no longer fits.
        let info_len_at = METADATA_LEN + 2;
        buf[info_len_at..info_len_at + 2].copy_from_slice(&4u16.to_ne_bytes());
        let event_len = (METADATA_LEN + 4) as u32;
        buf[..4].copy_from_slice(&event_len.to_ne_bytes());
        buf.truncate(METADATA_LEN + 4);
        let e = FanEvents::new(&buf).next().unwrap().unwrap_err();
        assert_eq!(e.what, FanParseErrorKind::Truncated);
        assert!(e.offset <= buf.len());
    }

    #[test]
    fn a_truncated_header_is_reported_inside_the_buffer() {
        // Found by the fanotify_parse fuzz target.
        let buf = [0x03, 0x40, 0x00, 0x00, 0x03];
        let e = FanEvents::new(&buf).next().unwrap().unwrap_err();
        assert_eq!(e, err(FanParseErrorKind::Truncated, 5));
    }

    #[test]
    fn an_event_longer_than_the_buffer_is_an_error() {
        let mut buf = Vec::new();
        encode_event(&mut buf, FAN_MODIFY, 1, None);
        buf[0] = 200;
        let e = FanEvents::new(&buf).next().unwrap().unwrap_err();
        assert_eq!(e, err(FanParseErrorKind::BadEventLength(200), 0));
    }

    /// Where the round trips cut their buffer: every length natively; under Miri, which runs these
    /// quadratic loops about a thousand times slower, every 16th length plus the last one. Miri is
    /// there for undefined behaviour, which a cut at any length would expose in the same code path.
    fn truncation_points(len: usize) -> impl Iterator<Item = usize> {
        let step = if cfg!(miri) { 16 } else { 1 };
        (0..len)
            .step_by(step)
            .chain(len.checked_sub(1).filter(|last| last % step != 0))
    }

    /// An event with its optional rename records and pidfd, as the round trip generates it.
    type Generated = (u64, i32, Vec<u8>, Vec<u8>, Option<Vec<u8>>, Option<i32>);

    fn generated_event() -> impl Strategy<Value = Generated> {
        (
            any::<u64>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 1..64),
            proptest::collection::vec(1u8..=255, 0..255),
            proptest::option::of(proptest::collection::vec(1u8..=255, 0..255)),
            proptest::option::of(any::<i32>()),
        )
    }

    proptest! {
        #[test]
        fn renames_and_pidfds_round_trip(events in proptest::collection::vec(generated_event(), 0..4)) {
            let mut buf = Vec::new();
            for (mask, pid, handle, name, new_name, pidfd) in &events {
                let mut info = Vec::new();
                if let Some(fd) = pidfd {
                    info.push(InfoRecord::Pidfd(*fd));
                }
                match new_name {
                    Some(new) => {
                        info.push(InfoRecord::OldDirFidName((&[7; 8], 3, handle, name)));
                        info.push(InfoRecord::NewDirFidName((&[7; 8], 3, handle, new)));
                    }
                    None => info.push(InfoRecord::DirFidName((&[7; 8], 3, handle, name))),
                }
                encode_event_with(&mut buf, *mask, *pid, &info);
            }
            let parsed: Vec<_> = FanEvents::new(&buf).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed.len(), events.len());
            for (p, (mask, pid, handle, name, new_name, pidfd)) in parsed.iter().zip(&events) {
                prop_assert_eq!((p.mask, p.pid, p.pidfd), (*mask, *pid, *pidfd));
                match new_name {
                    Some(new) => {
                        prop_assert_eq!(p.dir_fid_name, None);
                        prop_assert_eq!(p.old_dir_fid_name.unwrap().name, &name[..]);
                        prop_assert_eq!(p.new_dir_fid_name.unwrap().name, &new[..]);
                        prop_assert_eq!(p.new_dir_fid_name.unwrap().handle, &handle[..]);
                    }
                    None => prop_assert_eq!(p.dir_fid_name.unwrap().name, &name[..]),
                }
            }
            for cut in truncation_points(buf.len()) {
                let n = FanEvents::new(&buf[..cut]).filter(Result::is_ok).count();
                prop_assert!(n <= events.len());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            for item in FanEvents::new(&buf) {
                match item {
                    Ok(ev) => prop_assert!(ev.offset < buf.len()),
                    Err(e) => prop_assert!(e.offset <= buf.len()),
                }
            }
        }

        #[test]
        fn encoded_events_round_trip(
            events in proptest::collection::vec(
                (any::<u64>(), any::<i32>(), proptest::collection::vec(any::<u8>(), 1..64),
                 proptest::collection::vec(1u8..=255, 0..255)),
                0..8)
        ) {
            let mut buf = Vec::new();
            for (mask, pid, handle, name) in &events {
                encode_event(&mut buf, *mask, *pid, Some((&[7; 8], 3, handle, name)));
            }
            let parsed: Vec<_> = FanEvents::new(&buf).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed.len(), events.len());
            for (p, (mask, pid, handle, name)) in parsed.iter().zip(&events) {
                let d = p.dir_fid_name.unwrap();
                prop_assert_eq!((p.mask, p.pid), (*mask, *pid));
                prop_assert_eq!(d.handle, &handle[..]);
                prop_assert_eq!(d.name, &name[..]);
            }
            // Every truncation is an error or a shorter list, never a panic.
            // (also above, for renames and pidfds)
            for cut in truncation_points(buf.len()) {
                let n = FanEvents::new(&buf[..cut]).filter(Result::is_ok).count();
                prop_assert!(n <= events.len());
            }
        }
    }
}
