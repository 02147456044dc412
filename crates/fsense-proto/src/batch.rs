//! Batches: records packed behind a fixed header, the unit the driver sends over the port.
//!
//! Header layout (little-endian, [`BATCH_HEADER_LEN`] = 32 bytes):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 | 4 | magic `FSNB` |
//! |   4 | 2 | protocol version |
//! |   6 | 2 | header length (32) |
//! |   8 | 4 | batch length, header included (<= [`crate::MAX_BATCH_BYTES`]) |
//! |  12 | 4 | record count |
//! |  16 | 8 | first sequence number (0 when the batch is empty) |
//! |  24 | 8 | events the sender dropped since its previous batch (see below) |
//!
//! Records follow back to back, each framed by its own length. Sequence numbers strictly increase
//! within a batch; the first equals the header's.
//!
//! The drop count is a cross-check, not a map of the loss: the queue counts a drop when it
//! happens, and a drop reported in one batch may have a sequence number above that batch's last
//! record (the queue was full while older records were still waiting). Which numbers were lost is
//! told by the gaps in the sequence ([`crate::SeqTracker`]).

use crate::MAX_BATCH_BYTES;
use crate::bytes::{Reader, Writer};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::record::EventRecord;

/// The batch layout's version, written in every batch header. Protocol version 2 changed only
/// the control reply, so batches still carry 1.
pub const BATCH_VERSION: u16 = 1;

/// `FSNB` read as a little-endian u32.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"FSNB");
/// Size of the batch header.
pub const BATCH_HEADER_LEN: usize = 32;

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub protocol_version: u16,
    pub batch_len: u32,
    pub record_count: u32,
    pub first_sequence: u64,
    pub dropped_before: u64,
}

impl BatchHeader {
    fn encode(&self, dst: &mut [u8]) -> Result<(), EncodeError> {
        let mut w = Writer::new(dst);
        w.u32(BATCH_MAGIC)?;
        w.u16(self.protocol_version)?;
        w.u16(BATCH_HEADER_LEN as u16)?;
        w.u32(self.batch_len)?;
        w.u32(self.record_count)?;
        w.u64(self.first_sequence)?;
        w.u64(self.dropped_before)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let magic = r.u32()?;
        if magic != BATCH_MAGIC {
            return Err(r.error_at(0, DecodeErrorKind::BadMagic(magic)));
        }
        let protocol_version = r.u16()?;
        if protocol_version != BATCH_VERSION {
            return Err(r.error_at(4, DecodeErrorKind::UnsupportedVersion(protocol_version)));
        }
        let header_len = r.u16()?;
        if usize::from(header_len) != BATCH_HEADER_LEN {
            return Err(r.error_at(6, DecodeErrorKind::BadHeaderLength(header_len.into())));
        }
        Ok(Self {
            protocol_version,
            batch_len: r.u32()?,
            record_count: r.u32()?,
            first_sequence: r.u64()?,
            dropped_before: r.u64()?,
        })
    }
}

/// A validated batch borrowed from a message buffer. Constructing one checks the header and every
/// record, so iterating [`BatchView::records`] cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    header: BatchHeader,
    body: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Validates a whole batch: header, every record, counts, sequence order, exact length.
    pub fn parse(src: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(src, 0);
        let header = BatchHeader::decode(&mut r)?;
        let declared = header.batch_len as usize;
        if declared > MAX_BATCH_BYTES {
            return Err(r.error_at(
                8,
                DecodeErrorKind::TooLong {
                    declared: declared as u64,
                    limit: MAX_BATCH_BYTES as u64,
                },
            ));
        }
        if declared != src.len() {
            return Err(r.error_at(
                8,
                DecodeErrorKind::LengthMismatch {
                    declared: declared as u64,
                    actual: src.len() as u64,
                },
            ));
        }
        let body = src.get(BATCH_HEADER_LEN..).unwrap_or(&[]);
        let mut count: u32 = 0;
        let mut last: Option<u64> = None;
        for item in RecordIter::new(body) {
            let (offset, rec) = item?;
            let ok = match last {
                None => rec.sequence == header.first_sequence,
                Some(prev) => rec.sequence > prev,
            };
            if !ok {
                return Err(DecodeError {
                    kind: DecodeErrorKind::BadSequence {
                        expected_above: last.unwrap_or(header.first_sequence),
                        found: rec.sequence,
                    },
                    offset: offset + 8,
                });
            }
            last = Some(rec.sequence);
            count = count.saturating_add(1);
        }
        if count != header.record_count {
            return Err(r.error_at(
                12,
                DecodeErrorKind::LengthMismatch {
                    declared: header.record_count.into(),
                    actual: count.into(),
                },
            ));
        }
        if count == 0 && header.first_sequence != 0 {
            return Err(r.error_at(
                16,
                DecodeErrorKind::OutOfRange {
                    field: "first_sequence of an empty batch",
                    value: header.first_sequence,
                },
            ));
        }
        Ok(Self { header, body })
    }

    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The records, in order.
    pub fn records(&self) -> impl Iterator<Item = EventRecord<'a>> + 'a {
        // Every record was validated by `parse`.
        RecordIter::new(self.body).map_while(|r| r.ok().map(|(_, rec)| rec))
    }

    /// Sequence number of the last record, if any.
    pub fn last_sequence(&self) -> Option<u64> {
        self.records().last().map(|r| r.sequence)
    }
}

