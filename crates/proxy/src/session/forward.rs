//! Backends for a session, and streaming responses to the client.
//!
//! A command goes to the decided side; the connection is taken from the pool or opened, brought up to date
//! with the session's state history, and the response is streamed back frame by frame (never decoded).
//! A failure before any byte of the response reached the client is retried once for a read outside a
//! transaction (on another replica or the master); otherwise the client gets a MySQL error, or, when part
//! of the response was already sent, the session is closed (nothing else would be honest).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rwsplit_wire::frame;
use rwsplit_wire::packet::{com, ErrPacket, PrepareOk};
use rwsplit_wire::walk::{Expect, Step, Walker};
use rwsplit_wire::StatusFlags;

use super::route::{Decision, Side};
use super::Session;
use crate::backend::BackendConn;
use crate::config::WhenNoReplica;
use crate::error::{BackendError, ClientError, SessionError};
use crate::io::{Wire, FLUSH_AT};

/// How a forwarded command ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The backend that answered.
    pub side: Side,
    /// Final status flags (None after ERR).
    pub status: Option<StatusFlags>,
    /// The response was an ERR packet.
    pub error: bool,
    /// For COM_STMT_PREPARE: the backend's prepare-OK (before the statement id was rewritten).
    pub prepared: Option<PrepareOk>,
}

/// What to send to the chosen backend.
pub enum Command {
    /// A client command, sent as is.
    Plain(Bytes),
    /// COM_STMT_PREPARE: the prepare-OK's statement id is replaced by `id`, the id the client will use.
    Prepare {
        /// The client's packet.
        payload: Bytes,
        /// The proxy's statement id.
        id: u32,
    },
    /// A command on prepared statement `id`: its id is mapped to the chosen backend's (preparing it there
    /// first if needed).
    Stmt {
        /// The proxy's statement id.
        id: u32,
        /// The client's packet.
        payload: Bytes,
    },
}

/// Why streaming a response stopped.
enum Fail {
    /// The client failed: the session ends.
    Client(ClientError),
    /// The backend failed; `sent` tells whether part of the response already reached the client.
    Backend { error: BackendError, sent: bool },
}

/// Why a backend could not be made ready for a command.
enum AttachError {
    /// Could not connect or log in.
    Unavailable(BackendError),
    /// Replaying session state failed with this server error.
    Replay(ErrPacket),
}

impl Session {
    pub(super) fn conn_mut(&mut self, side: Side) -> Option<&mut BackendConn> {
        match side {
            Side::Master => self.master.as_mut(),
            Side::Replica => self.replica.as_mut(),
        }
    }

    /// Closes the session's connection on `side` (after a failure): it is not pooled.
    pub(super) fn drop_conn(&mut self, side: Side) {
        match side {
            Side::Master => self.master = None,
            Side::Replica => {
                if let Some(conn) = self.replica.take() {
                    self.shared.topology.load().mark_down_addr(&conn.key.addr);
                }
            }
        }
        if self.state.trx == Some(side) {
            // The server rolled the transaction back when the connection died.
            self.state.trx = None;
        }
    }

    /// Runs a client command where `decision` says and streams the response. `Ok(None)` when the command
    /// could not run; the client was then sent an error packet and the session goes on.
    pub(super) async fn run_routed(
        &mut self,
        decision: Decision,
        payload: Bytes,
        expect: Expect,
    ) -> Result<Option<Outcome>, SessionError> {
        self.run_command(decision, expect, Command::Plain(payload)).await
    }

