//! State shared by every session and background task, made of parts that each own one concern:
//! the config and topology snapshots, the backend pool, the session [`Registry`], the [`HealthHub`], what
//! was learned from the servers ([`ServerInfo`]), and the metrics. [`Shared::backend_views`] is the one
//! description of the backends that the admin interface and the metrics both render.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use rwsplit_wire::CapabilityFlags;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::HealthHub;
use crate::position::Position;
use crate::registry::Registry;
use crate::{backend, metrics, pool, topology};

/// State shared by every session.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in force. Load it once per command; never hold it across an await.
    pub config: ArcSwap<Config>,
    /// The backends as built from that configuration.
    pub topology: ArcSwap<topology::Topology>,
    /// One pool per event loop (`workers`, at least one), under shared caps: a backend connection stays on
    /// its loop.
    pub pools: Vec<Arc<pool::Pool>>,
    /// Live sessions, for KILL, the admin interface and connection counts.
    pub registry: Registry,
    /// Backend health as published by the checker.
    pub health: HealthHub,
    /// What rwsplit learned from the backends themselves.
    pub servers: ServerInfo,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// Client connection caps and the backoff after failed logins.
    pub admission: Arc<crate::admission::Admission>,
    /// Cancelled at shutdown; parent of every background task (checker generations, watcher, listeners).
    root: CancellationToken,
    /// This process's id (heartbeat row key), stable across reloads.
    instance: String,
}

/// What the servers told rwsplit about themselves, refreshed whenever a backend connection is opened.
#[derive(Debug, Default)]
pub struct ServerInfo {
    /// The version string and capabilities of the last greeting seen: the version is announced to clients,
    /// the capabilities narrow what rwsplit offers them.
    greeting: ArcSwapOption<(String, CapabilityFlags)>,
    /// Session defaults of the master, read on each new master connection.
    defaults: ArcSwapOption<backend::ServerDefaults>,
    /// The replication position of every write this process acknowledged (for `consistency: global`).
    acked: Mutex<Option<Position>>,
    /// When this process last acknowledged a write whose position the master did not report (binary log
    /// positions).
    acked_at: Mutex<Option<std::time::Instant>>,
}

impl ServerInfo {
    /// Records a backend's greeting (kept only if it differs from the last one).
    pub fn learn_greeting(&self, version: &str, caps: CapabilityFlags) {
        let same = self.greeting.load().as_ref().is_some_and(|g| g.0 == version && g.1 == caps);
        if !same {
            self.greeting.store(Some(Arc::new((version.to_string(), caps))));
        }
    }

    /// The last greeting seen.
    pub fn greeting(&self) -> Option<(String, CapabilityFlags)> {
        self.greeting.load().as_deref().cloned()
    }

    /// Records the master's session defaults.
    pub fn learn_defaults(&self, defaults: backend::ServerDefaults) {
        let same = self.defaults.load().as_deref() == Some(&defaults);
        if !same {
            self.defaults.store(Some(Arc::new(defaults)));
        }
    }

    /// The master's session defaults, once a connection has read them.
    pub fn defaults(&self) -> Option<Arc<backend::ServerDefaults>> {
        self.defaults.load_full()
    }

    /// Records the position of a write the master acknowledged to a client.
    pub fn learn_write(&self, written: &Position) {
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        match acked.as_mut() {
            Some(p) => p.merge(written),
            None => *acked = Some(written.clone()),
        }
    }

