//! Compressed protocol: any bytes decompress without panic (bounded, same result in pieces); compress→decompress is the identity.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rwsplit_wire::compress::{Compressor, Decompressor, Header, MAX_CHUNK};
use rwsplit_wire::FrameCodec;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // Selector byte: zlib level (low nibble) and the size of the pieces the stream arrives in (high nibble).
    let Some((&selector, stream)) = data.split_first() else { return };

    // Arbitrary bytes as a compressed stream from a peer.
    let mut src = BytesMut::from(stream);
    let mut out = BytesMut::new();
    let whole = Decompressor::new().decode(&mut src, &mut out);
    let mut bound = 0;
    let mut at = 0;
    while let Some(h) = Header::parse(&stream[at..]) {
        if at + h.packet_len() > stream.len() {
            break;
        }
        bound += if h.uncompressed_len == 0 { h.payload_len } else { h.uncompressed_len };
        at += h.packet_len();
    }
    assert!(out.len() <= bound, "inflated more than the headers declared");

    // The same stream in pieces, one packet at a time: the same bytes up to the same point.
    let piece = usize::from(selector >> 4) * 37 + 1;
    let mut decompressor = Decompressor::new();
    let mut src2 = BytesMut::new();
    let mut out2 = BytesMut::new();
    let mut failed = false;
    'feed: for chunk in stream.chunks(piece) {
        src2.extend_from_slice(chunk);
        loop {
            match decompressor.decode_packet(&mut src2, &mut out2) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(whole.is_err(), failed, "an error depends on how the stream was cut");
    assert_eq!(out, out2);
    if whole.is_ok() {
        assert_eq!(src, src2, "the undecoded rest depends on how the stream was cut");
        // What it carries is an ordinary packet stream: the frame codec takes any of it.
        while FrameCodec.decode(&mut out).expect("the frame codec never fails").is_some() {}
    }

    // The bytes as a plain packet stream to send: compressing then decompressing gives them back.
    let mut packed = BytesMut::new();
    let seq = selector.wrapping_mul(31);
    let next = Compressor::with_level(u32::from(selector & 0x0F)).compress(&mut packed, seq, stream);
    assert_eq!(next, seq.wrapping_add(stream.len().div_ceil(MAX_CHUNK) as u8));
    let mut unpacked = BytesMut::new();
    let last = Decompressor::new().decode(&mut packed, &mut unpacked).expect("our own output decompresses");
    assert!(packed.is_empty());
    assert_eq!(&unpacked[..], stream);
    assert_eq!(last, (!stream.is_empty()).then(|| next.wrapping_sub(1)));
});
