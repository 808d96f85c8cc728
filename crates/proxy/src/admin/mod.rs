//! The admin interface: the MySQL protocol on `admin.listen`, for operators and scripts
//! (`mariadb -h 127.0.0.1 -P 6032 -u admin -p`).
//!
//! Commands (case-insensitive; surrounding whitespace, comments and a trailing `;` are ignored):
//!
//! - `SHOW BACKENDS`: one row per configured backend, the master first, then the replicas in config order:
//!   `address`, `role` (`master` for where writes go now, `replica` otherwise), `reachable` (NULL before the
//!   first probe or without a health checker), `serving` (the master: takes writes; a replica: gets reads),
//!   `offline` (taken out by hand), `lag_seconds`, `lag_frozen` (1: the replica's IO thread lost a master
//!   the checker cannot reach either; it serves reads on its data as of the master's last write, and
//!   `lag_seconds` is the lag last measured before), `weight`, `read_only`, `gtid`, `binlog_position` (a
//!   replica's executed position in the master's binary log; the master's own when read-your-writes follows
//!   binary log positions), `connections_in_use`, `connections_idle`, `last_error`, `last_change` (RFC 3339,
//!   UTC).
//! - `SHOW REPLICATION`: one row per configured server, the master first: `address`, `role`, `server_id`,
//!   `mode` (a replica's: `gtid` or `position`), `io_running` and `sql_running` (as the server reports them:
//!   Yes, No, Connecting), `lag_seconds`, `gtid`, `binlog_position` (the master's binary log end; a
//!   replica's executed position in it), `behind_bytes` (how far that is behind the master's end, across
//!   its binary log files), `semisync` (master: `ON (n replicas)` or `OFF (asynchronous)`; replica: ON/OFF;
//!   NULL when semi-sync is not in use), `super_read_only` (MySQL only), `source_server_id` (the server a
//!   replica replicates from),
//!   `last_io_error`, `last_sql_error`, `last_error` (why rwsplit does not use it), `last_change`.
//! - `SHOW POOLS`: `backend`, `in_use`, `idle` per backend.
//! - `SHOW CLIENTS`: one row per client session: `id`, `user`, `peer`, `started`, `master_thread`,
//!   `replica`, `replica_thread`.
//! - `SHOW CONFIG`: `key`, `value`: the running config flattened; passwords always `***`.
//! - `RELOAD`: re-reads the config file. OK with what changed, or error 1105 with every problem (the
//!   running config stays).
//! - `SET BACKEND 'host:port' OFFLINE` / `ONLINE`: takes a replica out of the read rotation by hand (its
//!   sessions move at their next read), or puts it back (it still has to pass the health checks).
//! - `SELECT @@version_comment LIMIT 1`, `SELECT @@var, …`, `SELECT 1`: what clients send on connect and
//!   as pings. `COM_PING` works too.
//!
//! Anything else gets error 1064 listing the commands; prepared statements get 1295, `USE` 1049, other
//! protocol commands 1047. Nothing is ever acknowledged with an OK it did not do.
//!
//! Login: `admin.user` / `admin.password` of the config in force at login, `mysql_native_password` against
//! a random nonce per connection. A wrong user or password gets error 1045.
//!
//! How a connection runs: `opensrv-mysql` speaks the protocol and writes the result sets (the data path
//! never uses it) over an in-memory pipe. A small relay between the client socket and the pipe corrects two
//! things opensrv does differently from a MySQL server: it refuses a login with error 1698 (the relay sends
//! 1045) and acknowledges protocol commands it does not know with an OK (the relay answers them itself with
//! an error, before they reach opensrv).
//!
//! TLS (`admin.tls: true`, with the `tls:` section's certificate) is terminated by the relay, so opensrv
//! never sees it: the relay adds `CLIENT_SSL` to opensrv's greeting, answers the client's SSLRequest with
//! the TLS handshake, and renumbers the login packets around the SSLRequest it kept from opensrv. Every admin
//! client must then use TLS; a plain one gets error 3159.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, ErrorKind, InitWriter, ParamParser, QueryResultWriter, StatementMetaWriter,
};
use rwsplit_wire::auth::{new_scramble, verify_scramble, NATIVE};
use rwsplit_wire::packet::{com, err_payload, ERR, OK};
use rwsplit_wire::{CapabilityFlags, Frame, FrameCodec, MAX_PAYLOAD};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::stream::Stream;
use crate::Shared;

