//! A client session: login, then one command at a time, each routed to the master or the session's replica.
//!
//! - [`login`]: the handshake, the password and database checks, COM_CHANGE_USER.
//! - [`command`]: COM_QUERY, session-state commands, COM_PING, COM_FIELD_LIST, COM_RESET_CONNECTION.
//! - [`route`]: where a statement goes (typed reasons), from the verdict, the session's state and its legs.
//! - [`consistency`]: what a read on a replica must see (the session's writes, every acknowledged write,
//!   hints), from the write positions the master reports.
//! - [`choose`]: which replica serves a read (what it must see, outstanding requests, weights).
//! - [`legs`]: the backend connections and what each holds that cannot be rebuilt.
//! - [`attach`]: getting a ready connection for a side (pool, replica choice, idle-close detection, replay).
//! - [`forward`]: running a command and streaming its response (the pump).
//! - [`policy`]: what a backend failure means for the command and the session (a pure table).
//! - [`apply`]: what a finished command changes in the session's state, from its verdict and the server's
//!   report.
//! - [`history`]: the replayable session-state commands, last value per variable.
//! - [`track`]: session tracking: what the servers report, and the client's own view of it.
//! - [`rewrite`]: `CONNECTION_ID()` and `@@socket`, answered as a direct connection would.
//! - [`stmt`]: prepared statements: the proxy owns the ids the client sees and maps them per backend.
//! - [`kill`]: KILL by the connection ids rwsplit hands out.
//!
//! Session lifecycle:
//! ```text
//! Handshake --login ok (database checked)--> Command loop
//! Command loop --COM_QUIT / client gone / shutdown / KILL CONNECTION--> release legs to the pool, end
//! Command loop --COM_RESET_CONNECTION / COM_CHANGE_USER--> legs released, state cleared, Command loop
//! Command loop --a backend lost state the session held (policy: error, close)--> end
//! Command loop --a leg holding state is closed by its server while idle--> end
//! ```

mod apply;
mod attach;
mod choose;
mod command;
mod consistency;
mod forward;
mod history;
mod kill;
mod legs;
mod login;
mod policy;
mod rewrite;
mod route;
mod stmt;
mod track;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rwsplit_classify::Dialect;
use rwsplit_wire::packet::{self, com};
use rwsplit_wire::walk::Expect;
use rwsplit_wire::StatusFlags;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{ClientError, SessionError};
use crate::io::Wire;
use crate::registry::SessionEntry;
use crate::Shared;

pub use legs::Side;
pub use login::MAX_LOGIN_PACKET;
// Parsers of client packets, public for the fuzz targets (fuzz/).
pub use login::{parse_change_user, ChangeUser};
pub use stmt::with_param_types;

/// One client connection and everything the proxy tracks for it.
pub struct Session {
    /// Connection id announced to the client: what `CONNECTION_ID()` returns and KILL takes.
    id: u32,
    /// Cancelled by shutdown or by KILL CONNECTION of this session.
    cancel: CancellationToken,
    /// When the session started.
    started: std::time::SystemTime,
    /// This session's cache of query counters (resolved once per label set, then atomic increments).
    counters: crate::metrics::QueryCounters,
    /// The client socket.
    client: Wire,
    /// Config, topology, pool and registry shared by all sessions.
    shared: Arc<Shared>,
    /// The idle connections of this session's event loop.
    pool: Arc<crate::pool::Pool>,
    /// Who logged in, with what options; the template for backend logins.
    login: login::Login,
    /// The backend connections and what each holds.
    legs: legs::Legs,
    /// Session-state commands replayed on every backend connection before it runs anything.
    history: history::History,
    /// Routing state from the servers' responses (autocommit, pinning, previous backend).
    state: route::State,
    /// What the client asked the servers to track: status packets are rewritten to it.
    tracking: track::ClientTracking,
    /// How the session's statement text is read (sql_mode quoting rules, multi-byte client charset).
    dialect: Dialect,
    /// Prepared statements by the id the client knows.
    stmts: HashMap<u32, stmt::Stmt>,
    /// Next statement id handed to the client.
    next_stmt_id: u32,
    /// Sequence id of the next frame to the client within the current command.
    client_seq: u8,
    /// A replica that recently could not take the session's state (skipped for a while).
    replica_refused: Option<attach::Refused>,
    /// The current command ends the session once answered (`COMMIT RELEASE`, KILL of itself).
    close_after: bool,
    /// The replication position covering every write of this session (what its reads must see under
    /// `consistency: session`).
    written: Option<Arc<crate::position::Position>>,
    /// When the master acknowledged this session's last write whose position it did not report (binary log
    /// positions), until a probe of the master resolves it into `written`.
    unresolved_at: Option<std::time::Instant>,
    /// This session's replica round-robin.
    rotation: choose::Rotation,
}

