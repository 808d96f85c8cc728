//! Running a command on a backend and streaming its response to the client.
//!
//! [`Session::run_command`] takes a routing decision through four steps: attach a connection for the side
//! (pool or new, stale ones noticed, history replayed: `attach.rs`), map the payload (prepared statement
//! ids, lazy prepare: `stmt.rs`), [`pump`] the response to the client, and on success hand the outcome
//! back for the session to apply. A backend failure is answered by the pure policy in `policy.rs`.
//!
//! The pump walks the response frame by frame in the backend connection's read buffer, renumbers each
//! frame into the client's sequence in place, rewrites status packets to what the client would have got
//! from the server directly (session-state entries it does not track, see `track.rs`), and writes the frames
//! to the client straight from that buffer: no copy and no allocation per frame.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rwsplit_wire::frame::{self, HEADER_LEN, SEQ_OFFSET};
use rwsplit_wire::packet::{self, OkPacket, PrepareOk, EOF_STATUS_OFFSET, SESSION_STATE_CHANGED};
use rwsplit_wire::walk::{Expect, Packet, Step, Walker};

use super::consistency::{Need, ReadNeed};
use super::legs::Side;
use super::policy::{self, Failure, Phase, Policy};
use super::route::{Route, RouteReason};
use super::track::{ClientTracking, Report};
use super::Session;
use crate::backend::BackendConn;
use crate::error::{BackendError, ClientError, SessionError};
use crate::io::{Wire, FLUSH_AT};
use crate::metrics::ConsistentRead;
use crate::position::Position;

/// How a forwarded command ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The backend that answered.
    pub side: Side,
    /// The response ended with an ERR packet.
    pub error: bool,
    /// For COM_STMT_PREPARE: the backend's prepare-OK (before the statement id was rewritten).
    pub prepared: Option<PrepareOk>,
    /// What the response reported about session state (status flags, session tracking).
    pub report: Report,
    /// The final OK packet, held back (see [`RunOptions::hold_final_ok`]), as the backend sent it.
    pub held_ok: Option<Vec<u8>>,
    /// The response reported warnings (`SHOW WARNINGS` must run where it ran).
    pub warned: bool,
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

/// How a command's response is handled.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// The kind of response.
    pub expect: Expect,
    /// The statement is a `LOAD DATA LOCAL`: a LOCAL INFILE request may go to the client. Any other request
    /// (a server asking for a file unasked) is answered by the proxy with an empty file.
    pub local_infile: bool,
    /// Keep the final OK packet back instead of forwarding it (it is sent after the session has learned
    /// what the command changed: the client's new trackers apply to it already).
    pub hold_final_ok: bool,
}

impl RunOptions {
    /// A response of kind `expect`, forwarded as it comes.
    pub const fn new(expect: Expect) -> RunOptions {
        RunOptions { expect, local_infile: false, hold_final_ok: false }
    }
}

/// What the pump needs to know about the command beyond its bytes.
#[derive(Debug, Clone, Copy)]
pub struct PumpOptions<'a> {
    /// The backend the command goes to.
    pub side: Side,
    /// How the response is handled.
    pub run: RunOptions,
    /// For COM_STMT_PREPARE: the statement id the client gets.
    pub prepare_id: Option<u32>,
    /// What the client tracks.
    pub tracking: &'a ClientTracking,
}

/// Why streaming a response stopped.
#[derive(Debug)]
pub enum Fail {
    /// The client failed: the session ends.
    Client(ClientError),
    /// The backend failed; `sent` tells whether part of the response already reached the client.
    Backend {
        /// What happened.
        error: BackendError,
        /// Part of the response reached the client.
        sent: bool,
    },
}

/// The result of trying to run a command: its outcome, or a failure already answered.
pub(super) type Ran = Result<Option<Outcome>, SessionError>;

impl Session {
    /// Runs a client command where `route` says and streams the response. `Ok(None)` when the command could
    /// not run and the client was sent an error (the session goes on); `Err` ends the session.
    pub(super) async fn run_routed(&mut self, route: Route, payload: Bytes, expect: Expect) -> Ran {
        self.run_command(route, RunOptions::new(expect), Command::Plain(payload)).await
    }