mod command;
mod report;

pub use command::{parse, Command, SelectItem, SelectValue};
use report::{execute, respond, Failure, Reply};

/// The server version announced to admin clients.
const VERSION: &str = concat!("5.7.0-rwsplit-admin-", env!("CARGO_PKG_VERSION"));
/// `@@version_comment`, which the `mariadb` client prints after the version.
const VERSION_COMMENT: &str = "rwsplit admin";
/// What every unknown command's error lists.
const USAGE: &str = "supported: SHOW BACKENDS, SHOW REPLICATION, SHOW POOLS, SHOW CLIENTS, SHOW CONFIG, RELOAD, \
                     SET BACKEND 'host:port' OFFLINE|ONLINE";
/// Open admin connections at most; more get error 1040 before the handshake.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// How passwords appear in `SHOW CONFIG`.
const MASK: &str = "***";
/// `@@max_allowed_packet` as announced (opensrv answers a lone `SELECT @@max_allowed_packet` with this).
const MAX_PACKET: i64 = 64 << 20;
/// Buffer of each direction of the in-memory pipe between the relay and opensrv.
const PIPE_BUFFER: usize = 64 * 1024;
/// Time a client has to log in before the connection is closed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin interface until `cancel`; open admin connections end with it.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, cancel: CancellationToken) {
    // Its own count, so clients at max_client_connections cannot lock operators out.
    let admission = Arc::new(crate::admission::Admission::default());
    crate::listen::accept_loop(&listener, &cancel, "admin", |mut stream, peer| {
        let (shared, cancel) = (Arc::clone(&shared), cancel.clone());
        let ticket = admission.admit(peer.ip(), MAX_ADMIN_CONNECTIONS, 0);
        tokio::spawn(async move {
            let Ok(_ticket) = ticket else {
                let msg = format!("Too many connections (rwsplit admin: at most {MAX_ADMIN_CONNECTIONS})");
                let _ = stream.write_all(Frame::new(0, &err_payload(1040, b"08004", &msg)).as_bytes()).await;
                return;
            };
            tokio::select! {
                _ = connection(shared, stream, peer) => {}
                _ = cancel.cancelled() => {}
            }
        });
    })
    .await;
}

/// Runs one admin connection: opensrv over an in-memory pipe, the relay between the pipe and the client.
async fn connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    static NEXT_ID: AtomicU32 = AtomicU32::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("admin", id, %peer);
    async move {
        let _ = stream.set_nodelay(true);
        let denial = Arc::new(Mutex::new(None));
        let tls = {
            let config = shared.config.load();
            let wanted = config.admin.as_ref().is_some_and(|a| a.tls);
            config.tls.as_ref().filter(|_| wanted).map(|t| t.acceptor.clone())
        };
        let (near, far) = tokio::io::duplex(PIPE_BUFFER);
        let (far_read, far_write) = tokio::io::split(far);
        let admission = Arc::clone(&shared.admission);
        let shim = Shim { shared, salt: new_scramble(), id, peer, denial: Arc::clone(&denial) };
        // Each side ends when the other does: a finished future drops its end of the pipe.
        let (served, relayed) = tokio::join!(
            AsyncMysqlIntermediary::run_on(shim, far_read, far_write),
            relay(stream, near, &denial, &admission, tls)
        );
        // A refused login was logged when it was checked.
        match (served, relayed) {
            (Ok(()), Ok(())) => tracing::debug!("admin connection closed"),
            (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "admin connection ended"),
        }
    }
    .instrument(span)
    .await
}

/// What the relay does with a command frame from a logged-in client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Pass it to opensrv.
    Forward,
    /// Drop it: the protocol expects no reply (closing or feeding a statement that cannot exist).
    Swallow,
    /// Answer it with this error (code, SQLSTATE, message) instead of opensrv's fake OK.
    Refuse(u16, &'static [u8; 5], &'static str),
}

