//! The health checker: one task per backend that probes replication state every `interval` and publishes
//! the whole topology's health as one snapshot that sessions read without locks. The probes run on a
//! thread of their own (a single-threaded runtime), so a proxy saturated by client traffic cannot delay
//! them into timeouts.
//!
//! Gating (a replica serves reads only while all hold): its last probe answered within `timeout`; the SQL
//! thread runs; and its lag is at most `max_replica_lag`, where the lag is the one measured if the IO thread
//! runs and reports one, and otherwise (IO thread down, or lag NULL as right after it reconnects) the lag
//! last measured plus the time since, a bound on how far behind it can be, or frozen during a master
//! outage (below). Coming back needs `rise` consecutive good probes (the first
//! probe after start needs one). Lag comes from `Seconds_Behind_Master`/`Seconds_Behind_Source` (whole
//! seconds) or, in heartbeat mode, from a timestamp row the checker writes on the master and reads on each
//! replica (both times from this process's clock, so server clock skew does not matter; the measured lag
//! over-estimates by at most one interval).
//!
//! Hysteresis both ways: one failed probe stops new reads on a backend; only `fall` failed probes in a
//! row make it *unreachable*, which abandons reads in flight on it and makes writes to it fail at once.
//!
//! A master outage does not stop reads. When the master goes away the replicas' IO threads lose it
//! (`Slave_IO_Running: Connecting`, `Seconds_Behind_Master: NULL`) while their data stays as it was; a
//! replica whose SQL thread runs then keeps serving with its lag frozen at the last value measured while
//! its IO thread ran, because its data cannot fall further behind writes the master no longer takes:
//! - while the checker's own probe of the master fails, for as long as that lasts;
//! - otherwise (the master answers the checker but not the replica: a network split, an IO thread being
//!   restarted) for as long as the frozen lag plus the time since the IO thread was last seen running stays
//!   within `max_replica_lag`, which bounds how stale it can be.
//!
//! Role detection: every probe reads `@@read_only`. A master reporting `read_only=1` or a replica reporting
//! `read_only=0` is logged loudly and exposed. With `detect_master`, writes go to the one configured server
//! that is writable; none or several writable servers refuse writes with an error.
//!
//! Snapshot lifecycle per server: `unknown --good probe--> serving --bad probe--> out --rise good--> serving`,
//! and `reachable --fall bad probes--> unreachable --good probe--> reachable`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};
use tokio_util::sync::CancellationToken;

use crate::config::{Health, LagSource, Positions};
use crate::position::{BinlogPos, Flavor, Position};
use crate::Shared;

/// Where the checker publishes backend health and sessions read it: the published snapshot (lock-free
/// reads), the checker's working copy, a tick for sessions waiting on a hung backend, and the running
/// checker generation.
#[derive(Debug)]
pub struct HealthHub {
    /// The last published snapshot; sessions read it without locks.
    published: ArcSwap<Snapshot>,
    /// The checker's working copy (locked by probe tasks and the admin port, never by sessions).
    working: Mutex<Snapshot>,
    /// Ticks when some backend's reachability changes, waking sessions waiting on a hung backend.
    tick: tokio::sync::watch::Sender<u64>,
    /// The running checker generation; cancelled and replaced on reload.
    generation: Mutex<Option<CancellationToken>>,
}

impl Default for HealthHub {
    fn default() -> Self {
        HealthHub {
            published: ArcSwap::from_pointee(Snapshot::default()),
            working: Mutex::new(Snapshot::default()),
            tick: tokio::sync::watch::Sender::new(0),
            generation: Mutex::new(None),
        }
    }
}

impl HealthHub {
    /// The published snapshot (cheap; do not hold across an await).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.published.load()
    }

    /// The published snapshot, owned.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.published.load_full()
    }

    /// The checker's working copy.
    pub(crate) fn working(&self) -> MutexGuard<'_, Snapshot> {
        self.working.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a new snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        self.published.store(Arc::new(snapshot));
    }

    /// Wakes sessions waiting for a backend to become unreachable.
    pub fn changed(&self) {
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Completes when the checker reports `addr` unreachable (never, without a checker).
    pub async fn unreachable(&self, addr: &str) {
        if !self.load().checked {
            // Nothing will ever report it: skip subscribing (this races every replica read).
            return std::future::pending().await;
        }
        let mut rx = self.tick.subscribe();
        loop {
            if !self.load().reachable(addr) {
                return;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// A new checker generation token (child of `root`), cancelling the previous one.
    fn new_generation(&self, root: &CancellationToken) -> CancellationToken {
        let token = root.child_token();
        let mut slot = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.replace(token.clone()) {
            old.cancel();
        }
        token
    }
}

/// Health of one backend as last probed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerHealth {
    /// Fewer than `fall` probes in a row failed (false from the first failure when it never answered).
    pub reachable: bool,
    /// Probes failed in a row (0 after a good one).
    pub fail_streak: u32,
    /// Both replication threads run (replicas only).
    pub replicating: bool,
    /// The SQL (applier) thread runs (replicas only).
    pub sql_running: bool,
    /// Serving reads with the IO thread down because the master is unreachable: `lag` is the lag frozen
    /// when the IO thread last ran (see the module doc).
    pub frozen: bool,
    /// When a probe last saw the IO thread running, and the lag it measured then.
    pub io_seen: Option<(Instant, Option<f64>)>,
    /// Replication lag in seconds, when known.
    pub lag: Option<f64>,
    /// `@@read_only` as last seen.
    pub read_only: Option<bool>,
    /// GTID position (`@@gtid_slave_pos` on MariaDB, `@@gtid_executed` on MySQL).
    pub gtid: Option<String>,
    /// That position, parsed: what the replica had applied when the probe ran.
    pub position: Option<Position>,
    /// Binary log coordinates: how far a replica has executed the master's binary log; the master's current
    /// position (`SHOW MASTER STATUS`) when read-your-writes follows binary log positions.
    pub binlog: Option<BinlogPos>,
    /// When the last good probe started (a master position read then covers every write acknowledged
    /// before).
    pub probe_started: Option<Instant>,
    /// The replica passes the gate and gets reads.
    pub serves_reads: bool,
    /// What an operator sees of its replication (admin `SHOW REPLICATION`, the replication metrics).
    pub replication: ReplicationView,
    /// Why the last probe was bad (None after a good one).
    pub last_error: Option<String>,
    /// When `serves_reads` or `reachable` last changed.
    pub changed_at: SystemTime,
    /// When the last probe finished.
    pub probed_at: SystemTime,
    /// Consecutive good probes.
    pub good_streak: u32,
    /// Probes done so far.
    pub probes: u64,
    /// How long the last probe took, or has been waiting when it is still under way.
    pub probe_seconds: Option<f64>,
}

impl Default for ServerHealth {
    fn default() -> Self {
        ServerHealth {
            reachable: false,
            fail_streak: 0,
            replicating: false,
            sql_running: false,
            frozen: false,
            io_seen: None,
            lag: None,
            read_only: None,
            gtid: None,
            position: None,
            binlog: None,
            probe_started: None,
            serves_reads: false,
            replication: ReplicationView::default(),
            last_error: None,
            changed_at: SystemTime::now(),
            probed_at: UNIX_EPOCH,
            good_streak: 0,
            probes: 0,
            probe_seconds: None,
        }
    }
}

/// Where writes go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Writer {
    /// The configured master (no detection).
    #[default]
    Configured,
    /// Detected: the one writable configured server.
    Detected(Arc<str>),
    /// Detected: no configured server is writable.
    None,
    /// Detected: several configured servers are writable; writes are refused.
    Ambiguous(Vec<Arc<str>>),
}

/// The health of the whole topology, published as one value.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// A checker runs; without one every replica is usable and the configured master takes writes.
    pub checked: bool,
    /// By backend address.
    pub servers: HashMap<Arc<str>, ServerHealth>,
    /// Where writes go.
    pub writer: Writer,
    /// Replicas taken out of rotation by hand (admin `SET BACKEND … OFFLINE`); kept across reloads.
    pub offline: HashSet<Arc<str>>,
    /// Read-your-writes follows binary log coordinates (`health.positions: binlog`, or a master without
    /// GTIDs), not GTIDs.
    pub binlog_positions: bool,
}

