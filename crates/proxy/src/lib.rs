//! rwsplit: a transparent read/write-splitting MySQL proxy.
//!
//! - [`config`]: `proxy.yaml`, parsed and validated as a whole into an immutable snapshot.
//! - [`topology`]: master, replicas, weighted replica choice, replicas skipped after a failed connect.
//! - [`session`]: one client connection: login, routing, state tracking, prepared statements, forwarding.
//! - [`backend`]: one backend connection: login (native and caching_sha2), reset, proxy-internal commands.
//! - [`pool`]: idle backend connections per login, reset before reuse.
//! - [`io`]: buffered frame I/O over a TCP stream.
//! - [`error`]: errors by whose fault they are (client, backend).
//!
//! [`run`] is the whole proxy: tests start it in-process on `127.0.0.1:0`; `main.rs` only parses arguments.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod io;
pub mod metrics;
pub mod pool;
pub mod reload;
pub mod session;
pub mod topology;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rwsplit_wire::CapabilityFlags;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
use metrics::BackendGauges;

/// State shared by every session.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in force. Sessions `load()` it when they need a setting; never held across await.
    pub config: ArcSwap<Config>,
    /// The backends as built from that configuration.
    pub topology: ArcSwap<topology::Topology>,
    /// Idle backend connections.
    pub pool: Arc<pool::Pool>,
    /// Next connection id announced to a client.
    next_id: AtomicU32,
    /// The backends' version string and capabilities, learned from the first backend greeting: the version
    /// is announced to clients, the capabilities narrow what rwsplit offers them.
    backend: OnceLock<(String, CapabilityFlags)>,
    /// Health of every backend, as last published by the checker (read without locks).
    pub health: ArcSwap<health::Snapshot>,
    /// The checker's working copy of the snapshot (locked by probe tasks only).
    health_state: health::HealthState,
    /// Ticks when some backend's reachability changes, waking sessions waiting on a hung backend.
    health_tick: tokio::sync::watch::Sender<u64>,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// Cancelled at shutdown; parent of every background task (checker generations, watcher).
    root: CancellationToken,
    /// The running checker generation; cancelled and replaced on reload.
    checker: Mutex<Option<CancellationToken>>,
    /// This process's id (heartbeat row key), stable across reloads.
    instance: String,
    /// Live sessions by connection id, for KILL: who they are and which backend threads they use.
    /// Locked only when a session starts, ends or attaches a backend, never per query.
    sessions: Mutex<HashMap<u32, SessionEntry>>,
}

/// What KILL and the admin interface need to know about a session.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// The account it is logged in as.
    pub user: String,
    /// The client's address.
    pub peer: String,
    /// When the session started.
    pub started: std::time::SystemTime,
    /// Backend threads it currently uses: (backend address, server thread id), master then replica.
    pub backends: [Option<(Arc<str>, u32)>; 2],
    /// Cancelling it closes the session (KILL CONNECTION).
    pub cancel: CancellationToken,
}

impl Shared {
    /// Shared state for a config.
    pub fn new(config: Config) -> Arc<Shared> {
        Arc::new(Shared {
            topology: ArcSwap::from_pointee(topology::Topology::new(&config)),
            config: ArcSwap::from_pointee(config),
            pool: Arc::new(pool::Pool::default()),
            next_id: AtomicU32::new(1),
            backend: OnceLock::new(),
            sessions: Mutex::new(HashMap::new()),
            health: ArcSwap::from_pointee(health::Snapshot::default()),
            health_state: Mutex::new(health::Snapshot::default()),
            health_tick: tokio::sync::watch::Sender::new(0),
            metrics: metrics::Metrics::new(),
            root: CancellationToken::new(),
            checker: Mutex::new(None),
            instance: format!("{:016x}", rand::random::<u64>()),
        })
    }

    fn next_connection_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new checker generation token (child of the root), cancelling the previous one.
    fn new_checker_generation(&self) -> CancellationToken {
        let token = self.root.child_token();
        let mut slot = self.checker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.replace(token.clone()) {
            old.cancel();
        }
        token
    }

    /// This process's id, used as its heartbeat row key.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Publishes a new health snapshot.
    pub fn publish_health(&self, snapshot: health::Snapshot) {
        self.health.store(Arc::new(snapshot));
    }