    /// Runs a command on the decided side, applying the failure policy: a plain read that failed before the
    /// client saw anything is retried once elsewhere; a command that never reached the server runs on a
    /// fresh connection. A read on a replica that must first wait for the session's writes sends the wait
    /// and the read in one round trip; if the wait times out the read's answer is dropped and the read runs
    /// on the master.
    pub(super) async fn run_command(&mut self, route: Route, run: RunOptions, command: Command) -> Ran {
        let Route { side: mut wanted, reason, plain_read } = route;
        // A plain read may run anywhere, any number of times: a text query, or an EXECUTE without a cursor
        // (the statement is prepared lazily on whichever replica runs it).
        let plain_read = plain_read
            && match &command {
                Command::Plain(p) => p.first() == Some(&packet::com::QUERY),
                Command::Stmt { payload, .. } => {
                    payload.first() == Some(&packet::com::STMT_EXECUTE) && payload.get(5) == Some(&0)
                }
                Command::Prepare { .. } => false,
            };
        let started = std::time::Instant::now();
        let start_seq = self.client_seq;
        let mut retried = false;
        let read = if wanted == Side::Replica {
            self.resolve_writes();
            let stay = matches!(reason, RouteReason::Previous | RouteReason::Cursor | RouteReason::Statement);
            let need = if stay { Need::default() } else { self.read_need(self.command_text(&command).as_deref()) };
            let no_wait = reason == RouteReason::ReadOnlyTransaction;
            ReadNeed { need, needs_replica_state: !plain_read, no_wait, stay }
        } else {
            ReadNeed::default()
        };
        let for_read = wanted == Side::Replica;
        let mut timed_out = false;
        loop {
            let Some(ready) = self.attach(wanted, &read).await? else {
                return Ok(None);
            };
            let side = ready.side;
            let reason = match side {
                Side::Master if for_read && (ready.behind || timed_out) => RouteReason::Consistency,
                Side::Master if for_read => RouteReason::NoReplica,
                _ => reason,
            };
            let (payload, prepare_id) = match self.payload_for(side, &command).await? {
                Some(Ok(p)) => p,
                Some(Err(error)) => {
                    // The connection failed while the statement was prepared on it: the command was not sent.
                    match self.command_failed(side, error, Phase::NotSent, plain_read, retried, start_seq).await? {
                        true => {
                            retried = true;
                            continue;
                        }
                        false => return Ok(None),
                    }
                }
                None => return Ok(None),
            };
            self.publish_backends();
            let shared = Arc::clone(&self.shared);
            let timeout = shared.config.load().consistency_timeout;
            let conn = self.legs.conn_mut(side).ok_or(SessionError::Internal("attached leg vanished"))?;
            // Only a plain autocommit read leaves no session state behind (see pool.rs).
            conn.touched |= !plain_read;
            let addr = Arc::clone(&conn.key.addr);
            let topology = shared.topology.load_full();
            let _inflight = if side == Side::Replica { topology.start_request(&addr) } else { None };
            // A read on a replica is abandoned as soon as the health checker finds the replica unreachable.
            let watch = || async {
                if side == Side::Replica {
                    shared.health.unreachable(&addr).await
                } else {
                    std::future::pending().await
                }
            };
            let mut send = Some(&payload[..]);
            if let Some(position) = ready.wait.as_ref().filter(|_| side == Side::Replica) {
                let waited = std::time::Instant::now();
                let reached = tokio::select! {
                    r = wait_then_send(conn, position, timeout, &payload, run.expect) => r,
                    _ = watch() => Err(BackendError::Unreachable),
                };
                shared.metrics.consistency_wait(waited.elapsed().as_secs_f64());
                match reached {
                    Ok(true) => {
                        conn.reached.get_or_insert_with(|| position.clone()).merge(position);
                        shared.metrics.consistent_read(ConsistentRead::Waited);
                        send = None;
                    }
                    Ok(false) => {
                        shared.metrics.consistent_read(ConsistentRead::TimedOut);
                        tracing::debug!(backend = %addr, %position, "replica did not catch up in time; reading from the master");
                        if !self.legs.held(Side::Replica).is_empty() {
                            // Only this replica has the state the read needs: it cannot move.
                            let msg = format!(
                                "rwsplit: replica {addr} holds this session's state but has not applied its writes \
                                 within consistency_timeout ({timeout:?})"
                            );
                            self.send_err(1105, b"HY000", &msg).await?;
                            return Ok(None);
                        }
                        wanted = Side::Master;
                        timed_out = true;
                        continue;
                    }
                    Err(error) => {
                        let phase = Phase::Sent;
                        match self.command_failed(side, error, phase, plain_read, retried, start_seq).await? {
                            true => {
                                retried = true;
                                continue;
                            }
                            false => return Ok(None),
                        }
                    }
                }
            } else if !read.need.is_none() && side == Side::Replica {
                shared.metrics.consistent_read(ConsistentRead::CaughtUp);
            } else if ready.behind {
                shared.metrics.consistent_read(ConsistentRead::Master);
            }
            let thread = conn.thread_id;
            let _deadline = shared.config.load().query_timeout.map(|limit| {
                let config = shared.config.load_full();
                let creds = self.login.credentials(&addr, &config);
                QueryDeadline::start(creds, thread, limit, config.connect_timeout)
            });
            let conn = self.legs.conn_mut(side).ok_or(SessionError::Internal("attached leg vanished"))?;
            let options = PumpOptions { side, run, prepare_id, tracking: &self.tracking };
            let result = pump(conn, &mut self.client, &mut self.client_seq, send, options, watch()).await;
            match result {
                Ok(outcome) => {
                    // What the next statement may read back from this connection (SHOW WARNINGS). A count for
                    // FOUND_ROWS() needs SQL_CALC_FOUND_ROWS, which the router sends to the master (touched).
                    if let Some(conn) = self.legs.conn_mut(side) {
                        conn.diagnostics = outcome.error || outcome.warned;
                    }
                    let elapsed = started.elapsed().as_secs_f64();
                    let replica = side == Side::Replica;
                    self.shared.metrics.query(&mut self.counters, replica, &addr, reason.as_str(), elapsed);
                    tracing::trace!(?side, reason = reason.as_str(), error = outcome.error, "routed");
                    return Ok(Some(outcome));
                }
                Err(Fail::Client(e)) => return Err(e.into()),
                Err(Fail::Backend { error, sent }) => {
                    let phase = if sent { Phase::Forwarded } else { Phase::Sent };
                    match self.command_failed(side, error, phase, plain_read, retried, start_seq).await? {
                        true => retried = true,
                        false => return Ok(None),
                    }
                }
            }
        }
    }

