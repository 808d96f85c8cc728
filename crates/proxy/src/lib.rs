//! rwsplit: a transparent read/write-splitting MySQL proxy.
//!
//! The crate map (each module owns one thing):
//! - [`config`]: `proxy.yaml`, parsed and validated as a whole into an immutable snapshot.
//! - [`shared`]: the state every session shares, in parts ([`Shared`]), and the one view of the backends
//!   the admin interface and the metrics render.
//! - [`registry`]: live sessions by connection id (KILL, admin, connection counts).
//! - [`topology`]: master, replicas, weighted replica choice, replicas skipped after a failed connect.
//! - [`health`]: the replication health checker and the [`health::HealthHub`] it publishes to.
//! - [`session`]: one client connection: login, routing, session state, prepared statements, forwarding.
//! - [`backend`]: one backend connection: login (native and caching_sha2), setup, reset, internal commands.
//! - [`pool`]: idle backend connections per login, reset before reuse.
//! - [`position`]: replication positions (MariaDB GTID lists, MySQL GTID sets, binlog coordinates).
//! - [`io`]: buffered frame I/O over a TCP stream (and the client leg's compression).
//! - [`listen`]: the accept loop shared by the client, admin and metrics listeners.
//! - [`admin`]: the admin interface (MySQL protocol, via opensrv-mysql; never on the data path).
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`metrics`]: Prometheus metrics.
//! - [`reload`]: hot reload (SIGHUP, file watch, admin RELOAD).
//! - [`error`]: errors by whose fault they are (client, backend).
//!
//! [`run`] is the whole proxy: tests start it in-process on `127.0.0.1:0`; `main.rs` only parses arguments.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod backend;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod io;
pub mod listen;
pub mod metrics;
pub mod pool;
pub mod position;
pub mod registry;
pub mod reload;
pub mod session;
pub mod shared;
pub mod stream;
pub mod tls;
pub mod topology;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use registry::SessionEntry;
pub use shared::Shared;

/// Runs the proxy on `listener` until `shutdown` is cancelled, then gives sessions `shutdown_grace` to
/// finish their current command.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    let shared = Shared::new(config);
    serve(shared, listener, shutdown).await
}

/// Like [`run`], with shared state the caller keeps (tests inspect the pool and topology through it).
///
/// Shutdown: `shutdown` stops the accept loop and cancels the root of every background task (checker,
/// watcher, admin and metrics listeners); open sessions get `shutdown_grace` to finish their current
/// command, tracked by a [`TaskTracker`].
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    if shared.backend_info().await.is_none() {
        tracing::warn!("no backend reachable at start; clients are refused until one is");
    }
    let root = shared.root().clone();
    let outer = shutdown.clone();
    tokio::spawn(async move {
        outer.cancelled().await;
        root.cancel();
    });
    health::start(&shared);
    reload::spawn_watcher(&shared);
    {
        // Idle pooled connections past pool.idle_timeout or pool.max_lifetime close even without traffic.
        let (shared, cancel) = (Arc::clone(&shared), shared.root().clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let limits = &shared.config.load().pool;
                        for pool in &shared.pools {
                            pool.sweep(limits);
                        }
                    }
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }
    let config = shared.config.load_full();
    if let Some(m) = &config.metrics {
        let listener = TcpListener::bind(m.listen).await?;
        tracing::info!(listen = %m.listen, "metrics endpoint (/metrics, /healthz, /readyz)");
        tokio::spawn(http::serve(Arc::clone(&shared), listener, shared.root().clone()));
    }
    if let Some(a) = &config.admin {
        let listener = TcpListener::bind(a.listen).await?;
        tracing::info!(listen = %a.listen, "admin interface");
        tokio::spawn(admin::serve(Arc::clone(&shared), listener, shared.root().clone()));
    }
    tracing::info!(listen = %listener.local_addr()?, "rwsplit accepting connections");
    serve_loop(shared, listener, shutdown, 0).await;
    Ok(())
}

/// One event loop's sessions (`workers`): accepts on `listener` until `shutdown`, runs each session on this
/// loop with the loop's own pool (`Shared::pools[worker]`), then gives them `shutdown_grace`. [`serve`]
/// runs loop 0 with the background tasks; `main.rs` runs the others, each on a thread of its own with a
/// listener of its own on the same address (`SO_REUSEPORT`: the kernel spreads new connections).
pub async fn serve_loop(shared: Arc<Shared>, listener: TcpListener, shutdown: CancellationToken, worker: usize) {
    let tracker = TaskTracker::new();
    let pool = Arc::clone(shared.pools.get(worker).unwrap_or(shared.pool()));
    listen::accept_loop(&listener, &shutdown, "client", |stream, peer| {
        let session = session::serve(stream, peer, Arc::clone(&shared), Arc::clone(&pool), shutdown.clone());
        tracker.spawn(session);
    })
    .await;
    tracker.close();
    let grace = shared.config.load().shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(worker, sessions = tracker.len(), "shutdown grace period over; closing remaining sessions");
    }
}
