//! Attaching backends: a ready connection for the side a command goes to.
//!
//! - The master: whichever server takes writes now (the configured master, or the detected writer). A
//!   connection to a former writer is let go at the next point outside a transaction.
//! - A replica: the session's (sticky) while it qualifies, else the next qualified one in weighted order; a
//!   READ ONLY transaction keeps its replica until it ends, even if its lag rises, unless it becomes
//!   unreachable. A replica that cannot take the session's state (e.g. `USE` of a database not replicated
//!   yet) is skipped until the history changes or [`REPLAY_RETRY`] passes (doubling while it keeps
//!   refusing), so the session does not open, replay on and drop a connection per read.
//! - A master that refuses the session's state on a new connection, or a replica that fails or refuses it
//!   while holding what only it had, ends the session after an error: its state cannot be rebuilt.
//! - A connection that sat idle is checked before it is used: one the server closed meanwhile (`wait_timeout`,
//!   KILL, restart) is replaced by a new one if it held nothing, and ends the session (error 1927, as a
//!   direct connection would see) if it held state.
//! - Every connection is brought up to date with the session's history before it runs anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rwsplit_wire::packet::ErrPacket;
use rwsplit_wire::walk::Expect;

use super::choose::Candidate;
use super::consistency::{lag_upper_bound, Need, ReadNeed};
use super::legs::{Held, Side};
use super::policy::{self, Failure, Phase, Policy};
use super::Session;
use crate::backend::{BackendConn, Connected};
use crate::config::WhenNoReplica;
use crate::error::{BackendError, SessionError};
use crate::position::Position;

/// How long a replica that could not replay the session's state is first skipped (unless the history
/// changes); the wait doubles while it keeps refusing, up to [`REPLAY_RETRY_MAX`].
pub const REPLAY_RETRY: Duration = Duration::from_secs(1);

/// The longest a replica that keeps refusing the session's state is skipped.
pub const REPLAY_RETRY_MAX: Duration = Duration::from_secs(60);

/// A replica that could not take the session's state, and when.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Which replica.
    pub addr: Arc<str>,
    /// The history's last sequence number at the time: a newer history may replay.
    pub seq: u64,
    /// When.
    pub at: Instant,
    /// How long it is skipped from then.
    pub wait: Duration,
}

/// Why a connection could not be brought up to date.
enum SyncError {
    /// The server refused a history entry (its error).
    Replay(ErrPacket),
    /// The connection failed.
    Backend(BackendError),
}

/// A connection ready for a command.
#[derive(Debug)]
pub(super) struct Ready {
    /// The side it is on.
    pub side: Side,
    /// On a replica: the position it must wait for in the same round trip as the read.
    pub wait: Option<Position>,
    /// A read went to the master because no replica could give it what it must see (rather than because
    /// none serves reads at all).
    pub behind: bool,
}

/// What attaching a replica for a read found.
enum ForRead {
    /// The replica leg is ready (waiting for this position first, if any).
    Ready(Option<Position>),
    /// No replica serves reads now.
    NoReplica,
    /// Replicas serve reads, but none can give this one what it must see.
    Behind,
}

/// The result of attaching a side.
#[derive(Debug)]
pub(super) enum Attach {
    /// A ready connection.
    Ready(Ready),
    /// No connection: the command gets this error; the session goes on.
    Refused(ErrPacket),
    /// A connection holding state only it had is gone: the session must end (after the client is told,
    /// when it is waiting for an answer).
    Lost(Box<LostLeg>),
}

/// A leg lost with state, and how.
#[derive(Debug)]
pub(super) struct LostLeg {
    /// Which backend.
    pub addr: Arc<str>,
    /// What it held.
    pub held: Held,
    /// The server closed it while it was idle ("gone away"), rather than failing under a command.
    pub idle: Option<Option<ErrPacket>>,
    /// What failed.
    pub error: BackendError,
}

/// An error packet of the proxy's own.
pub(super) fn err(code: u16, message: String) -> ErrPacket {
    ErrPacket { code, state: *b"HY000", message }
}

