//! Spool frames: one event (its message id and its OCSF JSON payload) behind a checksummed
//! header, in the style of the capture format's frames (`docs/capture-format.md`): a length, a
//! kind, and a CRC-32 over the header and everything after it.
//!
//! Layout (little-endian, [`FRAME_HEADER_LEN`] = 16 bytes, then the id, then the payload):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 | 4 | payload length (<= [`MAX_PAYLOAD`]) |
//! |   4 | 2 | id length (1..=[`MAX_ID`]) |
//! |   6 | 2 | kind (1 = event) |
//! |   8 | 4 | CRC-32 of bytes 0..8, the id and the payload |
//! |  12 | 4 | reserved, zero |
//!
//! The parser never allocates and never trusts a length before checking it against the limits,
//! so it can run over any bytes (it is fuzzed: `fuzz/fuzz_targets/spool_frames.rs`).

/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 16;
/// The longest payload a frame may carry (an OCSF line; NATS' default max_payload is 1 MiB).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The longest message id a frame may carry.
pub const MAX_ID: usize = 512;
/// The only frame kind so far.
const KIND_EVENT: u16 = 1;

/// A frame borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub id: &'a [u8],
    pub payload: &'a [u8],
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole, intact frame of `len` bytes.
    Frame { frame: Frame<'a>, len: usize },
    /// The start of a frame whose rest is not (yet) there: a torn write, or more to read.
    Incomplete,
}

/// Why the bytes at the start of a buffer are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("spool frame payload length {0} exceeds the limit")]
    PayloadTooLong(u64),
    #[error("spool frame id length {0} is out of range")]
    BadIdLength(u64),
    #[error("unknown spool frame kind {0}")]
    BadKind(u16),
    #[error("spool frame reserved bytes are not zero")]
    Reserved,
    #[error("spool frame checksum mismatch")]
    Checksum,
}

/// The encoded size of a frame.
pub fn encoded_len(id: &[u8], payload: &[u8]) -> usize {
    FRAME_HEADER_LEN + id.len() + payload.len()
}

/// Appends one frame to `out`. The caller keeps `id` and `payload` within the limits.
pub fn encode(out: &mut Vec<u8>, id: &[u8], payload: &[u8]) -> Result<(), FrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLong(payload.len() as u64));
    }
    if id.is_empty() || id.len() > MAX_ID {
        return Err(FrameError::BadIdLength(id.len() as u64));
    }
    let mut h = [0u8; FRAME_HEADER_LEN];
    // Both lengths checked above: they fit.
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..6].copy_from_slice(&(id.len() as u16).to_le_bytes());
    h[6..8].copy_from_slice(&KIND_EVENT.to_le_bytes());
    let crc = checksum(&h[..8], id, payload);
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    out.reserve(FRAME_HEADER_LEN + id.len() + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(id);
    out.extend_from_slice(payload);
    Ok(())
}

fn checksum(head: &[u8], id: &[u8], payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.update(id);
    crc.update(payload);
    crc.finalize()
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

/// Parses the frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, FrameError> {
    let Some(h) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(Parsed::Incomplete);
    };
    let payload_len = le_u32(&h[0..4]) as usize;
    let id_len = usize::from(le_u16(&h[4..6]));
    let kind = le_u16(&h[6..8]);
    if payload_len > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLong(payload_len as u64));
    }
    if id_len == 0 || id_len > MAX_ID {
        return Err(FrameError::BadIdLength(id_len as u64));
    }
    if kind != KIND_EVENT {
        return Err(FrameError::BadKind(kind));
    }
    if h[12..16] != [0; 4] {
        return Err(FrameError::Reserved);
    }
    let len = FRAME_HEADER_LEN + id_len + payload_len;
    let Some(body) = buf.get(FRAME_HEADER_LEN..len) else {
        return Ok(Parsed::Incomplete);
    };
    let (id, payload) = body.split_at(id_len);
    if checksum(&h[..8], id, payload) != le_u32(&h[8..12]) {
        return Err(FrameError::Checksum);
    }
    Ok(Parsed::Frame {
        frame: Frame { id, payload },
        len,
    })
}

/// The result of walking a run of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Whole, intact frames from the start.
    pub frames: u64,
    /// Bytes those frames take: everything after this is torn or damaged.
    pub good_len: usize,
    /// Why the walk stopped before the end, if the rest is damaged rather than merely short.
    pub error: Option<FrameError>,
}