    /// Records when a write without a reported position was acknowledged.
    pub fn learn_write_at(&self, at: std::time::Instant) {
        *self.acked_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// When the last write without a reported position was acknowledged.
    pub fn acked_at(&self) -> Option<std::time::Instant> {
        *self.acked_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The position covering every write acknowledged so far.
    pub fn acked(&self) -> Option<Position> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One configured backend as the admin interface and the metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendView {
    /// `host:port`.
    pub addr: Arc<str>,
    /// Writes go here now (the configured master, or the detected writer with `detect_master`).
    pub is_writer: bool,
    /// The replica's configured weight (None for the configured master).
    pub weight: Option<u32>,
    /// The last probe answered (None before the first probe or without a health checker).
    pub reachable: Option<bool>,
    /// The writer takes writes / the replica gets reads now.
    pub serving: bool,
    /// Taken out of the read rotation by hand.
    pub offline: bool,
    /// Replication lag as last probed, in seconds.
    pub lag: Option<f64>,
    /// The lag is frozen at its last measured value: the replica's IO thread lost a master that the
    /// checker cannot reach either, and the replica serves reads on its data as of the master's last write.
    pub lag_frozen: bool,
    /// `@@read_only` as last probed.
    pub read_only: Option<bool>,
    /// GTID position as last probed.
    pub gtid: Option<String>,
    /// Binary log coordinates as last probed: how far a replica executed the master's log; the master's own
    /// position when read-your-writes follows binary log positions.
    pub binlog: Option<String>,
    /// Why the last probe was bad.
    pub last_error: Option<String>,
    /// When the backend last changed state (None before the first probe).
    pub last_change: Option<SystemTime>,
    /// Connections sessions hold to it.
    pub in_use: usize,
    /// Idle pooled connections to it.
    pub idle: usize,
    /// Its replication as last probed (None before the first good probe).
    pub replication: Option<crate::health::ReplicationView>,
    /// A replica's executed position behind the master's binary log end, in bytes (both as last probed).
    pub binlog_behind: Option<u64>,
    /// How long its last probe took (or has waited, while one is under way), in seconds.
    pub probe_seconds: Option<f64>,
}

impl Shared {
    /// Shared state for a config.
    pub fn new(config: Config) -> Arc<Shared> {
        let first = pool::Pool::default();
        let others: Vec<_> = (1..config.workers.max(1)).map(|_| Arc::new(first.sharing_caps())).collect();
        let pools = std::iter::once(Arc::new(first)).chain(others).collect();
        Arc::new(Shared {
            topology: ArcSwap::from_pointee(topology::Topology::new(&config)),
            config: ArcSwap::from_pointee(config),
            pools,
            registry: Registry::default(),
            health: HealthHub::default(),
            servers: ServerInfo::default(),
            metrics: metrics::Metrics::new(),
            admission: Arc::default(),
            root: CancellationToken::new(),
            instance: format!("{:016x}", rand::random::<u64>()),
        })
    }

    /// The first event loop's pool (the only one with `workers: 1`).
    pub fn pool(&self) -> &Arc<pool::Pool> {
        &self.pools[0]
    }

    /// Cancelled at shutdown: the parent of every background task's token.
    pub fn root(&self) -> &CancellationToken {
        &self.root
    }

    /// This process's id, used as its heartbeat row key.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Every configured backend, the master first, then the replicas in config order.
    pub fn backend_views(&self) -> Vec<BackendView> {
        let config = self.config.load();
        let health = self.health.load();
        let configured: Arc<str> = config.master.address.as_str().into();
        let writer = health.writer(&configured).ok().cloned();
        let replicas = config.replicas.iter().map(|r| (r.address.as_str(), Some(r.weight)));
        let master_view = health.servers.get(config.master.address.as_str()).map(|m| &m.replication);
        std::iter::once((config.master.address.as_str(), None))
            .chain(replicas)
            .map(|(addr, weight)| {
                let is_writer = writer.as_deref() == Some(addr);
                let probed = health.servers.get(addr).filter(|s| health.checked && s.probes > 0);
                let serving = if is_writer {
                    health.reachable(addr) && (!health.checked || health.servers.contains_key(addr))
                } else {
                    weight.is_some() && health.serves_reads(addr)
                };
                BackendView {
                    addr: addr.into(),
                    is_writer,
                    weight,
                    reachable: probed.map(|s| s.reachable),
                    serving,
                    offline: health.offline.contains(addr),
                    lag: probed.and_then(|s| s.lag),
                    lag_frozen: probed.is_some_and(|s| s.frozen),
                    read_only: probed.and_then(|s| s.read_only),
                    gtid: probed.and_then(|s| s.gtid.clone()),
                    binlog: probed.and_then(|s| s.binlog.as_ref()).map(|b| format!("{}:{}", b.file, b.pos)),
                    last_error: probed.and_then(|s| s.last_error.clone()),
                    last_change: probed.map(|s| s.changed_at),
                    in_use: self.registry.in_use_count(addr),
                    idle: self.pools.iter().map(|p| p.idle_count(addr)).sum(),
                    replication: probed.map(|s| s.replication.clone()),
                    binlog_behind: probed.filter(|_| weight.is_some()).and_then(|s| {
                        let (exec, master) = (s.binlog.as_ref()?, master_view?);
                        crate::health::binlog_behind(exec, master.binlog_end.as_ref()?, &master.binlog_files)
                    }),
                    probe_seconds: probed.and_then(|s| s.probe_seconds),
                }
            })
            .collect()
    }

    /// The backends' version string and capabilities; probes the master, then the replicas, if no greeting
    /// has been seen yet.
    pub async fn backend_info(&self) -> Option<(String, CapabilityFlags)> {
        if let Some(g) = self.servers.greeting() {
            return Some(g);
        }
        let topology = self.topology.load_full();
        let timeout = self.config.load().connect_timeout;
        let addrs = std::iter::once(&topology.master).chain(topology.replicas.iter().map(|r| &r.addr));
        for addr in addrs {
            match backend::probe_version(addr, timeout).await {
                Ok((version, caps)) => {
                    self.servers.learn_greeting(&version, caps);
                    return Some((version, caps));
                }
                Err(e) => tracing::warn!(backend = %addr, error = %e, "cannot read backend version"),
            }
        }
        None
    }
}