/// The error for a command that could not run because a backend is unreachable
/// ([`crate::error::code::UNAVAILABLE`]).
pub(super) fn unavailable(message: String) -> ErrPacket {
    let (code, state) = crate::error::code::UNAVAILABLE;
    ErrPacket { code, state: *state, message }
}

impl Session {
    /// Attaches `wanted` and reports a failure to the client: `Ok(Some(ready))` when ready, `Ok(None)` when
    /// the client was sent an error (the session goes on), `Err` when the session must end.
    pub(super) async fn attach(&mut self, wanted: Side, read: &ReadNeed) -> Result<Option<Ready>, SessionError> {
        match self.attach_side(wanted, read).await {
            Attach::Ready(ready) => Ok(Some(ready)),
            Attach::Refused(e) => {
                self.send_err(e.code, &e.state, &e.message).await?;
                Ok(None)
            }
            Attach::Lost(lost) => self.end_lost(lost).await.map(|_| None),
        }
    }

    /// Tells the client a leg holding state is gone, and ends the session.
    pub(super) async fn end_lost(&mut self, lost: Box<LostLeg>) -> Result<(), SessionError> {
        let what = lost.held.describe();
        let addr = lost.addr.to_string();
        match lost.idle {
            Some(said) => {
                let said = said.map(|e| format!(": {e}")).unwrap_or_default();
                let msg = format!(
                    "MySQL server has gone away (rwsplit: backend {addr} closed the session's connection{said}; \
                     lost with it: {what})"
                );
                let (code, state) = crate::error::code::LOST;
                self.send_err(code, state, &msg).await?;
                Err(SessionError::Backend { addr, source: lost.error })
            }
            None => self.lost_connection(&addr, &lost.held, lost.error).await.map(|_| ()),
        }
    }

    /// Makes sure the session has a ready connection for `wanted` and says where: a read for which no
    /// replica qualifies goes to the master (or fails, with `when_no_replica: error`).
    pub(super) async fn attach_side(&mut self, wanted: Side, read: &ReadNeed) -> Attach {
        let mut behind = false;
        if wanted == Side::Replica {
            match self.attach_replica(read).await {
                Ok(ForRead::Ready(wait)) => return Attach::Ready(Ready { side: Side::Replica, wait, behind }),
                Ok(ForRead::NoReplica) => {}
                Ok(ForRead::Behind) => behind = true,
                Err(lost) => return Attach::Lost(lost),
            }
            let config = self.shared.config.load();
            if config.health.as_ref().is_some_and(|h| h.when_no_replica == WhenNoReplica::Error) {
                let msg = if behind {
                    "rwsplit: no replica has applied what this read must see (health.when_no_replica: error)"
                } else {
                    "rwsplit: no replica can serve reads now (health.when_no_replica: error)"
                };
                return Attach::Refused(err(1105, msg.into()));
            }
            tracing::debug!(behind, "no replica for this read; reading from the master");
        }
        match self.attach_master().await {
            Attach::Ready(ready) => Attach::Ready(Ready { behind, ..ready }),
            other => other,
        }
    }