    /// The SQL text of a command, for its hints: a query's, or a prepared statement's.
    fn command_text(&self, command: &Command) -> Option<Bytes> {
        let payload = match command {
            Command::Plain(p) if p.first() == Some(&packet::com::QUERY) => p,
            Command::Plain(_) => return None,
            Command::Prepare { payload, .. } => payload,
            Command::Stmt { id, .. } => &self.stmts.get(id)?.prepare,
        };
        Some(payload.slice(1..))
    }

    /// Applies the failure policy to a backend that failed under the current command. `Ok(true)`: run the
    /// command again; `Ok(false)`: the client got an error and the session goes on; `Err`: the session ends
    /// (after the client got an error, when one is due).
    async fn command_failed(
        &mut self,
        side: Side,
        error: BackendError,
        phase: Phase,
        plain_read: bool,
        retried: bool,
        start_seq: u8,
    ) -> Result<bool, SessionError> {
        self.shared.metrics.error(crate::metrics::ErrorKind::BackendQuery);
        let addr = self.legs.conn(side).map(|c| c.key.addr.to_string()).unwrap_or_default();
        tracing::warn!(backend = %addr, %error, ?phase, "backend failed during a command");
        let lost = self.lose(side);
        let failure = Failure { side, phase, plain_read, retried, lost_state: !lost.is_empty() };
        let policy = policy::on_failure(failure);
        if policy != Policy::Close {
            // Nothing of this command's response reached the client: start its answer over.
            self.client.discard_pending();
            self.client_seq = start_seq;
        }
        match policy {
            Policy::Retry => Ok(true),
            Policy::Close => Err(SessionError::Backend { addr, source: error }),
            Policy::ErrorContinue => {
                let msg = format!("rwsplit: backend {addr} is unavailable: {error}");
                let (code, state) = crate::error::code::UNAVAILABLE;
                self.send_err(code, state, &msg).await?;
                Ok(false)
            }
            Policy::ErrorClose => self.lost_connection(&addr, &lost, error).await.map(|_| false),
        }
    }

