//! Safe parsing of the variable-length records `read(2)` returns from a fanotify group created
//! with `FAN_REPORT_DFID_NAME`. Every length comes from the kernel but is still checked: a record
//! never reads past its own `event_len`, nor an info record past its `len`.
//!
//! Layout (native endian): `struct fanotify_event_metadata` (24 bytes: u32 event_len, u8 vers,
//! u8 reserved, u16 metadata_len, u64 mask, i32 fd, i32 pid), then info records, each
//! `struct fanotify_event_info_header` (u8 info_type, u8 pad, u16 len) followed, for the
//! directory-fid-and-name type, by an 8-byte fsid, `struct file_handle` (u32 handle_bytes,
//! i32 handle_type, handle bytes) and a NUL-terminated name, padded to `len`.

use std::fmt;

pub const FAN_MODIFY: u64 = 0x0000_0002;
pub const FAN_CLOSE_WRITE: u64 = 0x0000_0008;
pub const FAN_CREATE: u64 = 0x0000_0100;
pub const FAN_Q_OVERFLOW: u64 = 0x0000_4000;
pub const FAN_ONDIR: u64 = 0x4000_0000;

/// The metadata version this parser understands.
pub const FANOTIFY_METADATA_VERSION: u8 = 3;
/// Size of `struct fanotify_event_metadata`.
pub const METADATA_LEN: usize = 24;

const INFO_TYPE_DFID_NAME: u8 = 2;
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

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanEvent<'a> {
    /// Offset of the event inside the buffer.
    pub offset: usize,
    pub mask: u64,
    pub fd: i32,
    pub pid: i32,
    pub dir_fid_name: Option<DirFidName<'a>>,
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
        if info_type == INFO_TYPE_DFID_NAME && dir_fid_name.is_none() {
            dir_fid_name = Some(parse_dfid_name(info).map_err(|e| shift(e, start + at))?);
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
        },
        len,
    ))
}

fn parse_dfid_name(info: &[u8]) -> Result<DirFidName<'_>, FanParseError> {
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
    let name_at = data_at + handle.len();
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

/// Builds event bytes the way the kernel lays them out (tests, fuzz seeds, benchmarks).
pub fn encode_event(out: &mut Vec<u8>, mask: u64, pid: i32, dfid: Option<DfidParts<'_>>) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(FANOTIFY_METADATA_VERSION);
    out.push(0);
    out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
    out.extend_from_slice(&mask.to_ne_bytes());
    out.extend_from_slice(&(-1i32).to_ne_bytes());
    out.extend_from_slice(&pid.to_ne_bytes());
    if let Some((fsid, handle_type, handle, name)) = dfid {
        let info_start = out.len();
        out.push(INFO_TYPE_DFID_NAME);
        out.push(0);
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(fsid);
        out.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        out.extend_from_slice(&handle_type.to_ne_bytes());
        out.extend_from_slice(handle);
        out.extend_from_slice(name);
        out.push(0);
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

    proptest! {
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
            for cut in 0..buf.len() {
                let n = FanEvents::new(&buf[..cut]).filter(Result::is_ok).count();
                prop_assert!(n <= events.len());
            }
        }
    }
}
