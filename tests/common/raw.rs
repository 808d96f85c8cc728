//! A minimal raw MySQL client for protocol-level tests: sends one command, reads its whole response with
//! the wire crate's walker, and returns the payloads.

use std::net::SocketAddr;

use rwsplit_wire::auth::{self, BackendLogin};
use rwsplit_wire::packet::ErrPacket;
use rwsplit_wire::walk::{Expect, Step, Walker};
use rwsplit_wire::{CapabilityFlags, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A logged-in raw connection.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
    /// Capabilities the client asked for.
    pub caps: CapabilityFlags,
}

/// Reads one physical packet.
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<Frame> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await?;
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0; len];
    s.read_exact(&mut p).await?;
    Ok(Frame::new(h[3], &p))
}

/// Writes one physical packet.
pub async fn write_frame(s: &mut TcpStream, seq: u8, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(Frame::new(seq, payload).as_bytes()).await
}

/// Login parameters (collation utf8mb4_general_ci, no database, no attributes).
pub fn login_params<'a>(user: &'a str, password: &'a str, caps: CapabilityFlags) -> BackendLogin<'a> {
    BackendLogin {
        capabilities: caps,
        collation: 45,
        user,
        password: password.as_bytes(),
        database: None,
        attributes: &[],
    }
}

/// Connects, reads the greeting and sends a login; returns the stream and the server's first answer (OK,
/// ERR, or an auth-switch/more-data packet), without judging it.
pub async fn try_login(addr: SocketAddr, user: &str, password: &str, caps: CapabilityFlags) -> (TcpStream, Frame) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let greeting = read_frame(&mut stream).await.expect("greeting");
    let greeting = auth::parse_greeting(greeting.payload()).expect("greeting parses");
    let (payload, _) = auth::handshake_response(&greeting, &login_params(user, password, caps));
    write_frame(&mut stream, 1, &payload).await.expect("send login");
    let answer = read_frame(&mut stream).await.expect("login answer");
    (stream, answer)
}

impl Raw {
    /// Logs in as `user`/`password` with the given capabilities (the proxy's supported set if None).
    pub async fn login(addr: SocketAddr, user: &str, password: &str, caps: Option<CapabilityFlags>) -> Raw {
        // As drivers do: not CLIENT_NO_SCHEMA (with it the server refuses `db.table` names).
        let caps = caps.unwrap_or_else(|| auth::supported_capabilities() - CapabilityFlags::CLIENT_NO_SCHEMA);
        let (stream, ok) = try_login(addr, user, password, caps).await;
        assert_eq!(ok.payload()[0], 0, "login failed: {:?}", ErrPacket::parse(ok.payload()));
        Raw { stream, caps }
    }

    /// Sends a command and reads its complete response (payloads in order).
    pub async fn command(&mut self, payload: &[u8], expect: Expect) -> Vec<Vec<u8>> {
        write_frame(&mut self.stream, 0, payload).await.expect("send command");
        self.response(expect).await
    }

    /// Reads a complete response.
    pub async fn response(&mut self, expect: Expect) -> Vec<Vec<u8>> {
        let mut walker = Walker::new(expect, self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
        let mut out = Vec::new();
        loop {
            let frame = read_frame(&mut self.stream).await.expect("response frame");
            let step = walker.feed(&frame).expect("well-formed response");
            out.push(frame.payload().to_vec());
            match step {
                Step::More => {}
                Step::LocalInfile => return out,
                Step::Done { .. } => return out,
            }
        }
    }

    /// Sends a command that has no response.
    pub async fn send(&mut self, payload: &[u8]) {
        write_frame(&mut self.stream, 0, payload).await.expect("send");
    }
}

/// The server error in a response, if it ended with one.
pub fn error_of(resp: &[Vec<u8>]) -> Option<ErrPacket> {
    resp.last().and_then(|p| ErrPacket::parse(p))
}
