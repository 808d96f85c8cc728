//! Frame codec: any byte stream, fed whole or in pieces, decodes to the same frames, which re-encode to its bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rwsplit_wire::frame::{encode_payload, frame_len, HEADER_LEN};
use rwsplit_wire::{Frame, FrameCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // The first byte sets the size of the pieces the stream arrives in (1..=256 bytes), as socket reads would.
    let Some((&piece, stream)) = data.split_first() else { return };
    let whole = decode_all(stream);
    let mut codec = FrameCodec;
    let mut buf = BytesMut::new();
    let mut pieced = Vec::new();
    for chunk in stream.chunks(usize::from(piece) + 1) {
        buf.extend_from_slice(chunk);
        while let Some(f) = codec.decode(&mut buf).expect("the frame codec never fails") {
            pieced.push(f);
        }
    }
    assert_eq!(whole.0, pieced, "frames depend on how the stream was cut");
    assert_eq!(whole.1, &buf[..], "the undecoded rest depends on how the stream was cut");

    // Frames and rest put back together are the stream; each frame is its header's length and re-encodes as is.
    let mut rebuilt = Vec::with_capacity(stream.len());
    for f in &whole.0 {
        assert_eq!(frame_len(f.as_bytes()), Some(f.as_bytes().len()));
        assert_eq!(f.as_bytes().len(), HEADER_LEN + f.payload().len());
        assert_eq!(Frame::new(f.seq(), f.payload()), *f);
        assert_eq!(&f.clone().into_payload()[..], f.payload());
        let mut renumbered = f.clone();
        renumbered.set_seq(f.seq().wrapping_add(1));
        assert_eq!((renumbered.seq(), renumbered.payload()), (f.seq().wrapping_add(1), f.payload()));
        rebuilt.extend_from_slice(f.as_bytes());
    }
    rebuilt.extend_from_slice(&whole.1);
    assert_eq!(rebuilt, stream);
    if let Some(len) = frame_len(&whole.1) {
        assert!(len > whole.1.len(), "a complete frame was left undecoded");
    }

    // The stream as one logical payload: split into frames, decoded back, joined: the same bytes.
    let mut out = BytesMut::new();
    let next = encode_payload(&mut out, piece, stream);
    let (frames, rest) = decode_all(&out);
    assert!(rest.is_empty());
    assert_eq!(next, piece.wrapping_add(frames.len() as u8));
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    assert_eq!(joined, stream);
    assert!(frames.iter().enumerate().all(|(i, f)| f.seq() == piece.wrapping_add(i as u8)));
    assert!(!frames.last().expect("at least one frame").is_continued());
});

/// Decodes every complete frame of `bytes`; returns them and the undecoded rest.
fn decode_all(bytes: &[u8]) -> (Vec<Frame>, Vec<u8>) {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(f) = FrameCodec.decode(&mut buf).expect("the frame codec never fails") {
        frames.push(f);
    }
    (frames, buf.to_vec())
}