impl Snapshot {
    /// Whether a replica may get reads now.
    pub fn serves_reads(&self, addr: &str) -> bool {
        !self.offline.contains(addr) && (!self.checked || self.servers.get(addr).is_some_and(|s| s.serves_reads))
    }

    /// Whether a backend answered its last probe (true when unknown or unchecked).
    pub fn reachable(&self, addr: &str) -> bool {
        !self.checked || self.servers.get(addr).is_none_or(|s| s.reachable || s.probes == 0)
    }

    /// The address writes go to, or why there is none.
    pub fn writer<'a>(&'a self, configured: &'a Arc<str>) -> Result<&'a Arc<str>, String> {
        match &self.writer {
            Writer::Configured => Ok(configured),
            Writer::Detected(a) => Ok(a),
            Writer::None => Err("no configured server is writable (read_only=0)".into()),
            Writer::Ambiguous(all) => {
                let list: Vec<&str> = all.iter().map(|a| &**a).collect();
                Err(format!("refusing writes: several servers are writable: {}", list.join(", ")))
            }
        }
    }
}

/// A server's replication as an operator sees it, from its last good probe: how a replica replicates and
/// where its threads stand, and the master's binary log end and semi-sync state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicationView {
    /// `@@server_id`.
    pub server_id: Option<u32>,
    /// A replica's mode: `gtid` (MariaDB `Using_Gtid` Slave_Pos or Current_Pos, MySQL `Auto_Position` 1)
    /// or `position` (binary log file and position). None: not a replica.
    pub mode: Option<&'static str>,
    /// `Slave_IO_Running` / `Replica_IO_Running` as reported (Yes, No, Connecting).
    pub io_state: Option<String>,
    /// `Slave_SQL_Running` / `Replica_SQL_Running`.
    pub sql_state: Option<String>,
    /// `Last_IO_Error`, when not empty.
    pub last_io_error: Option<String>,
    /// `Last_SQL_Error`, when not empty.
    pub last_sql_error: Option<String>,
    /// The server_id of the server it replicates from (`Master_Server_Id` / `Source_Server_Id`).
    pub source_server_id: Option<u32>,
    /// The master's binary log end (`SHOW MASTER STATUS`).
    pub binlog_end: Option<BinlogPos>,
    /// The master's binary log files and their sizes (`SHOW BINARY LOGS`), to measure how far behind a
    /// replica's executed position is in bytes.
    pub binlog_files: Vec<(String, u64)>,
    /// Master: semi-sync on (`Rpl_semi_sync_master_status`) and the semi-sync replicas connected.
    pub semisync_master: Option<(bool, u32)>,
    /// Replica: its semi-sync side is on (`Rpl_semi_sync_slave_status`).
    pub semisync_replica: Option<bool>,
    /// MySQL's `@@super_read_only` (MariaDB has none: its `read_only` stops every account but replication).
    pub super_read_only: Option<bool>,
}

/// How many bytes of the master's binary log `exec` (a replica's executed position) is behind `end` (the
/// master's end), given the master's binary log files and sizes; None when a file is not in the list.
pub fn binlog_behind(exec: &BinlogPos, end: &BinlogPos, files: &[(String, u64)]) -> Option<u64> {
    if exec.file == end.file {
        return Some(end.pos.saturating_sub(exec.pos));
    }
    let from = files.iter().position(|(f, _)| *f == exec.file)?;
    let to = files.iter().position(|(f, _)| *f == end.file)?;
    if from > to {
        return None;
    }
    let rest_of_first = files[from].1.saturating_sub(exec.pos);
    let middle: u64 = files[from + 1..to].iter().map(|(_, size)| size).sum();
    Some(rest_of_first + middle + end.pos)
}

/// What one probe saw.
#[derive(Debug, Clone, Default)]
struct Observation {
    replication: ReplicationView,
    read_only: Option<bool>,
    io_running: bool,
    sql_running: bool,
    lag: Option<f64>,
    gtid: Option<String>,
    position: Option<Position>,
    binlog: Option<BinlogPos>,
    /// The master has no GTIDs (MySQL with `gtid_mode` other than ON).
    no_gtids: bool,
    started: Option<Instant>,
    /// The server has a replication configuration (SHOW SLAVE STATUS returned a row).
    is_replica: bool,
    /// The server is MariaDB.
    mariadb: bool,
}

/// (Re)starts the checker for the current config and topology: cancels the previous probe tasks and starts
/// one per backend. Health state of backends still configured is kept (a reload does not reset them);
/// state of removed backends is dropped.
pub fn start(shared: &Arc<Shared>) {
    let config = shared.config.load_full();
    let topology = shared.topology.load_full();
    let servers: Vec<(Arc<str>, bool)> = std::iter::once((Arc::clone(&topology.master), true))
        .chain(topology.replicas.iter().map(|r| (Arc::clone(&r.addr), false)))
        .collect();
    let configured = |a: &Arc<str>| servers.iter().any(|(s, _)| s == a);
    {
        let mut state = shared.health.working();
        state.checked = config.health.is_some();
        state.servers.retain(|a, _| configured(a));
        state.offline.retain(|a| configured(a));
        for (addr, _) in &servers {
            state.servers.entry(Arc::clone(addr)).or_default();
        }
        if !config.health.as_ref().is_some_and(|h| h.detect_master) {
            state.writer = Writer::Configured;
        }
        shared.health.publish(state.clone());
    }
    let generation = shared.health.new_generation(shared.root());
    let Some(health) = config.health.clone() else { return };
    for (addr, is_master) in servers {
        let task = Probe {
            shared: Arc::clone(shared),
            addr,
            is_master,
            health: health.clone(),
            instance: shared.instance_id().to_string(),
            conn: None,
            table_ready: false,
            batched: false,
        };
        probe_runtime().spawn(task.run(generation.clone()));
    }
}