/// The relay's decision for a command payload (the first frame of a command).
fn command_action(payload: &[u8]) -> Action {
    // opensrv drops the connection on text that is not UTF-8; a frame of MAX_PAYLOAD bytes is continued and
    // may end inside a character.
    let bad_text = payload.len() < MAX_PAYLOAD && std::str::from_utf8(payload.get(1..).unwrap_or_default()).is_err();
    match payload.first().copied() {
        Some(com::QUERY | com::INIT_DB | com::STMT_PREPARE) if bad_text => {
            Action::Refuse(1300, b"HY000", "Invalid utf8 character string in the command")
        }
        Some(com::QUERY | com::INIT_DB | com::PING | com::QUIT | com::STMT_PREPARE) => Action::Forward,
        Some(com::STMT_CLOSE | com::STMT_SEND_LONG_DATA) => Action::Swallow,
        Some(com::STMT_EXECUTE | com::STMT_RESET | com::STMT_FETCH) => {
            Action::Refuse(1243, b"HY000", "Unknown prepared statement handler (the admin interface has none)")
        }
        Some(com::FIELD_LIST) => Action::Refuse(1046, b"3D000", "No database selected"),
        _ => Action::Refuse(1047, b"08S01", "Unknown command"),
    }
}

/// The relay's view of the connection: login done or not, and the rest of a refused long command to drop.
#[derive(Debug, Default)]
struct Gate {
    /// The client's handshake response went through.
    responded: bool,
    /// opensrv sent the OK that ends the login.
    logged_in: bool,
    /// The frames that follow belong to a refused command of 16 MiB or more.
    skipping: bool,
    /// The relay terminated TLS: the handshake response's `CLIENT_SSL` is not opensrv's business.
    tls: bool,
}

impl Gate {
    /// Adds `CLIENT_SESSION_TRACK` to the capabilities in the client's handshake response (the first client
    /// frame). opensrv then writes an OK packet's message as a length-encoded string, as MySQL servers always
    /// do and clients expect; without the flag it writes the bare text, which drivers misread.
    fn handshake_response(&mut self, frame: Frame) -> Frame {
        let payload = frame.payload();
        if std::mem::replace(&mut self.responded, true) || payload.len() < 4 {
            return frame;
        }
        let caps = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if caps & CapabilityFlags::CLIENT_PROTOCOL_41.bits() == 0 {
            return frame;
        }
        let mut payload = payload.to_vec();
        let mut caps = caps | CapabilityFlags::CLIENT_SESSION_TRACK.bits();
        if self.tls {
            caps &= !CapabilityFlags::CLIENT_SSL.bits();
        }
        payload[..4].copy_from_slice(&caps.to_le_bytes());
        Frame::new(frame.seq(), &payload)
    }

    /// Decides what to do with a frame from the client. Only the first frame of a command, once logged in,
    /// is inspected; login packets and continuation frames pass.
    fn client_frame(&mut self, frame: &Frame) -> Action {
        if self.skipping {
            self.skipping = frame.is_continued();
            return Action::Swallow;
        }
        if !self.logged_in || frame.seq() != 0 {
            return Action::Forward;
        }
        let action = command_action(frame.payload());
        self.skipping = action != Action::Forward && frame.is_continued();
        action
    }

    /// Passes a frame from opensrv, noting the end of the login and replacing a login refusal (error 1698)
    /// with the error a MySQL server sends (1045, message prepared by [`Shim::authenticate`]).
    fn server_frame(&mut self, frame: Frame, denial: &Mutex<Option<String>>) -> Frame {
        if self.logged_in {
            return frame;
        }
        match frame.payload().first().copied() {
            Some(OK) => self.logged_in = true,
            Some(ERR) => {
                if let Some(message) = denial.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return Frame::new(frame.seq(), &err_payload(1045, b"28000", &message));
                }
            }
            _ => {}
        }
        frame
    }
}

/// Frames from one side of the relay. Cancel-safe: the only await is `read_buf`, which is.
struct FrameReader<R> {
    /// The byte stream.
    inner: R,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a byte stream.
    fn new(inner: R) -> Self {
        FrameReader { inner, buf: BytesMut::with_capacity(4096) }
    }

