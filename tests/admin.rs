//! The admin interface end to end, through the real `mariadb` command-line client: SHOW BACKENDS / POOLS /
//! CLIENTS / CONFIG, SET BACKEND … OFFLINE|ONLINE steering real reads, RELOAD of a broken and of a good file,
//! and login refusal.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::proxy::{config_with_health, config_yaml, Proxy};
use common::{mariadb_cli, Topology};
use mysql_async::prelude::*;
use rwsplit::{Config, Shared};
use tokio_util::sync::CancellationToken;

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "adminpw";
/// server_id of replica1 and replica2 (see `deploy/sandbox.sh`).
const REPLICA1: u32 = 2;
const REPLICA2: u32 = 3;
/// Fresh sessions opened to check where reads go.
const SESSIONS: usize = 30;

/// An `admin:` section on a free port, and that port's address.
fn admin_section() -> (String, SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    (format!("admin:\n  listen: {addr}\n  user: {ADMIN_USER}\n  password: {ADMIN_PASSWORD}\n"), addr)
}

/// Runs the `mariadb` client against the admin port (batch mode: tab-separated, with a header line).
async fn cli(admin: SocketAddr, password: &str, sql: &str) -> Output {
    let (password, sql) = (password.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || mariadb_cli(admin, ADMIN_USER, &password, &["--batch", "-e", &sql], None))
        .await
        .expect("mariadb client thread")
}

/// Runs admin SQL that must succeed; returns stdout.
async fn admin_ok(admin: SocketAddr, sql: &str) -> String {
    let out = cli(admin, ADMIN_PASSWORD, sql).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{sql} failed ({}):\n{stderr}{stdout}", out.status);
    stdout.into_owned()
}