    /// Answers a command whose backend connection died after the command was sent: error 1927
    /// ([`crate::error::code::LOST`]), then the session ends (the command may have run; a direct connection
    /// would be gone too).
    pub(super) async fn lost_connection(&mut self, addr: &str, lost: &super::legs::Held, error: BackendError) -> Ran {
        let what = if lost.is_empty() { String::new() } else { format!("; lost with it: {}", lost.describe()) };
        let msg = format!("Lost connection to server during query (rwsplit: backend {addr}: {error}{what})");
        let (code, state) = crate::error::code::LOST;
        self.send_err(code, state, &msg).await?;
        Err(SessionError::Backend { addr: addr.to_string(), source: error })
    }
}

/// Sends `payload` (unless it was sent already: `None`) to the backend and streams its response to the
/// client, renumbering frames into the
/// client's sequence and rewriting status packets for the client. `watch` completing abandons the response
/// while the pump waits for the backend (a hung replica).
///
/// Frames are walked and renumbered in place in the backend connection's read buffer and written to the
/// client straight from it: one write per response that arrived whole, otherwise a write whenever the rest
/// has not arrived yet or [`FLUSH_AT`] bytes are waiting (the bound on what a session buffers, plus one
/// frame). Only whole frames are forwarded, so the walker sees every packet's header.
pub async fn pump(
    conn: &mut BackendConn,
    client: &mut Wire,
    client_seq: &mut u8,
    payload: Option<&[u8]>,
    options: PumpOptions<'_>,
    watch: impl Future<Output = ()>,
) -> Result<Outcome, Fail> {
    tokio::pin!(watch);
    let mut sent = false;
    conn.mid_response = true;
    if let Some(payload) = payload {
        conn.wire.send(0, payload).await.map_err(|e| Fail::Backend { error: e.into(), sent })?;
    }
    let mut walker = Walker::new(options.run.expect, conn.deprecate_eof());
    let mut out = Outcome {
        side: options.side,
        error: false,
        prepared: None,
        report: Report::default(),
        held_ok: None,
        warned: false,
    };
    let mut scratch = BytesMut::new();
    // Bytes at the start of the read buffer that were walked and renumbered but not yet forwarded.
    let mut walked = 0;
    loop {
        let mut step = Step::More;
        let mut missing = 0;
        loop {
            let buf = conn.wire.buffered_mut();
            let Some(len) = frame::frame_len(&buf[walked..]) else { break };
            let Some(bytes) = buf.get_mut(walked..walked + len) else {
                missing = walked + len - buf.len();
                break;
            };
            let (header, payload) = bytes.split_at_mut(HEADER_LEN);
            step = walker.feed_payload(payload).map_err(|e| Fail::Backend { error: e.into(), sent })?;
            if let (Some(id), None) = (options.prepare_id, out.prepared) {
                out.prepared = PrepareOk::parse(payload);
                if out.prepared.is_some() {
                    payload[1..5].copy_from_slice(&id.to_le_bytes());
                }
            }
            if options.run.hold_final_ok && matches!(step, Step::Done { .. }) && walker.packet() == Packet::Ok {
                // Kept back: the session sends it (as the client sees it) once it knows what the command
                // changed.
                if let Some(ok) = OkPacket::parse(payload, conn.tracking) {
                    report_ok(&ok, &mut out.report);
                }
                out.held_ok = Some(payload.to_vec());
                conn.wire.splice(walked, len, &[]);
                break;
            }
            if step == Step::LocalInfile && !options.run.local_infile {
                // A request nobody asked for: it never reaches the client; the server gets an empty file.
                let request_seq = header[SEQ_OFFSET];
                conn.wire.splice(walked, len, &[]);
                refuse_local_infile(conn, request_seq, sent).await?;
                walker.after_local_infile();
                step = Step::More;
                continue;
            }
            header[SEQ_OFFSET] = *client_seq;
            *client_seq = client_seq.wrapping_add(1);
            let rewritten = match walker.packet() {
                Packet::Ok => status_packet(payload, conn.tracking, options.tracking, &mut out.report, &mut scratch),
                Packet::Eof => {
                    eof_packet(payload, options.tracking, &mut out.report);
                    false
                }
                Packet::Err | Packet::Data => false,
            };
            let len = if rewritten {
                conn.wire.splice(walked + HEADER_LEN, len - HEADER_LEN, &scratch);
                let n = scratch.len();
                conn.wire.buffered_mut()[walked..walked + 3].copy_from_slice(&(n as u32).to_le_bytes()[..3]);
                HEADER_LEN + n
            } else {
                len
            };
            walked += len;
            if step != Step::More {
                break;
            }
        }
        if step != Step::More || walked >= FLUSH_AT {
            forward_walked(conn, client, std::mem::take(&mut walked), &mut sent).await?;
        }
        match step {
            Step::More => {}
            Step::LocalInfile => {
                stream_local_infile(conn, client, client_seq).await?;
                walker.after_local_infile();
                continue;
            }
            Step::Done { status, error } => {
                conn.mid_response = false;
                out.error = error;
                out.warned = walker.warned();
                out.report.status = status;
                return Ok(out);
            }
        }
        // More of the response is needed. If it has not arrived yet, what was walked goes to the client now
        // (the client reads while the server still writes); if it has, it is batched into the next write.
        let mut arrived = conn.wire.try_read_more(missing);
        if walked > 0 && matches!(arrived, Ok(None)) {
            forward_walked(conn, client, std::mem::take(&mut walked), &mut sent).await?;
        }
        if matches!(arrived, Ok(None)) {
            arrived = tokio::select! {
                biased;
                r = conn.wire.read_more(missing) => r.map(Some),
                _ = &mut watch => return Err(Fail::Backend { error: BackendError::Unreachable, sent }),
            };
        }
        match arrived {
            Ok(Some(0)) => {
                let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                return Err(Fail::Backend { error: eof.into(), sent });
            }
            Ok(_) => {}
            Err(e) => return Err(Fail::Backend { error: e.into(), sent }),
        }
    }
}