/// The runtime the probes run on: one thread of its own for the whole process, started on first use, so
/// that probes keep their interval and timeout however busy the session workers are.
fn probe_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("rwsplit-health".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => {
                    let _ = tx.send(Some(rt.handle().clone()));
                    // Runs until the process exits; tasks end when their generation is cancelled.
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the health checker's runtime; probes share the session runtime");
                    let _ = tx.send(None);
                }
            }
        });
        let handle = spawned.ok().and_then(|_| rx.recv().ok().flatten());
        handle.unwrap_or_else(tokio::runtime::Handle::current)
    })
}

/// Takes a replica out of rotation by hand, or puts it back. Returns false for an unknown replica.
pub fn set_offline(shared: &Shared, addr: &str, offline: bool) -> bool {
    let Some(addr) = shared.topology.load().replicas.iter().map(|r| Arc::clone(&r.addr)).find(|a| &**a == addr) else {
        return false;
    };
    let mut state = shared.health.working();
    if offline {
        state.offline.insert(addr);
    } else {
        state.offline.remove(&addr);
    }
    shared.health.publish(state.clone());
    true
}

/// When a probe outcome arrived.
#[derive(Debug, Clone, Copy)]
enum Timing {
    /// Within `timeout`.
    OnTime,
    /// After the failures already recorded for this long: the server is reachable, but a replica does
    /// not earn reads by it (it serves reads only while it answers within `timeout`).
    Late(Duration),
    /// Not yet: the failure recorded while the probe is still under way.
    Pending,
}

/// One backend's probe loop.
struct Probe {
    /// Where results are published.
    shared: Arc<Shared>,
    /// The backend.
    addr: Arc<str>,
    /// Configured as the master.
    is_master: bool,
    /// Settings.
    health: Health,
    /// This process's heartbeat row id.
    instance: String,
    /// The monitoring connection, kept between probes; dropped after any failure.
    conn: Option<Conn>,
    /// The heartbeat table was created (master only).
    table_ready: bool,
    /// The server on `conn` is MariaDB, learned by the connection's first probe: later probes send all
    /// their statements in one round trip (see [`Probe::probe_batched`]).
    batched: bool,
}

