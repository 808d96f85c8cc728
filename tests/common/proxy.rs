//! Starting rwsplit in-process for tests: on 127.0.0.1:0, in front of a [`Topology`], shut down on drop.

use std::net::SocketAddr;
use std::sync::Arc;

use rwsplit::{Config, Shared};
use tokio_util::sync::CancellationToken;

use super::Topology;

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The proxy's shared state (pool, topology), for assertions.
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The YAML config for a proxy in front of `topo` (listen address is ignored: tests bind port 0).
pub fn config_yaml(topo: &Topology) -> String {
    let replicas: String = topo.replicas.iter().map(|r| format!("  - address: {r}\n")).collect();
    format!(
        "listen: 127.0.0.1:0\nusers:\n  - user: app\n    password: apppw\n  - user: root\n    password: rootpw\n\
         master:\n  address: {}\nreplicas:\n{replicas}connect_timeout: 1s\nshutdown_grace: 1s\n",
        topo.master
    )
}

/// The test config plus a `health:` section (monitor account, fast probes) with extra `health` lines.
pub fn config_with_health(topo: &Topology, extra: &str) -> String {
    format!(
        "{}health:\n  user: monitor\n  password: monitorpw\n  interval: 100ms\n  timeout: 500ms\n{extra}",
        config_yaml(topo)
    )
}

impl Proxy {
    /// Starts a proxy with the default test config.
    pub async fn start(topo: &Topology) -> Proxy {
        Proxy::start_yaml(&config_yaml(topo)).await
    }

    /// Starts a proxy with the given YAML config.
    pub async fn start_yaml(yaml: &str) -> Proxy {
        let config = Config::parse(yaml, "test config").unwrap_or_else(|e| panic!("bad test config: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy listener");
        let addr = listener.local_addr().expect("listener address");
        let shared = Shared::new(config);
        let shutdown = CancellationToken::new();
        tokio::spawn(rwsplit::serve(Arc::clone(&shared), listener, shutdown.clone()));
        Proxy { addr, shared, shutdown }
    }

    /// mysql_async options for connecting through the proxy.
    pub fn opts(&self, user: &str, password: &str) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.addr.ip().to_string())
            .tcp_port(self.addr.port())
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .into()
    }

    /// A new client connection as `app`.
    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts("app", "apppw")).await.expect("connect through rwsplit")
    }

    /// A new client connection as `app` with a default database.
    pub async fn conn_db(&self, db: &str) -> mysql_async::Conn {
        self.conn_as("app", "apppw", db).await
    }

    /// A connection through rwsplit as `user`, in `db`.
    pub async fn conn_as(&self, user: &str, password: &str, db: &str) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::from_opts(self.opts(user, password)).db_name(Some(db));
        mysql_async::Conn::new(opts).await.expect("connect through rwsplit")
    }
}

impl Proxy {
    /// Polls (every 20 ms, at most `within`) until the health snapshot satisfies `cond`; panics with the
    /// snapshot otherwise.
    pub async fn wait_health(
        &self,
        what: &str,
        within: std::time::Duration,
        cond: impl Fn(&rwsplit::health::Snapshot) -> bool,
    ) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let snap = self.shared.health.load_full();
            if cond(&snap) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}\nhealth: {snap:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Whether the replica at `addr` gets reads, per the health snapshot.
    pub fn serves_reads(&self, addr: SocketAddr) -> bool {
        self.shared.health.load().serves_reads(&addr.to_string())
    }
}
