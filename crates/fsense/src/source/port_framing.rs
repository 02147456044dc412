//! Where a driver message ends inside the port's receive buffer.
//!
//! `FilterGetMessage` fills a fixed buffer and does not say reliably where a variable-length
//! message ends, so the message is framed by its own header (the batch length, or the health
//! message's length field), bounded by the buffer and by what the Filter Manager reports it
//! transferred.
//! The decoder then checks everything again; this only chooses the slice.

use fsense_proto::batch::BATCH_MAGIC;
use fsense_proto::{ControlReply, Health};

/// Size of `FILTER_MESSAGE_HEADER`, which precedes the message in the receive buffer.
pub const FILTER_MESSAGE_HEADER_LEN: usize = 16;
/// Size of `FILTER_REPLY_HEADER`, which precedes the ack in every reply.
pub const FILTER_REPLY_HEADER_LEN: usize = 16;
/// Bytes a reply to a health message takes, as `FILTER_MESSAGE_HEADER.ReplyLength` counts them:
/// "the length, in bytes, of the expected reply, including the FILTER_REPLY_HEADER header"
/// (`ns-fltuserstructures-_filter_message_header`). A driver whose ReplyLength is smaller would
/// fail the reply with STATUS_BUFFER_OVERFLOW, so it gets none.
pub const ACK_REPLY_LEN: usize = FILTER_REPLY_HEADER_LEN + ControlReply::LEN;

/// The bytes of the message at the start of `body`. `transferred` is the byte count the Filter
/// Manager reported for the whole receive (header included), 0 if unknown.
pub fn message_slice(body: &[u8], transferred: u32) -> &[u8] {
    let declared = declared_len(body).unwrap_or(body.len());
    let copied = (transferred as usize)
        .checked_sub(FILTER_MESSAGE_HEADER_LEN)
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    let len = declared.min(copied).min(body.len());
    &body[..len]
}

/// The reply to a health message: an ack echoing its poll id, acknowledging events up to
/// `acked_sequence`, with the running content version when the driver's protocol takes it.
/// The driver's reply buffer takes exactly [`ControlReply::LEN`] bytes.
pub fn ack(
    health: &Health,
    acked_sequence: u64,
    content_version: Option<u64>,
) -> [u8; ControlReply::LEN] {
    ControlReply::ack_for(health, acked_sequence, content_version).encode()
}

fn declared_len(body: &[u8]) -> Option<usize> {
    let word = |at: usize| -> Option<u32> {
        let b = body.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match word(0)? {
        BATCH_MAGIC => Some(word(8)? as usize),
        // 136 bytes up to protocol 2, 144 from protocol 3 (the load id): the header says which.
        Health::MAGIC => {
            let b = body.get(6..8)?;
            Some(usize::from(u16::from_le_bytes([b[0], b[1]])).min(Health::LEN))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::synth::{self, SynthEvent};
    use fsense_proto::{Message, Operation, ReplyKind};
    use proptest::prelude::*;

    #[test]
    fn a_batch_is_framed_by_its_length_not_by_the_stale_tail() {
        let batch =
            synth::batches(&[SynthEvent::new(Operation::Create, "C:\\a")], 1, 1, &[]).remove(0);
        let mut buf = vec![0xAAu8; 4096];
        buf[..batch.len()].copy_from_slice(&batch);
        let msg = message_slice(&buf, 0);
        assert_eq!(msg, &batch[..]);
        assert!(Message::decode(msg).is_ok());
        // The Filter Manager copied less than declared: the message is cut, and will not decode.
        let cut = message_slice(&buf, (FILTER_MESSAGE_HEADER_LEN + 40) as u32);
        assert_eq!(cut.len(), 40);
        assert!(Message::decode(cut).is_err());
    }

    #[test]
    fn an_ack_decodes_as_the_driver_will_and_echoes_the_poll_id() {
        let h = Health {
            poll_id: 77,
            ..Health::default()
        };
        let reply = ControlReply::decode(&ack(&h, 1234, None)).unwrap();
        assert_eq!(reply.kind, ReplyKind::Ack);
        assert_eq!((reply.poll_id, reply.acked_sequence), (77, 1234));
        assert_eq!(reply.config, None);
    }

    #[test]
    fn the_content_version_goes_only_to_a_driver_that_reads_it() {
        let v2 = Health {
            protocol_version: fsense_proto::CONTENT_VERSION_SINCE,
            poll_id: 5,
            ..Health::default()
        };
        let reply = ControlReply::decode(&ack(&v2, 9, Some(42))).unwrap();
        assert_eq!(reply.content_version, Some(42));
        assert_eq!(reply.poll_id, 5);
        // A protocol-1 driver refuses the flag: it gets a plain ack, byte for byte.
        let v1 = Health {
            protocol_version: 1,
            ..v2
        };
        let plain = ack(&v1, 9, Some(42));
        assert_eq!(plain, ack(&v1, 9, None));
        assert_eq!(ControlReply::decode(&plain).unwrap().content_version, None);
        assert_eq!(&plain[6..8], &[0, 0]);
        assert!(plain[24..].iter().all(|&b| b == 0));
    }

    /// A health message is framed by its length field: 136 bytes up to protocol 2, 144 with the
    /// load id of protocol 3 (a fixed 144 would take 8 stale bytes of a protocol-2 health).
    #[test]
    fn health_is_framed_by_its_length_field() {
        for (protocol_version, load_id, len) in [
            (2, 0, Health::LEN_BEFORE_LOAD_ID),
            (
                fsense_proto::LOAD_ID_SINCE,
                7,
                Health::LEN_BEFORE_NAMESPACE_OPS,
            ),
            (fsense_proto::NAMESPACE_OPS_SINCE, 7, Health::LEN),
        ] {
            let h = synth::health(&Health {
                protocol_version,
                load_id,
                ..Health::default()
            });
            assert_eq!(h.len(), len);
            let mut buf = vec![0xAAu8; 1024];
            buf[..h.len()].copy_from_slice(&h);
            let framed = message_slice(&buf, 0);
            assert_eq!(framed.len(), len);
            assert!(
                matches!(Message::decode(framed), Ok(Message::Health(d)) if d.load_id == load_id)
            );
        }
    }

    proptest! {
        #[test]
        fn any_buffer_gives_an_in_bounds_slice(body in proptest::collection::vec(any::<u8>(), 0..256), t in any::<u32>()) {
            let s = message_slice(&body, t);
            prop_assert!(s.len() <= body.len());
        }
    }
}
