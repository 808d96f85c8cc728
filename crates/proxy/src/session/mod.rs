//! A client session: login, then one command at a time, each routed to the master or the session's replica.
//!
//! - [`login`]: the handshake and password check (also COM_CHANGE_USER).
//! - [`route`]: where a statement goes, and the session state that decides it (transactions, locks,
//!   temporary tables, pinned sessions), updated from the servers' status flags after every response.
//! - [`forward`]: backend acquisition (pool, replica fallback), session-state replay, and streaming a
//!   response to the client frame by frame.
//! - [`stmt`]: prepared statements: the proxy owns the ids the client sees and maps them per backend.
//!
//! Session state lifecycle:
//! ```text
//! Handshake --login ok--> Command loop --COM_QUIT / client gone / shutdown--> Release backends to the pool
//!                         Command loop --COM_RESET_CONNECTION / COM_CHANGE_USER--> release, clear state, loop
//! ```

mod forward;
mod kill;
mod login;
mod route;
mod stmt;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rwsplit_wire::packet::{self, com};
use rwsplit_wire::walk::Expect;
use rwsplit_wire::StatusFlags;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::BackendConn;
use crate::error::{ClientError, SessionError};
use crate::io::Wire;
use crate::Shared;

pub use route::Side;

/// Most session-state commands kept for replay; past this the session is pinned to the master.
pub const MAX_HISTORY: usize = 256;

/// One client connection and everything the proxy tracks for it.
pub struct Session {
    /// Connection id announced to the client (the id clients pass to KILL).
    id: u32,
    /// Cancelled by shutdown or by KILL CONNECTION of this session.
    cancel: CancellationToken,
    /// Backend threads last published to the session registry (for KILL).
    published: [Option<u32>; 2],
    /// The client's address (for the admin interface).
    peer: String,
    /// When the session started.
    started: std::time::SystemTime,
    /// This session's cache of query counters (resolved once per label set, then atomic increments).
    counters: crate::metrics::QueryCounters,
    /// The client socket.
    client: Wire,
    /// Config, topology and pool shared by all sessions.
    shared: Arc<Shared>,
    /// Who logged in, with what options; the template for backend logins.
    login: login::Login,
    /// Connection to the master, opened on first need.
    master: Option<BackendConn>,
    /// Connection to this session's replica (index into the topology), opened on first read.
    replica: Option<BackendConn>,
    /// Session-state commands (SET, USE, COM_INIT_DB, COM_SET_OPTION) in order, replayed on every backend
    /// connection before it runs anything, so all of them see the same session state.
    history: Vec<Bytes>,
    /// Routing state (transactions, locks, temporary tables, pins).
    state: route::State,
    /// Prepared statements by the id the client knows.
    stmts: HashMap<u32, stmt::Stmt>,
    /// Next statement id handed to the client.
    next_stmt_id: u32,
    /// Sequence id of the next frame to the client within the current command.
    client_seq: u8,
}

/// Runs one client connection to completion. Errors end only this session.
pub async fn serve(stream: TcpStream, peer: std::net::SocketAddr, shared: Arc<Shared>, shutdown: CancellationToken) {
    let id = shared.next_connection_id();
    let peer = peer.to_string();
    let span = tracing::info_span!("session", id, %peer, user = tracing::field::Empty);
    async move {
        let mut client = Wire::new(stream, crate::io::CLIENT_READ_CHUNK);
        let login = match login::handshake(&mut client, &shared, id).await {
            Ok(login) => login,
            Err(e) => {
                tracing::info!(error = %e, "login failed");
                let kind = match e {
                    ClientError::AuthFailed(_) => crate::metrics::ErrorKind::AuthFailure,
                    _ => crate::metrics::ErrorKind::ClientProtocol,
                };
                shared.metrics.error(kind);
                return;
            }
        };
        tracing::Span::current().record("user", login.user.as_str());
        tracing::debug!("logged in");
        let cancel = shutdown.child_token();
        let mut session = Session {
            id,
            cancel: cancel.clone(),
            published: [None, None],
            peer: peer.clone(),
            started: std::time::SystemTime::now(),
            counters: crate::metrics::QueryCounters::default(),
            client,
            shared,
            login,
            master: None,
            replica: None,
            history: Vec::new(),
            state: route::State::default(),
            stmts: HashMap::new(),
            next_stmt_id: 1,
            client_seq: 0,
        };
        session.publish(true);
        match session.command_loop(&cancel).await {
            Ok(()) => tracing::debug!("session closed"),
            Err(e) => {
                tracing::info!(error = %e, "session ended");
                let kind = match e {
                    SessionError::Client(ClientError::Io(_)) => None,
                    SessionError::Client(_) => Some(crate::metrics::ErrorKind::ClientProtocol),
                    SessionError::Backend { .. } => Some(crate::metrics::ErrorKind::BackendQuery),
                };
                if let Some(kind) = kind {
                    session.shared.metrics.error(kind);
                }
            }
        }
        session.shared.forget_session(id);
        session.release_backends();
    }
    .instrument(span)
    .await
}