    /// Wakes sessions waiting for a backend to become unreachable.
    pub fn health_changed(&self) {
        self.health_tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Completes when the health checker reports `addr` unreachable (never, without a checker).
    pub async fn unreachable(&self, addr: &str) {
        if self.config.load().health.is_none() {
            // Nothing will ever report it: skip subscribing (this races every replica read).
            return std::future::pending().await;
        }
        let mut rx = self.health_tick.subscribe();
        loop {
            if !self.health.load().reachable(addr) {
                return;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u32, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers or updates a session.
    pub fn publish_session(&self, id: u32, entry: SessionEntry) {
        self.sessions().insert(id, entry);
    }

    /// Forgets a session that ended.
    pub fn forget_session(&self, id: u32) {
        self.sessions().remove(&id);
    }

    /// A session by connection id.
    pub fn session(&self, id: u32) -> Option<SessionEntry> {
        self.sessions().get(&id).cloned()
    }

    /// Every live session, by connection id.
    pub fn sessions_list(&self) -> Vec<(u32, SessionEntry)> {
        let mut v: Vec<(u32, SessionEntry)> = self.sessions().iter().map(|(k, e)| (*k, e.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Backend connections sessions hold to `addr` right now.
    pub fn in_use_count(&self, addr: &str) -> usize {
        self.sessions().values().flat_map(|e| e.backends.iter().flatten()).filter(|(a, _)| &**a == addr).count()
    }

    /// The Prometheus text exposition, with backend gauges refreshed from the current state.
    pub fn render_metrics(&self) -> String {
        let topology = self.topology.load();
        let health = self.health.load();
        let writer = health.writer(&topology.master).ok().cloned();
        let mut rows = Vec::new();
        let master_addr = writer.unwrap_or_else(|| Arc::clone(&topology.master));
        let master_up =
            health.reachable(&master_addr) && (!health.checked || health.servers.contains_key(&*master_addr));
        let gauges = |addr: &str| (self.in_use_count(addr) as i64, self.pool.idle_count(addr) as i64);
        let (in_use, idle) = gauges(&master_addr);
        rows.push(BackendGauges {
            addr: master_addr.to_string(),
            role: "master",
            up: master_up,
            lag: None,
            in_use,
            idle,
        });
        for r in &topology.replicas {
            let lag = health.servers.get(&r.addr).and_then(|s| s.lag);
            let (in_use, idle) = gauges(&r.addr);
            let up = health.serves_reads(&r.addr);
            rows.push(BackendGauges { addr: r.addr.to_string(), role: "replica", up, lag, in_use, idle });
        }
        self.metrics.set_backends(&rows);
        self.metrics.client_connections.set(self.session_count() as i64);
        self.metrics.encode()
    }

    /// Number of live client sessions.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Records the backends' version string and capabilities (the first greeting seen wins).
    pub fn learn_backend(&self, version: &str, caps: CapabilityFlags) {
        let _ = self.backend.set((version.to_string(), caps));
    }

    /// The backends' version string and capabilities; probes the master, then the replicas, if none has
    /// been seen yet.
    pub async fn backend_info(&self) -> Option<(String, CapabilityFlags)> {
        if let Some(b) = self.backend.get() {
            return Some(b.clone());
        }
        let topology = self.topology.load_full();
        let timeout = self.config.load().connect_timeout;
        let addrs = std::iter::once(&topology.master).chain(topology.replicas.iter().map(|r| &r.addr));
        for addr in addrs {
            match backend::probe_version(addr, timeout).await {
                Ok((version, caps)) => {
                    self.learn_backend(&version, caps);
                    return Some((version, caps));
                }
                Err(e) => tracing::warn!(backend = %addr, error = %e, "cannot read backend version"),
            }
        }
        None
    }
}

/// Runs the proxy on `listener` until `shutdown` is cancelled, then gives sessions `shutdown_grace` to
/// finish their current command.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    let shared = Shared::new(config);
    serve(shared, listener, shutdown).await
}

/// Like [`run`], with shared state the caller keeps (tests inspect the pool and topology through it).
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    if shared.backend_info().await.is_none() {
        tracing::warn!("no backend reachable at start; will announce a generic version until one is");
    }
    let root = shared.root.clone();
    let outer = shutdown.clone();
    tokio::spawn(async move {
        outer.cancelled().await;
        root.cancel();
    });
    health::start(&shared);
    reload::spawn_watcher(&shared);
    let config = shared.config.load_full();
    if let Some(m) = &config.metrics {
        let listener = TcpListener::bind(m.listen).await?;
        tracing::info!(listen = %m.listen, "metrics endpoint (/metrics, /healthz, /readyz)");
        tokio::spawn(http::serve(Arc::clone(&shared), listener, shared.root.clone()));
    }
    if let Some(a) = &config.admin {
        let listener = TcpListener::bind(a.listen).await?;
        tracing::info!(listen = %a.listen, "admin interface");
        tokio::spawn(admin::serve(Arc::clone(&shared), listener, shared.root.clone()));
    }
    let tracker = TaskTracker::new();
    tracing::info!(listen = %listener.local_addr()?, "rwsplit accepting connections");
    accept_loop(&listener, &shutdown, "client", |stream, peer| {
        tracker.spawn(session::serve(stream, peer, Arc::clone(&shared), shutdown.clone()));
    })
    .await;
    tracker.close();
    let grace = shared.config.load().shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(sessions = tracker.len(), "shutdown grace period over; closing remaining sessions");
    }
    Ok(())
}

/// Accepts connections on `listener` and hands each to `handle` until `cancel`. A failed accept (e.g. out of
/// file descriptors) is logged and retried after a short pause, so the loop never spins; open connections
/// are unaffected.
pub(crate) async fn accept_loop<F>(listener: &TcpListener, cancel: &CancellationToken, what: &str, mut handle: F)
where
    F: FnMut(tokio::net::TcpStream, std::net::SocketAddr),
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => handle(stream, peer),
            Err(e) => {
                tracing::warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
