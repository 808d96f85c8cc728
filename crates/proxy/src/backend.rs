//! One backend connection: connect and log in, set up session tracking, run the proxy's own commands (state
//! replay, prepare, reset), and hand frames to the session for forwarding.
//!
//! Every backend connection asks the server to report session state in its OK packets
//! (`CLIENT_SESSION_TRACK`, whatever the client negotiated) and, right after login, turns on every tracker
//! ([`TRACKING_SETUP`]): the server then tells the proxy each system variable a statement changed, the
//! current schema, that some session state changed, and the transaction state (including LOCK TABLES).
//! The same round trip reads the server's session defaults ([`ServerDefaults`]): `max_allowed_packet` and
//! the trackers a client gets when it does not choose its own, which is what the session shows its client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rwsplit_wire::auth::{self, BackendLogin, ServerGreeting};
use rwsplit_wire::packet::{self, com, ErrPacket};
use rwsplit_wire::walk::{Expect, Step, Walker};
use rwsplit_wire::{CapabilityFlags, Frame, StatusFlags};
use tokio::net::TcpStream;

use crate::error::BackendError;
use crate::io::Wire;
use crate::position::Flavor;

/// The statement that turns on every session tracker of a backend connection. `CHARACTERISTICS` is
/// `STATE` plus the transaction's characteristics, so it covers what any client may ask for.
pub const TRACKING_SETUP: &str = "SET SESSION session_track_system_variables = '*', session_track_schema = ON, \
                                  session_track_state_change = ON, session_track_transaction_info = 'CHARACTERISTICS'";

/// [`TRACKING_SETUP`] for MySQL, which also reports the GTIDs of the transactions a session commits (MariaDB
/// reports them as the `last_gtid` variable).
pub const TRACKING_SETUP_MYSQL: &str = "SET SESSION session_track_system_variables = '*', session_track_schema = ON, \
                                        session_track_state_change = ON, \
                                        session_track_transaction_info = 'CHARACTERISTICS', \
                                        session_track_gtids = 'OWN_GTID'";

/// The query that reads a fresh session's defaults, sent with [`TRACKING_SETUP`] in one round trip.
const DEFAULTS_QUERY: &str = "SELECT @@max_allowed_packet, @@session_track_system_variables, \
                              @@session_track_schema, @@session_track_state_change, @@session_track_transaction_info";

/// The query that reads the trackers a client set on a connection (before the proxy turns its own on again).
const TRACKERS_QUERY: &str = "SELECT @@session_track_system_variables, @@session_track_schema, \
                              @@session_track_state_change, @@session_track_transaction_info";

/// Connection attributes of a pooled connection after its reset: it no longer belongs to the client that
/// opened it, and the next client's attributes would be a guess.
const POOLED_ATTRIBUTES: &[(&str, &str)] =
    &[("_client_name", "rwsplit"), ("program_name", "rwsplit (pooled connection)")];

/// A fresh session's defaults on a server, as read by [`DEFAULTS_QUERY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDefaults {
    /// `@@max_allowed_packet`: the largest packet the server accepts from a client.
    pub max_allowed_packet: usize,
    /// `@@session_track_system_variables` (a comma-separated list, or `*`).
    pub track_system_variables: String,
    /// `@@session_track_schema`.
    pub track_schema: bool,
    /// `@@session_track_state_change`.
    pub track_state_change: bool,
    /// `@@session_track_transaction_info` (`OFF`, `STATE` or `CHARACTERISTICS`).
    pub track_transaction_info: String,
}

impl Default for ServerDefaults {
    /// MariaDB 10.11's defaults, for sessions that start before any backend connection read the real ones.
    fn default() -> Self {
        ServerDefaults {
            max_allowed_packet: 16 << 20,
            track_system_variables:
                "autocommit,character_set_client,character_set_connection,character_set_results,time_zone".into(),
            track_schema: true,
            track_state_change: false,
            track_transaction_info: "OFF".into(),
        }
    }
}