impl Probe {
    async fn run(mut self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.health.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = cancel.cancelled() => return,
            }
            // A probe not answered within `timeout` counts as failed, and so does each further `interval` it
            // goes unanswered, but it is not abandoned until `fall` failures in a row: under CPU overload a
            // probe that is merely slow keeps its connection, where cancelling it would make the next probe
            // connect and log in afresh (more round trips, slower still) and turn a busy server into an
            // "unreachable" one. A hung server still becomes unreachable after `timeout + (fall-1)*interval`.
            let spare = self.detached();
            let (timeout, interval, fall) = (self.health.timeout, self.health.interval, self.health.fall);
            let began = Instant::now();
            let mut probing = Box::pin(async move {
                let outcome = self.probe().await;
                (self, outcome)
            });
            let mut wait = timeout;
            let mut late = 0u32;
            let answered = loop {
                tokio::select! {
                    done = &mut probing => break Some(done),
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {
                        late += 1;
                        let waited = timeout + interval * (late - 1);
                        spare.record(Err(format!("no answer within {waited:?}")), Timing::Pending, waited);
                        if late >= fall {
                            break None;
                        }
                        wait = interval;
                    }
                }
            };
            let writer_is_me = match answered {
                Some((probe, outcome)) => {
                    self = probe;
                    if outcome.is_err() {
                        // A broken connection is not reused; the next probe connects afresh.
                        self.conn = None;
                    }
                    let timing = match late {
                        0 => Timing::OnTime,
                        n => Timing::Late(timeout + interval * (n - 1)),
                    };
                    self.record(outcome, timing, began.elapsed())
                }
                None => {
                    // Abandoned with its connection (a hung server); the next probe connects afresh.
                    self = spare;
                    false
                }
            };
            if writer_is_me {
                if let LagSource::Heartbeat { table } = &self.health.lag_source {
                    let table = table.clone();
                    let beat = tokio::time::timeout(self.health.timeout, self.heartbeat(&table)).await;
                    if !matches!(beat, Ok(Ok(()))) {
                        tracing::warn!(backend = %self.addr, "heartbeat write failed: {beat:?}");
                        self.conn = None;
                    }
                }
            }
        }
    }

    /// This probe without its connection, to record outcomes while a probe is under way and to carry on
    /// if it is abandoned.
    fn detached(&self) -> Probe {
        Probe {
            shared: Arc::clone(&self.shared),
            addr: Arc::clone(&self.addr),
            is_master: self.is_master,
            health: self.health.clone(),
            instance: self.instance.clone(),
            conn: None,
            table_ready: self.table_ready,
            batched: false,
        }
    }

    /// The monitoring connection's options: the backend's `tls:` as the data path uses it (its CA only, the
    /// name it must carry, the client certificate), read from the config in force at each connect.
    fn opts(&self) -> Opts {
        let (host, port) = self.addr.rsplit_once(':').unwrap_or((&self.addr, "3306"));
        let ssl = self.shared.config.load().tls_of(&self.addr).map(|tls| {
            let identity = match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => Some(mysql_async::ClientIdentity::new(
                    std::path::PathBuf::from(cert).into(),
                    std::path::PathBuf::from(key).into(),
                )),
                _ => None,
            };
            mysql_async::SslOpts::default()
                .with_root_certs(vec![std::path::PathBuf::from(&tls.ca).into()])
                .with_disable_built_in_roots(true)
                .with_danger_tls_hostname_override(Some(tls.server_name.clone()))
                .with_client_identity(identity)
        });
        OptsBuilder::default()
            .ip_or_hostname(host.trim_matches(['[', ']']))
            .tcp_port(port.parse().unwrap_or(3306))
            .user(Some(self.health.user.clone()))
            .pass(Some(String::from_utf8_lossy(self.health.password.expose()).into_owned()))
            .prefer_socket(false)
            .ssl_opts(ssl)
            .into()
    }

    async fn conn(&mut self) -> Result<&mut Conn, String> {
        if self.conn.is_none() {
            let conn = Conn::new(self.opts()).await.map_err(|e| format!("connect: {e}"))?;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| "no connection".to_string())
    }

    /// One probe: what the server reports of itself and its replication.
    async fn probe(&mut self) -> Result<Observation, String> {
        if self.conn.is_none() {
            self.batched = false;
        }
        if self.batched {
            return self.probe_batched().await;
        }
        let obs = self.probe_sequential().await?;
        self.batched = obs.mariadb;
        Ok(obs)
    }

    /// A probe one statement at a time, learning the server's flavour (and, on MySQL, which statement names
    /// it has) as it goes: the first probe on each connection, and every probe of a MySQL server.
    async fn probe_sequential(&mut self) -> Result<Observation, String> {
        let heartbeat_table = match &self.health.lag_source {
            LagSource::Heartbeat { table } => Some(table.clone()),
            LagSource::Replication => None,
        };
        let probe_replication = !self.is_master || self.health.detect_master;
        let binlog_wanted = self.health.positions == Positions::Binlog;
        let instance = self.instance.clone();
        let (is_master, user) = (self.is_master, self.health.user.clone());
        let started = Instant::now();
        let conn = self.conn().await?;
        let row: Option<(u8, String, u32)> =
            conn.query_first("SELECT @@read_only, @@version, @@global.server_id").await.map_err(|e| e.to_string())?;
        let mariadb = row.as_ref().is_some_and(|(_, v, _)| v.contains("MariaDB"));
        let mut obs = Observation {
            read_only: row.as_ref().map(|(ro, _, _)| *ro != 0),
            started: Some(started),
            mariadb,
            ..Observation::default()
        };
        obs.replication.server_id = row.map(|(_, _, id)| id);
        semisync_status(conn, &mut obs.replication).await?;
        if is_master {
            obs.replication.binlog_end = master_binlog(conn).await?;
            obs.replication.binlog_files = binary_logs(conn).await?;
        }
        if !mariadb {
            let row: Option<(String, u8)> =
                conn.query_first("SELECT @@gtid_mode, @@super_read_only").await.map_err(|e| e.to_string())?;
            obs.no_gtids = !row.as_ref().is_some_and(|(m, _)| m.eq_ignore_ascii_case("ON"));
            obs.replication.super_read_only = row.map(|(_, s)| s != 0);
        }
        if binlog_wanted || obs.no_gtids {
            // The master's end was read above; a replica's own is overwritten by its executed position below.
            obs.binlog = if is_master { obs.replication.binlog_end.clone() } else { master_binlog(conn).await? };
        }
        if !probe_replication {
            return Ok(obs);
        }
        let status: Option<Row> = match conn.query_first("SHOW SLAVE STATUS").await {
            Ok(r) => r,
            // MySQL 8.4 removed SHOW SLAVE STATUS.
            Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
                conn.query_first("SHOW REPLICA STATUS").await.map_err(|e| no_privilege(e, &user))?
            }
            Err(e) => return Err(no_privilege(e, &user)),
        };
        apply_replica_status(status, &mut obs);
        let gtid_var = if mariadb { "SELECT @@gtid_slave_pos" } else { "SELECT @@gtid_executed" };
        let gtid: Option<String> = conn.query_first(gtid_var).await.map_err(|e| e.to_string())?;
        apply_gtid(gtid, &mut obs);
        if let (Some(table), true) = (heartbeat_table, obs.is_replica) {
            let sql = format!("SELECT ts FROM {table} WHERE id = '{instance}'");
            apply_heartbeat(conn.query_first::<i64, _>(sql).await, &mut obs)?;
        }
        Ok(obs)
    }

    /// A probe of a MariaDB server in one round trip: the statements of [`Probe::probe_sequential`] sent as
    /// one multi-statement query, their result sets read in order. Under CPU overload each round trip
    /// waits for the server's connection thread and then the probe's to be scheduled; four of them made
    /// probes miss `timeout + (fall-1) × interval` (1 s) and loaded servers look dead.
    async fn probe_batched(&mut self) -> Result<Observation, String> {
        let heartbeat = match &self.health.lag_source {
            LagSource::Heartbeat { table } => Some(format!("SELECT ts FROM {table} WHERE id = '{}'", self.instance)),
            LagSource::Replication => None,
        };
        let probe_replication = !self.is_master || self.health.detect_master;
        let binlog_wanted = self.health.positions == Positions::Binlog;
        let (is_master, user) = (self.is_master, self.health.user.clone());
        let started = Instant::now();
        // The statements in order; what each one's result set is.
        #[derive(Clone, Copy, PartialEq)]
        enum Part {
            Server,
            Semisync,
            MasterStatus,
            SlaveStatus,
            BinaryLogs,
            Heartbeat,
        }
        let mut parts = vec![
            (Part::Server, "SELECT @@read_only, @@version, @@global.server_id, @@gtid_slave_pos".to_string()),
            (Part::Semisync, SEMISYNC_STATUS.to_string()),
        ];
        if is_master || binlog_wanted {
            parts.push((Part::MasterStatus, "SHOW MASTER STATUS".into()));
        }
        if probe_replication {
            parts.push((Part::SlaveStatus, "SHOW SLAVE STATUS".into()));
        }
        // Last: these may fail as a matter of course (no binary log, no heartbeat table yet), which ends a
        // multi-statement query.
        if is_master {
            parts.push((Part::BinaryLogs, "SHOW BINARY LOGS".into()));
        }
        if let (Some(sql), true) = (heartbeat, probe_replication) {
            parts.push((Part::Heartbeat, sql));
        }
        let sql = parts.iter().map(|(_, q)| q.as_str()).collect::<Vec<_>>().join("; ");
        let conn = self.conn().await?;
        let mut result = conn.query_iter(sql).await.map_err(|e| e.to_string())?;
        let mut obs = Observation { started: Some(started), mariadb: true, ..Observation::default() };
        let mut gtid = None;
        let mut own_binlog = None;
        for (part, _) in &parts {
            let rows = result.collect::<Row>().await;
            match (part, rows) {
                (Part::Server, Ok(rows)) => {
                    let row = rows.into_iter().next();
                    let text = |i: usize| row.as_ref().and_then(|r| r.get_opt::<Option<String>, _>(i)?.ok()).flatten();
                    obs.read_only = text(0).and_then(|v| v.parse::<u8>().ok()).map(|v| v != 0);
                    obs.replication.server_id = text(2).and_then(|v| v.parse().ok());
                    gtid = text(3);
                }
                (Part::Semisync, Ok(rows)) => {
                    let pairs: Vec<(String, String)> =
                        rows.into_iter().filter_map(|r| r.get_opt(0)?.ok().zip(r.get_opt(1)?.ok())).collect();
                    semisync_from(&pairs, &mut obs.replication);
                }
                (Part::MasterStatus, Ok(rows)) => own_binlog = binlog_from(rows.into_iter().next()),
                (Part::SlaveStatus, Ok(rows)) => apply_replica_status(rows.into_iter().next(), &mut obs),
                (Part::SlaveStatus, Err(e)) => return Err(no_privilege(e, &user)),
                (Part::BinaryLogs, rows) => obs.replication.binlog_files = binary_logs_from(rows)?,
                (Part::Heartbeat, rows) => {
                    let ts = rows.map(|rows| rows.into_iter().next().and_then(|r| r.get_opt::<i64, _>(0)?.ok()));
                    if obs.is_replica {
                        apply_heartbeat(ts, &mut obs)?;
                    }
                }
                (_, Err(e)) => return Err(e.to_string()),
            }
        }
        result.drop_result().await.map_err(|e| e.to_string())?;
        if is_master {
            obs.replication.binlog_end = own_binlog.clone();
        }
        if binlog_wanted && !obs.is_replica {
            // A replica's position is the one it executed (SHOW SLAVE STATUS), not its own binary log's end.
            obs.binlog = own_binlog;
        }
        if probe_replication {
            apply_gtid(gtid, &mut obs);
        }
        Ok(obs)
    }

    /// Writes this process's heartbeat row on the writer, creating the table the first time.
    async fn heartbeat(&mut self, table: &str) -> Result<(), String> {
        let instance = self.instance.clone();
        let create = !self.table_ready;
        let conn = self.conn().await?;
        if create {
            let schema = table.split('.').next().unwrap_or("rwsplit");
            conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {schema}")).await.map_err(|e| e.to_string())?;
            conn.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {table} (id VARCHAR(64) NOT NULL PRIMARY KEY, ts BIGINT NOT NULL)"
            ))
            .await
            .map_err(|e| e.to_string())?;
        }
        let sql = format!(
            "INSERT INTO {table} (id, ts) VALUES ('{instance}', {}) ON DUPLICATE KEY UPDATE ts = VALUES(ts)",
            now_micros()
        );
        conn.query_drop(sql).await.map_err(|e| e.to_string())?;
        self.table_ready = true;
        Ok(())
    }

    /// Applies a probe outcome to the shared state and publishes a new snapshot. Returns whether this
    /// backend is the writer (and so writes the heartbeat).
    fn record(&self, outcome: Result<Observation, String>, timing: Timing, took: Duration) -> bool {
        let gate = Gate {
            max_lag: self.health.max_replica_lag.as_secs_f64(),
            gated: !self.is_master || self.health.detect_master,
            now: Instant::now(),
        };
        let (rise, fall, detect) = (self.health.rise, self.health.fall, self.health.detect_master);
        let shared = &self.shared;
        let master = Arc::clone(&shared.topology.load().master);
        let mut state = shared.health.working();
        let master_down = master_unreachable(&state, &master);
        let master_server_id = state.servers.get(&master).and_then(|m| m.replication.server_id);
        // Another configured server with this probe's server_id (replication between them breaks).
        let same_id = outcome.as_ref().ok().and_then(|o| o.replication.server_id).and_then(|id| {
            state
                .servers
                .iter()
                .find(|(a, s)| **a != self.addr && s.reachable && s.replication.server_id == Some(id))
                .map(|(a, _)| (id, Arc::clone(a)))
        });
        let entry = state.servers.entry(Arc::clone(&self.addr)).or_default();
        let before = (entry.reachable, entry.serves_reads, entry.read_only, entry.frozen);
        let first = entry.probes == 0;
        let no_gtids = outcome.as_ref().is_ok_and(|o| o.no_gtids);
        entry.probes += 1;
        entry.probed_at = SystemTime::now();
        entry.probe_seconds = Some(took.as_secs_f64());
        match outcome {
            Ok(obs) => {
                entry.reachable = true;
                entry.fail_streak = 0;
                entry.read_only = obs.read_only;
                entry.replicating = obs.io_running && obs.sql_running;
                entry.sql_running = obs.sql_running;
                entry.gtid = obs.gtid.clone();
                entry.position = obs.position.clone();
                entry.binlog = obs.binlog.clone();
                entry.probe_started = obs.started;
                entry.last_error = None;
                let was_super = entry.replication.super_read_only;
                let was_semisync = entry.replication.semisync_master.map(|(on, _)| on);
                entry.replication = obs.replication.clone();
                let now_semisync = entry.replication.semisync_master.map(|(on, _)| on);
                let soft = obs.read_only == Some(true) && entry.replication.super_read_only == Some(false);
                if !self.is_master && soft && was_super != Some(false) {
                    tracing::warn!(
                        backend = %self.addr,
                        "a configured replica has read_only=1 but super_read_only=0: accounts with SUPER or \
                         CONNECTION_ADMIN can still write to it (SET GLOBAL super_read_only = ON)"
                    );
                }
                if self.is_master && was_semisync == Some(true) && now_semisync == Some(false) {
                    tracing::warn!(
                        backend = %self.addr,
                        "the master fell back from semi-synchronous to asynchronous replication: a write it \
                         acknowledges may not be on any replica yet (rwsplit's read-your-writes still waits for \
                         each session's own writes; a master lost now may lose acknowledged writes)"
                    );
                } else if self.is_master && was_semisync == Some(false) && now_semisync == Some(true) {
                    tracing::info!(backend = %self.addr, "the master is back to semi-synchronous replication");
                }
                let verdict = gate.judge(&obs, entry.io_seen, master_down);
                entry.lag = verdict.lag;
                entry.frozen = verdict.frozen;
                if obs.io_running && obs.lag.is_some() {
                    entry.io_seen = Some((gate.now, obs.lag));
                }
                // A replica replicating from another server than the configured master is not serving
                // the master's data.
                let master_id = master_server_id.filter(|_| !self.is_master);
                let wrong_source = match (master_id, obs.replication.source_server_id) {
                    (Some(m), Some(src)) if obs.is_replica && src != m && src != 0 => Some(format!(
                        "replicates from the server with server_id {src}, not from the configured master \
                         (server_id {m}): point it at the master with CHANGE MASTER TO"
                    )),
                    _ => None,
                };
                let duplicate = same_id.as_ref().filter(|_| !self.is_master).map(|(id, other)| {
                    format!(
                        "has server_id {id}, as {other} does: give each server a unique server_id (replication \
                         breaks between servers that share one)"
                    )
                });
                if let Some(why) = &duplicate {
                    if entry.last_error.is_none() && !first {
                        tracing::error!(backend = %self.addr, "{why}");
                    }
                }
                let slow = match timing {
                    Timing::Late(waited) => Some(format!("answered only after more than {waited:?}")),
                    Timing::OnTime | Timing::Pending => None,
                };
                match verdict.why_not.or(wrong_source).or(duplicate).or(slow) {
                    None => {
                        entry.good_streak += 1;
                        entry.serves_reads = entry.serves_reads || first || entry.good_streak >= rise;
                    }
                    Some(why) => {
                        entry.good_streak = 0;
                        entry.serves_reads = false;
                        entry.last_error = Some(why);
                    }
                }
            }
            Err(e) => {
                // One failure stops new reads; only `fall` in a row make the backend unreachable.
                entry.fail_streak += 1;
                // A server that never answered is unreachable from its first failure, unless that failure
                // is a probe still under way (its connection may yet answer).
                let pending_first = first && matches!(timing, Timing::Pending);
                entry.reachable = (entry.reachable || pending_first) && entry.fail_streak < fall;
                entry.serves_reads = false;
                entry.replicating = false;
                entry.frozen = false;
                entry.lag = None;
                entry.good_streak = 0;
                entry.last_error = Some(e);
            }
        }
        if self.is_master && !detect {
            entry.serves_reads = false;
        }
        let after = (entry.reachable, entry.serves_reads, entry.read_only, entry.frozen);
        if before.0 != after.0 || before.1 != after.1 {
            entry.changed_at = SystemTime::now();
            if before.0 && !after.0 {
                // Reads on it are abandoned and writes to it refused: an operator wants to see this.
                tracing::warn!(
                    backend = %self.addr, reachable = after.0, serves_reads = after.1,
                    lag = ?entry.lag, error = ?entry.last_error, "backend state changed"
                );
            } else {
                tracing::info!(
                    backend = %self.addr, reachable = after.0, serves_reads = after.1,
                    lag = ?entry.lag, error = ?entry.last_error, "backend state changed"
                );
            }
        }
        if before.3 != after.3 {
            if after.3 {
                tracing::warn!(
                    backend = %self.addr, frozen_lag = ?entry.lag,
                    "replica lost its master (IO thread not running) while the master is unreachable: \
                     serving reads on its data as of the master's last write"
                );
            } else {
                tracing::info!(backend = %self.addr, "replica no longer serving on frozen data");
            }
        }
        if before.2 != after.2 {
            match (self.is_master, after.2) {
                (true, Some(true)) if !detect => {
                    tracing::error!(backend = %self.addr, "the configured master reports read_only=1: writes will fail")
                }
                (false, Some(false)) => {
                    tracing::warn!(
                        backend = %self.addr,
                        "a configured replica reports read_only=0 (writable): clients' writes could land on it; \
                         SET GLOBAL read_only = ON there and set read_only=1 in its config"
                    )
                }
                _ => {}
            }
        }
        if detect {
            state.writer = detect_writer(&state);
        }
        if self.is_master {
            state.binlog_positions = self.health.positions == Positions::Binlog || no_gtids;
        }
        let reachability_changed = before.0 != after.0;
        let writer_is_me = match &state.writer {
            Writer::Configured => self.is_master,
            Writer::Detected(a) => **a == *self.addr,
            _ => false,
        };
        let snapshot = state.clone();
        drop(state);
        shared.health.publish(snapshot);
        if reachability_changed {
            shared.health.changed();
        }
        writer_is_me
    }
}

