//! Capture files: the driver messages a consumer received, framed and checksummed, so that a run
//! can be decoded or replayed later. The layout is documented in `docs/capture-format.md`.
//!
//! Reading is streaming and linear: one fixed buffer of [`MAX_MESSAGE_BYTES`] is reused for every
//! frame, and a frame's declared length is checked against that limit before anything is read,
//! so no allocation is ever sized by a number from the file. Every frame carries a CRC-32 over its
//! header and payload, so any single flipped bit is reported at the frame that holds it.

use std::io::{self, Read, Write};

use fsense_proto::{
    DecodeError, MAX_MESSAGE_BYTES, MIN_PROTOCOL_VERSION, Message, PROTOCOL_VERSION,
};

/// The file's first eight bytes.
pub const FILE_MAGIC: [u8; 8] = *b"FSNSCAPT";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Size of each frame header.
pub const FRAME_HEADER_LEN: usize = 24;
/// Payload of the end frame: the number of message frames before it.
pub const END_PAYLOAD_LEN: usize = 8;

/// Where the captured messages came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SourceKind {
    Simulator = 1,
    WindowsPort = 2,
    Fanotify = 3,
    Replay = 4,
}

impl SourceKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Simulator),
            2 => Some(Self::WindowsPort),
            3 => Some(Self::Fanotify),
            4 => Some(Self::Replay),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::WindowsPort => "windows-port",
            Self::Fanotify => "fanotify",
            Self::Replay => "replay",
        }
    }
}

/// Frame kinds.
const FRAME_MESSAGE: u16 = 1;
const FRAME_END: u16 = 2;

/// The decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureHeader {
    pub format_version: u16,
    /// The fsense-proto version of the messages inside.
    pub protocol_version: u16,
    pub source: SourceKind,
    /// When the capture was started, in 100 ns ticks since 1601-01-01 UTC.
    pub created: u64,
}

/// Writes a capture. Call [`CaptureWriter::finish`] to write the end frame; a capture without
/// one is reported as incomplete when decoded.
pub struct CaptureWriter<W: Write> {
    out: W,
    frames: u64,
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W, source: SourceKind, created: u64) -> io::Result<Self> {
        let mut h = [0u8; FILE_HEADER_LEN];
        h[0..8].copy_from_slice(&FILE_MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[10..12].copy_from_slice(&(FILE_HEADER_LEN as u16).to_le_bytes());
        h[12..14].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        h[14] = source as u8;
        h[16..24].copy_from_slice(&created.to_le_bytes());
        let crc = crc32fast::hash(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self { out, frames: 0 })
    }

    /// Appends one driver message as received at `received_at` (100 ns ticks since 1601).
    pub fn write_message(&mut self, message: &[u8], received_at: u64) -> io::Result<()> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message longer than the protocol allows",
            ));
        }
        self.write_frame(FRAME_MESSAGE, message, received_at)?;
        self.frames += 1;
        Ok(())
    }

    fn write_frame(&mut self, kind: u16, payload: &[u8], received_at: u64) -> io::Result<()> {
        let mut h = [0u8; FRAME_HEADER_LEN];
        // Length checked by the callers: at most MAX_MESSAGE_BYTES.
        h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[4..6].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&received_at.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&h[..16]);
        crc.update(payload);
        h[16..20].copy_from_slice(&crc.finalize().to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(payload)
    }

    /// Message frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes buffered frames without closing the capture.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the end frame and flushes; returns the writer.
    pub fn finish(mut self, at: u64) -> io::Result<W> {
        let count = self.frames.to_le_bytes();
        self.write_frame(FRAME_END, &count, at)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Why a capture could not be read further. `offset` is the absolute byte offset of the field at
/// fault (for a frame: where the frame starts, or inside its payload for a message error).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("not a capture file (bad magic) at byte offset {offset}")]
    BadMagic { offset: u64 },
    #[error("unsupported capture format version {version} at byte offset {offset}")]
    UnsupportedFormat { version: u16, offset: u64 },
    #[error("bad {field} {value} at byte offset {offset}")]
    BadField {
        field: &'static str,
        value: u64,
        offset: u64,
    },
    #[error("checksum mismatch in the {what} at byte offset {offset}")]
    Checksum { what: &'static str, offset: u64 },
    #[error(
        "truncated {what}: needed {needed} bytes, {available} available at byte offset {offset}"
    )]
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
        offset: u64,
    },
    #[error("frame length {len} exceeds the limit {limit} at byte offset {offset}")]
    FrameTooLong { len: u64, limit: u64, offset: u64 },
    #[error("capture ends without its end frame (incomplete capture) at byte offset {offset}")]
    MissingEnd { offset: u64 },
    #[error(
        "end frame counts {declared} message frames but {actual} were read at byte offset {offset}"
    )]
    EndCountMismatch {
        declared: u64,
        actual: u64,
        offset: u64,
    },
    #[error("{trailing} bytes after the end frame at byte offset {offset}")]
    TrailingData { trailing: u64, offset: u64 },
    #[error("invalid message: {kind} at byte offset {offset}")]
    Message {
        kind: fsense_proto::DecodeErrorKind,
        offset: u64,
    },
    #[error("read failed at byte offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