    /// Runs a command on the decided side (attaching and syncing a backend), with one retry of a read that
    /// failed before the client saw any of its response.
    pub(super) async fn run_command(
        &mut self,
        decision: Decision,
        expect: Expect,
        command: Command,
    ) -> Result<Option<Outcome>, SessionError> {
        let mut retried = false;
        let started = std::time::Instant::now();
        loop {
            let Some(side) = self.attach(decision.side).await? else {
                return Ok(None);
            };
            self.publish(false);
            let (payload, prepare_id) = match &command {
                Command::Plain(p) => (p.clone(), None),
                Command::Prepare { payload, id } => (payload.clone(), Some(*id)),
                Command::Stmt { id, payload } => match self.stmt_payload(side, *id, payload).await? {
                    Some(p) => (p, None),
                    None => return Ok(None),
                },
            };
            let start_seq = self.client_seq;
            let Some(conn) = (match side {
                Side::Master => self.master.as_mut(),
                Side::Replica => self.replica.as_mut(),
            }) else {
                return Ok(None);
            };
            // A read on a replica is abandoned as soon as the health checker finds the replica unreachable
            // (e.g. hung): retried elsewhere if the client has seen nothing of the response yet.
            // Only a plain autocommit read leaves no session state behind (see pool.rs).
            let plain_read =
                decision.reason == "read" && matches!(&command, Command::Plain(p) if p.first() == Some(&com::QUERY));
            conn.dirty |= !plain_read;
            let watch = (side == Side::Replica).then(|| Arc::clone(&conn.key.addr));
            let shared = Arc::clone(&self.shared);
            let sent = AtomicBool::new(false);
            let pumping = pump(conn, &mut self.client, &mut self.client_seq, &payload, expect, prepare_id, &sent);
            let result = match watch {
                Some(addr) => tokio::select! {
                    r = pumping => r,
                    _ = shared.unreachable(&addr) => Err(Fail::Backend { error: BackendError::Unreachable, sent: sent.load(Ordering::Relaxed) }),
                },
                None => pumping.await,
            };
            match result {
                Ok(mut outcome) => {
                    outcome.side = side;
                    self.state.observe(side, outcome.status);
                    let reason = if decision.side == Side::Replica && side == Side::Master {
                        "no_replica_available"
                    } else {
                        decision.reason
                    };
                    if let Some(conn) = self.conn_mut(side) {
                        let addr = Arc::clone(&conn.key.addr);
                        let elapsed = started.elapsed().as_secs_f64();
                        self.shared.metrics.query(&mut self.counters, side == Side::Replica, &addr, reason, elapsed);
                    }
                    tracing::trace!(?side, reason = decision.reason, error = outcome.error, "routed");
                    return Ok(Some(outcome));
                }
                Err(Fail::Client(e)) => return Err(e.into()),
                Err(Fail::Backend { error, sent }) => {
                    self.shared.metrics.error(crate::metrics::ErrorKind::BackendQuery);
                    let addr = self.conn_mut(side).map(|c| c.key.addr.to_string()).unwrap_or_default();
                    tracing::warn!(backend = %addr, %error, sent, "backend failed during a command");
                    self.drop_conn(side);
                    if sent {
                        return Err(SessionError::Backend { addr, source: error });
                    }
                    self.client.discard_pending();
                    self.client_seq = start_seq;
                    let read = side == Side::Replica && self.state.trx.is_none();
                    if read && !retried {
                        retried = true;
                        continue;
                    }
                    let msg = format!("rwsplit: lost connection to backend {addr} during query: {error}");
                    self.send_err(2013, b"HY000", &msg).await?;
                    return Ok(None);
                }
            }
        }
    }

    /// Makes sure the session has a ready connection for `side` and returns the side actually used: a read
    /// for which no replica qualifies goes to the master (or fails, with `when_no_replica: error`). `None`
    /// when the client was sent an error.
    pub(super) async fn attach(&mut self, side: Side) -> Result<Option<Side>, SessionError> {
        if side == Side::Replica {
            if self.attach_replica().await {
                return Ok(Some(Side::Replica));
            }
            let config = self.shared.config.load();
            if config.health.as_ref().is_some_and(|h| h.when_no_replica == WhenNoReplica::Error) {
                drop(config);
                let msg = "rwsplit: no replica can serve reads now (health.when_no_replica: error)";
                self.send_err(1105, b"HY000", msg).await?;
                return Ok(None);
            }
            tracing::debug!("no replica available; reading from the master");
        }
        let master_addr = {
            let topology = self.shared.topology.load();
            let health = self.shared.health.load();
            match health.writer(&topology.master) {
                Ok(addr) => Arc::clone(addr),
                Err(why) => {
                    drop((topology, health));
                    self.send_err(1105, b"HY000", &format!("rwsplit: {why}")).await?;
                    return Ok(None);
                }
            }
        };
        // Writes follow the writer: a connection to a former writer is let go outside a transaction.
        if self.master.as_ref().is_some_and(|c| c.key.addr != master_addr) && self.state.trx != Some(Side::Master) {
            self.release(Side::Master);
        }
        if self.master.is_none() {
            match self.acquire(&master_addr).await {
                Ok(conn) => self.master = Some(conn),
                Err(e) => {
                    self.report_unavailable(&master_addr, AttachError::Unavailable(e)).await?;
                    return Ok(None);
                }
            }
        }
        match self.sync_history(Side::Master).await {
            Ok(()) => Ok(Some(Side::Master)),
            Err(e) => {
                if matches!(e, AttachError::Unavailable(_)) {
                    self.master = None;
                }
                self.report_unavailable(&master_addr, e).await?;
                Ok(None)
            }
        }
    }

    /// Gives the connection on `side` back to the pool (it is healthy, just no longer wanted here).
    pub(super) fn release(&mut self, side: Side) {
        let conn = match side {
            Side::Master => self.master.take(),
            Side::Replica => self.replica.take(),
        };
        if let Some(conn) = conn {
            let creds = self.login.credentials(&conn.key.addr);
            self.shared.pool.release(conn, creds, self.shared.config.load().pool.max_idle);
        }
    }