/// Runs admin SQL that must fail; returns stderr (the client's `ERROR nnnn (SQLSTATE) …` line).
async fn admin_err(admin: SocketAddr, sql: &str) -> String {
    let out = cli(admin, ADMIN_PASSWORD, sql).await;
    assert!(!out.status.success(), "{sql} should fail, printed:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Batch output as rows keyed by column name.
fn rows(batch: &str) -> Vec<HashMap<String, String>> {
    let mut lines = batch.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    lines.map(|l| header.iter().map(|h| h.to_string()).zip(l.split('\t').map(str::to_string)).collect()).collect()
}

/// `@@server_id` of SESSIONS fresh sessions through the proxy.
async fn read_server_ids(opts: mysql_async::Opts) -> Vec<u32> {
    let mut ids = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let mut conn = mysql_async::Conn::new(opts.clone()).await.expect("connect through rwsplit");
        ids.push(conn.query_first("SELECT @@server_id").await.expect("read").expect("a row"));
        conn.disconnect().await.ok();
    }
    ids
}

/// Waits (at most 5 s) until the admin port accepts connections: `serve` binds it after probing a backend.
async fn wait_listening(admin: SocketAddr) {
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the admin port {admin} never opened");
}

/// A proxy with health checks and an admin port, once both replicas serve reads.
async fn healthy_proxy(topo: &Topology) -> (Proxy, SocketAddr) {
    let (section, admin) = admin_section();
    let proxy = Proxy::start_yaml(&format!("{}{section}", config_with_health(topo, ""))).await;
    let replicas: Vec<String> = topo.replicas.iter().map(|r| r.to_string()).collect();
    proxy
        .wait_health("both replicas serve", Duration::from_secs(15), |s| replicas.iter().all(|r| s.serves_reads(r)))
        .await;
    wait_listening(admin).await;
    (proxy, admin)
}

#[tokio::test(flavor = "multi_thread")]
async fn show_backends_pools_and_config_through_the_cli() {
    let topo = Topology::shared();
    let (proxy, admin) = healthy_proxy(topo).await;

    let backends = rows(&admin_ok(admin, "SHOW BACKENDS").await);
    let addrs: Vec<String> = topo.servers().iter().map(|a| a.to_string()).collect();
    assert_eq!(backends.iter().map(|r| r["address"].clone()).collect::<Vec<_>>(), addrs, "{backends:?}");
    let master = &backends[0];
    assert_eq!(
        (master["role"].as_str(), master["reachable"].as_str(), master["serving"].as_str()),
        ("master", "1", "1")
    );
    assert_eq!((master["weight"].as_str(), master["read_only"].as_str()), ("NULL", "0"), "{master:?}");
    for replica in &backends[1..] {
        let flags = ["role", "reachable", "serving", "offline", "weight", "read_only"].map(|c| replica[c].as_str());
        assert_eq!(flags, ["replica", "1", "1", "0", "1", "1"], "{replica:?}");
        let lag: f64 = replica["lag_seconds"].parse().unwrap_or_else(|_| panic!("lag of {replica:?}"));
        assert!((0.0..=2.0).contains(&lag), "{replica:?}");
        assert_ne!(replica["gtid"], "NULL", "{replica:?}");
        assert_eq!(replica["last_error"], "NULL", "{replica:?}");
        assert!(replica["last_change"].ends_with('Z') && replica["last_change"].len() == 24, "{replica:?}");
        assert!(replica["connections_in_use"].parse::<usize>().is_ok(), "{replica:?}");
        assert!(replica["connections_idle"].parse::<usize>().is_ok(), "{replica:?}");
    }

    // A session that read and ended leaves an idle connection to its replica.
    let ids = read_server_ids(proxy.opts("app", "apppw")).await;
    assert!(ids.iter().all(|id| [REPLICA1, REPLICA2].contains(id)), "{ids:?}");
    let pools = rows(&admin_ok(admin, "show pools;").await);
    assert_eq!(pools.len(), 3, "{pools:?}");
    let idle: usize = pools.iter().map(|r| r["idle"].parse::<usize>().expect("idle count")).sum();
    assert!(idle > 0, "{pools:?}");

    let config = admin_ok(admin, "/* what runs */ SHOW CONFIG ;").await;
    for secret in ["apppw", "rootpw", "monitorpw", ADMIN_PASSWORD] {
        assert!(!config.contains(secret), "SHOW CONFIG leaks {secret}:\n{config}");
    }
    let config: HashMap<String, String> =
        rows(&config).into_iter().map(|r| (r["key"].clone(), r["value"].clone())).collect();
    for (key, want) in [
        ("users[0].password", "***"),
        ("health.password", "***"),
        ("admin.password", "***"),
        ("admin.user", ADMIN_USER),
        ("master.address", addrs[0].as_str()),
        ("replicas[1].address", addrs[2].as_str()),
        ("health.lag_source", "replication"),
        ("health.detect_master", "false"),
        ("shutdown_grace", "1s"),
        ("workers", "1"),
    ] {
        assert_eq!(config.get(key).map(String::as_str), Some(want), "{key} in {config:?}");
    }

    // Clients' connection-time queries and pings work; anything else is a real error listing the commands.
    let version = admin_ok(admin, "SELECT @@version_comment LIMIT 1").await;
    assert_eq!(version, "@@version_comment\nrwsplit admin\n");
    assert_eq!(admin_ok(admin, "select 1").await, "1\n1\n");
    let err = admin_err(admin, "SELECT * FROM mysql.user").await;
    assert!(err.contains("ERROR 1064 (42000)") && err.contains("SHOW BACKENDS") && err.contains("RELOAD"), "{err}");
    let err = admin_err(admin, "USE mysql").await;
    assert!(err.contains("ERROR 1049"), "{err}");

    // A driver connects too (mysql_async asks for @@max_allowed_packet and @@wait_timeout on connect).
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(admin.ip().to_string())
        .tcp_port(admin.port())
        .user(Some(ADMIN_USER))
        .pass(Some(ADMIN_PASSWORD))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await.expect("mysql_async logs in to the admin port");
    conn.ping().await.expect("COM_PING");
    let pools: Vec<(String, u64, u64)> = conn.query("SHOW POOLS").await.expect("SHOW POOLS");
    assert_eq!(pools.len(), 3);
    let err = conn.exec_drop("SHOW POOLS", ()).await.expect_err("prepared statements are refused");
    assert!(matches!(&err, mysql_async::Error::Server(e) if e.code == 1295), "{err:?}");
    conn.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_replica_gets_no_reads_until_online() {
    let topo = Topology::shared();
    let (proxy, admin) = healthy_proxy(topo).await;
    let replica1 = topo.replicas[0].to_string();

    admin_ok(admin, &format!("SET BACKEND '{replica1}' OFFLINE")).await;
    let ids = read_server_ids(proxy.opts("app", "apppw")).await;
    assert!(ids.iter().all(|&id| id == REPLICA2), "reads reached the offline replica: {ids:?}");
    let backends = rows(&admin_ok(admin, "SHOW BACKENDS").await);
    assert_eq!((backends[1]["offline"].as_str(), backends[1]["serving"].as_str()), ("1", "0"), "{backends:?}");

    admin_ok(admin, &format!("set backend {replica1} online;")).await;
    let ids = read_server_ids(proxy.opts("app", "apppw")).await;
    assert!(ids.contains(&REPLICA1), "the replica got no reads after ONLINE: {ids:?}");
    assert!(ids.iter().all(|id| [REPLICA1, REPLICA2].contains(id)), "{ids:?}");

    let err = admin_err(admin, &format!("SET BACKEND '{}' OFFLINE", topo.master)).await;
    assert!(err.contains("ERROR 1105 (HY000)") && err.contains("is the master"), "{err}");
    let err = admin_err(admin, "SET BACKEND '127.0.0.1:1' OFFLINE").await;
    assert!(err.contains("ERROR 1105") && err.contains("not a configured replica") && err.contains(&replica1), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_user_or_password_is_refused_with_1045() {
    let topo = Topology::shared();
    let (section, admin) = admin_section();
    let _proxy = Proxy::start_yaml(&format!("{}{section}", config_yaml(topo))).await;
    wait_listening(admin).await;
    admin_ok(admin, "SELECT 1").await;
    for (user, password) in [(ADMIN_USER, "wrong"), ("app", "apppw"), ("nobody", "")] {
        let out = tokio::task::spawn_blocking(move || {
            mariadb_cli(admin, user, password, &["--batch", "-e", "SHOW BACKENDS"], None)
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{user} logged in: {stderr}");
        assert!(stderr.contains("ERROR 1045 (28000)") && stderr.contains("Access denied"), "{user}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn show_clients_lists_a_connected_client() {
    let topo = Topology::shared();
    let (section, admin) = admin_section();
    let proxy = Proxy::start_yaml(&format!("{}{section}", config_yaml(topo))).await;
    wait_listening(admin).await;
    let mut conn = proxy.conn().await;
    // CONNECTION_ID() is the id rwsplit announced; @@pseudo_thread_id is the master connection's thread.
    let connection_id: u32 = conn.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
    assert_eq!(connection_id, conn.id());
    let master_thread: u32 = conn.query_first("/* rwsplit:master */ SELECT @@pseudo_thread_id").await.unwrap().unwrap();
    let id: u32 = conn.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert!([REPLICA1, REPLICA2].contains(&id));

    let clients = rows(&admin_ok(admin, "SHOW CLIENTS").await);
    assert_eq!(clients.len(), 1, "{clients:?}");
    let client = &clients[0];
    assert_eq!((client["id"].clone(), client["user"].as_str()), (conn.id().to_string(), "app"));
    assert_eq!(client["master_thread"], master_thread.to_string(), "{client:?}");
    assert!(client["peer"].starts_with("127.0.0.1:"), "{client:?}");
    assert!(client["started"].ends_with('Z'), "{client:?}");
    let replica = topo.replicas[(id - REPLICA1) as usize].to_string();
    assert_eq!(client["replica"], replica, "{client:?}");
    assert!(client["replica_thread"].parse::<u32>().is_ok(), "{client:?}");
    conn.disconnect().await.ok();
}

/// A proxy started from a config file, so RELOAD has a file to re-read.
struct FileProxy {
    /// Client address.
    addr: SocketAddr,
    /// Admin address.
    admin: SocketAddr,
    /// The config file.
    path: PathBuf,
    /// Cancelled on drop.
    shutdown: CancellationToken,
}

impl Drop for FileProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl FileProxy {
    /// Writes `yaml` (plus an admin section) to a temp file and starts a proxy from it.
    async fn start(yaml: &str) -> (FileProxy, String) {
        let (section, admin) = admin_section();
        let yaml = format!("{yaml}{section}");
        let path = std::env::temp_dir().join(format!("{}.yaml", common::unique_name("admin_reload")));
        std::fs::write(&path, &yaml).expect("write the config file");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("bad test config: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy listener");
        let addr = listener.local_addr().expect("listener address");
        let shutdown = CancellationToken::new();
        tokio::spawn(rwsplit::serve(Shared::new(config), listener, shutdown.clone()));
        wait_listening(admin).await;
        (FileProxy { addr, admin, path, shutdown }, yaml)
    }

    /// mysql_async options for `app` through the proxy.
    fn opts(&self) -> mysql_async::Opts {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.addr.ip().to_string())
            .tcp_port(self.addr.port())
            .user(Some("app"))
            .pass(Some("apppw"))
            .prefer_socket(false);
        opts.into()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_rejects_a_broken_file_and_applies_a_good_one() {
    let topo = Topology::shared();
    let (proxy, yaml) = FileProxy::start(&config_yaml(topo)).await;
    let replica2 = topo.replicas[1].to_string();

    let broken = yaml
        .replace("connect_timeout: 1s", "connect_timeout: soon")
        .replace(&format!("  - address: {replica2}\n"), &format!("  - address: {replica2}\n    weight: 0\n"));
    assert_ne!(broken, yaml);
    std::fs::write(&proxy.path, &broken).unwrap();
    let err = admin_err(proxy.admin, "RELOAD").await;
    assert!(err.contains("ERROR 1105 (HY000)"), "{err}");
    for field in ["connect_timeout", "replicas[1].weight", "2 problem(s)", proxy.path.to_str().unwrap()] {
        assert!(err.contains(field), "the error should name {field}: {err}");
    }
    let config = admin_ok(proxy.admin, "SHOW CONFIG").await;
    assert!(config.contains(&format!("replicas[1].address\t{replica2}")), "old config replaced:\n{config}");
    let ids = read_server_ids(proxy.opts()).await;
    assert!(ids.contains(&REPLICA2), "the old config should still serve both replicas: {ids:?}");

    // Drop replica2. The file watcher may apply the file first; RELOAD still answers OK.
    let dropped = yaml.replace(&format!("  - address: {replica2}\n"), "");
    std::fs::write(&proxy.path, &dropped).unwrap();
    let out = cli(proxy.admin, ADMIN_PASSWORD, "RELOAD").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "RELOAD failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.is_empty(), "RELOAD answers OK, not rows: {stdout}");
    let verbose = cli_verbose(proxy.admin, "RELOAD").await;
    assert!(verbose.contains("Query OK") && verbose.contains("reloaded"), "{verbose}");

    let backends = rows(&admin_ok(proxy.admin, "SHOW BACKENDS").await);
    assert_eq!(backends.len(), 2, "{backends:?}");
    let ids = read_server_ids(proxy.opts()).await;
    assert!(ids.iter().all(|&id| id == REPLICA1), "new sessions reached the dropped replica: {ids:?}");
}

/// Runs admin SQL with `-vvv`, which makes the client print OK packets and their message.
async fn cli_verbose(admin: SocketAddr, sql: &str) -> String {
    let sql = sql.to_string();
    let out = tokio::task::spawn_blocking(move || {
        mariadb_cli(admin, ADMIN_USER, ADMIN_PASSWORD, &["-vvv", "-e", &sql], None)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_reports_what_changed() {
    let topo = Topology::shared();
    let (proxy, yaml) = FileProxy::start(&config_yaml(topo)).await;
    let replica2 = topo.replicas[1].to_string();
    let admin_opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(proxy.admin.ip().to_string())
        .tcp_port(proxy.admin.port())
        .user(Some(ADMIN_USER))
        .pass(Some(ADMIN_PASSWORD))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(admin_opts).await.expect("mysql_async logs in to the admin port");
    std::fs::write(&proxy.path, yaml.replace(&format!("  - address: {replica2}\n"), "")).unwrap();
    conn.query_drop("RELOAD").await.expect("RELOAD");
    let info = conn.info().into_owned();
    // The file watcher polls every 500 ms and waits one more poll: RELOAD right after the write comes first.
    assert_eq!(info, format!("reloaded; removed {replica2}"));
    conn.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_port_refuses_oversized_login_packets_and_slows_down_guessing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let topo = Topology::shared();
    let (_proxy, admin) = healthy_proxy(topo).await;
    // A handshake response announcing 16 MiB: the connection closes without the proxy reading it.
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    let _greeting = common::raw::read_frame(&mut s).await.expect("greeting");
    s.write_all(&[0xff, 0xff, 0xff, 1]).await.unwrap();
    s.write_all(&[0u8; 1024]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the admin port kept an oversized login open");
    // Wrong passwords in a row are answered later each time.
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let out = cli(admin, "wrong", "SELECT 1").await;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        took.push(started.elapsed());
        assert!(err.contains("1045"), "{err}");
    }
    assert!(took[2] >= Duration::from_millis(400), "{took:?}");
}
