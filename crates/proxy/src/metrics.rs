//! Prometheus metrics. One [`Registry`] per process, owned by [`crate::Shared`] (no global state, so tests
//! read exactly what a scrape would).
//!
//! The query path never takes a lock: sessions resolve the labelled children they need once (a read lock
//! inside `prometheus`, at most once per session and label set) and then only do atomic increments.
//! Gauges about backends are set by the health checker and the pool, off the query path.

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Error kinds counted in `rwsplit_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A client broke the protocol (malformed, oversized or out-of-order packets).
    ClientProtocol,
    /// Connecting or logging in to a backend failed.
    BackendConnect,
    /// A backend failed during a command.
    BackendQuery,
    /// A client login was refused.
    AuthFailure,
}

impl ErrorKind {
    fn label(self) -> &'static str {
        match self {
            ErrorKind::ClientProtocol => "client_protocol",
            ErrorKind::BackendConnect => "backend_connect",
            ErrorKind::BackendQuery => "backend_query",
            ErrorKind::AuthFailure => "auth_failure",
        }
    }
}

/// How a read that had to see some writes (see `session/consistency.rs`) was served, counted in
/// `rwsplit_consistent_reads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsistentRead {
    /// A replica known to have applied them served it at once.
    CaughtUp,
    /// A replica waited for them (in the same round trip) and served it.
    Waited,
    /// No replica could: the master served it.
    Master,
    /// A replica's wait timed out: the master served it.
    TimedOut,
}

impl ConsistentRead {
    const ALL: [ConsistentRead; 4] =
        [ConsistentRead::CaughtUp, ConsistentRead::Waited, ConsistentRead::Master, ConsistentRead::TimedOut];

    fn label(self) -> &'static str {
        match self {
            ConsistentRead::CaughtUp => "caught_up",
            ConsistentRead::Waited => "waited",
            ConsistentRead::Master => "master",
            ConsistentRead::TimedOut => "timed_out",
        }
    }
}

/// Every metric rwsplit exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    queries: IntCounterVec,
    duration: [Histogram; 2],
    /// Open client sessions.
    pub client_connections: IntGauge,
    backend_connections: IntGaugeVec,
    replica_lag: GaugeVec,
    probe_duration: GaugeVec,
    backend_up: IntGaugeVec,
    reloads: IntCounterVec,
    last_reload: Gauge,
    errors: IntCounterVec,
    consistent_reads: [IntCounter; 4],
    consistency_wait: Histogram,
    login_failures: IntCounterVec,
    refused: IntCounterVec,
    /// Replication, per server (see admin `SHOW REPLICATION`).
    replication: ReplicationGauges,
}

/// The replication gauges, refreshed at every scrape from the health checker's last probes.
#[derive(Debug, Clone)]
struct ReplicationGauges {
    io_running: IntGaugeVec,
    sql_running: IntGaugeVec,
    behind_bytes: IntGaugeVec,
    semisync_status: IntGaugeVec,
    semisync_clients: IntGaugeVec,
}

impl ReplicationGauges {
    fn new() -> ReplicationGauges {
        let gauge =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["backend"]).expect("valid metric");
        ReplicationGauges {
            io_running: gauge(
                "rwsplit_replica_io_running",
                "1 when the replica's IO thread runs (Slave_IO_Running: Yes)",
            ),
            sql_running: gauge("rwsplit_replica_sql_running", "1 when the replica's SQL thread runs"),
            behind_bytes: gauge(
                "rwsplit_replica_binlog_behind_bytes",
                "How far the replica's executed position is behind the master's binary log end, in bytes",
            ),
            semisync_status: gauge(
                "rwsplit_semisync_master_status",
                "1 while the master replicates semi-synchronously, 0 after it fell back to asynchronous",
            ),
            semisync_clients: gauge(
                "rwsplit_semisync_master_clients",
                "Semi-synchronous replicas connected to the master",
            ),
        }
    }

    fn all(&self) -> [&IntGaugeVec; 5] {
        [&self.io_running, &self.sql_running, &self.behind_bytes, &self.semisync_status, &self.semisync_clients]
    }
}