/// Identity of a login, used as the pool key: connections are interchangeable only within one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginKey {
    /// Backend `host:port`.
    pub addr: Arc<str>,
    /// Account.
    pub user: Arc<str>,
    /// Initial database from the client's handshake.
    pub database: Option<Arc<str>>,
    /// Collation id from the client's handshake or COM_CHANGE_USER.
    pub collation: u16,
    /// Client capabilities passed on (they change packet formats, e.g. DEPRECATE_EOF).
    pub capabilities: u32,
    /// The connection was made over TLS (`tls:` of the backend): after a reload that turns a backend's TLS
    /// on, no plain pooled connection is handed out for it.
    pub tls: bool,
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
    /// The server's thread id (for KILL and the admin interface).
    pub thread_id: u32,
    /// The owning session's history entries applied here: everything up to this sequence number.
    pub applied: u64,
    /// Prepared statements here: the id the client knows → this server's id.
    pub stmts: HashMap<u32, u32>,
    /// The parameter types this server last got for each statement (for executes that omit them).
    pub types_sent: HashMap<u32, bytes::Bytes>,
    /// True while a response is being read: a connection abandoned mid-response is closed, not pooled.
    pub mid_response: bool,
    /// The longest one of the proxy's own commands may take (`backend_timeout`).
    pub op_timeout: Duration,
    /// When it was opened (`pool.max_lifetime`).
    pub created: std::time::Instant,
    /// Its place under `pool.max_backend_connections` (freed when the connection is dropped).
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Something other than a plain autocommit read ran here since login or the last reset, so its session
    /// state may differ from a fresh login's: it is reset before another session uses it.
    pub touched: bool,
    /// The server reports session state on this connection (trackers on, [`TRACKING_SETUP`]).
    pub tracking: bool,
    /// How the server writes replication positions (MariaDB GTID lists or MySQL GTID sets).
    pub flavor: Flavor,
    /// A position this (replica) server was seen to have applied (a wait for it succeeded here).
    pub reached: Option<crate::position::Position>,
    /// The client changed the trackers on this connection: [`TRACKING_SETUP`] is run again before its next
    /// command.
    pub tracking_stale: bool,
    /// The last client statement here ended in an error or with warnings: `SHOW WARNINGS` and the error
    /// counts must run here, so the connection stays with its session.
    pub diagnostics: bool,
    /// The server's greeting nonce (COM_CHANGE_USER scrambles with it).
    nonce: Vec<u8>,
    /// The server's default auth plugin (COM_CHANGE_USER uses it).
    plugin: String,
}

impl BackendConn {
    /// Whether the connection has nothing a fresh one of the same login lacks: no session state, no
    /// prepared statement, no diagnostics of a last statement, nothing unread. Such a connection goes back
    /// to the pool as is, and another session may take it at once.
    pub fn is_clean(&self) -> bool {
        !self.touched
            && self.applied == 0
            && self.stmts.is_empty()
            && !self.tracking_stale
            && !self.mid_response
            && !self.diagnostics
    }
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
    /// The longest one of the proxy's own commands on the connection may take (`backend_timeout`).
    pub op_timeout: Duration,
    /// The backend's pinned RSA public key (PEM), the only one caching_sha2_password full authentication
    /// encrypts the password with: a key the server sends over plaintext could be an attacker's.
    pub public_key: Option<Arc<Vec<u8>>>,
    /// TLS to the backend (`master.tls`, `replicas[].tls`); None, plain TCP.
    pub tls: Option<crate::config::BackendTls>,
}

impl Credentials {
    fn login(&self) -> BackendLogin<'_> {
        BackendLogin {
            // Session tracking is always asked for: the proxy reads it, and gives the client what it asked for.
            capabilities: CapabilityFlags::from_bits_retain(self.key.capabilities)
                | CapabilityFlags::CLIENT_SESSION_TRACK,
            // A handshake has one byte for it; ids above 255 (MariaDB's newer collations) only travel in
            // COM_CHANGE_USER, so such a login starts with the server's default and the client's SET NAMES.
            collation: u8::try_from(self.key.collation).unwrap_or(0),
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
    auth::parse_greeting(frame.payload()).ok_or(BackendError::Protocol("malformed server greeting"))
}

impl BackendConn {
    /// Connects, logs in and sets up session tracking, within `timeout`. Returns the connection, the server's
    /// version string and capabilities, and its session defaults (when it has session tracking).
    pub async fn connect(creds: &Credentials, timeout: Duration) -> Result<Connected, BackendError> {
        tokio::time::timeout(timeout, Self::connect_inner(creds))
            .await
            .map_err(|_| BackendError::Connect(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))?
    }

