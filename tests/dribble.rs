//! The response path against a backend that sends its responses in small, uneven pieces: frame headers and
//! payloads split across reads at every possible point, and results bigger than the proxy's flush threshold.
//! rwsplit walks and renumbers frames in place in its read buffer (session/forward.rs `pump`); whatever the
//! split, the client must receive exactly the bytes the server sent (the prepare-OK's statement id aside).
//!
//! The backend is scripted (a real MariaDB writes whole network buffers, so it cannot produce these splits).

mod common;

use std::net::SocketAddr;

use bytes::BytesMut;
use common::packets::{column_def, end_of_rows, eof, lenenc_str, wire_bytes};
use common::proxy::Proxy;
use common::raw::{read_frame, write_frame, Raw};
use rwsplit_wire::auth;
use rwsplit_wire::packet::{self, com, ok_payload};
use rwsplit_wire::walk::{Expect, Step, Walker};
use rwsplit_wire::{CapabilityFlags, StatusFlags};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Statement id the scripted server gives every prepared statement.
const SERVER_STMT_ID: u32 = 77;

/// A one-column result set of `rows` rows of varying length (a NULL every 50 rows), as it is on the wire.
fn result_set(rows: usize, deprecate_eof: bool) -> Vec<u8> {
    let mut payloads = vec![BytesMut::from(&[1u8][..]), column_def("c")];
    if !deprecate_eof {
        payloads.push(eof());
    }
    for i in 0..rows {
        let mut row = BytesMut::new();
        if i % 50 == 49 {
            row.extend_from_slice(&[0xfb]);
        } else {
            lenenc_str(&mut row, format!("row {i} {}", "x".repeat(i * 37 % 240)).as_bytes());
        }
        payloads.push(row);
    }
    payloads.push(end_of_rows(deprecate_eof));
    wire_bytes(&payloads)
}

/// A prepare-OK for one column and no parameters, then its column definition, as it is on the wire.
fn prepare_response(deprecate_eof: bool) -> Vec<u8> {
    let mut ok = BytesMut::from(&[0u8][..]);
    ok.extend_from_slice(&SERVER_STMT_ID.to_le_bytes());
    ok.extend_from_slice(&1u16.to_le_bytes()); // columns
    ok.extend_from_slice(&0u16.to_le_bytes()); // params
    ok.extend_from_slice(&[0]);
    ok.extend_from_slice(&0u16.to_le_bytes()); // warnings
    let mut payloads = vec![ok, column_def("c")];
    if !deprecate_eof {
        payloads.push(eof());
    }
    wire_bytes(&payloads)
}

/// Writes `bytes` in pieces of 1 to 97 bytes (a fixed pseudo-random sequence), yielding between pieces so the
/// proxy reads them separately.
async fn dribble(s: &mut TcpStream, bytes: &[u8]) {
    let mut seed = 12345u32;
    let mut rest = bytes;
    while !rest.is_empty() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = (1 + (seed >> 16) as usize % 97).min(rest.len());
        s.write_all(&rest[..n]).await.expect("dribble");
        rest = &rest[n..];
        tokio::task::yield_now().await;
    }
}

