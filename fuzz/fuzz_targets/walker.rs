//! Response walker: any frames, for each kind of response, end in `Done` or an error, never a panic or a lie.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rwsplit_wire::walk::{Expect, Packet, Step, WalkError, Walker};
use rwsplit_wire::FrameCodec;
use tokio_util::codec::Decoder;

/// Every kind, in the order the selector byte picks them.
const KINDS: [Expect; 6] =
    [Expect::ResultSets, Expect::Rows, Expect::Prepare, Expect::FieldList, Expect::Single, Expect::AnyOne];

fuzz_target!(|data: &[u8]| {
    // Selector byte: kind (low bits) and CLIENT_DEPRECATE_EOF (bit 7); then the server's frames as on the wire.
    let Some((&selector, stream)) = data.split_first() else { return };
    let expect = KINDS[usize::from(selector & 0x7F) % KINDS.len()];
    let deprecate_eof = selector & 0x80 != 0;
    let mut buf = BytesMut::from(stream);
    let mut walker = Walker::new(expect, deprecate_eof);
    let mut by_payload = Walker::new(expect, deprecate_eof);
    let mut ended = false;
    while let Some(frame) = FrameCodec.decode(&mut buf).expect("the frame codec never fails") {
        let step = walker.feed(&frame);
        // Walking payloads in a read buffer (the proxy's fast path) must agree with walking frames.
        assert_eq!(step, by_payload.feed_payload(frame.payload()));
        assert_eq!(walker.packet(), by_payload.packet());
        match step {
            Ok(Step::More) => {}
            Ok(Step::LocalInfile) => {
                // A result set (of COM_QUERY, or one that follows a fetch's rows with MORE_RESULTS) may ask for a file.
                assert!(matches!(expect, Expect::ResultSets | Expect::Rows), "LOCAL INFILE in a {expect:?} response");
                // The proxy streams the client's file, then the server answers.
                walker.after_local_infile();
                by_payload.after_local_infile();
            }
            Ok(Step::Done { error, .. }) => {
                assert!(walker.is_done());
                if error {
                    assert_eq!(walker.packet(), Packet::Err);
                }
                ended = true;
            }
            Err(WalkError::AfterDone) => {
                assert!(ended && walker.is_done(), "AfterDone before the response was done");
                break;
            }
            Err(WalkError::Malformed(_)) => break,
        }
    }
});