    async fn attach_master(&mut self) -> Attach {
        let writer = {
            let topology = self.shared.topology.load();
            let health = self.shared.health.load();
            let writer = match health.writer(&topology.master) {
                Ok(addr) => Arc::clone(addr),
                Err(why) => return Attach::Refused(err(1105, format!("rwsplit: {why}"))),
            };
            // Fail fast while the checker finds the master unreachable (`fall` failed probes in a row),
            // rather than hang on a stopped server or wait out a connect timeout; this clears by itself at
            // the first good probe. Nothing is sent, so a transaction open on it is left as it is.
            if !health.reachable(&writer) {
                let why = health.servers.get(&writer).and_then(|s| s.last_error.as_deref()).unwrap_or("no answer");
                let msg = format!("rwsplit: master {writer} is unreachable (health check: {why})");
                return Attach::Refused(unavailable(msg));
            }
            writer
        };
        // Writes follow the writer: a connection to a former writer is let go once it holds nothing.
        if self.legs.conn(Side::Master).is_some_and(|c| c.key.addr != writer) {
            self.release(Side::Master);
        }
        if let Err(lost) = self.check_idle(Side::Master) {
            return Attach::Lost(lost);
        }
        if self.legs.conn(Side::Master).is_none() {
            match self.acquire(&writer).await {
                Ok(conn) => self.legs.put(Side::Master, conn),
                Err(BackendError::Login(e)) => return Attach::Refused(e),
                Err(BackendError::Full(why)) => {
                    return Attach::Refused(err(1040, format!("Too many connections (rwsplit: {why})")))
                }
                Err(e) => {
                    // Connecting is the retry: a master that cannot be reached gets error 1053 now.
                    let failure = Failure {
                        side: Side::Master,
                        phase: Phase::NotSent,
                        plain_read: false,
                        retried: true,
                        lost_state: false,
                    };
                    debug_assert_eq!(policy::on_failure(failure), Policy::ErrorContinue);
                    tracing::warn!(backend = %writer, error = %e, "master unavailable");
                    return Attach::Refused(unavailable(format!("rwsplit: master {writer} is unavailable: {e}")));
                }
            }
        }
        match self.sync(Side::Master).await {
            Ok(()) => Attach::Ready(Ready { side: Side::Master, wait: None, behind: false }),
            Err(SyncError::Replay(e)) => {
                // The master refuses the session's own state on a new connection (a database dropped
                // meanwhile, …): the session cannot go on as it was, as a direct connection could not
                // after losing its connection.
                let held = self.lose(Side::Master);
                tracing::warn!(backend = %writer, error = %e, "the master refused the session's state on a new connection");
                let error = BackendError::StateRefused(e);
                Attach::Lost(Box::new(LostLeg { addr: writer, held, idle: None, error }))
            }
            Err(SyncError::Backend(error)) => {
                let held = self.lose(Side::Master);
                if !held.is_empty() {
                    return Attach::Lost(Box::new(LostLeg { addr: writer, held, idle: None, error }));
                }
                Attach::Refused(unavailable(format!("rwsplit: master {writer} is unavailable: {error}")))
            }
        }
    }