/// One backend connection: greeting, any login accepted, then commands until QUIT or close.
async fn backend_connection(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let nonce = auth::new_scramble();
    let greeting = auth::greeting("10.11.6-MariaDB-scripted", 9, &nonce, 45, auth::supported_capabilities());
    if write_frame(&mut s, 0, &greeting).await.is_err() {
        return;
    }
    let Ok(login) = read_frame(&mut s).await else { return };
    let caps = auth::parse_client_login(login.payload(), auth::supported_capabilities())
        .expect("proxy login parses")
        .capabilities;
    let deprecate_eof = caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    let ok = ok_payload(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0);
    write_frame(&mut s, 2, &ok).await.expect("login OK");
    while let Ok(command) = read_frame(&mut s).await {
        match command.payload().first() {
            Some(&com::QUIT) | None => return,
            Some(&com::QUERY) if command.payload().ends_with(b"dribble") => {
                dribble(&mut s, &result_set(2_000, deprecate_eof)).await
            }
            Some(&com::QUERY) if command.payload().ends_with(b"burst") => {
                s.write_all(&result_set(2_000, deprecate_eof)).await.expect("burst")
            }
            Some(&com::STMT_PREPARE) => dribble(&mut s, &prepare_response(deprecate_eof)).await,
            Some(&com::QUERY) if command.payload().ends_with(b"rogue") => {
                // A server asking for a file the client never asked to send (a plain SELECT): rwsplit must
                // answer it with an empty file itself; the client sees only the final answer.
                write_frame(&mut s, 1, b"\xfb/etc/passwd").await.expect("LOCAL INFILE request");
                let file = read_frame(&mut s).await.expect("the proxy's answer");
                let reply = if file.payload().is_empty() {
                    ok.to_vec()
                } else {
                    packet::err_payload(1, b"HY000", "got a file").to_vec()
                };
                write_frame(&mut s, file.seq() + 1, &reply).await.expect("OK");
            }
            Some(_) => write_frame(&mut s, 1, &ok).await.expect("OK"),
        }
    }
}

async fn scripted_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind scripted backend");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(backend_connection(s));
        }
    });
    addr
}

/// Reads one whole response as raw bytes (headers included).
async fn raw_response(raw: &mut Raw, expect: Expect) -> Vec<u8> {
    let mut walker = Walker::new(expect, raw.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
    let mut bytes = Vec::new();
    loop {
        let frame = read_frame(&mut raw.stream).await.expect("response frame");
        bytes.extend_from_slice(frame.as_bytes());
        match walker.feed(&frame).expect("well-formed response") {
            Step::More => {}
            Step::LocalInfile | Step::Done { .. } => return bytes,
        }
    }
}

#[tokio::test]
async fn responses_split_anywhere_reach_the_client_unchanged() {
    let backend = scripted_backend().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nusers:\n  - user: app\n    password: apppw\nmaster:\n  address: {backend}\n\
         connect_timeout: 1s\nshutdown_grace: 1s\n"
    );
    let proxy = Proxy::start_yaml(&yaml).await;
    for caps in [None, Some(auth::supported_capabilities() - CapabilityFlags::CLIENT_DEPRECATE_EOF)] {
        let mut raw = Raw::login(proxy.addr, "app", "apppw", caps).await;
        let deprecate_eof = raw.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        let want = result_set(2_000, deprecate_eof);
        assert!(want.len() > 3 * rwsplit::io::FLUSH_AT, "the result must span several flushes");
        // In pieces (forwarded as they come), then in one write (forwarded every FLUSH_AT bytes), twice each
        // so the second runs on a connection that already served a response.
        for query in [&b"\x03SELECT dribble"[..], b"\x03SELECT burst", b"\x03SELECT dribble", b"\x03SELECT burst"] {
            write_frame(&mut raw.stream, 0, query).await.expect("send query");
            let got = raw_response(&mut raw, Expect::ResultSets).await;
            assert!(
                got == want,
                "result differs (deprecate_eof {deprecate_eof}): {} vs {} bytes",
                got.len(),
                want.len()
            );
        }

        let mut prepare = vec![com::STMT_PREPARE];
        prepare.extend_from_slice(b"SELECT c FROM t");
        write_frame(&mut raw.stream, 0, &prepare).await.expect("send prepare");
        let got = raw_response(&mut raw, Expect::Prepare).await;
        let mut want = prepare_response(deprecate_eof);
        // The client sees the proxy's statement id (its first), everything else as the server sent it.
        want[5..9].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(got, want, "prepare response (deprecate_eof {deprecate_eof})");

        write_frame(&mut raw.stream, 0, b"\x03SELECT rogue").await.expect("send query");
        let got = raw.response(Expect::ResultSets).await;
        assert_eq!(got.len(), 1, "only the final answer reaches the client: {got:?}");
        assert_eq!(got[0][0], 0, "the backend got an empty file and answered OK: {got:?}");
    }
}