/// Walks length-framed records, yielding each with its absolute offset; stops at the first error.
struct RecordIter<'a> {
    body: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self {
            body,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<(usize, EventRecord<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.body.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = BATCH_HEADER_LEN + self.pos;
        match EventRecord::decode_prefix(rest, offset) {
            Ok((rec, used)) => {
                self.pos += used;
                Some(Ok((offset, rec)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds a batch in a caller-provided buffer. Never allocates.
pub struct BatchWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    count: u32,
    first_sequence: Option<u64>,
    last_sequence: Option<u64>,
}

impl<'b> BatchWriter<'b> {
    /// Starts a batch. The buffer is used up to [`MAX_BATCH_BYTES`].
    pub fn new(buf: &'b mut [u8]) -> Result<Self, EncodeError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(EncodeError::BufferTooSmall {
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        }
        Ok(Self {
            buf,
            len: BATCH_HEADER_LEN,
            count: 0,
            first_sequence: None,
            last_sequence: None,
        })
    }

    fn capacity(&self) -> usize {
        self.buf.len().min(MAX_BATCH_BYTES)
    }

    /// Bytes still free for records.
    pub fn remaining(&self) -> usize {
        self.capacity().saturating_sub(self.len)
    }

    /// Records written so far.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Whether no record has been written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record. Fails, writing nothing, if it does not fit or its sequence number does
    /// not follow the previous record's.
    pub fn push(&mut self, record: &EventRecord<'_>) -> Result<(), EncodeError> {
        let needed = record.encoded_len();
        if needed > self.remaining() {
            return Err(EncodeError::BufferTooSmall {
                needed,
                available: self.remaining(),
            });
        }
        self.check_order(record.sequence)?;
        let dst = self.buf.get_mut(self.len..).unwrap_or(&mut []);
        let used = record.encode(dst)?;
        self.commit(record.sequence, used);
        Ok(())
    }

    /// Appends one record that is already encoded (e.g. taken from the event queue), trusting
    /// its framing: the caller got it from [`EventRecord::encode_with_sequence`].
    pub fn push_encoded(&mut self, sequence: u64, encoded: &[u8]) -> Result<(), EncodeError> {
        if encoded.len() > self.remaining() {
            return Err(EncodeError::BufferTooSmall {
                needed: encoded.len(),
                available: self.remaining(),
            });
        }
        self.check_order(sequence)?;
        let end = self.len + encoded.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(encoded);
            self.commit(sequence, encoded.len());
        }
        Ok(())
    }

    fn check_order(&self, sequence: u64) -> Result<(), EncodeError> {
        match self.last_sequence {
            Some(previous) if sequence <= previous => Err(EncodeError::SequenceNotIncreasing {
                previous,
                found: sequence,
            }),
            _ => Ok(()),
        }
    }

    fn commit(&mut self, sequence: u64, used: usize) {
        self.len += used;
        self.count += 1;
        self.first_sequence.get_or_insert(sequence);
        self.last_sequence = Some(sequence);
    }

    /// Sequence number of the last record written.
    pub fn last_sequence(&self) -> Option<u64> {
        self.last_sequence
    }

    /// Writes the header and returns the finished batch's length.
    pub fn finish(self, dropped_before: u64) -> Result<usize, EncodeError> {
        let header = BatchHeader {
            protocol_version: BATCH_VERSION,
            batch_len: self.len as u32,
            record_count: self.count,
            first_sequence: self.first_sequence.unwrap_or(0),
            dropped_before,
        };
        header.encode(self.buf)?;
        Ok(self.len)
    }
}