    /// Attaches a replica for a read that must see `need`: the replica leg when it holds state the read
    /// needs (or a READ ONLY transaction), otherwise the best replica for this read (see `choose.rs`),
    /// switching to a spare connection or opening one. `Ok(Some(wait))` when ready (`wait`: the position
    /// the replica must wait for in the same round trip as the read); `Ok(None)` when no replica can serve
    /// it; `Err` when a leg holding state was lost.
    async fn attach_replica(&mut self, read: &ReadNeed) -> Result<ForRead, Box<LostLeg>> {
        let ReadNeed { need, needs_replica_state, no_wait, stay } = read;
        let (needs_replica_state, no_wait) = (*needs_replica_state, *no_wait);
        self.check_idle(Side::Replica)?;
        if let Some(conn) = self.legs.conn(Side::Replica) {
            let addr = Arc::clone(&conn.key.addr);
            let health = self.shared.health.load();
            let reachable = health.reachable(&addr);
            let qualifies = health.serves_reads(&addr) && self.shared.topology.load().has_replica(&addr);
            drop(health);
            let held = self.legs.held(Side::Replica);
            let in_its_trx = held.trx;
            if !reachable {
                let held = self.lose(Side::Replica);
                if !held.is_empty() {
                    return Err(Box::new(LostLeg { addr, held, idle: None, error: BackendError::Unreachable }));
                }
            } else if in_its_trx || *stay {
                // A READ ONLY transaction (its snapshot is what the reads in it see), or a command about
                // what this connection ran last.
                return Ok(ForRead::Ready(None));
            } else if !held.is_empty() {
                // It holds state (variables, temporary tables): reads stay with it while it qualifies (a
                // read that needs that state, even when it does not), waiting there if they must.
                if qualifies || needs_replica_state {
                    return Ok(ForRead::Ready(self.wait_needed(&addr, need)));
                }
                return Ok(ForRead::NoReplica);
            } else if !qualifies {
                tracing::debug!("the session's replica no longer qualifies; choosing another");
                self.release(Side::Replica);
            }
        }
        if need.master {
            return Ok(ForRead::Behind);
        }
        let topology = self.shared.topology.load_full();
        let health = self.shared.health.load_full();
        // Spares to replicas that left the topology or stopped serving reads go back to the pool.
        for conn in self.legs.drain_spares(|c| topology.has_replica(&c.key.addr) && health.serves_reads(&c.key.addr)) {
            self.pool_release(conn);
        }
        let mut candidates = self.replica_candidates(&topology, &health, need, no_wait);
        if candidates.is_empty() {
            let serving = topology.replicas.iter().any(|r| health.serves_reads(&r.addr));
            return Ok(if serving && !need.is_none() { ForRead::Behind } else { ForRead::NoReplica });
        }
        while let Some(i) = self.rotation.pick(&candidates) {
            let chosen = candidates.swap_remove(i);
            let wait = (!chosen.caught_up).then(|| need.position.as_deref().cloned()).flatten();
            if self.legs.conn(Side::Replica).is_some_and(|c| c.key.addr != chosen.addr) {
                // The leg holds nothing (see above): its connection waits as a spare.
                self.legs.park_replica();
            }
            if self.legs.conn(Side::Replica).is_none() && !self.legs.unpark_replica(&chosen.addr) {
                let shared = Arc::clone(&self.shared);
                let acquired = tokio::select! {
                    r = self.acquire(&chosen.addr) => r,
                    _ = shared.health.unreachable(&chosen.addr) => Err(BackendError::Unreachable),
                };
                match acquired {
                    Ok(conn) => self.legs.put(Side::Replica, conn),
                    Err(e) => {
                        tracing::warn!(backend = %chosen.addr, error = %e, "replica unavailable; trying another");
                        if matches!(e, BackendError::Connect(_) | BackendError::Unreachable) {
                            topology.mark_down_addr(&chosen.addr);
                        }
                        continue;
                    }
                }
            } else {
                // A spare that sat idle may have been closed by its server.
                self.check_idle(Side::Replica)?;
                if self.legs.conn(Side::Replica).is_none() {
                    candidates.push(chosen);
                    continue;
                }
            }
            return match self.sync_replica().await? {
                true => Ok(ForRead::Ready(wait)),
                false => Ok(ForRead::NoReplica),
            };
        }
        Ok(ForRead::NoReplica)
    }

    /// The replicas that may serve a read needing `need`: serving reads, not skipped, under a `max_lag`
    /// bound (known to be: the lag's upper bound); one not known to have the needed position only if it may
    /// wait for it (its measured lag is under `consistency_timeout`, and `no_wait` is off).
    fn replica_candidates(
        &self,
        topology: &crate::topology::Topology,
        health: &crate::health::Snapshot,
        need: &Need,
        no_wait: bool,
    ) -> Vec<Candidate> {
        let config = self.shared.config.load();
        let source = config.health.as_ref().map(|h| h.lag_source.clone());
        let seq = self.history.last_seq();
        let skipped = self.replica_refused.as_ref().filter(|r| r.seq == seq && r.at.elapsed() < r.wait);
        let lag_bound = |addr: &str| {
            let lag = health.servers.get(addr).and_then(|s| s.lag);
            source.as_ref().and_then(|src| lag_upper_bound(lag, src))
        };
        let mut out = Vec::with_capacity(topology.replicas.len());
        for (i, r) in topology.replicas.iter().enumerate() {
            if !topology.usable(i) || !health.serves_reads(&r.addr) || skipped.is_some_and(|s| s.addr == r.addr) {
                continue;
            }
            if let Some(max) = need.max_lag {
                if lag_bound(&r.addr).is_none_or(|l| l > max) {
                    continue;
                }
            }
            let caught_up = self.wait_needed(&r.addr, need).is_none();
            // A replica measured as far behind as the wait may last would only time out. Without a checker
            // the lag is unknown: a wait may be tried (it is bounded anyway).
            let lag = health.servers.get(&*r.addr).and_then(|s| s.lag);
            let may_wait =
                !no_wait && (!health.checked || lag.is_some_and(|l| l < config.consistency_timeout.as_secs_f64()));
            if caught_up || may_wait {
                out.push(Candidate { addr: Arc::clone(&r.addr), weight: r.weight, inflight: r.inflight(), caught_up });
            }
        }
        out
    }

