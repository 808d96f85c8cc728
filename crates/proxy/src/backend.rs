//! One backend connection: connect and log in, run the proxy's own commands (state replay, prepare, reset),
//! and hand frames to the session for forwarding.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rwsplit_wire::auth::{self, BackendLogin, ServerGreeting};
use rwsplit_wire::packet::{self, com, ErrPacket};
use rwsplit_wire::walk::{Expect, Step, Walker};
use rwsplit_wire::{CapabilityFlags, Frame};
use tokio::net::TcpStream;

use crate::error::BackendError;
use crate::io::Wire;

/// Identity of a login, used as the pool key: connections are interchangeable only within one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginKey {
    /// Backend `host:port`.
    pub addr: Arc<str>,
    /// Account.
    pub user: Arc<str>,
    /// Initial database from the client's handshake.
    pub database: Option<Arc<str>>,
    /// Collation id from the client's handshake.
    pub collation: u8,
    /// Client capabilities passed on (they change packet formats, e.g. DEPRECATE_EOF).
    pub capabilities: u32,
}

/// A logged-in backend connection.
#[derive(Debug)]
pub struct BackendConn {
    /// The framed socket.
    pub wire: Wire,
    /// Which login this connection belongs to (pool key).
    pub key: LoginKey,
    /// Capabilities in effect on this connection.
    pub caps: CapabilityFlags,
    /// The server's thread id (for logs).
    pub thread_id: u32,
    /// How many entries of the owning session's state history have been applied here.
    pub history_applied: usize,
    /// Prepared statements here: the id the client knows → this server's id.
    pub stmts: HashMap<u32, u32>,
    /// Statements whose parameter types this server has been sent (for executes that omit them).
    pub types_sent: HashSet<u32>,
    /// False while a response is being read: a connection abandoned mid-response must not be pooled.
    pub clean: bool,
    /// Something other than a plain autocommit read ran here since login or the last reset, so its session
    /// state may differ from a fresh login's: it must be reset before another session uses it.
    pub dirty: bool,
    /// The server's greeting nonce and plugin, reused by COM_CHANGE_USER.
    nonce: Vec<u8>,
    plugin: String,
}

/// Everything needed to log in to a backend for a client.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Pool key (address, user, database, collation, capabilities).
    pub key: LoginKey,
    /// Password (never logged).
    pub password: crate::config::Secret,
    /// Client connection attributes, passed on.
    pub attributes: Arc<Vec<(String, String)>>,
}

impl Credentials {
    fn login(&self) -> BackendLogin<'_> {
        BackendLogin {
            capabilities: CapabilityFlags::from_bits_retain(self.key.capabilities),
            collation: self.key.collation,
            user: &self.key.user,
            password: self.password.expose(),
            database: self.key.database.as_deref(),
            attributes: &self.attributes,
        }
    }
}

/// Reads just the greeting of a server (to learn its version), then drops the connection.
pub async fn probe_version(addr: &str, timeout: Duration) -> Result<(String, CapabilityFlags), BackendError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| BackendError::Connect(std::io::ErrorKind::TimedOut.into()))?
        .map_err(BackendError::Connect)?;
    let mut wire = Wire::new(stream, crate::io::BACKEND_READ_CHUNK);
    let frame = tokio::time::timeout(timeout, wire.expect_frame())
        .await
        .map_err(|_| BackendError::Connect(std::io::ErrorKind::TimedOut.into()))??;
    let greeting = greeting_of(&frame)?;
    Ok((greeting.version, greeting.capabilities))
}

fn greeting_of(frame: &Frame) -> Result<ServerGreeting, BackendError> {
    if let Some(err) = ErrPacket::parse(frame.payload()) {
        return Err(BackendError::Login(err));
    }
    auth::parse_greeting(frame.payload()).ok_or_else(|| BackendError::Protocol("malformed server greeting".into()))
}

impl BackendConn {
    /// Connects and logs in, within `timeout`. Returns the connection and the server's version string and
    /// capabilities.
    pub async fn connect(
        creds: &Credentials,
        timeout: Duration,
    ) -> Result<(BackendConn, (String, CapabilityFlags)), BackendError> {
        tokio::time::timeout(timeout, Self::connect_inner(creds))
            .await
            .map_err(|_| BackendError::Connect(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))?
    }

    async fn connect_inner(creds: &Credentials) -> Result<(BackendConn, (String, CapabilityFlags)), BackendError> {
        let stream = TcpStream::connect(&*creds.key.addr).await.map_err(BackendError::Connect)?;
        let mut wire = Wire::new(stream, crate::io::BACKEND_READ_CHUNK);
        let greeting = greeting_of(&wire.expect_frame().await?)?;
        let (payload, plugin) = auth::handshake_response(&greeting, &creds.login());
        wire.send(1, &payload).await?;
        let caps = CapabilityFlags::from_bits_retain(packet::u32_at(&payload, 0).unwrap_or_default());
        authenticate(&mut wire, creds, plugin, greeting.nonce.clone()).await?;
        let conn = BackendConn {
            wire,
            key: creds.key.clone(),
            caps,
            thread_id: greeting.connection_id,
            history_applied: 0,
            stmts: HashMap::new(),
            types_sent: HashSet::new(),
            clean: true,
            dirty: false,
            nonce: greeting.nonce.clone(),
            plugin: greeting.plugin.clone(),
        };
        Ok((conn, (greeting.version, greeting.capabilities)))
    }

