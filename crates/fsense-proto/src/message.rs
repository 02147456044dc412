//! Driver-to-consumer messages, told apart by their magic number.

use crate::batch::{BATCH_MAGIC, BatchView};
use crate::control::Health;
use crate::error::{DecodeError, DecodeErrorKind};
use crate::{MAX_MESSAGE_BYTES, bytes::Reader};

/// One message the driver sends over the communication port.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// Events. Sent without waiting for a reply.
    Batch(BatchView<'a>),
    /// A health snapshot. The consumer must reply with a [`crate::ControlReply`].
    Health(Health),
}

impl<'a> Message<'a> {
    /// Decodes any driver message. Total: every input gives a message or an error.
    pub fn decode(src: &'a [u8]) -> Result<Self, DecodeError> {
        if src.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError {
                kind: DecodeErrorKind::TooLong {
                    declared: src.len() as u64,
                    limit: MAX_MESSAGE_BYTES as u64,
                },
                offset: 0,
            });
        }
        let magic = Reader::new(src, 0).u32()?;
        match magic {
            BATCH_MAGIC => BatchView::parse(src).map(Message::Batch),
            Health::MAGIC => Health::decode(src).map(Message::Health),
            other => Err(DecodeError {
                kind: DecodeErrorKind::BadMagic(other),
                offset: 0,
            }),
        }
    }
}