    /// The position a read needing `need` must wait for on the replica at `addr`: `None` when it is known
    /// to have applied it (the checker's last probe of it, or an earlier wait on this session's connection
    /// to it), or when the read needs no position.
    fn wait_needed(&self, addr: &str, need: &Need) -> Option<Position> {
        let required = need.position.as_deref().filter(|p| !p.is_empty())?;
        let health = self.shared.health.load();
        let server = health.servers.get(addr);
        let probed = match required {
            Position::Binlog(want) => server.and_then(|s| s.binlog.as_ref()).is_some_and(|have| have.covers(want)),
            _ => server.and_then(|s| s.position.as_ref()).is_some_and(|have| have.covers(required)),
        };
        let reached =
            self.legs.replica_conn_to(addr).and_then(|c| c.reached.as_ref()).is_some_and(|p| p.covers(required));
        (!probed && !reached).then(|| required.clone())
    }

    /// Brings the replica leg up to date with the session's state. `Ok(false)` when the replica cannot take
    /// it (it is skipped for a while and the read goes elsewhere); `Err` when it held state and failed.
    async fn sync_replica(&mut self) -> Result<bool, Box<LostLeg>> {
        let addr = self.legs.conn(Side::Replica).map(|c| Arc::clone(&c.key.addr)).unwrap_or_default();
        match self.sync(Side::Replica).await {
            Ok(()) => Ok(true),
            Err(SyncError::Replay(e)) if self.legs.held(Side::Replica).is_empty() => {
                // E.g. USE of a database not yet replicated: this replica cannot serve the session now.
                tracing::debug!(%e, "replica cannot replay session state; using the master");
                self.refuse_replica(addr);
                if let Some(mut conn) = self.legs.release(Side::Replica) {
                    conn.touched = true;
                    self.pool_release(conn);
                }
                Ok(false)
            }
            Err(sync) => {
                let error = match sync {
                    SyncError::Replay(e) => BackendError::StateRefused(e),
                    SyncError::Backend(e) => e,
                };
                tracing::warn!(backend = %addr, %error, "replica failed while restoring session state");
                let held = self.lose(Side::Replica);
                if held.is_empty() {
                    Ok(false)
                } else {
                    // It held what only it had (a READ ONLY transaction, temporary tables …): the session
                    // cannot go on elsewhere as if nothing happened.
                    Err(Box::new(LostLeg { addr, held, idle: None, error }))
                }
            }
        }
    }

    /// Remembers that the replica at `addr` could not take the session's state: it is skipped until the
    /// history changes or its wait passes, a wait that doubles (up to [`REPLAY_RETRY_MAX`]) while it keeps
    /// refusing the same state.
    fn refuse_replica(&mut self, addr: Arc<str>) {
        let seq = self.history.last_seq();
        let wait = match &self.replica_refused {
            Some(r) if r.addr == addr && r.seq == seq => (r.wait * 2).min(REPLAY_RETRY_MAX),
            _ => REPLAY_RETRY,
        };
        self.replica_refused = Some(Refused { addr, seq, at: Instant::now(), wait });
    }

    /// Before a connection that sat idle is used: if the server closed it meanwhile, drops it. A connection
    /// that held nothing is simply replaced later; one that held state is reported lost (the session ends).
    pub(super) fn check_idle(&mut self, side: Side) -> Result<(), Box<LostLeg>> {
        let Some(conn) = self.legs.conn_mut(side) else { return Ok(()) };
        if !conn.wire.is_stale() {
            return Ok(());
        }
        let said = conn.wire.unsolicited();
        let addr = Arc::clone(&conn.key.addr);
        let held = self.lose(side);
        tracing::info!(backend = %addr, ?said, lost = held.describe(), "the server closed an idle connection");
        let failure =
            Failure { side, phase: Phase::NotSent, plain_read: false, retried: false, lost_state: !held.is_empty() };
        match policy::on_failure(failure) {
            // Nothing was lost: the command runs on a new connection.
            Policy::Retry => Ok(()),
            _ => Err(Box::new(LostLeg { addr, held, idle: Some(said.clone()), error: BackendError::Closed(said) })),
        }
    }

