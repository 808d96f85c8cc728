//! Framing: one physical MySQL packet per [`Frame`].
//!
//! A packet is a 3-byte little-endian payload length, a 1-byte sequence id, and the payload. A payload of
//! exactly [`MAX_PAYLOAD`] bytes means the logical packet continues in the next frame (a logical packet of
//! 16 MiB or more is sent as several frames, ending with a shorter one, possibly empty).

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Largest payload of one physical packet; a frame this long is continued by the next one.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Size of a frame header: 3 bytes of payload length, 1 byte of sequence id.
pub const HEADER_LEN: usize = 4;

/// Offset of the sequence id in a frame.
pub const SEQ_OFFSET: usize = 3;

/// One physical packet, header included, exactly as it was on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Header (4 bytes) followed by the payload.
    raw: BytesMut,
}

impl Frame {
    /// Builds a frame from a payload (must be ≤ [`MAX_PAYLOAD`] bytes) and a sequence id.
    pub fn new(seq: u8, payload: &[u8]) -> Frame {
        debug_assert!(payload.len() <= MAX_PAYLOAD);
        let mut raw = BytesMut::with_capacity(HEADER_LEN + payload.len());
        put_header(&mut raw, payload.len(), seq);
        raw.put_slice(payload);
        Frame { raw }
    }

    /// The sequence id.
    pub fn seq(&self) -> u8 {
        self.raw[SEQ_OFFSET]
    }

    /// Rewrites the sequence id in place (the proxy renumbers frames it forwards).
    pub fn set_seq(&mut self, seq: u8) {
        self.raw[SEQ_OFFSET] = seq;
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.raw[HEADER_LEN..]
    }

    /// Whether the logical packet continues in the next frame.
    pub fn is_continued(&self) -> bool {
        self.payload().len() == MAX_PAYLOAD
    }

    /// Header and payload, as on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The payload as owned bytes, without copying.
    pub fn into_payload(mut self) -> Bytes {
        self.raw.split_off(HEADER_LEN).freeze()
    }
}

/// The length (header included) of the frame at the start of `buf`, if its header is there; the frame itself
/// may not be complete yet. For walking frames in place in a read buffer.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    match buf {
        [a, b, c, _, ..] => Some(HEADER_LEN + (usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16)),
        _ => None,
    }
}

fn put_header(buf: &mut BytesMut, len: usize, seq: u8) {
    let len = len as u32;
    buf.put_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]);
}

/// Splits a logical payload of any size into frames starting at `seq`, appending them to `dst`.
/// Returns the sequence id that follows the last frame.
pub fn encode_payload(dst: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        dst.reserve(HEADER_LEN + n);
        put_header(dst, n, seq);
        dst.put_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// The `tokio-util` decoder of frames (writing goes through [`encode_payload`] or a frame's bytes as they are).
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        let Some(len) = frame_len(src) else {
            return Ok(None);
        };
        if src.len() < len {
            // Reserve what the rest of this frame needs so one read can complete it.
            src.reserve(len - src.len());
            return Ok(None);
        }
        Ok(Some(Frame { raw: src.split_to(len) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_partial_then_whole_frames() {
        let mut codec = FrameCodec;
        let mut buf = BytesMut::from(&[3u8, 0, 0, 7, b'a'][..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"bc\x01\x00\x00\x08z");
        let f = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!((f.seq(), f.payload()), (7, &b"abc"[..]));
        let g = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!((g.seq(), g.payload()), (8, &b"z"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn splits_large_payloads_with_continuation() {
        for size in [0, 5, MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 2 * MAX_PAYLOAD] {
            let payload = vec![0xAB; size];
            let mut buf = BytesMut::new();
            let next = encode_payload(&mut buf, 3, &payload);
            let mut codec = FrameCodec;
            let mut got = Vec::new();
            let mut seq = 3u8;
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                assert_eq!(f.seq(), seq);
                seq = seq.wrapping_add(1);
                got.extend_from_slice(f.payload());
                if !f.is_continued() {
                    break;
                }
            }
            assert_eq!(got.len(), size, "size {size}");
            assert_eq!(seq, next);
            assert!(buf.is_empty());
        }
    }
}
