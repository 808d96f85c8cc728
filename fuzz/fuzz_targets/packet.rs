//! Packet readers (OK with session state, ERR, EOF, prepare-OK, length-encoded values): no panic; OK rewrite is stable.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rwsplit_wire::packet::{self, ErrPacket, OkPacket, PrepareOk, StateChange};

fuzz_target!(|data: &[u8]| {
    // Selector byte: CLIENT_SESSION_TRACK (bit 0), which entries a rewrite keeps (bits 1..=7); then a payload.
    let Some((&selector, p)) = data.split_first() else { return };
    let session_track = selector & 1 != 0;

    let _ = packet::terminal_status(p);
    let _ = packet::ok_status(p);
    let _ = packet::eof_status(p);
    if let Some(err) = ErrPacket::parse(p) {
        let _ = err.to_string();
        let rebuilt = packet::err_payload(err.code, &err.state, &err.message);
        let again = ErrPacket::parse(&rebuilt).expect("our own ERR parses");
        assert_eq!((again.code, again.state), (err.code, err.state));
        assert_eq!(again.message, err.message);
    }
    if let Some(ok) = PrepareOk::parse(p) {
        assert_eq!(ok.stmt_id, packet::u32_at(p, 1).unwrap());
    }
    if let Some((v, n)) = packet::lenenc_int(p) {
        assert!(n <= p.len() && n <= 9);
        let mut b = BytesMut::new();
        packet::put_lenenc_int(&mut b, v);
        assert_eq!(packet::lenenc_int(&b), Some((v, b.len())));
    }
    if let Some((s, n)) = packet::lenenc_str(p) {
        assert!(s.len() <= n && n <= p.len());
    }

    if let Some(ok) = OkPacket::parse(p, session_track) {
        if p.len() > 5 || p[0] == packet::OK {
            assert_eq!(packet::terminal_status(p), Some(ok.status), "the walker and the OK reader disagree");
        }
        let changes: Vec<StateChange<'_>> = ok.changes().collect();
        let keep = |i: usize| selector & (2 << (i % 7)) != 0;
        // The proxy's rewrite for a client: what it writes is an OK packet, and rewriting it again (keeping
        // everything) changes nothing.
        let mut i = 0;
        let mut out = BytesMut::new();
        ok.write(&mut out, session_track, |_| {
            i += 1;
            keep(i - 1)
        });
        let written = OkPacket::parse(&out, session_track).expect("a rewritten OK parses");
        assert_eq!((written.header, written.counts, written.warnings), (ok.header, ok.counts, ok.warnings));
        let kept: Vec<StateChange<'_>> = written.changes().collect();
        assert!(kept.len() <= changes.len());
        let mut again = BytesMut::new();
        written.write(&mut again, session_track, |_| true);
        assert_eq!(out, again, "rewriting a rewritten OK changed it");
    }
});
