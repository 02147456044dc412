//! Bounds-checked little-endian reading and writing. The only place that indexes buffers.

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};

/// A cursor over untrusted bytes. Every read checks the remaining length first.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` within the caller's outer buffer, so errors name absolute offsets.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte to read.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kind,
            offset: self.offset(),
        }
    }

    pub(crate) fn error_at(&self, relative: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kind,
            offset: self.base.saturating_add(relative),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        match end.and_then(|end| self.buf.get(self.pos..end).map(|s| (s, end))) {
            Some((slice, end)) => {
                self.pos = end;
                Ok(slice)
            }
            None => Err(self.error(DecodeErrorKind::Truncated {
                needed: n,
                available: self.remaining(),
            })),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn bytes16(&mut self) -> Result<[u8; 16], DecodeError> {
        self.array()
    }

    /// Requires that nothing is left.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(DecodeErrorKind::TrailingBytes(n))),
        }
    }
}

/// A cursor over a caller-provided output buffer. Never allocates.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn put(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        let available = self.buf.len().saturating_sub(self.pos);
        let dst = self
            .pos
            .checked_add(data.len())
            .and_then(|end| self.buf.get_mut(self.pos..end))
            .ok_or(EncodeError::BufferTooSmall {
                needed: data.len(),
                available,
            })?;
        dst.copy_from_slice(data);
        self.pos += data.len();
        Ok(())
    }

    pub(crate) fn u16(&mut self, v: u16) -> Result<(), EncodeError> {
        self.put(&v.to_le_bytes())
    }
    pub(crate) fn u32(&mut self, v: u32) -> Result<(), EncodeError> {
        self.put(&v.to_le_bytes())
    }
    pub(crate) fn u64(&mut self, v: u64) -> Result<(), EncodeError> {
        self.put(&v.to_le_bytes())
    }
}

/// Fails unless `buf` holds at least `needed` bytes. Lets encoders check once, then write.
pub(crate) fn ensure_capacity(buf: &[u8], needed: usize) -> Result<(), EncodeError> {
    if buf.len() < needed {
        Err(EncodeError::BufferTooSmall {
            needed,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}