    /// Attaches a replica, trying qualified replicas in weighted order. The session keeps its replica
    /// (sticky) while it qualifies; a read-only transaction keeps it until the transaction ends even if its
    /// lag rises (the transaction is a consistent snapshot), unless it becomes unreachable.
    async fn attach_replica(&mut self) -> bool {
        if let Some(conn) = &self.replica {
            let health = self.shared.health.load();
            let addr = &conn.key.addr;
            let in_its_trx = self.state.trx == Some(Side::Replica);
            // A replica removed by a reload, taken offline by hand, or no longer qualifying is left at the
            // next safe point (outside its transaction).
            let configured = self.shared.topology.load().has_replica(addr);
            if !health.reachable(addr) {
                drop(health);
                self.drop_conn(Side::Replica);
            } else if !in_its_trx && (!health.serves_reads(addr) || !configured) {
                drop(health);
                tracing::debug!("the session's replica no longer qualifies; choosing another");
                self.release(Side::Replica);
            }
        }
        if self.replica.is_none() {
            let topology = self.shared.topology.load_full();
            let shared = Arc::clone(&self.shared);
            for i in topology.replica_candidates() {
                let addr = Arc::clone(&topology.replicas[i].addr);
                if !shared.health.load().serves_reads(&addr) {
                    continue;
                }
                let acquired = tokio::select! {
                    r = self.acquire(&addr) => r,
                    _ = shared.unreachable(&addr) => Err(BackendError::Unreachable),
                };
                match acquired {
                    Ok(conn) => {
                        self.replica = Some(conn);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(backend = %addr, error = %e, "replica unavailable; trying another");
                        if matches!(e, BackendError::Connect(_) | BackendError::Unreachable) {
                            topology.mark_down(i);
                        }
                    }
                }
            }
        }
        if self.replica.is_none() {
            return false;
        }
        match self.sync_history(Side::Replica).await {
            Ok(()) => true,
            Err(AttachError::Replay(err)) => {
                // E.g. USE of a database not yet replicated: this replica cannot serve the session now.
                tracing::debug!(%err, "replica cannot replay session state; using the master");
                self.replica = None;
                false
            }
            Err(AttachError::Unavailable(e)) => {
                tracing::warn!(error = %e, "replica failed while restoring session state");
                self.drop_conn(Side::Replica);
                false
            }
        }
    }

    async fn report_unavailable(&mut self, addr: &str, e: AttachError) -> Result<(), ClientError> {
        match e {
            AttachError::Replay(err) | AttachError::Unavailable(BackendError::Login(err)) => {
                self.send_err(err.code, &err.state, &err.message).await
            }
            AttachError::Unavailable(e) => {
                tracing::warn!(backend = %addr, error = %e, "master unavailable");
                self.send_err(2003, b"HY000", &format!("rwsplit: master {addr} is unavailable: {e}")).await
            }
        }
    }

    /// A connection for this session's login to `addr`: from the pool, or a new one.
    async fn acquire(&mut self, addr: &Arc<str>) -> Result<BackendConn, BackendError> {
        let creds = self.login.credentials(addr);
        if let Some(conn) = self.shared.pool.take(&creds.key) {
            return Ok(conn);
        }
        let timeout = self.shared.config.load().connect_timeout;
        let (conn, (version, caps)) = BackendConn::connect(&creds, timeout).await.inspect_err(|_| {
            self.shared.metrics.error(crate::metrics::ErrorKind::BackendConnect);
        })?;
        self.shared.learn_backend(&version, caps);
        Ok(conn)
    }

    /// Replays the session-state commands the connection on `side` has not seen yet.
    async fn sync_history(&mut self, side: Side) -> Result<(), AttachError> {
        let Some(conn) = (match side {
            Side::Master => self.master.as_mut(),
            Side::Replica => self.replica.as_mut(),
        }) else {
            return Ok(());
        };
        while let Some(entry) = self.history.get(conn.history_applied) {
            let expect = if entry.first() == Some(&com::QUERY) { Expect::ResultSets } else { Expect::Single };
            match conn.run(entry, expect).await {
                Ok(Ok(_)) => conn.history_applied += 1,
                Ok(Err(err)) => return Err(AttachError::Replay(err)),
                Err(e) => return Err(AttachError::Unavailable(e)),
            }
        }
        Ok(())
    }

    /// Runs a command on one side with no retry and no routing decision of its own (COM_PING, COM_STATISTICS).
    pub(super) async fn simple_on(&mut self, side: Side, payload: Bytes, expect: Expect) -> Result<(), SessionError> {
        self.run_routed(Decision { side, reason: "command" }, payload, expect).await.map(|_| ())
    }
}