/// Sends a wait for `position` (at most `timeout`) and then `payload`, in one write, and reads the wait's
/// answer: whether the replica reached the position in time. When it did not, the command's response
/// (walked as `expect`) is read and dropped: it may predate the position.
async fn wait_then_send(
    conn: &mut BackendConn,
    position: &Position,
    timeout: std::time::Duration,
    payload: &[u8],
    expect: Expect,
) -> Result<bool, BackendError> {
    let wait = [&[packet::com::QUERY][..], position.wait_query(timeout).as_bytes()].concat();
    conn.wire.queue_payload(0, &wait);
    conn.wire.queue_payload(0, payload);
    conn.mid_response = true;
    conn.wire.flush().await?;
    let answer = conn.read_response_frames(Expect::ResultSets).await?;
    let value = answer.ok().and_then(|frames| crate::backend::first_row(&frames, 1, conn.deprecate_eof()));
    let reached = position.wait_reached(value.as_ref().and_then(|v| v.first()).map(Vec::as_slice));
    // The command's response is still to come.
    conn.mid_response = true;
    if !reached {
        conn.drain(expect).await?;
    }
    Ok(reached)
}

/// Answers an unasked LOCAL INFILE request with an empty file (the request's sequence id + 1).
async fn refuse_local_infile(conn: &mut BackendConn, request_seq: u8, sent: bool) -> Result<(), Fail> {
    tracing::warn!(backend = %conn.key.addr, "a backend asked for a LOCAL INFILE the client did not request; sent none");
    conn.wire.send(request_seq.wrapping_add(1), &[]).await.map_err(|e| Fail::Backend { error: e.into(), sent })?;
    Ok(())
}