/// The read gate's settings for one probe.
struct Gate {
    /// `max_replica_lag` in seconds.
    max_lag: f64,
    /// The server is judged as a replica (a replica, or any server with `detect_master`).
    gated: bool,
    /// When the probe is recorded.
    now: Instant,
}

/// What the gate decided for one good probe.
#[derive(Debug, PartialEq)]
struct Verdict {
    /// Why the server gets no reads (None: it does).
    why_not: Option<String>,
    /// The lag to publish: measured, or frozen at the last value measured with the IO thread running.
    lag: Option<f64>,
    /// Serving on frozen data during a master outage.
    frozen: bool,
}

impl Gate {
    /// Judges a good probe. `io_seen`: when the IO thread was last seen running and the lag then;
    /// `master_down`: the checker's last probe of the writer failed (or there is no writer).
    fn judge(&self, obs: &Observation, io_seen: Option<(Instant, Option<f64>)>, master_down: bool) -> Verdict {
        let verdict = |why: Option<String>, lag, frozen| Verdict { why_not: why, lag, frozen };
        if !self.gated {
            return verdict(None, obs.lag, false);
        }
        if !obs.is_replica {
            return verdict(Some("not configured as a replica".into()), obs.lag, false);
        }
        if !obs.sql_running {
            return verdict(Some("the SQL thread is stopped".into()), obs.lag, false);
        }
        let within = |lag: f64| lag <= self.max_lag;
        if let (true, Some(l)) = (obs.io_running, obs.lag) {
            if !within(l) {
                return verdict(Some(format!("lag {l:.3}s exceeds {:.3}s", self.max_lag)), Some(l), false);
            }
            return verdict(None, Some(l), false);
        }
        // The IO thread is down, or its lag is unknown (NULL: e.g. just reconnected, nothing received yet):
        // the data is at least as fresh as when a lag was last measured with the IO thread running.
        let Some((seen, Some(frozen))) = io_seen else {
            let why = if obs.io_running { "replication lag is unknown (NULL)" } else { "the IO thread is not running" };
            return verdict(Some(why.into()), None, false);
        };
        if master_down && within(frozen) {
            return verdict(None, Some(frozen), true);
        }
        let bound = frozen + self.now.saturating_duration_since(seen).as_secs_f64();
        if within(bound) {
            // Not known to be a master outage (yet): at most `bound` behind.
            return verdict(None, Some(bound), false);
        }
        let why = if obs.io_running {
            "replication lag is unknown (NULL) for too long"
        } else {
            "the IO thread is not running and the master is reachable"
        };
        verdict(Some(why.into()), Some(bound), false)
    }
}