    async fn connect_inner(creds: &Credentials) -> Result<Connected, BackendError> {
        let stream = TcpStream::connect(&*creds.key.addr).await.map_err(BackendError::Connect)?;
        crate::listen::keepalive(&stream);
        let mut wire = Wire::new(stream, crate::io::BACKEND_READ_CHUNK);
        let greeting = greeting_of(&wire.expect_frame().await?)?;
        let (mut payload, plugin) = auth::handshake_response(&greeting, &creds.login());
        let mut seq = 1;
        if let Some(tls) = &creds.tls {
            // Configured TLS is never given up for plain: a server that does not offer it is refused.
            if !greeting.capabilities.contains(CapabilityFlags::CLIENT_SSL) {
                return Err(tls_error(&creds.key.addr, "the server does not offer TLS (is ssl_cert set?)"));
            }
            let request = auth::for_tls(&mut payload).ok_or(BackendError::Protocol("short handshake response"))?;
            seq = wire.send(seq, &request).await?;
            wire.connect_tls(&tls.connector, tls.name.clone())
                .await
                .map_err(|e| tls_error(&creds.key.addr, &format!("handshake with {}: {e}", tls.server_name)))?;
        }
        wire.send(seq, &payload).await?;
        let caps = CapabilityFlags::from_bits_retain(packet::u32_at(&payload, 0).unwrap_or_default());
        authenticate(&mut wire, creds, plugin, greeting.nonce.clone()).await?;
        let mut conn = BackendConn {
            wire,
            key: creds.key.clone(),
            caps,
            thread_id: greeting.connection_id,
            applied: 0,
            stmts: HashMap::new(),
            types_sent: HashMap::new(),
            mid_response: false,
            op_timeout: creds.op_timeout,
            created: std::time::Instant::now(),
            permit: None,
            touched: false,
            tracking: false,
            tracking_stale: false,
            diagnostics: false,
            flavor: if greeting.version.contains("MariaDB") { Flavor::MariaDb } else { Flavor::MySql },
            reached: None,
            nonce: greeting.nonce.clone(),
            plugin: greeting.plugin.clone(),
        };
        let defaults = conn.setup(true).await?;
        Ok(Connected { conn, version: greeting.version, caps: greeting.capabilities, defaults })
    }

    /// Turns on session tracking (a server without it is used without: the proxy then knows only what the
    /// statement text tells). With `read_defaults`, the same round trip reads the session defaults first.
    async fn setup(&mut self, read_defaults: bool) -> Result<Option<ServerDefaults>, BackendError> {
        self.tracking = false;
        self.tracking_stale = false;
        if !self.caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
            return Ok(None);
        }
        let mut commands: Vec<Vec<u8>> = Vec::with_capacity(2);
        if read_defaults {
            commands.push([&[com::QUERY][..], DEFAULTS_QUERY.as_bytes()].concat());
        }
        let setup = match self.flavor {
            Flavor::MariaDb => TRACKING_SETUP,
            Flavor::MySql => TRACKING_SETUP_MYSQL,
        };
        commands.push([&[com::QUERY][..], setup.as_bytes()].concat());
        for c in &commands {
            self.wire.queue_payload(0, c);
        }
        self.mid_response = true;
        self.wire.flush().await?;
        let defaults = if read_defaults {
            let frames = self.read_reply_frames(Expect::ResultSets).await?;
            frames.ok().and_then(|f| defaults_of(&f, self.deprecate_eof()))
        } else {
            None
        };
        let set = self.read_reply(Expect::ResultSets).await?;
        self.tracking = set.is_ok();
        if let Err(err) = set {
            tracing::debug!(backend = %self.key.addr, %err, "no session tracking on this server");
        }
        Ok(defaults)
    }