    /// The next frame, or `None` at the end of the stream; a frame whose header announces a payload over
    /// `max` is an error before it is buffered (before login: see [`crate::session::MAX_LOGIN_PACKET`]).
    async fn next(&mut self, max: Option<usize>) -> io::Result<Option<Frame>> {
        loop {
            if let (Some(max), Some(len)) = (max, rwsplit_wire::frame::frame_len(&self.buf)) {
                if len - 4 > max {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "oversized packet before login"));
                }
            }
            if let Some(frame) = FrameCodec.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// Copies frames between the client and opensrv until either side ends (or the client does not log in
/// within [`LOGIN_TIMEOUT`]), applying the [`Gate`].
async fn relay(
    client: TcpStream,
    pipe: DuplexStream,
    denial: &Mutex<Option<String>>,
    admission: &crate::admission::Admission,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> io::Result<()> {
    let peer_ip = client.peer_addr().ok().map(|a| a.ip());
    let (pipe_read, mut pipe_write) = tokio::io::split(pipe);
    let mut from_server = FrameReader::new(pipe_read);
    let login_deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    // With TLS, the login packets after the SSLRequest are one sequence number ahead of opensrv's.
    let (client, shift) = match tls {
        None => (Stream::Plain(client), 0),
        Some(acceptor) => {
            let started = tokio::time::timeout_at(login_deadline, start_tls(client, &mut from_server, acceptor));
            match started.await {
                Ok(Ok(Some(stream))) => (stream, 1),
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake within the login timeout"))
                }
            }
        }
    };
    let (client_read, mut client_write) = tokio::io::split(client);
    let mut from_client = FrameReader::new(client_read);
    let mut gate = Gate { tls: shift == 1, ..Gate::default() };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(login_deadline), if !gate.logged_in => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no login within the login timeout"));
            }
            frame = from_client.next((!gate.logged_in).then_some(crate::session::MAX_LOGIN_PACKET)) => {
                let Some(frame) = frame? else { return Ok(()) };
                let frame = gate.handshake_response(frame);
                let frame = if gate.logged_in || shift == 0 { frame } else { renumber(frame, 0u8.wrapping_sub(shift)) };
                match gate.client_frame(&frame) {
                    Action::Forward => pipe_write.write_all(frame.as_bytes()).await?,
                    Action::Swallow => {}
                    Action::Refuse(code, state, message) => {
                        let reply = Frame::new(frame.seq().wrapping_add(1), &err_payload(code, state, message));
                        client_write.write_all(reply.as_bytes()).await?;
                    }
                }
            }
            frame = from_server.next(None) => {
                let Some(frame) = frame? else { return Ok(()) };
                let refused = !gate.logged_in && frame.payload().first() == Some(&ERR);
                if refused {
                    // Failed admin logins back off per address, as client logins do.
                    if let Some(ip) = peer_ip {
                        tokio::time::sleep(admission.login_failed(ip)).await;
                    }
                }
                let frame = if gate.logged_in || shift == 0 { frame } else { renumber(frame, shift) };
                client_write.write_all(gate.server_frame(frame, denial).as_bytes()).await?;
            }
        }
    }
}

/// `frame` with its sequence id moved by `by` (wrapping).
fn renumber(frame: Frame, by: u8) -> Frame {
    Frame::new(frame.seq().wrapping_add(by), frame.payload())
}

/// Sets `CLIENT_SSL` in a server greeting (HandshakeV10: the lower capability bytes follow the version
/// string, the connection id, 8 bytes of nonce and a filler byte). None when the greeting is not one.
fn offer_tls(greeting: &[u8]) -> Option<Vec<u8>> {
    if greeting.first() != Some(&10) {
        return None;
    }
    let version_end = 1 + greeting.get(1..)?.iter().position(|b| *b == 0)?;
    let at = version_end + 1 + 4 + 8 + 1;
    let low = u16::from_le_bytes([*greeting.get(at)?, *greeting.get(at + 1)?]);
    let mut out = greeting.to_vec();
    out[at..at + 2].copy_from_slice(&(low | CapabilityFlags::CLIENT_SSL.bits() as u16).to_le_bytes());
    Some(out)
}