impl CaptureError {
    /// The absolute byte offset the error names.
    pub fn offset(&self) -> u64 {
        match *self {
            Self::BadMagic { offset }
            | Self::UnsupportedFormat { offset, .. }
            | Self::BadField { offset, .. }
            | Self::Checksum { offset, .. }
            | Self::Truncated { offset, .. }
            | Self::FrameTooLong { offset, .. }
            | Self::MissingEnd { offset }
            | Self::EndCountMismatch { offset, .. }
            | Self::TrailingData { offset, .. }
            | Self::Message { offset, .. }
            | Self::Io { offset, .. } => offset,
        }
    }
}

/// One frame read from a capture.
pub struct Frame<'b> {
    /// Absolute offset of the frame header.
    pub offset: u64,
    /// When the consumer received the message.
    pub received_at: u64,
    /// The message bytes, as received.
    pub bytes: &'b [u8],
    /// The decoded message (frames are only returned when their message decodes).
    pub message: Message<'b>,
}

/// Reads a capture frame by frame.
pub struct CaptureReader<R: Read> {
    input: R,
    header: CaptureHeader,
    /// Absolute offset of the next unread byte.
    pos: u64,
    frames: u64,
    buf: Box<[u8]>,
    done: bool,
}

impl<R: Read> CaptureReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut h = [0u8; FILE_HEADER_LEN];
        let got = read_full(&mut input, &mut h, 0)?;
        let seen = got.min(FILE_MAGIC.len());
        if h[..seen] != FILE_MAGIC[..seen] {
            return Err(CaptureError::BadMagic { offset: 0 });
        }
        if got < FILE_HEADER_LEN {
            return Err(CaptureError::Truncated {
                what: "file header",
                needed: FILE_HEADER_LEN as u64,
                available: got as u64,
                offset: 0,
            });
        }
        let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
        if crc32fast::hash(&h[..28]) != crc {
            return Err(CaptureError::Checksum {
                what: "file header",
                offset: 0,
            });
        }
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let format_version = u16_at(8);
        if format_version != FORMAT_VERSION {
            return Err(CaptureError::UnsupportedFormat {
                version: format_version,
                offset: 8,
            });
        }
        let header_len = u16_at(10);
        if usize::from(header_len) != FILE_HEADER_LEN {
            return Err(CaptureError::BadField {
                field: "header length",
                value: header_len.into(),
                offset: 10,
            });
        }
        let protocol_version = u16_at(12);
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol_version) {
            return Err(CaptureError::BadField {
                field: "protocol version",
                value: protocol_version.into(),
                offset: 12,
            });
        }
        let source = SourceKind::from_u8(h[14]).ok_or(CaptureError::BadField {
            field: "source",
            value: h[14].into(),
            offset: 14,
        })?;
        if h[15] != 0 || h[24..28] != [0; 4] {
            let offset = if h[15] != 0 { 15 } else { 24 };
            return Err(CaptureError::BadField {
                field: "reserved",
                value: 1,
                offset,
            });
        }
        let mut created = [0u8; 8];
        created.copy_from_slice(&h[16..24]);
        Ok(Self {
            input,
            header: CaptureHeader {
                format_version,
                protocol_version,
                source,
                created: u64::from_le_bytes(created),
            },
            pos: FILE_HEADER_LEN as u64,
            frames: 0,
            buf: vec![0u8; MAX_MESSAGE_BYTES].into_boxed_slice(),
            done: false,
        })
    }

    pub fn header(&self) -> &CaptureHeader {
        &self.header
    }

    /// Message frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next message frame; `Ok(None)` after a valid end frame. After an error, stays done.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        match self.read_frame() {
            Ok(Some((offset, received_at, len))) => {
                let bytes = &self.buf[..len];
                let payload_at = offset + FRAME_HEADER_LEN as u64;
                match Message::decode(bytes) {
                    Ok(message) => Ok(Some(Frame {
                        offset,
                        received_at,
                        bytes,
                        message,
                    })),
                    Err(DecodeError { kind, offset }) => {
                        self.done = true;
                        Err(CaptureError::Message {
                            kind,
                            offset: payload_at + offset as u64,
                        })
                    }
                }
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// Reads one frame into `buf`; returns (frame offset, received_at, payload length), or
    /// `None` after the end frame.
    fn read_frame(&mut self) -> Result<Option<(u64, u64, usize)>, CaptureError> {
        let offset = self.pos;
        let mut h = [0u8; FRAME_HEADER_LEN];
        let got = read_full(&mut self.input, &mut h, offset)?;
        if got == 0 {
            return Err(CaptureError::MissingEnd { offset });
        }
        if got < FRAME_HEADER_LEN {
            return Err(CaptureError::Truncated {
                what: "frame header",
                needed: FRAME_HEADER_LEN as u64,
                available: got as u64,
                offset,
            });
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_le_bytes([h[4], h[5]]);
        let limit = match kind {
            FRAME_MESSAGE => MAX_MESSAGE_BYTES,
            FRAME_END => END_PAYLOAD_LEN,
            other => {
                return Err(CaptureError::BadField {
                    field: "frame kind",
                    value: other.into(),
                    offset: offset + 4,
                });
            }
        };
        if len > limit {
            return Err(CaptureError::FrameTooLong {
                len: len as u64,
                limit: limit as u64,
                offset,
            });
        }
        if h[6..8] != [0; 2] || h[20..24] != [0; 4] {
            let at = if h[6..8] != [0; 2] { 6 } else { 20 };
            return Err(CaptureError::BadField {
                field: "frame reserved",
                value: 1,
                offset: offset + at,
            });
        }
        let payload_at = offset + FRAME_HEADER_LEN as u64;
        let payload = &mut self.buf[..len];
        let got = read_full(&mut self.input, payload, payload_at)?;
        if got < len {
            return Err(CaptureError::Truncated {
                what: "frame",
                needed: (FRAME_HEADER_LEN + len) as u64,
                available: (FRAME_HEADER_LEN + got) as u64,
                offset,
            });
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&h[..16]);
        crc.update(payload);
        if crc.finalize() != u32::from_le_bytes([h[16], h[17], h[18], h[19]]) {
            return Err(CaptureError::Checksum {
                what: "frame",
                offset,
            });
        }
        self.pos = payload_at + len as u64;
        let mut at = [0u8; 8];
        at.copy_from_slice(&h[8..16]);
        let received_at = u64::from_le_bytes(at);
        if kind == FRAME_END {
            return self.check_end(offset, len).map(|()| None);
        }
        self.frames += 1;
        Ok(Some((offset, received_at, len)))
    }

    fn check_end(&mut self, offset: u64, len: usize) -> Result<(), CaptureError> {
        if len != END_PAYLOAD_LEN {
            return Err(CaptureError::BadField {
                field: "end frame length",
                value: len as u64,
                offset,
            });
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&self.buf[..8]);
        let declared = u64::from_le_bytes(count);
        if declared != self.frames {
            return Err(CaptureError::EndCountMismatch {
                declared,
                actual: self.frames,
                offset: offset + FRAME_HEADER_LEN as u64,
            });
        }
        // Nothing may follow the end frame. Read a little to say how much does.
        let mut probe = [0u8; 4096];
        let mut trailing = 0u64;
        loop {
            let n = read_full(&mut self.input, &mut probe, self.pos + trailing)?;
            trailing += n as u64;
            if n < probe.len() {
                break;
            }
        }
        if trailing != 0 {
            return Err(CaptureError::TrailingData {
                trailing,
                offset: self.pos,
            });
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8], offset: u64) -> Result<usize, CaptureError> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(CaptureError::Io {
                    offset: offset + got as u64,
                    source,
                });
            }
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests;