    /// Runs [`TRACKING_SETUP`] again if the client changed the trackers on this connection.
    pub async fn restore_tracking(&mut self) -> Result<(), BackendError> {
        if self.tracking_stale {
            let limit = self.op_timeout;
            bounded(limit, self.setup(false)).await?;
        }
        Ok(())
    }

    /// After the client changed the trackers on this connection: reads what it set (`session_track_…`) and
    /// the current values of `also` (other session variables the same statement assigned: once the
    /// statement changed the trackers, the server may not have reported them), then turns the proxy's own
    /// trackers on again. The server cannot report the client's new tracker values itself once they stop
    /// tracking their own variables. Returns name/value pairs (NULL as an empty value, as session tracking
    /// reports it).
    pub async fn take_client_trackers(&mut self, also: &[&str]) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        let limit = self.op_timeout;
        bounded(limit, self.take_client_trackers_inner(also)).await
    }

    async fn take_client_trackers_inner(&mut self, also: &[&str]) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        const NAMES: [&str; 4] = [
            "session_track_system_variables",
            "session_track_schema",
            "session_track_state_change",
            "session_track_transaction_info",
        ];
        let mut query = TRACKERS_QUERY.to_string();
        for name in also {
            query.push_str(", @@session.");
            query.push_str(name);
        }
        self.mid_response = true;
        self.wire.send(0, &[&[com::QUERY][..], query.as_bytes()].concat()).await?;
        let frames = match self.read_reply_frames(Expect::ResultSets).await? {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(backend = %self.key.addr, %e, "cannot read the session's trackers back");
                return Err(BackendError::Protocol("the server refused to report session variables"));
            }
        };
        let names: Vec<&str> = NAMES.iter().chain(also).copied().collect();
        let values = first_row(&frames, names.len(), self.deprecate_eof())
            .ok_or(BackendError::Protocol("malformed session variables row"))?;
        self.setup(false).await?;
        Ok(names.into_iter().map(String::from).zip(values).collect())
    }

    /// Resets the connection to a just-logged-in state with COM_CHANGE_USER (same login): rolls back,
    /// drops temporary tables, user variables and prepared statements, restores database and charset, and
    /// turns session tracking on again. The connection's attributes become rwsplit's own
    /// ([`POOLED_ATTRIBUTES`]): it no longer serves the client that opened it.
    pub async fn reset(&mut self, creds: &Credentials) -> Result<(), BackendError> {
        let limit = self.op_timeout;
        bounded(limit, self.reset_inner(creds)).await
    }

    async fn reset_inner(&mut self, creds: &Credentials) -> Result<(), BackendError> {
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
        p.extend_from_slice(&creds.key.collation.to_le_bytes());
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        if self.caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
            // With CLIENT_CONNECT_ATTRS the server expects the attributes block; without it MariaDB
            // rejects the packet as an unknown command.
            p.extend_from_slice(&connect_attrs(POOLED_ATTRIBUTES));
        }
        self.mid_response = true;
        self.wire.send(0, &p).await?;
        authenticate(&mut self.wire, creds, plugin.to_string(), self.nonce.clone()).await?;
        self.mid_response = false;
        self.applied = 0;
        self.stmts.clear();
        self.types_sent.clear();
        self.touched = false;
        self.diagnostics = false;
        self.setup(false).await?;
        Ok(())
    }

    /// The connection's current status flags, from the OK of a COM_PING (which changes nothing on the
    /// connection, not even the diagnostics area that SHOW WARNINGS reads).
    pub async fn status(&mut self) -> Result<StatusFlags, BackendError> {
        let track = self.caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK);
        match self.run(&[com::PING], Expect::Single).await? {
            Ok(ok) => packet::OkPacket::parse(ok.payload(), track)
                .map(|ok| ok.status)
                .ok_or(BackendError::Protocol("malformed OK to COM_PING")),
            Err(_) => Err(BackendError::Protocol("the server refused COM_PING")),
        }
    }

    /// Whether the connection negotiated CLIENT_DEPRECATE_EOF.
    pub fn deprecate_eof(&self) -> bool {
        self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// Runs a command whose response the proxy consumes itself (state replay, prepare on another backend,
    /// statement reset). Returns the first packet of the response, or the server's ERR.
    /// Bounded by `backend_timeout`: a connection that times out is left mid-response (never reused).
    pub async fn run(&mut self, payload: &[u8], expect: Expect) -> Result<Result<Frame, ErrPacket>, BackendError> {
        let limit = self.op_timeout;
        bounded(limit, async {
            self.mid_response = true;
            self.wire.send(0, payload).await?;
            self.read_reply(expect).await
        })
        .await
    }

    /// Reads the whole response to a command the proxy sent itself: its first packet, or the server's ERR.
    async fn read_reply(&mut self, expect: Expect) -> Result<Result<Frame, ErrPacket>, BackendError> {
        Ok(self.read_reply_frames(expect).await?.map(|mut frames| frames.swap_remove(0)))
    }

    /// Reads the whole response to a command the proxy sent itself (a small one: its frames are kept), or the
    /// server's ERR. A LOCAL INFILE request is answered with an empty file (the proxy never asks for one).
    async fn read_reply_frames(&mut self, expect: Expect) -> Result<Result<Vec<Frame>, ErrPacket>, BackendError> {
        let mut walker = Walker::new(expect, self.deprecate_eof());
        let mut frames: Vec<Frame> = Vec::new();
        loop {
            let frame = self.wire.expect_frame().await?;
            let step = walker.feed(&frame)?;
            let seq = frame.seq();
            let error = walker.packet() == rwsplit_wire::walk::Packet::Err;
            if error {
                let err = ErrPacket::parse(frame.payload()).ok_or(BackendError::Protocol("malformed ERR packet"))?;
                // An ERR ends the response.
                self.mid_response = false;
                return Ok(Err(err));
            }
            frames.push(frame);
            match step {
                Step::More => {}
                Step::LocalInfile => {
                    self.wire.send(seq.wrapping_add(1), &[]).await?;
                    walker.after_local_infile();
                }
                Step::Done { .. } => {
                    self.mid_response = false;
                    return Ok(Ok(frames));
                }
            }
        }
    }

    /// Reads the whole (small) response to a command already sent: its frames, or the server's ERR.
    pub async fn read_response_frames(
        &mut self,
        expect: Expect,
    ) -> Result<Result<Vec<Frame>, ErrPacket>, BackendError> {
        self.read_reply_frames(expect).await
    }

    /// Reads the whole response to a command already sent and drops it (it may be a large result).
    pub async fn drain(&mut self, expect: Expect) -> Result<(), BackendError> {
        let mut walker = Walker::new(expect, self.deprecate_eof());
        self.mid_response = true;
        loop {
            let frame = self.wire.expect_frame().await?;
            match walker.feed(&frame)? {
                Step::More => {}
                Step::LocalInfile => {
                    self.wire.send(frame.seq().wrapping_add(1), &[]).await?;
                    walker.after_local_infile();
                }
                Step::Done { .. } => {
                    self.mid_response = false;
                    return Ok(());
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

/// A new connection and what its server said about itself.
#[derive(Debug)]
pub struct Connected {
    /// The logged-in connection.
    pub conn: BackendConn,
    /// The server's version string.
    pub version: String,
    /// The server's capabilities.
    pub caps: CapabilityFlags,
    /// The session defaults, when the server has session tracking.
    pub defaults: Option<ServerDefaults>,
}

/// The values of the first row of a text result's frames (NULL as empty).
pub(crate) fn first_row(frames: &[Frame], columns: usize, deprecate_eof: bool) -> Option<Vec<Vec<u8>>> {
    let mut rest = frames.get(1 + columns + usize::from(!deprecate_eof))?.payload();
    let mut values = Vec::with_capacity(columns);
    for _ in 0..columns {
        if rest.first() == Some(&packet::NULL_VALUE) {
            values.push(Vec::new());
            rest = &rest[1..];
            continue;
        }
        let (v, n) = packet::lenenc_str(rest)?;
        values.push(v.to_vec());
        rest = &rest[n..];
    }
    Some(values)
}

/// The defaults in the row of [`DEFAULTS_QUERY`]'s text result.
fn defaults_of(frames: &[Frame], deprecate_eof: bool) -> Option<ServerDefaults> {
    let values: Vec<String> =
        first_row(frames, 5, deprecate_eof)?.into_iter().map(|v| String::from_utf8_lossy(&v).into_owned()).collect();
    let flag = |v: &str| v == "1" || v.eq_ignore_ascii_case("ON");
    Some(ServerDefaults {
        max_allowed_packet: values[0].parse().ok()?,
        track_system_variables: values[1].clone(),
        track_schema: flag(&values[2]),
        track_state_change: flag(&values[3]),
        track_transaction_info: values[4].clone(),
    })
}

/// A length-encoded block of length-encoded key/value pairs, as in the handshake response.
fn connect_attrs<K: AsRef<str>, V: AsRef<str>>(attrs: &[(K, V)]) -> Vec<u8> {
    let mut body = bytes::BytesMut::new();
    for (k, v) in attrs {
        for s in [k.as_ref(), v.as_ref()] {
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
                let err = ErrPacket::parse(p).ok_or(BackendError::Protocol("malformed ERR"))?;
                return Err(BackendError::Login(err));
            }
            Some(&packet::EOF) => {
                let (new_plugin, new_nonce) =
                    auth::parse_auth_switch(p).ok_or(BackendError::Protocol("malformed auth switch request"))?;
                let data = auth::expected_scramble(&new_plugin, &new_nonce, password)
                    .ok_or_else(|| BackendError::UnsupportedPlugin(new_plugin.clone()))?;
                wire.send(next, &data).await?;
                plugin = new_plugin;
                nonce = new_nonce;
            }
            Some(&0x01) if plugin == auth::CACHING_SHA2 => match p.get(1) {
                Some(&auth::sha2_msg::FAST_AUTH_OK) => {}
                Some(&auth::sha2_msg::PERFORM_FULL_AUTH) if wire.is_tls() => {
                    // Over TLS (the server's certificate verified) the password goes as it is, NUL-terminated.
                    let mut clear = password.to_vec();
                    clear.push(0);
                    wire.send(next, &clear).await?;
                }
                Some(&auth::sha2_msg::PERFORM_FULL_AUTH) => {
                    // Never ask the server for its key (review M5): without TLS, only a pinned key keeps the
                    // password from a machine in the middle.
                    let Some(pem) = creds.public_key.as_deref() else {
                        let msg = format!(
                            "rwsplit: backend {} asks for caching_sha2_password full authentication, which needs \
                             TLS to it (tls: of that backend) or its RSA public key pinned in the config \
                             (public_key of that backend); the proxy does not trust a key sent over an \
                             unencrypted connection",
                            creds.key.addr
                        );
                        let (code, state) = crate::error::code::BACKEND_LOGIN;
                        return Err(BackendError::Login(ErrPacket { code, state: *state, message: msg }));
                    };
                    let encrypted = auth::sha2_rsa_password(password, &nonce, pem)
                        .ok_or(BackendError::Protocol("the pinned public key is not a usable RSA key"))?;
                    wire.send(next, &encrypted).await?;
                }
                _ => return Err(BackendError::Protocol("unexpected caching_sha2_password message")),
            },
            _ => return Err(BackendError::Protocol("unexpected packet during authentication")),
        }
    }
    Err(BackendError::Protocol("authentication did not finish"))
}

/// A TLS failure on the way to a backend, as the client sees it (see [`crate::error::code::BACKEND_LOGIN`]).
fn tls_error(addr: &str, why: &str) -> BackendError {
    let (code, state) = crate::error::code::BACKEND_LOGIN;
    BackendError::Login(ErrPacket {
        code,
        state: *state,
        message: format!("rwsplit: TLS to backend {addr} failed: {why}"),
    })
}

/// Runs one of the proxy's own backend commands within `limit`.
async fn bounded<T>(
    limit: Duration,
    op: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    tokio::time::timeout(limit, op).await.unwrap_or(Err(BackendError::Timeout(limit)))
}