/// Runs one client connection to completion. Errors end only this session.
pub async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    pool: Arc<crate::pool::Pool>,
    shutdown: CancellationToken,
) {
    let id = shared.registry.next_connection_id();
    let peer_ip = peer.ip();
    let peer = peer.to_string();
    let span = tracing::info_span!("session", id, %peer, user = tracing::field::Empty);
    async move {
        let mut client = Wire::new(stream, crate::io::CLIENT_READ_CHUNK);
        let (total, per_peer) = {
            let config = shared.config.load();
            (config.max_client_connections, config.max_client_connections_per_peer)
        };
        let _ticket = match shared.admission.admit(peer_ip, total, per_peer) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                tracing::warn!(reason = refusal.label(), "client connection refused");
                shared.metrics.connection_refused(refusal.label());
                let _ = client.send(0, &packet::err_payload(1040, b"08004", &refusal.message())).await;
                return;
            }
        };
        let hello = match login::handshake(&mut client, &shared, id).await {
            Ok(hello) => hello,
            Err(e) => return login::failed(&shared, e),
        };
        tracing::Span::current().record("user", tracing::field::debug(&hello.login.user));
        let cancel = shutdown.child_token();
        let mut session = Session {
            id,
            cancel: cancel.clone(),
            started: std::time::SystemTime::now(),
            counters: crate::metrics::QueryCounters::default(),
            client,
            tracking: track::ClientTracking::new(false, &crate::backend::ServerDefaults::default()),
            dialect: Dialect::default(),
            shared,
            pool,
            login: hello.login,
            legs: legs::Legs::default(),
            history: history::History::default(),
            state: route::State::default(),
            stmts: HashMap::new(),
            next_stmt_id: 1,
            client_seq: hello.seq,
            replica_refused: None,
            close_after: false,
            written: None,
            unresolved_at: None,
            rotation: choose::Rotation::new(id as usize),
        };
        session.start_view();
        session.register(&peer);
        let result = match session.finish_login().await {
            Ok(true) => session.command_loop(&cancel).await,
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => tracing::debug!("session closed"),
            Err(e) => {
                tracing::info!(error = %e, "session ended");
                let kind = match e {
                    SessionError::Client(ClientError::Io(_)) => None,
                    SessionError::Client(_) => Some(crate::metrics::ErrorKind::ClientProtocol),
                    SessionError::Backend { .. } => Some(crate::metrics::ErrorKind::BackendQuery),
                    SessionError::Internal(_) => {
                        tracing::error!(error = %e, "session ended by a proxy bug");
                        None
                    }
                };
                if let Some(kind) = kind {
                    session.shared.metrics.error(kind);
                }
            }
        }
        session.shared.registry.forget(id);
        session.release_all();
    }
    .instrument(span)
    .await
}