/// Sends `payload` to the backend and streams its response to the client, renumbering frames into the
/// client's sequence. For a prepare, the statement id in the prepare-OK is replaced by `prepare_id`.
///
/// Frames are walked and renumbered in place in the backend connection's read buffer and written to the
/// client straight from it, with no copy and no allocation per frame: one write per response that arrived
/// whole, otherwise a write whenever the rest has not arrived yet or [`FLUSH_AT`] bytes are waiting (the
/// bound on what a session buffers, plus one frame). Only whole frames are forwarded, so the walker sees
/// every packet's header.
async fn pump(
    conn: &mut BackendConn,
    client: &mut Wire,
    client_seq: &mut u8,
    payload: &[u8],
    expect: Expect,
    prepare_id: Option<u32>,
    sent_flag: &AtomicBool,
) -> Result<Outcome, Fail> {
    // Whether part of the response reached the client is `sent_flag`, set by `forward_walked`.
    let backend = |error: BackendError| Fail::Backend { error, sent: sent_flag.load(Ordering::Relaxed) };
    conn.clean = false;
    conn.wire.send(0, payload).await.map_err(|e| backend(e.into()))?;
    let mut walker = Walker::new(expect, conn.deprecate_eof());
    let mut prepared = None;
    // Bytes at the start of the read buffer that were walked and renumbered but not yet forwarded.
    let mut walked = 0;
    loop {
        let buf = conn.wire.buffered_mut();
        let mut step = Step::More;
        let mut missing = 0;
        while let Some(len) = frame::frame_len(&buf[walked..]) {
            let Some(bytes) = buf.get_mut(walked..walked + len) else {
                missing = walked + len - buf.len();
                break;
            };
            let (header, payload) = bytes.split_at_mut(frame::HEADER_LEN);
            step = walker.feed_payload(payload).map_err(|e| backend(e.into()))?;
            if let (Some(id), None) = (prepare_id, prepared) {
                prepared = PrepareOk::parse(payload);
                if prepared.is_some() {
                    payload[1..5].copy_from_slice(&id.to_le_bytes());
                }
            }
            header[frame::SEQ_OFFSET] = *client_seq;
            *client_seq = client_seq.wrapping_add(1);
            walked += len;
            if step != Step::More {
                break;
            }
        }
        if step != Step::More || walked >= FLUSH_AT {
            forward_walked(conn, client, std::mem::take(&mut walked), sent_flag).await?;
        }
        match step {
            Step::More => {}
            Step::LocalInfile => {
                stream_local_infile(conn, client, client_seq).await?;
                walker.after_local_infile();
                continue;
            }
            Step::Done { status, error } => {
                conn.clean = true;
                return Ok(Outcome { side: Side::Master, status, error, prepared });
            }
        }
        // More of the response is needed. If it has not arrived yet, what was walked goes to the client now
        // (the client reads while the server still writes); if it has, it is batched into the next write.
        let mut arrived = conn.wire.try_read_more(missing);
        if walked > 0 && matches!(arrived, Ok(None)) {
            forward_walked(conn, client, std::mem::take(&mut walked), sent_flag).await?;
        }
        if matches!(arrived, Ok(None)) {
            arrived = conn.wire.read_more(missing).await.map(Some);
        }
        match arrived {
            Ok(Some(0)) => return Err(backend(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())),
            Ok(_) => {}
            Err(e) => return Err(backend(e.into())),
        }
    }
}

/// Writes the first `walked` bytes of the backend's read buffer (whole, renumbered frames) to the client.
async fn forward_walked(
    conn: &mut BackendConn,
    client: &mut Wire,
    walked: usize,
    sent: &AtomicBool,
) -> Result<(), Fail> {
    sent.store(true, Ordering::Relaxed);
    client.write_through(&conn.wire.buffered_mut()[..walked]).await.map_err(|e| Fail::Client(e.into()))?;
    conn.wire.consume(walked);
    Ok(())
}

/// Forwards the client's LOCAL INFILE data (frames up to an empty one) to the backend. The proxy sends each
/// command in as many frames as the client did, so the backend's next sequence id equals the client's.
async fn stream_local_infile(conn: &mut BackendConn, client: &mut Wire, client_seq: &mut u8) -> Result<(), Fail> {
    let mut backend_seq = *client_seq;
    loop {
        let mut frame = client.expect_frame().await.map_err(|e| Fail::Client(e.into()))?;
        *client_seq = frame.seq().wrapping_add(1);
        let last = frame.payload().is_empty();
        frame.set_seq(backend_seq);
        backend_seq = backend_seq.wrapping_add(1);
        conn.wire.queue(&frame);
        if last || conn.wire.pending() >= FLUSH_AT {
            conn.wire.flush().await.map_err(|e| Fail::Backend { error: e.into(), sent: true })?;
        }
        if last {
            return Ok(());
        }
    }
}