/// Whether the checker's last probe of the server taking writes failed, or there is none.
fn master_unreachable(state: &Snapshot, configured: &Arc<str>) -> bool {
    let failed = |addr: &Arc<str>| state.servers.get(addr).is_some_and(|s| s.fail_streak > 0);
    match &state.writer {
        Writer::Configured => failed(configured),
        Writer::Detected(a) => failed(a),
        Writer::None => true,
        Writer::Ambiguous(_) => false,
    }
}

/// The one writable, reachable server, or why there is none.
fn detect_writer(state: &Snapshot) -> Writer {
    let mut writable: Vec<Arc<str>> = state
        .servers
        .iter()
        .filter(|(_, s)| s.reachable && s.read_only == Some(false))
        .map(|(a, _)| Arc::clone(a))
        .collect();
    writable.sort();
    match writable.len() {
        0 => Writer::None,
        1 => Writer::Detected(writable.remove(0)),
        _ => Writer::Ambiguous(writable),
    }
}

/// The master's current binary log coordinates (`SHOW MASTER STATUS`; `SHOW BINARY LOG STATUS` on MySQL
/// 8.4), if binary logging is on.
async fn master_binlog(conn: &mut Conn) -> Result<Option<BinlogPos>, String> {
    let row: Option<Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query_first("SHOW BINARY LOG STATUS").await.map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    Ok(binlog_from(row))
}