impl Session {
    /// The command loop. While a leg holds state only it has, its socket is watched: a server that closes
    /// it (wait_timeout, KILL, restart) ends the session at once, as a direct connection would.
    async fn command_loop(&mut self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        // One cancellation future for the whole session: registering a waiter per command costs two locks.
        // Polled first (biased: no random pick per command), so a client that pipelines commands cannot
        // starve shutdown or KILL.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            // Before waiting for the client: the login's master connection too.
            self.multiplex();
            let limit = self.packet_limit();
            let watched = self.watched_legs();
            let payload = tokio::select! {
                biased;
                _ = &mut cancelled => return Ok(()),
                side = held_leg_readable(&self.legs, watched) => {
                    if let Err(lost) = self.check_idle(side) {
                        // As with a direct connection: the client finds its connection closed.
                        tracing::info!(lost = lost.held.describe(), "ending the session: its backend closed a connection that held state");
                        return Err(SessionError::Backend { addr: lost.addr.to_string(), source: lost.error });
                    }
                    continue;
                }
                p = read_command(&mut self.client, limit, &mut self.client_seq) => p,
            };
            let payload = match payload {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(ClientError::TooLarge(n)) => {
                    let msg = "Got a packet bigger than 'max_allowed_packet' bytes";
                    self.send_err(1153, b"08S01", msg).await.ok();
                    return Err(ClientError::TooLarge(n).into());
                }
                Err(e) => return Err(e.into()),
            };
            let Some(&cmd) = payload.first() else {
                return Err(ClientError::Protocol("empty command packet").into());
            };
            match cmd {
                com::QUIT => return Ok(()),
                com::QUERY => self.com_query(payload).await?,
                com::INIT_DB | com::SET_OPTION => self.session_command(payload, None, Expect::Single).await?,
                com::PING => self.com_ping(payload).await?,
                com::FIELD_LIST => self.com_field_list(payload).await?,
                com::STATISTICS => self.com_statistics(payload).await?,
                com::STMT_PREPARE => self.com_stmt_prepare(payload).await?,
                com::STMT_EXECUTE => self.com_stmt_execute(payload).await?,
                com::STMT_SEND_LONG_DATA => self.com_stmt_send_long_data(payload).await?,
                com::STMT_CLOSE => self.com_stmt_close(payload).await?,
                com::STMT_RESET => self.com_stmt_reset(payload).await?,
                com::STMT_FETCH => self.com_stmt_fetch(payload).await?,
                com::RESET_CONNECTION => self.com_reset_connection().await?,
                com::CHANGE_USER => self.com_change_user(payload).await?,
                _ => self.send_err(1047, b"08S01", &format!("Unknown command {cmd:#04x}")).await?,
            }
            if self.close_after {
                return Ok(());
            }
        }
    }

    /// With `pool.max_backend_connections` (backend connections are scarce), gives back between commands
    /// every connection of the session that is clean and holds nothing ([`BackendConn::is_clean`]): the
    /// next statement takes one from the pool (or the one another session just gave back), so idle clients
    /// hold no backend connection and a capped pool serves many more clients than it has connections.
    /// A session with session state (a SET, USE, prepared statements), an open transaction, locks or
    /// temporary tables, or whose last statement left warnings or an error, keeps its legs as before.
    fn multiplex(&mut self) {
        if self.shared.config.load().pool.max_backend_connections == 0 {
            return;
        }
        for side in [Side::Replica, Side::Master] {
            if self.legs.conn(side).is_some_and(|c| c.is_clean()) {
                self.release(side);
            }
        }
        // Spares hold nothing of the session (diagnostics there are older than its last statement's): they
        // all go back, reset first if they are not clean.
        for conn in self.legs.drain_spares(|_| false) {
            self.pool_release(conn);
        }
    }

    /// The largest client packet accepted: `max_allowed_packet` from the config, else the master's own.
    fn packet_limit(&self) -> usize {
        if let Some(limit) = self.shared.config.load().max_allowed_packet {
            return limit;
        }
        self.shared.servers.defaults().map_or(crate::config::MAX_PACKET_LIMIT, |d| d.max_allowed_packet)
    }

    /// The legs whose server closing them would lose state: [master, replica].
    fn watched_legs(&self) -> [bool; 2] {
        [Side::Master, Side::Replica].map(|s| self.legs.conn(s).is_some() && !self.legs.held(s).is_empty())
    }

    /// Sends an ERR packet to the client as the (whole) response to the current command.
    async fn send_err(&mut self, code: u16, state: &[u8; 5], message: &str) -> Result<(), ClientError> {
        let p = packet::err_payload(code, state, message);
        self.client_seq = self.client.send(self.client_seq, &p).await?;
        Ok(())
    }

    /// Sends an OK packet produced by the proxy itself (only for commands the proxy fully owns).
    async fn send_ok(&mut self) -> Result<(), ClientError> {
        let mut status = StatusFlags::empty();
        if self.state.autocommit {
            status |= StatusFlags::SERVER_STATUS_AUTOCOMMIT;
        }
        let p = packet::ok_payload(0, 0, status, 0);
        self.client_seq = self.client.send(self.client_seq, &p).await?;
        Ok(())
    }

    /// Registers the session for KILL and the admin interface.
    fn register(&mut self, peer: &str) {
        let entry = SessionEntry {
            user: self.login.user.clone(),
            peer: peer.to_string(),
            started: self.started,
            backends: [None, None],
            cancel: self.cancel.clone(),
        };
        self.shared.registry.publish(self.id, entry);
    }

    /// Publishes the session's backend threads to the registry if they changed.
    fn publish_backends(&mut self) {
        if let Some(threads) = self.legs.threads_if_changed() {
            self.shared.registry.publish_backends(self.id, threads);
        }
    }

    /// Releases every backend connection: to the pool when healthy (the pool resets them), closed otherwise.
    fn release_all(&mut self) {
        for conn in self.legs.take_all() {
            self.pool_release(conn);
        }
        self.publish_backends();
    }

    /// Starts the client's view of the session over, as just logged in: how its text is read (the login's
    /// character set, default quoting rules, the server's version) and what it tracks (the server's
    /// defaults).
    fn start_view(&mut self) {
        let version = self.shared.servers.greeting().map(|(version, _)| version);
        self.dialect = login::dialect_of(self.login.collation, version.as_deref());
        let defaults = self.shared.servers.defaults().map(|d| (*d).clone()).unwrap_or_default();
        let session_track = self.login.capabilities.contains(rwsplit_wire::CapabilityFlags::CLIENT_SESSION_TRACK);
        self.tracking = track::ClientTracking::new(session_track, &defaults);
    }

    /// Forgets all session state and releases the backends (COM_RESET_CONNECTION, COM_CHANGE_USER).
    fn reset_state(&mut self) {
        self.release_all();
        self.state = route::State::default();
        self.stmts.clear();
        self.replica_refused = None;
    }
}