/// Reads an OK packet's status and session state into `report`; when the client would see it differently,
/// writes its version into `scratch` and returns true.
pub(super) fn status_packet(
    payload: &[u8],
    backend_tracks: bool,
    client: &ClientTracking,
    report: &mut Report,
    scratch: &mut BytesMut,
) -> bool {
    let Some(ok) = OkPacket::parse(payload, backend_tracks) else { return false };
    report_ok(&ok, report);
    client_ok(&ok, payload, client, scratch)
}

/// Reads an OK packet's status and session state into `report`.
fn report_ok(ok: &OkPacket<'_>, report: &mut Report) {
    report.status = Some(ok.status);
    if ok.status.bits() & SESSION_STATE_CHANGED != 0 {
        for change in ok.changes() {
            report.add(&change);
        }
    }
}

/// When the client would see an OK packet differently (it tracks less than the backend reports), writes
/// its version into `scratch` and returns true.
pub(super) fn client_ok(ok: &OkPacket<'_>, payload: &[u8], client: &ClientTracking, scratch: &mut BytesMut) -> bool {
    if ok.status.bits() & SESSION_STATE_CHANGED == 0 {
        return false;
    }
    scratch.clear();
    ok.write(scratch, client.enabled(), |c| client.keeps(c));
    scratch[..] != payload[..]
}

/// Reads an EOF packet's status into `report`, and clears `SERVER_SESSION_STATE_CHANGED` in it unless the
/// client tracks something a result-set statement changes (EOF packets carry no entries to filter: the
/// server sets the flag there for the trackers of the session, which for the proxy are all of them).
fn eof_packet(payload: &mut [u8], client: &ClientTracking, report: &mut Report) {
    let Some(status) = packet::eof_status(payload) else { return };
    report.status = Some(status);
    if !client.flags_result_changes() && status.bits() & SESSION_STATE_CHANGED != 0 {
        let cleared = status.bits() & !SESSION_STATE_CHANGED;
        payload[EOF_STATUS_OFFSET..EOF_STATUS_OFFSET + 2].copy_from_slice(&cleared.to_le_bytes());
    }
}

/// Writes the first `walked` bytes of the backend's read buffer (whole, renumbered frames) to the client.
async fn forward_walked(conn: &mut BackendConn, client: &mut Wire, walked: usize, sent: &mut bool) -> Result<(), Fail> {
    *sent = true;
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

/// `query_timeout` for one command: after `limit`, `KILL QUERY` for its backend thread, over a connection of
/// the session's own login (the right a client has to kill its own queries). The server then ends the
/// statement with its own error (1317 "Query execution was interrupted", or 1927 for a killed connection),
/// which reaches the client like any response. Cancelled when the command ends first (dropped).
struct QueryDeadline(tokio::task::JoinHandle<()>);

impl QueryDeadline {
    fn start(
        creds: crate::backend::Credentials,
        thread: u32,
        limit: std::time::Duration,
        connect: std::time::Duration,
    ) -> Self {
        QueryDeadline(tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let addr = std::sync::Arc::clone(&creds.key.addr);
            tracing::info!(backend = %addr, thread, ?limit, "query_timeout reached: killing the query");
            let stmt = format!("\x03KILL QUERY {thread}");
            let killed = match crate::backend::BackendConn::connect(&creds, connect).await {
                Ok(crate::backend::Connected { mut conn, .. }) => conn.run(stmt.as_bytes(), Expect::ResultSets).await,
                Err(e) => Err(e),
            };
            if !matches!(killed, Ok(Ok(_))) {
                tracing::warn!(backend = %addr, thread, "query_timeout: KILL QUERY failed: {:?}", killed.map(|r| r.err()));
            }
        }))
    }
}

impl Drop for QueryDeadline {
    fn drop(&mut self) {
        self.0.abort();
    }
}