    /// Resets the connection to a just-logged-in state with COM_CHANGE_USER (same login): rolls back,
    /// drops temporary tables, user variables and prepared statements, restores database and charset.
    pub async fn reset(&mut self, creds: &Credentials) -> Result<(), BackendError> {
        let login = creds.login();
        let plugin = if self.plugin == auth::CACHING_SHA2 { auth::CACHING_SHA2 } else { auth::NATIVE };
        let mut p = vec![com::CHANGE_USER];
        p.extend_from_slice(login.user.as_bytes());
        p.push(0);
        let scramble = auth::expected_scramble(plugin, &self.nonce, login.password).unwrap_or_default();
        p.push(scramble.len() as u8);
        p.extend_from_slice(&scramble);
        p.extend_from_slice(login.database.unwrap_or("").as_bytes());
        p.push(0);
        p.extend_from_slice(&u16::from(login.collation).to_le_bytes());
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        if self.caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
            // With CLIENT_CONNECT_ATTRS the server expects the attributes block; without it MariaDB
            // rejects the packet as an unknown command.
            p.extend_from_slice(&connect_attrs(&creds.attributes));
        }
        self.clean = false;
        self.wire.send(0, &p).await?;
        authenticate(&mut self.wire, creds, plugin.to_string(), self.nonce.clone()).await?;
        self.clean = true;
        self.history_applied = 0;
        self.stmts.clear();
        self.types_sent.clear();
        self.dirty = false;
        Ok(())
    }

    /// Whether the connection negotiated CLIENT_DEPRECATE_EOF.
    pub fn deprecate_eof(&self) -> bool {
        self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// Runs a command whose response the proxy consumes itself (state replay, prepare on another backend,
    /// statement reset). Returns the first packet of the response and the final status, or the server's ERR.
    pub async fn run(&mut self, payload: &[u8], expect: Expect) -> Result<Result<Frame, ErrPacket>, BackendError> {
        self.clean = false;
        self.wire.send(0, payload).await?;
        let mut walker = Walker::new(expect, self.deprecate_eof());
        let mut first: Option<Frame> = None;
        loop {
            let frame = self.wire.expect_frame().await?;
            let step = walker.feed(&frame)?;
            if first.is_none() {
                first = Some(frame);
            }
            match step {
                Step::More => {}
                Step::LocalInfile => {
                    // The proxy never asks for files itself: answer with an empty file.
                    let seq = first.as_ref().map_or(0, |f| f.seq()).wrapping_add(1);
                    self.wire.send(seq, &[]).await?;
                    walker.after_local_infile();
                }
                Step::Done { error, .. } => {
                    self.clean = true;
                    let first = first.ok_or_else(|| BackendError::Protocol("empty response".into()))?;
                    if error {
                        let err = ErrPacket::parse(first.payload())
                            .ok_or_else(|| BackendError::Protocol("malformed ERR packet".into()))?;
                        return Ok(Err(err));
                    }
                    return Ok(Ok(first));
                }
            }
        }
    }

    /// Sends a command that has no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    pub async fn send_no_response(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        self.wire.send(0, payload).await?;
        Ok(())
    }
}

/// A length-encoded block of length-encoded key/value pairs, as in the handshake response.
fn connect_attrs(attrs: &[(String, String)]) -> Vec<u8> {
    let mut body = bytes::BytesMut::new();
    for (k, v) in attrs {
        for s in [k, v] {
            packet::put_lenenc_int(&mut body, s.len() as u64);
            body.extend_from_slice(s.as_bytes());
        }
    }
    let mut out = bytes::BytesMut::with_capacity(body.len() + 9);
    packet::put_lenenc_int(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out.to_vec()
}

/// The authentication exchange after a handshake response or COM_CHANGE_USER was sent: handles auth switch
/// and caching_sha2_password fast and full (RSA) authentication.
async fn authenticate(
    wire: &mut Wire,
    creds: &Credentials,
    mut plugin: String,
    mut nonce: Vec<u8>,
) -> Result<(), BackendError> {
    let password = creds.password.expose();
    for _ in 0..6 {
        let frame = wire.expect_frame().await?;
        let p = frame.payload();
        let next = frame.seq().wrapping_add(1);
        match p.first() {
            Some(&packet::OK) => return Ok(()),
            Some(&packet::ERR) => {
                let err = ErrPacket::parse(p).ok_or_else(|| BackendError::Protocol("malformed ERR".into()))?;
                return Err(BackendError::Login(err));
            }
            Some(&packet::EOF) => {
                let (new_plugin, new_nonce) = auth::parse_auth_switch(p)
                    .ok_or_else(|| BackendError::Protocol("malformed auth switch request".into()))?;
                let data = auth::expected_scramble(&new_plugin, &new_nonce, password).ok_or_else(|| {
                    BackendError::Protocol(format!("backend asks for unsupported auth plugin {new_plugin}"))
                })?;
                wire.send(next, &data).await?;
                plugin = new_plugin;
                nonce = new_nonce;
            }
            Some(&0x01) if plugin == auth::CACHING_SHA2 => match p.get(1) {
                Some(&auth::sha2_msg::FAST_AUTH_OK) => {}
                Some(&auth::sha2_msg::PERFORM_FULL_AUTH) => {
                    wire.send(next, &[auth::sha2_msg::REQUEST_PUBLIC_KEY]).await?;
                }
                _ => {
                    // The server's RSA public key (PEM) after our request.
                    let encrypted = auth::sha2_rsa_password(password, &nonce, &p[1..])
                        .ok_or_else(|| BackendError::Protocol("cannot use the server's RSA public key".into()))?;
                    wire.send(next, &encrypted).await?;
                }
            },
            _ => return Err(BackendError::Protocol("unexpected packet during authentication".into())),
        }
    }
    Err(BackendError::Protocol("authentication did not finish".into()))
}