/// The TLS start of an admin login: opensrv's greeting goes out offering TLS; the client's first packet must
/// be an SSLRequest (kept from opensrv), answered with the TLS handshake. None when the client was refused
/// (it did not ask for TLS: error 3159) or went away.
async fn start_tls<R: AsyncRead + Unpin>(
    mut client: TcpStream,
    from_server: &mut FrameReader<R>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> io::Result<Option<Stream>> {
    let Some(greeting) = from_server.next(None).await? else { return Ok(None) };
    let offered = offer_tls(greeting.payload())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "opensrv sent no HandshakeV10 greeting"))?;
    client.write_all(Frame::new(greeting.seq(), &offered).as_bytes()).await?;
    let (first, rest) = {
        let mut reader = FrameReader::new(&mut client);
        let first = reader.next(Some(crate::session::MAX_LOGIN_PACKET)).await?;
        (first, reader.buf.split().freeze())
    };
    let Some(first) = first else { return Ok(None) };
    let p = first.payload();
    let caps = p.get(..4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or_default();
    if p.len() != 32 || caps & CapabilityFlags::CLIENT_SSL.bits() == 0 {
        let msg = "Connections using insecure transport are prohibited (rwsplit admin: admin.tls is on)";
        let reply = Frame::new(first.seq().wrapping_add(1), &err_payload(3159, b"HY000", msg));
        client.write_all(reply.as_bytes()).await?;
        return Ok(None);
    }
    let tls = acceptor.accept(crate::stream::Rewind::new(rest, client)).await?;
    Ok(Some(Stream::Tls(Box::new(tls))))
}

/// The opensrv output stream of one connection.
type Out = WriteHalf<DuplexStream>;
/// The future type `#[async_trait]` methods return (the trait is implemented without the macro).
type BoxFuture<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

/// One admin connection's handler, driven by opensrv.
struct Shim {
    /// The proxy's state: config, topology, health, pool, sessions.
    shared: Arc<Shared>,
    /// This connection's login nonce (opensrv's default is a constant).
    salt: [u8; 20],
    /// Connection id announced in the greeting.
    id: u32,
    /// The client's address, for the refusal message.
    peer: SocketAddr,
    /// Set when the login is refused: the message the relay sends with error 1045.
    denial: Arc<Mutex<Option<String>>>,
}

impl Shim {
    /// Checks a login against the admin account of the config in force now.
    fn check_login(&self, plugin: &str, user: &[u8], salt: &[u8], response: &[u8]) -> bool {
        let config = self.shared.config.load();
        let ok = config.admin.as_ref().is_some_and(|admin| {
            plugin == NATIVE
                && admin.user.as_bytes() == user
                && verify_scramble(NATIVE, salt, admin.password.expose(), response)
        });
        if !ok {
            let user = String::from_utf8_lossy(user);
            let with_password = if response.is_empty() { "NO" } else { "YES" };
            let message =
                format!("Access denied for user '{user}'@'{}' (using password: {with_password})", self.peer.ip());
            tracing::warn!(?user, "admin login refused: wrong user or password");
            *self.denial.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
        }
        ok
    }

    /// Parses and runs one query.
    fn run(&self, sql: &str) -> Result<Reply, Failure> {
        let command = parse(sql).map_err(|why| Failure::new(ErrorKind::ER_PARSE_ERROR, format!("{why}; {USAGE}")))?;
        match command {
            Command::Reload | Command::SetBackend { .. } => tracing::info!(?command, "admin command"),
            _ => tracing::debug!(?command, "admin command"),
        }
        execute(&self.shared, &command)
    }
}

// `AsyncMysqlShim` is an `#[async_trait]` trait; the proxy does not depend on the macro crate, so the
// methods are written in the form the macro expands to.
impl AsyncMysqlShim<Out> for Shim {
    type Error = io::Error;

    fn version(&self) -> String {
        VERSION.to_string()
    }

    fn connect_id(&self) -> u32 {
        self.id
    }

    fn salt(&self) -> [u8; 20] {
        self.salt
    }

    fn authenticate<'l0, 'l1, 'l2, 'l3, 'l4, 'f>(
        &'l0 self,
        plugin: &'l1 str,
        user: &'l2 [u8],
        salt: &'l3 [u8],
        response: &'l4 [u8],
    ) -> BoxFuture<'f, bool>
    where
        'l0: 'f,
        'l1: 'f,
        'l2: 'f,
        'l3: 'f,
        'l4: 'f,
        Self: 'f,
    {
        let ok = self.check_login(plugin, user, salt, response);
        Box::pin(async move { ok })
    }

    fn on_prepare<'a, 'f>(&'a mut self, _: &'a str, info: StatementMetaWriter<'a, Out>) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        let message = "prepared statements are not supported by the admin interface; send the command as text";
        Box::pin(info.error(ErrorKind::ER_UNSUPPORTED_PS, message.as_bytes()))
    }

