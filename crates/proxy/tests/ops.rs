//! Operations through the real `rwsplit` binary against the real MariaDB topology: SIGHUP reload under
//! load (a replica removed, zero client errors), a broken file rejected on reload, the file watcher,
//! Prometheus metrics (`/metrics`), `/healthz` and `/readyz`.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Topology;
use mysql_async::prelude::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `rwsplit` process with its config file; killed on drop.
struct Running {
    child: Child,
    config: PathBuf,
    client: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.config.parent().unwrap_or(Path::new("/nonexistent")));
    }
}

fn yaml(topo: &Topology, client: SocketAddr, metrics: SocketAddr, replicas: &[SocketAddr]) -> String {
    let replicas: String = replicas.iter().map(|r| format!("  - address: {r}\n")).collect();
    format!(
        "listen: {client}\nusers:\n  - user: app\n    password: apppw\nmaster:\n  address: {}\nreplicas:\n{replicas}\
         health:\n  user: monitor\n  password: monitorpw\n  interval: 100ms\nmetrics:\n  listen: {metrics}\n\
         connect_timeout: 1s\nshutdown_grace: 1s\n",
        topo.master
    )
}

fn start(topo: &Topology) -> Running {
    let dir = std::env::temp_dir().join(format!("rwsplit-ops-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.yaml");
    let client: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(&config, yaml(topo, client, metrics, &topo.replicas)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rwsplit"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", std::env::var("OPS_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .spawn()
        .expect("start rwsplit");
    let running = Running { child, config, client, metrics };
    poll("rwsplit ready", Duration::from_secs(15), || http_get(running.metrics, "/readyz").0 == 200);
    running
}

/// Polls `cond` every 20 ms for at most `within`.
fn poll(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of a metric line `name{labels} value` whose labels contain every `needle`.
fn metric(body: &str, name: &str, needles: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn opts(addr: SocketAddr) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some("app"))
        .pass(Some("apppw"))
        .into()
}

fn sighup(p: &Running) {
    let status = Command::new("kill").arg("-HUP").arg(p.child.id().to_string()).status().unwrap();
    assert!(status.success());
}

fn reloads(p: &Running, result: &str) -> f64 {
    metric(&http_get(p.metrics, "/metrics").1, "rwsplit_config_reloads_total", &[&format!("result=\"{result}\"")])
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reload_under_load_drops_a_replica_without_client_errors() {
    let topo = Topology::shared();
    let p = start(topo);
    let removed = topo.replicas[0];
    let removed_id = topo.server_id_of(removed);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let reloaded_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let late_hits = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for k in 0..6 {
        let (stop, errors, reloaded_at, late_hits) =
            (Arc::clone(&stop), Arc::clone(&errors), Arc::clone(&reloaded_at), Arc::clone(&late_hits));
        let client = p.client;
        clients.push(tokio::spawn(async move {
            let mut pooled = mysql_async::Conn::new(opts(client)).await.expect("connect");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let fresh = k % 2 == 0;
                let started = Instant::now();
                let result: Result<Option<u32>, _> = if fresh {
                    match mysql_async::Conn::new(opts(client)).await {
                        Ok(mut c) => {
                            let r = c.query_first("SELECT @@server_id").await;
                            let _ = c.disconnect().await;
                            r
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    pooled.query_first("SELECT @@server_id").await
                };
                match result {
                    Ok(Some(id)) => {
                        let after = reloaded_at.lock().unwrap().is_some_and(|t| started > t);
                        if fresh && after && id == removed_id {
                            late_hits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = reloads(&p, "ok");
    std::fs::write(&p.config, yaml(topo, p.client, p.metrics, &topo.replicas[1..])).unwrap();
    sighup(&p);
    poll("reload counted", Duration::from_secs(5), || reloads(&p, "ok") > before);
    *reloaded_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert!(total > 50, "clients made progress ({total} queries)");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "client errors during the reload");
    assert_eq!(late_hits.load(Ordering::Relaxed), 0, "new sessions reached the removed replica after the reload");
    let body = http_get(p.metrics, "/metrics").1;
    assert!(metric(&body, "rwsplit_backend_up", &[&removed.to_string()]).is_none(), "removed backend's series gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_file_is_rejected_and_counted_and_the_watcher_reloads_good_files() {
    let topo = Topology::shared();
    let p = start(topo);
    let good = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(&p.config, good.replace("address:", "adress:")).unwrap();
    sighup(&p);
    poll("rejection counted", Duration::from_secs(5), || reloads(&p, "rejected") >= 1.0);
    let mut c = mysql_async::Conn::new(opts(p.client)).await.unwrap();
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert!(id == 2 || id == 3, "the old config keeps serving");
    // The watcher notices the fixed file by itself (no signal).
    let ok_before = reloads(&p, "ok");
    std::fs::write(&p.config, good.replace("connect_timeout: 1s", "connect_timeout: 2s")).unwrap();
    poll("the watcher reloads the fixed file", Duration::from_secs(10), || reloads(&p, "ok") > ok_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_routes_with_reasons_and_expose_lag_and_health_endpoints() {
    let topo = Topology::shared();
    let p = start(topo);
    assert_eq!(http_get(p.metrics, "/healthz").0, 200);
    assert_eq!(http_get(p.metrics, "/readyz").0, 200);
    assert_eq!(http_get(p.metrics, "/nope").0, 404);
    let reads = |body: &str| -> f64 {
        topo.replicas
            .iter()
            .filter_map(|r| {
                metric(body, "rwsplit_queries_total", &["route=\"replica\"", &r.to_string(), "reason=\"read\""])
            })
            .sum()
    };
    // mysql_async reads settings when it connects (a read): take the baseline after connecting.
    let mut c = mysql_async::Conn::new(opts(p.client)).await.unwrap();
    let before = reads(&http_get(p.metrics, "/metrics").1);
    let n = 25;
    for _ in 0..n {
        let _: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
    }
    c.query_drop("SELECT * FROM mysql.user WHERE 1 = 0 FOR UPDATE").await.unwrap();
    let body = http_get(p.metrics, "/metrics").1;
    assert_eq!(reads(&body) - before, n as f64, "replica reads counted with reason=read");
    let locking = metric(&body, "rwsplit_queries_total", &["route=\"master\"", "reason=\"locking_read\""]);
    assert_eq!(locking, Some(1.0));
    for r in &topo.replicas {
        let lag = metric(&body, "rwsplit_replica_lag_seconds", &[&r.to_string()]);
        assert!(lag.is_some_and(|l| l >= 0.0), "lag series for {r}: {lag:?}");
        assert_eq!(metric(&body, "rwsplit_backend_up", &[&r.to_string(), "role=\"replica\""]), Some(1.0));
    }
    assert!(body.contains("rwsplit_query_duration_seconds_bucket{route=\"replica\""));
    assert!(metric(&body, "rwsplit_client_connections", &[]).is_some_and(|v| v >= 1.0));
    assert!(metric(&body, "rwsplit_backend_connections", &["state=\"in_use\""]).is_some());
    assert!(metric(&body, "rwsplit_config_last_reload_success_timestamp_seconds", &[]).is_some_and(|v| v > 1.0e9));
    let bad = mysql_async::Conn::new(mysql_async::OptsBuilder::from_opts(opts(p.client)).pass(Some("x"))).await;
    assert!(bad.is_err());
    let body = http_get(p.metrics, "/metrics").1;
    assert!(metric(&body, "rwsplit_errors_total", &["kind=\"auth_failure\""]).is_some_and(|v| v >= 1.0));
    assert!(!body.contains("apppw") && !body.contains("monitorpw"), "no passwords in metrics");
}