/// The position in a `SHOW MASTER STATUS` row (none without binary logging).
fn binlog_from(row: Option<Row>) -> Option<BinlogPos> {
    let row = row?;
    let file = row.get_opt::<String, _>("File").and_then(Result::ok)?;
    let pos = row.get_opt::<u64, _>("Position").and_then(Result::ok)?;
    Some(BinlogPos { file, pos })
}

/// The master's binary log files and sizes (`SHOW BINARY LOGS`; empty without binary logging).
async fn binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>, String> {
    binary_logs_from(conn.query::<Row, _>("SHOW BINARY LOGS").await)
}

/// The files and sizes of a `SHOW BINARY LOGS` result.
fn binary_logs_from(rows: Result<Vec<Row>, mysql_async::Error>) -> Result<Vec<(String, u64)>, String> {
    match rows {
        Ok(rows) => Ok(rows
            .into_iter()
            .filter_map(|row| {
                let file = row.get_opt::<String, _>("Log_name").and_then(Result::ok)?;
                let size = row.get_opt::<u64, _>("File_size").and_then(Result::ok)?;
                Some((file, size))
            })
            .collect()),
        // 1381: binary logging is off.
        Err(mysql_async::Error::Server(e)) if e.code == 1381 => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// Semi-sync state under MariaDB's and MySQL's names (absent when the feature is off or not installed).
async fn semisync_status(conn: &mut Conn, view: &mut ReplicationView) -> Result<(), String> {
    let rows: Vec<(String, String)> = conn.query(SEMISYNC_STATUS).await.map_err(|e| e.to_string())?;
    semisync_from(&rows, view);
    Ok(())
}

/// The semi-sync status variables under MariaDB's and MySQL's names.
const SEMISYNC_STATUS: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', \
     'Rpl_semi_sync_master_clients', 'Rpl_semi_sync_slave_status', 'Rpl_semi_sync_source_status', \
     'Rpl_semi_sync_source_clients', 'Rpl_semi_sync_replica_status')";

/// Semi-sync state from the (name, value) rows of [`SEMISYNC_STATUS`].
fn semisync_from(rows: &[(String, String)], view: &mut ReplicationView) {
    let get = |names: [&str; 2]| rows.iter().find(|(n, _)| names.contains(&n.as_str())).map(|(_, v)| v.as_str());
    let on = |v: &str| v.eq_ignore_ascii_case("ON");
    let master = get(["Rpl_semi_sync_master_status", "Rpl_semi_sync_source_status"]).map(on);
    let clients = get(["Rpl_semi_sync_master_clients", "Rpl_semi_sync_source_clients"]).and_then(|v| v.parse().ok());
    view.semisync_master = master.map(|m| (m, clients.unwrap_or(0)));
    view.semisync_replica = get(["Rpl_semi_sync_slave_status", "Rpl_semi_sync_replica_status"]).map(on);
}

/// Why the monitor account could not read the replication status.
fn no_privilege(e: mysql_async::Error, user: &str) -> String {
    match e {
        mysql_async::Error::Server(e) if e.code == 1227 || e.code == 1044 || e.code == 1045 => format!(
            "the monitor account cannot read the replication status: GRANT SLAVE MONITOR, REPLICATION CLIENT \
             ON *.* TO '{user}' (MySQL: REPLICATION CLIENT) (server said: {})",
            e.message
        ),
        e => e.to_string(),
    }
}

/// What a `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` row (none: not a replica) tells.
fn apply_replica_status(status: Option<Row>, obs: &mut Observation) {
    if let Some(row) = status {
        let (io, sql, seconds) = replication_fields(&row);
        replication_view(&row, &mut obs.replication);
        obs.is_replica = true;
        (obs.io_running, obs.sql_running) = (io, sql);
        obs.lag = seconds.map(|s| s as f64);
        obs.binlog = executed_binlog(&row);
    }
}

/// The server's GTID position (`@@gtid_slave_pos` / `@@gtid_executed`).
fn apply_gtid(gtid: Option<String>, obs: &mut Observation) {
    let flavor = if obs.mariadb { Flavor::MariaDb } else { Flavor::MySql };
    obs.position = gtid.as_deref().and_then(|g| Position::parse(flavor, g));
    obs.gtid = gtid;
}

/// The lag from this process's heartbeat row as replicated (its timestamp in µs), when there is one.
fn apply_heartbeat(ts: Result<Option<i64>, mysql_async::Error>, obs: &mut Observation) -> Result<(), String> {
    obs.lag = match ts {
        Ok(Some(ts)) => Some(((now_micros() - ts) as f64 / 1e6).max(0.0)),
        // No heartbeat replicated yet (or the table is missing): lag unknown.
        Ok(None) | Err(mysql_async::Error::Server(_)) => None,
        Err(e) => return Err(e.to_string()),
    };
    Ok(())
}

/// The replication facts of a `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` row.
fn replication_view(row: &Row, view: &mut ReplicationView) {
    let text = |names: &[&str]| -> Option<String> {
        names.iter().find_map(|n| row.get_opt::<Option<String>, _>(*n).and_then(Result::ok)).flatten()
    };
    let gtid = match text(&["Using_Gtid"]) {
        Some(using) => !using.eq_ignore_ascii_case("No"),
        None => text(&["Auto_Position"]).is_some_and(|v| v == "1"),
    };
    view.mode = Some(if gtid { "gtid" } else { "position" });
    view.io_state = text(&["Slave_IO_Running", "Replica_IO_Running"]);
    view.sql_state = text(&["Slave_SQL_Running", "Replica_SQL_Running"]);
    view.last_io_error = text(&["Last_IO_Error"]).filter(|e| !e.is_empty());
    view.last_sql_error = text(&["Last_SQL_Error"]).filter(|e| !e.is_empty());
    view.source_server_id = text(&["Master_Server_Id", "Source_Server_Id"]).and_then(|v| v.parse().ok());
}

/// How far a replica has executed its master's binary log: `Relay_Master_Log_File` and
/// `Exec_Master_Log_Pos` (`…_Source_…` on MySQL 8).
fn executed_binlog(row: &Row) -> Option<BinlogPos> {
    let text = |names: &[&str]| -> Option<String> {
        names.iter().find_map(|n| row.get_opt::<Option<String>, _>(*n).and_then(Result::ok)).flatten()
    };
    let file = text(&["Relay_Master_Log_File", "Relay_Source_Log_File"]).filter(|f| !f.is_empty())?;
    let pos = text(&["Exec_Master_Log_Pos", "Exec_Source_Log_Pos"])?.parse().ok()?;
    Some(BinlogPos { file, pos })
}

/// IO thread running, SQL thread running, seconds behind, under MariaDB/MySQL 5.7 or MySQL 8 names.
fn replication_fields(row: &Row) -> (bool, bool, Option<u64>) {
    let text = |names: &[&str]| -> Option<String> {
        names.iter().find_map(|n| row.get_opt::<Option<String>, _>(*n).and_then(Result::ok)).flatten()
    };
    let io = text(&["Slave_IO_Running", "Replica_IO_Running"]).is_some_and(|v| v == "Yes");
    let sql = text(&["Slave_SQL_Running", "Replica_SQL_Running"]).is_some_and(|v| v == "Yes");
    let seconds = text(&["Seconds_Behind_Master", "Seconds_Behind_Source"]).and_then(|v| v.parse().ok());
    (io, sql, seconds)
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn server(reachable: bool, read_only: Option<bool>) -> ServerHealth {
        ServerHealth { reachable, read_only, probes: 1, ..ServerHealth::default() }
    }

    #[test]
    fn binlog_distance_across_files() {
        let pos = |file: &str, pos: u64| BinlogPos { file: file.into(), pos };
        let files = vec![("b.000001".to_string(), 1000), ("b.000002".to_string(), 500), ("b.000003".to_string(), 300)];
        assert_eq!(binlog_behind(&pos("b.000003", 100), &pos("b.000003", 300), &files), Some(200));
        assert_eq!(binlog_behind(&pos("b.000001", 900), &pos("b.000003", 40), &files), Some(100 + 500 + 40));
        assert_eq!(binlog_behind(&pos("b.000002", 500), &pos("b.000003", 4), &files), Some(4));
        assert_eq!(binlog_behind(&pos("b.000009", 1), &pos("b.000003", 4), &files), None, "unknown file");
        assert_eq!(binlog_behind(&pos("b.000003", 1), &pos("b.000001", 4), &files), None, "ahead of the master");
        assert_eq!(binlog_behind(&pos("b.000003", 400), &pos("b.000003", 300), &files), Some(0));
    }

    #[test]
    fn writer_detection() {
        let mut s = Snapshot { checked: true, ..Snapshot::default() };
        s.servers.insert("a:1".into(), server(true, Some(true)));
        s.servers.insert("b:1".into(), server(true, Some(false)));
        s.servers.insert("c:1".into(), server(false, Some(false)));
        assert_eq!(detect_writer(&s), Writer::Detected("b:1".into()));
        s.servers.insert("a:1".into(), server(true, Some(false)));
        assert!(matches!(detect_writer(&s), Writer::Ambiguous(v) if v.len() == 2));
        s.servers.clear();
        assert_eq!(detect_writer(&s), Writer::None);
        let configured: Arc<str> = "m:1".into();
        assert!(s.writer(&configured).is_ok());
    }

    #[test]
    fn unchecked_snapshots_allow_everything() {
        let s = Snapshot::default();
        assert!(s.serves_reads("x:1") && s.reachable("x:1"));
        let mut checked = Snapshot { checked: true, ..Snapshot::default() };
        assert!(!checked.serves_reads("x:1"));
        checked.servers.insert("x:1".into(), ServerHealth::default());
        assert!(checked.reachable("x:1"), "not yet probed counts as reachable");
    }

    fn replica(io: bool, sql: bool, lag: Option<f64>) -> Observation {
        Observation { is_replica: true, io_running: io, sql_running: sql, lag, ..Observation::default() }
    }

    #[test]
    fn the_gate_serves_frozen_replicas_through_a_master_outage_only() {
        let now = Instant::now();
        let gate = Gate { max_lag: 2.0, gated: true, now };
        let seen = |ago_ms: u64, lag: f64| Some((now - Duration::from_millis(ago_ms), Some(lag)));
        // Running replication: the measured lag decides.
        assert_eq!(gate.judge(&replica(true, true, Some(1.0)), None, false).why_not, None);
        assert!(gate.judge(&replica(true, true, Some(3.0)), None, false).why_not.is_some());
        assert!(gate.judge(&replica(true, true, None), None, false).why_not.is_some());
        // A NULL lag right after a good one (the IO thread reconnected): bounded by the time since.
        assert_eq!(gate.judge(&replica(true, true, None), seen(500, 0.0), false).why_not, None);
        assert!(gate.judge(&replica(true, true, None), seen(2_500, 0.0), false).why_not.is_some());
        // A stopped SQL thread never serves, master down or not.
        assert!(gate.judge(&replica(true, false, Some(0.0)), seen(0, 0.0), true).why_not.is_some());
        // IO thread down, master down: frozen at the lag last measured, for as long as the outage lasts.
        let v = gate.judge(&replica(false, true, None), seen(60_000, 0.5), true);
        assert_eq!(v, Verdict { why_not: None, lag: Some(0.5), frozen: true });
        // … unless it was already too far behind, or its lag before is unknown.
        assert!(gate.judge(&replica(false, true, None), seen(100, 2.5), true).why_not.is_some());
        assert!(gate.judge(&replica(false, true, None), None, true).why_not.is_some());
        // IO thread down, master answering: only while frozen lag + time since seen stays within the bound.
        let v = gate.judge(&replica(false, true, None), seen(1_000, 0.5), false);
        assert_eq!((v.why_not.as_deref(), v.frozen), (None, false));
        assert!(v.lag.is_some_and(|l| (1.49..1.6).contains(&l)), "{v:?}");
        assert!(gate.judge(&replica(false, true, None), seen(1_600, 0.5), false).why_not.is_some());
        // Servers not gated (the master without detection) always pass.
        let master = Gate { gated: false, ..gate };
        assert_eq!(master.judge(&Observation::default(), None, false).why_not, None);
    }

    #[test]
    fn the_writer_counts_down_from_its_first_failed_probe() {
        let configured: Arc<str> = "m:1".into();
        let mut s = Snapshot { checked: true, ..Snapshot::default() };
        s.servers.insert("m:1".into(), server(true, Some(false)));
        assert!(!master_unreachable(&s, &configured));
        if let Some(m) = s.servers.get_mut("m:1") {
            m.fail_streak = 1;
        }
        assert!(master_unreachable(&s, &configured));
        s.writer = Writer::Detected("r:1".into());
        assert!(!master_unreachable(&s, &configured), "the detected writer is what counts");
        s.writer = Writer::None;
        assert!(master_unreachable(&s, &configured));
    }
}