/// Completes with the side of a watched leg whose socket became readable (the server sent something unasked
/// or closed it); never, when none is watched.
async fn held_leg_readable(legs: &legs::Legs, watched: [bool; 2]) -> Side {
    let readable = |side: Side, on: bool| {
        let conn = legs.conn(side).filter(|_| on);
        async move {
            match conn {
                Some(c) => {
                    let _ = c.wire.readable().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        _ = readable(Side::Master, watched[0]) => Side::Master,
        _ = readable(Side::Replica, watched[1]) => Side::Replica,
    }
}

/// Reads one command (a logical packet, reassembled from continuation frames) of at most `limit` bytes.
/// `None` on a clean close. Sets `client_seq` to the sequence id the response starts with.
async fn read_command(client: &mut Wire, limit: usize, client_seq: &mut u8) -> Result<Option<Bytes>, ClientError> {
    let Some(first) = client.read_frame().await? else {
        return Ok(None);
    };
    if first.seq() != 0 {
        return Err(ClientError::Protocol("command packet with a non-zero sequence id"));
    }
    let mut seq = first.seq();
    let mut payload = if first.is_continued() { BytesMut::from(first.payload()) } else { BytesMut::new() };
    let single = (!first.is_continued()).then(|| first.into_payload());
    if let Some(p) = single {
        if p.len() > limit {
            *client_seq = 1;
            return Err(ClientError::TooLarge(p.len()));
        }
        *client_seq = client.compressed_seq().unwrap_or(1);
        return Ok(Some(p));
    }
    loop {
        let frame = client.expect_frame().await?;
        seq = seq.wrapping_add(1);
        if frame.seq() != seq {
            return Err(ClientError::Protocol("out-of-order packet sequence"));
        }
        if payload.len() + frame.payload().len() > limit {
            *client_seq = seq.wrapping_add(1);
            return Err(ClientError::TooLarge(payload.len() + frame.payload().len()));
        }
        payload.extend_from_slice(frame.payload());
        if !frame.is_continued() {
            *client_seq = client.compressed_seq().unwrap_or(seq.wrapping_add(1));
            return Ok(Some(payload.freeze()));
        }
    }
}