impl Session {
    async fn command_loop(&mut self, shutdown: &CancellationToken) -> Result<(), SessionError> {
        // One cancellation future for the whole session: registering a waiter per command costs two locks.
        // Polled first (biased: no random pick per command), so a client that pipelines commands cannot
        // starve shutdown or KILL.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            let payload = tokio::select! {
                biased;
                _ = &mut cancelled => return Ok(()),
                p = self.read_command() => p?,
            };
            let Some(payload) = payload else {
                return Ok(());
            };
            let Some(&cmd) = payload.first() else {
                return Err(ClientError::Protocol("empty command packet").into());
            };
            match cmd {
                com::QUIT => return Ok(()),
                com::QUERY => self.com_query(payload).await?,
                com::INIT_DB | com::SET_OPTION => self.session_command(payload, Expect::Single).await?,
                com::PING => self.com_ping(payload).await?,
                com::FIELD_LIST => self.com_field_list(payload).await?,
                com::STATISTICS => self.simple_on(Side::Master, payload, Expect::AnyOne).await?,
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
        }
    }

    /// Reads one command (a logical packet, reassembled from continuation frames). `None` on a clean close.
    async fn read_command(&mut self) -> Result<Option<Bytes>, ClientError> {
        let Some(first) = self.client.read_frame().await? else {
            return Ok(None);
        };
        if first.seq() != 0 {
            return Err(ClientError::Protocol("command packet with a non-zero sequence id"));
        }
        let mut seq = first.seq();
        if !first.is_continued() {
            self.client_seq = 1;
            return Ok(Some(first.into_payload()));
        }
        let limit = self.shared.config.load().max_allowed_packet;
        let mut payload = BytesMut::from(first.payload());
        loop {
            let frame = self.client.expect_frame().await?;
            seq = seq.wrapping_add(1);
            if frame.seq() != seq {
                return Err(ClientError::Protocol("out-of-order packet sequence"));
            }
            if payload.len() + frame.payload().len() > limit {
                self.client_seq = seq.wrapping_add(1);
                let msg = "Got a packet bigger than 'max_allowed_packet' bytes";
                self.send_err(1153, b"08S01", msg).await.ok();
                return Err(ClientError::TooLarge(payload.len() + frame.payload().len()));
            }
            payload.extend_from_slice(frame.payload());
            if !frame.is_continued() {
                self.client_seq = seq.wrapping_add(1);
                return Ok(Some(payload.freeze()));
            }
        }
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

    /// COM_PING: answered by the backend the session is using, or by the proxy itself when the session has
    /// no backend connection yet (the proxy is what the client is connected to).
    async fn com_ping(&mut self, payload: Bytes) -> Result<(), SessionError> {
        if self.master.is_some() {
            self.simple_on(Side::Master, payload, Expect::Single).await
        } else if self.replica.is_some() {
            self.simple_on(Side::Replica, payload, Expect::Single).await
        } else {
            Ok(self.send_ok().await?)
        }
    }

    /// COM_FIELD_LIST (deprecated, still used by some clients): a read of one table's columns.
    async fn com_field_list(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let table = payload[1..].split(|b| *b == 0).next().unwrap_or_default();
        let table = String::from_utf8_lossy(table).to_lowercase();
        let decision = match self.state.trx {
            Some(side) => route::Decision { side, reason: "transaction" },
            None if !self.state.autocommit || self.state.locked_tables => {
                route::Decision { side: Side::Master, reason: "transaction" }
            }
            None => self.state.route_read(&[table], false),
        };
        self.run_routed(decision, payload, Expect::FieldList).await.map(|_| ())
    }

    /// COM_RESET_CONNECTION: the session's backends go back to the pool (which resets them) and the
    /// session starts over as if just logged in.
    async fn com_reset_connection(&mut self) -> Result<(), SessionError> {
        self.reset_state();
        Ok(self.send_ok().await?)
    }

    /// Releases backends and forgets all session state (reset or change of user).
    fn reset_state(&mut self) {
        self.release_backends();
        // The released connections now belong to the pool: KILL must no longer reach them through us.
        self.publish(true);
        self.history.clear();
        self.state = route::State::default();
        self.stmts.clear();
    }

    /// Publishes the session's backend threads to the registry if they changed (or `force`).
    pub(super) fn publish(&mut self, force: bool) {
        let threads = [self.master.as_ref().map(|c| c.thread_id), self.replica.as_ref().map(|c| c.thread_id)];
        if !force && threads == self.published {
            return;
        }
        self.published = threads;
        let entry = crate::SessionEntry {
            user: self.login.user.clone(),
            peer: self.peer.clone(),
            started: self.started,
            backends: [
                self.master.as_ref().map(|c| (c.key.addr.clone(), c.thread_id)),
                self.replica.as_ref().map(|c| (c.key.addr.clone(), c.thread_id)),
            ],
            cancel: self.cancel.clone(),
        };
        self.shared.publish_session(self.id, entry);
    }

    /// Hands the session's backend connections back to the pool.
    fn release_backends(&mut self) {
        self.release(Side::Master);
        self.release(Side::Replica);
    }
}

/// Whether the SQL text starts (after whitespace) with `word`, case-insensitively.
fn starts_with_word(sql: &[u8], word: &str) -> bool {
    let trimmed = sql.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &sql[i..]);
    trimmed.len() >= word.len() && trimmed[..word.len()].eq_ignore_ascii_case(word.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn starts_with_word_ignores_case_and_space() {
        assert!(super::starts_with_word(b"  unlock tables", "UNLOCK"));
        assert!(!super::starts_with_word(b"lock tables t read", "UNLOCK"));
    }
}