    fn on_execute<'a, 'f>(
        &'a mut self,
        _: u32,
        _: ParamParser<'a>,
        results: QueryResultWriter<'a, Out>,
    ) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(results.error(ErrorKind::ER_UNKNOWN_STMT_HANDLER, b"Unknown prepared statement handler".as_slice()))
    }

    fn on_close<'a, 'f>(&'a mut self, _: u32) -> BoxFuture<'f, ()>
    where
        Out: 'f,
        'a: 'f,
        Self: 'f,
    {
        Box::pin(async {})
    }

    fn on_query<'a, 'f>(
        &'a mut self,
        sql: &'a str,
        results: QueryResultWriter<'a, Out>,
    ) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        let outcome = self.run(sql);
        Box::pin(respond(results, outcome))
    }

    fn on_init<'a, 'f>(&'a mut self, db: &'a str, writer: InitWriter<'a, Out>) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        let message = format!("Unknown database '{db}' (the admin interface has no databases)");
        Box::pin(async move { writer.error(ErrorKind::ER_BAD_DB_ERROR, message.as_bytes()).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_offers_tls_and_nothing_else_changes() {
        let caps = rwsplit_wire::auth::supported_capabilities();
        let plain = rwsplit_wire::auth::greeting("5.7.0-opensrv", 9, &new_scramble(), 33, caps).to_vec();
        let offered = offer_tls(&plain).expect("a HandshakeV10");
        let parsed = rwsplit_wire::auth::parse_greeting(&offered).expect("still a greeting");
        assert_eq!(parsed.capabilities, caps | CapabilityFlags::CLIENT_SSL);
        assert_eq!((parsed.version.as_str(), parsed.connection_id), ("5.7.0-opensrv", 9));
        assert_eq!(plain.iter().zip(&offered).filter(|(a, b)| a != b).count(), 1, "one byte differs");
        assert!(offer_tls(&[9, 0]).is_none() && offer_tls(&[10, b'x']).is_none() && offer_tls(&[]).is_none());
    }

    #[test]
    fn relay_refuses_unknown_commands_and_rewrites_login_refusal() {
        assert_eq!(command_action(&[com::QUERY, b'x']), Action::Forward);
        assert_eq!(command_action(&[com::PING]), Action::Forward);
        assert_eq!(command_action(&[com::STMT_CLOSE, 1, 0, 0, 0]), Action::Swallow);
        assert!(matches!(command_action(&[com::STATISTICS]), Action::Refuse(1047, ..)));
        assert!(matches!(command_action(&[com::STMT_EXECUTE]), Action::Refuse(1243, ..)));
        assert!(matches!(command_action(&[]), Action::Refuse(1047, ..)));
        assert!(matches!(command_action(&[com::QUERY, 0xff, b'x']), Action::Refuse(1300, ..)));

        let mut gate = Gate::default();
        let response = gate.handshake_response(Frame::new(1, &[0x00, 0x02, 0x00, 0x00, 9, 9]));
        assert_eq!(response.payload(), &[0x00, 0x02, 0x80, 0x00, 9, 9], "CLIENT_SESSION_TRACK added");
        let again = gate.handshake_response(Frame::new(3, &[0x00, 0x02, 0x00, 0x00]));
        assert_eq!(again.payload(), &[0x00, 0x02, 0x00, 0x00], "only the first client frame");
        let denial = Mutex::new(Some("Access denied for user 'x'@'127.0.0.1' (using password: YES)".to_string()));
        assert_eq!(gate.client_frame(&Frame::new(0, &[com::STATISTICS])), Action::Forward, "not logged in yet");
        let refusal = gate.server_frame(Frame::new(2, &err_payload(1698, b"28000", "Authenticate failed")), &denial);
        let err = rwsplit_wire::packet::ErrPacket::parse(refusal.payload()).unwrap();
        assert_eq!((err.code, refusal.seq()), (1045, 2));
        assert!(err.message.starts_with("Access denied for user 'x'"), "{err}");

        let mut gate = Gate::default();
        let ok = rwsplit_wire::packet::ok_payload(0, 0, rwsplit_wire::StatusFlags::empty(), 0);
        gate.server_frame(Frame::new(2, &ok), &Mutex::new(None));
        assert!(gate.logged_in);
        assert!(matches!(gate.client_frame(&Frame::new(0, &[com::STATISTICS])), Action::Refuse(1047, ..)));
        assert_eq!(gate.client_frame(&Frame::new(0, b"\x03SHOW POOLS")), Action::Forward);
    }
}