/// Walks the frames of `buf` from the start, calling `each` for every intact one, up to the first
/// incomplete or damaged frame.
pub fn scan(buf: &[u8], each: impl FnMut(Frame<'_>)) -> Scan {
    scan_at_most(buf, u64::MAX, each)
}

/// [`scan`], stopping after `max_frames` frames: a reader that wants a few events from a large
/// read-ahead buffer checks only those (each frame's checksum is most of the cost).
pub fn scan_at_most(buf: &[u8], max_frames: u64, mut each: impl FnMut(Frame<'_>)) -> Scan {
    let mut at = 0usize;
    let mut frames = 0u64;
    loop {
        let rest = &buf[at..];
        if rest.is_empty() || frames >= max_frames {
            return Scan {
                frames,
                good_len: at,
                error: None,
            };
        }
        match parse(rest) {
            Ok(Parsed::Frame { frame, len }) => {
                each(frame);
                frames += 1;
                at += len;
            }
            Ok(Parsed::Incomplete) => {
                return Scan {
                    frames,
                    good_len: at,
                    error: None,
                };
            }
            Err(e) => {
                return Scan {
                    frames,
                    good_len: at,
                    error: Some(e),
                };
            }
        }
    }
}

/// Past a damaged frame: calls `each` with the offset and length of every intact frame found in
/// `buf` when searching for one at every byte (a damaged frame's length cannot be trusted, so the
/// next one is found by its checksum). Counts what a damaged segment lost; a damaged frame's own
/// bytes are not a frame. Costs a header check per byte and a checksum per plausible header.
pub fn resync(buf: &[u8], mut each: impl FnMut(usize, usize)) {
    let mut at = 0usize;
    while at < buf.len() {
        match parse(&buf[at..]) {
            Ok(Parsed::Frame { len, .. }) => {
                each(at, len);
                at += len;
            }
            Ok(Parsed::Incomplete) if buf.len() - at < FRAME_HEADER_LEN => return,
            _ => at += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..40),
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            0..12,
        )
    }

    fn encode_all(fs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, p) in fs {
            encode(&mut out, id, p).unwrap();
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn what_is_written_reads_back(fs in frames()) {
            let bytes = encode_all(&fs);
            let mut got = Vec::new();
            let s = scan(&bytes, |f| got.push((f.id.to_vec(), f.payload.to_vec())));
            prop_assert_eq!(s.good_len, bytes.len());
            prop_assert_eq!(s.error, None);
            prop_assert_eq!(got, fs);
        }

        /// A crash mid-write leaves a prefix: every whole frame before the cut reads back, the
        /// torn one is reported as incomplete, never as a frame.
        #[test]
        fn a_torn_tail_keeps_every_whole_frame(fs in frames(), cut in any::<prop::sample::Index>()) {
            let bytes = encode_all(&fs);
            let cut = cut.index(bytes.len() + 1);
            let mut got = Vec::new();
            let s = scan(&bytes[..cut], |f| got.push((f.id.to_vec(), f.payload.to_vec())));
            prop_assert_eq!(s.error, None);
            let mut whole = 0;
            let mut end = 0;
            for (id, p) in &fs {
                if end + encoded_len(id, p) > cut { break; }
                end += encoded_len(id, p);
                whole += 1;
            }
            prop_assert_eq!(s.good_len, end);
            prop_assert_eq!(&got[..], &fs[..whole]);
        }

        /// A flipped bit never yields a frame that was not written.
        #[test]
        fn a_flipped_bit_is_never_read_as_data(fs in frames(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = encode_all(&fs);
            prop_assume!(!bytes.is_empty());
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
            let mut got = Vec::new();
            scan(&bytes, |f| got.push((f.id.to_vec(), f.payload.to_vec())));
            prop_assert!(got.len() <= fs.len());
            prop_assert_eq!(&got[..], &fs[..got.len()]);
        }

        /// Stopping after k frames gives the first k frames of the whole walk, and where they end.
        #[test]
        fn a_limited_walk_is_a_prefix_of_the_whole(fs in frames(), k in 0u64..14) {
            let bytes = encode_all(&fs);
            let mut got = Vec::new();
            let s = scan_at_most(&bytes, k, |f| got.push((f.id.to_vec(), f.payload.to_vec())));
            let take = fs.len().min(k as usize);
            prop_assert_eq!(s.frames, take as u64);
            prop_assert_eq!(s.error, None);
            prop_assert_eq!(s.good_len, fs[..take].iter().map(|(id, p)| encoded_len(id, p)).sum::<usize>());
            prop_assert_eq!(&got[..], &fs[..take]);
        }

        #[test]
        fn any_bytes_are_handled(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = scan(&bytes, |_| {});
            prop_assert!(s.good_len <= bytes.len());
            let mut last_end = 0;
            resync(&bytes, |at, len| {
                assert!(at >= last_end && at + len <= bytes.len());
                last_end = at + len;
            });
        }

        /// Frames behind junk (a damaged frame, a flipped length) are all found again, at the
        /// places they were written.
        #[test]
        fn resync_finds_every_frame_behind_junk(
            junk in proptest::collection::vec(any::<u8>(), 1..64),
            fs in frames(),
        ) {
            let mut bytes = junk.clone();
            bytes.extend(encode_all(&fs));
            let mut found = Vec::new();
            resync(&bytes, |at, len| found.push((at, len)));
            // Junk can itself look like a frame only by a checksum collision; what follows it
            // is found exactly.
            let mut at = junk.len();
            let mut expected = Vec::new();
            for (id, p) in &fs {
                expected.push((at, encoded_len(id, p)));
                at += encoded_len(id, p);
            }
            let tail: Vec<_> = found.iter().copied().filter(|(a, _)| *a >= junk.len()).collect();
            prop_assert_eq!(tail, expected);
        }
    }

    #[test]
    fn limits_are_refused_when_writing() {
        let mut out = Vec::new();
        assert_eq!(encode(&mut out, b"", b"x"), Err(FrameError::BadIdLength(0)));
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            encode(&mut out, b"i", &big),
            Err(FrameError::PayloadTooLong(_))
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn a_huge_declared_length_is_an_error_not_a_wait() {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        h[4..6].copy_from_slice(&1u16.to_le_bytes());
        h[6..8].copy_from_slice(&1u16.to_le_bytes());
        assert!(matches!(parse(&h), Err(FrameError::PayloadTooLong(_))));
    }
}