    /// Drops the connection on `side` after a failure (it is not pooled) and returns what it held.
    pub(super) fn lose(&mut self, side: Side) -> Held {
        let Some(lost) = self.legs.lose(side) else { return Held::default() };
        if side == Side::Replica && !self.shared.health.load().checked {
            // Without a health checker, a replica that just failed is skipped for a while; with one, its
            // probes decide (a mark here would outlive a recovery the checker already saw).
            self.shared.topology.load().mark_down_addr(&lost.addr);
        }
        if side == Side::Master {
            // Prepared statements of the lost connection must be prepared again elsewhere.
            for s in self.stmts.values_mut() {
                s.long_data = false;
            }
        }
        self.publish_backends();
        lost.held
    }

    /// Gives the connection on `side` back to the pool, if it holds nothing (it is healthy, just no longer
    /// wanted here).
    pub(super) fn release(&mut self, side: Side) {
        if let Some(conn) = self.legs.release(side) {
            self.pool_release(conn);
        }
    }

    /// Hands a connection to the pool, which resets it if needed.
    pub(super) fn pool_release(&self, conn: BackendConn) {
        let config = self.shared.config.load();
        let creds = self.login.credentials(&conn.key.addr, &config);
        self.pool.release(conn, creds, &config.pool);
    }

    /// A connection for this session's login to `addr`: from the pool, or a new one.
    pub(super) async fn acquire(&mut self, addr: &Arc<str>) -> Result<BackendConn, BackendError> {
        let config = self.shared.config.load_full();
        let creds = self.login.credentials(addr, &config);
        if let Some(conn) = self.pool.take(&creds.key, &config.pool) {
            return Ok(conn);
        }
        let got = self.pool.permit_or_conn(&creds.key, &config.pool, config.connect_timeout).await;
        let permit = match got {
            Ok(crate::pool::Got::Conn(conn)) => return Ok(*conn),
            Ok(crate::pool::Got::Permit(permit)) => permit,
            Err(full) => {
                tracing::warn!(%full, "backend connection cap reached");
                return Err(BackendError::Full(full.to_string()));
            }
        };
        let Connected { mut conn, version, caps, defaults } =
            BackendConn::connect(&creds, config.connect_timeout).await.inspect_err(|_| {
                self.shared.metrics.error(crate::metrics::ErrorKind::BackendConnect);
            })?;
        conn.permit = permit;
        self.shared.servers.learn_greeting(&version, caps);
        if let Some(defaults) = defaults.filter(|_| **addr == *self.shared.topology.load().master) {
            self.shared.servers.learn_defaults(defaults);
        }
        Ok(conn)
    }

    /// Brings the connection on `side` up to date: the session's trackers, then the history entries it has
    /// not seen.
    async fn sync(&mut self, side: Side) -> Result<(), SyncError> {
        let Some(conn) = self.legs.conn_mut(side) else { return Ok(()) };
        conn.restore_tracking().await.map_err(SyncError::Backend)?;
        for entry in self.history.after(conn.applied) {
            let expect = if entry.payload.first() == Some(&rwsplit_wire::packet::com::QUERY) {
                Expect::ResultSets
            } else {
                Expect::Single
            };
            conn.touched = true;
            match conn.run(&entry.payload, expect).await {
                Ok(Ok(_)) => conn.applied = entry.seq,
                Ok(Err(err)) => return Err(SyncError::Replay(err)),
                Err(e) => return Err(SyncError::Backend(e)),
            }
        }
        conn.applied = self.history.last_seq();
        Ok(())
    }
}