/// A session's cache of query counters by (route, backend, reason).
#[derive(Debug, Default)]
pub struct QueryCounters {
    /// (replica route, backend, reason, counter); a session meets a handful of combinations, so a linear
    /// scan comparing pointers beats hashing the address on every statement.
    counters: Vec<(bool, std::sync::Arc<str>, &'static str, IntCounter)>,
}

/// The Prometheus text exposition, with backend gauges refreshed from the current state (the same view
/// of the backends as the admin interface's `SHOW BACKENDS`).
pub fn render(shared: &crate::Shared) -> String {
    let m = &shared.metrics;
    m.backend_connections.reset();
    m.backend_up.reset();
    m.replica_lag.reset();
    m.probe_duration.reset();
    for g in m.replication.all() {
        g.reset();
    }
    for b in shared.backend_views() {
        let addr = &*b.addr;
        let role = if b.is_writer { "master" } else { "replica" };
        m.backend_up.with_label_values(&[addr, role]).set(i64::from(b.serving));
        if !b.is_writer {
            m.replica_lag.with_label_values(&[addr]).set(b.lag.unwrap_or(f64::NAN));
        }
        if let Some(r) = &b.replication {
            let yes = |state: &Option<String>| i64::from(state.as_deref() == Some("Yes"));
            if r.mode.is_some() {
                m.replication.io_running.with_label_values(&[addr]).set(yes(&r.io_state));
                m.replication.sql_running.with_label_values(&[addr]).set(yes(&r.sql_state));
            }
            if let Some((on, clients)) = r.semisync_master.filter(|_| b.is_writer) {
                m.replication.semisync_status.with_label_values(&[addr]).set(i64::from(on));
                m.replication.semisync_clients.with_label_values(&[addr]).set(i64::from(clients));
            }
        }
        if let Some(took) = b.probe_seconds {
            m.probe_duration.with_label_values(&[addr]).set(took);
        }
        if let Some(behind) = b.binlog_behind {
            m.replication.behind_bytes.with_label_values(&[addr]).set(behind as i64);
        }
        m.backend_connections.with_label_values(&[addr, "in_use"]).set(b.in_use as i64);
        m.backend_connections.with_label_values(&[addr, "idle"]).set(b.idle as i64);
    }
    m.client_connections.set(shared.registry.len() as i64);
    m.encode()
}

/// Histogram buckets for query latency: from 100 µs (a proxy's scale) to 10 s.
const BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let queries = IntCounterVec::new(
            Opts::new("rwsplit_queries_total", "Statements routed, by route, backend and the reason for the route"),
            &["route", "backend", "reason"],
        )
        .expect("valid metric");
        let duration_vec = HistogramVec::new(
            HistogramOpts::new(
                "rwsplit_query_duration_seconds",
                "Time from a command's arrival to the end of its response",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let client_connections =
            IntGauge::new("rwsplit_client_connections", "Open client sessions").expect("valid metric");
        let backend_connections = IntGaugeVec::new(
            Opts::new("rwsplit_backend_connections", "Backend connections by state (in_use, idle)"),
            &["backend", "state"],
        )
        .expect("valid metric");
        let replica_lag = GaugeVec::new(
            Opts::new("rwsplit_replica_lag_seconds", "Replication lag as last probed (NaN when unknown)"),
            &["backend"],
        )
        .expect("valid metric");
        let probe_duration = GaugeVec::new(
            Opts::new(
                "rwsplit_probe_duration_seconds",
                "How long the health checker's last probe of the backend took (or has waited, while one is under way)",
            ),
            &["backend"],
        )
        .expect("valid metric");
        let backend_up = IntGaugeVec::new(
            Opts::new("rwsplit_backend_up", "1 when the backend answered its last probe and (replicas) serves reads"),
            &["backend", "role"],
        )
        .expect("valid metric");
        let reloads =
            IntCounterVec::new(Opts::new("rwsplit_config_reloads_total", "Config reloads by result"), &["result"])
                .expect("valid metric");
        let last_reload = Gauge::new(
            "rwsplit_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (start or reload)",
        )
        .expect("valid metric");
        let errors =
            IntCounterVec::new(Opts::new("rwsplit_errors_total", "Errors by kind"), &["kind"]).expect("valid metric");
        let consistent_vec = IntCounterVec::new(
            Opts::new(
                "rwsplit_consistent_reads_total",
                "Reads that had to see earlier writes, by how they were served: caught_up (a replica known to \
                 have them), waited (a replica waited for them), master (no replica could), timed_out (a \
                 replica's wait timed out; the master served it)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let consistency_wait = Histogram::with_opts(
            HistogramOpts::new(
                "rwsplit_consistency_wait_seconds",
                "Time replicas took to answer a wait for the writes a read must see (reached or timed out)",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let login_failures = IntCounterVec::new(
            Opts::new(
                "rwsplit_login_failures_total",
                "Failed client logins by account (configured accounts by name, any other name as 'unknown')",
            ),
            &["user"],
        )
        .expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "rwsplit_client_connections_refused_total",
                "Client connections refused before login, by the cap reached",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for c in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(login_failures.clone()),
            Box::new(refused.clone()),
            Box::new(duration_vec.clone()),
            Box::new(client_connections.clone()),
            Box::new(backend_connections.clone()),
            Box::new(replica_lag.clone()),
            Box::new(probe_duration.clone()),
            Box::new(backend_up.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload.clone()),
            Box::new(errors.clone()),
            Box::new(consistent_vec.clone()),
            Box::new(consistency_wait.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        let replication = ReplicationGauges::new();
        for g in replication.all() {
            registry.register(Box::new(g.clone())).expect("metric registered once");
        }
        for kind in
            [ErrorKind::ClientProtocol, ErrorKind::BackendConnect, ErrorKind::BackendQuery, ErrorKind::AuthFailure]
        {
            errors.with_label_values(&[kind.label()]);
        }
        for reason in ["max_client_connections", "max_client_connections_per_peer"] {
            refused.with_label_values(&[reason]);
        }
        for result in ["ok", "rejected"] {
            reloads.with_label_values(&[result]);
        }
        let duration = [duration_vec.with_label_values(&["master"]), duration_vec.with_label_values(&["replica"])];
        let consistent_reads = ConsistentRead::ALL.map(|o| consistent_vec.with_label_values(&[o.label()]));
        let m = Metrics {
            registry,
            queries,
            duration,
            client_connections,
            backend_connections,
            replica_lag,
            probe_duration,
            backend_up,
            reloads,
            last_reload,
            errors,
            consistent_reads,
            consistency_wait,
            login_failures,
            refused,
            replication,
        };
        m.last_reload.set(unix_now());
        m
    }

    /// Counts a failed login; `user` is a configured account's name, or None for any other name (which
    /// must not become a label: clients choose it).
    pub fn login_failed(&self, user: Option<&str>) {
        self.login_failures.with_label_values(&[user.unwrap_or("unknown")]).inc();
    }

    /// Counts a client connection refused before login, by the cap's name.
    pub fn connection_refused(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    /// Counts a read that had to see earlier writes, by how it was served.
    pub fn consistent_read(&self, outcome: ConsistentRead) {
        let i = ConsistentRead::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.consistent_reads[i].inc();
    }

    /// Records how long a replica took to answer a wait.
    pub fn consistency_wait(&self, seconds: f64) {
        self.consistency_wait.observe(seconds);
    }

    /// Counts a routed statement and its duration. `counters` is the session's cache.
    pub fn query(
        &self,
        counters: &mut QueryCounters,
        replica: bool,
        backend: &std::sync::Arc<str>,
        reason: &'static str,
        seconds: f64,
    ) {
        let route = if replica { "replica" } else { "master" };
        let known = counters
            .counters
            .iter()
            .find(|(rep, b, r, _)| *rep == replica && std::ptr::eq(*r, reason) && Arc::ptr_eq(b, backend));
        match known {
            Some((_, _, _, counter)) => counter.inc(),
            None => {
                if counters.counters.len() >= 64 {
                    // Backends re-created by many reloads: start over rather than grow.
                    counters.counters.clear();
                }
                let counter = self.queries.with_label_values(&[route, backend, reason]);
                counter.inc();
                counters.counters.push((replica, Arc::clone(backend), reason, counter));
            }
        }
        self.duration[usize::from(replica)].observe(seconds);
    }

    /// Counts an error.
    pub fn error(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[kind.label()]).inc();
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads.with_label_values(&[if ok { "ok" } else { "rejected" }]).inc();
        if ok {
            self.last_reload.set(unix_now());
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
