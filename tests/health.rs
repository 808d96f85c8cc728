//! The health checker against real replication problems on a private topology: delayed replication (lag),
//! a stopped SQL thread (NULL lag), a hung replica (SIGSTOP), no usable replica, heartbeat lag precision,
//! read-only transactions keeping their replica, and writer detection.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{config_with_health, Proxy};
use common::Topology;
use mysql_async::prelude::*;

/// These tests change replication on their topologies and measure timings: run them one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn server_id(proxy: &Proxy) -> u32 {
    let mut c = proxy.conn().await;
    let id = c.query_first("SELECT @@server_id").await.expect("read through the proxy").unwrap();
    c.disconnect().await.ok();
    id
}

/// Keeps writes flowing on the master (lag only shows while events arrive) until dropped.
struct Writer {
    stop: Arc<AtomicBool>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn keep_writing(topo: &Topology) -> Writer {
    let mut c = topo.root(topo.master).await;
    c.query_drop("CREATE TABLE IF NOT EXISTS app.ticks (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        while !flag.load(Ordering::Relaxed) {
            if c.query_drop("INSERT INTO app.ticks (at) VALUES (NOW(6))").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Writer { stop }
}

async fn set_delay(topo: &Topology, replica: SocketAddr, seconds: u32) {
    let mut c = topo.root(replica).await;
    c.query_drop("STOP SLAVE").await.unwrap();
    c.query_drop(format!("CHANGE MASTER TO MASTER_DELAY = {seconds}")).await.unwrap();
    c.query_drop("START SLAVE").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn lagging_replica_gets_no_reads_until_it_catches_up_and_read_only_transactions_keep_theirs() {
    let _serial = SERIAL.lock().await;
    let topo = Topology::private();
    let proxy = Proxy::start_yaml(&config_with_health(&topo, "  max_replica_lag: 2s\n")).await;
    let (slow, other) = (topo.replicas[0], topo.replicas[1]);
    let (slow_id, other_id) = (topo.server_id_of(slow), topo.server_id_of(other));
    let (key, other_key) = (slow.to_string(), other.to_string());
    proxy
        .wait_health("both replicas serve reads", Duration::from_secs(10), |h| {
            h.serves_reads(&key) && h.serves_reads(&other_key)
        })
        .await;
    let _writes = keep_writing(&topo).await;

    // A read-only transaction on the replica that is about to lag.
    let mut trx = loop {
        let mut c = proxy.conn().await;
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        if id == slow_id {
            break c;
        }
        c.query_drop("COMMIT").await.unwrap();
    };
    let mut pooled = proxy.conn().await;

    set_delay(&topo, slow, 8).await;
    proxy
        .wait_health("the delayed replica is taken out for lag", Duration::from_secs(30), |h| {
            !h.serves_reads(&key) && h.servers[&*key].lag.is_some_and(|l| l > 2.0)
        })
        .await;
    for i in 0..300 {
        let id = if i % 2 == 0 {
            server_id(&proxy).await
        } else {
            pooled.query_first("SELECT @@server_id").await.unwrap().unwrap()
        };
        assert_ne!(id, slow_id, "read {i} reached the lagging replica");
    }
    let id: u32 = trx.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(id, slow_id, "a read-only transaction keeps its replica while lag rises");
    trx.query_drop("COMMIT").await.unwrap();
    let id: u32 = trx.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(id, other_id, "after the transaction the session follows the new state");

    set_delay(&topo, slow, 0).await;
    proxy.wait_health("the replica comes back", Duration::from_secs(30), |h| h.serves_reads(&key)).await;
    let mut seen = false;
    for _ in 0..40 {
        seen |= server_id(&proxy).await == slow_id;
    }
    assert!(seen, "the caught-up replica serves reads again");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_sql_thread_and_no_usable_replica() {
    let _serial = SERIAL.lock().await;
    let topo = Topology::private();
    let proxy = Proxy::start_yaml(&config_with_health(&topo, "")).await;
    let strict = Proxy::start_yaml(&config_with_health(&topo, "  when_no_replica: error\n")).await;
    let [r1, r2] = [topo.replicas[0], topo.replicas[1]];
    let (k1, k2) = (r1.to_string(), r2.to_string());
    for p in [&proxy, &strict] {
        p.wait_health("replicas up", Duration::from_secs(10), |h| h.serves_reads(&k1) && h.serves_reads(&k2)).await;
    }
    // mysql_async reads settings when it connects: connect the strict client while replicas qualify.
    let mut strict_client = loop {
        match mysql_async::Conn::new(strict.opts("app", "apppw")).await {
            Ok(c) => break c,
            Err(e) => {
                // A probe may time out under load and briefly take a replica out; say so and retry.
                eprintln!("strict connect failed ({e}); health: {:#?}", strict.shared.health.load());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    topo.root(r1).await.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    proxy
        .wait_health("replica 1 out with its SQL thread stopped", Duration::from_secs(10), |h| {
            let s = &h.servers[&*k1];
            !s.serves_reads && s.reachable && !s.replicating && s.last_error.is_some()
        })
        .await;
    for _ in 0..50 {
        assert_ne!(server_id(&proxy).await, topo.server_id_of(r1), "no reads for a replica with a stopped thread");
    }

    topo.root(r2).await.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    for p in [&proxy, &strict] {
        p.wait_health("both replicas out", Duration::from_secs(10), |h| {
            !h.servers[&*k1].replicating && !h.servers[&*k2].replicating
        })
        .await;
    }
    for _ in 0..20 {
        assert_eq!(server_id(&proxy).await, 1, "reads fall back to the master by default");
    }
    let err = strict_client.query_drop("SELECT @@server_id").await.unwrap_err();
    let documented =
        matches!(err, mysql_async::Error::Server(ref e) if e.code == 1105 && e.message.contains("when_no_replica"));
    assert!(documented, "{err:?}");
    let n: u32 = strict_client.query_first("SELECT /* rwsplit:master */ 1").await.unwrap().unwrap();
    assert_eq!(n, 1, "the session stays usable");

    for r in [r1, r2] {
        topo.root(r).await.query_drop("START SLAVE SQL_THREAD").await.unwrap();
    }
    proxy.wait_health("replicas back", Duration::from_secs(10), |h| h.serves_reads(&k1) && h.serves_reads(&k2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_replica_is_ejected_without_failing_or_stalling_reads() {
    let _serial = SERIAL.lock().await;
    let topo = Topology::private();
    let proxy = Arc::new(Proxy::start_yaml(&config_with_health(&topo, "")).await);
    let hung = topo.replicas[0];
    let keys: Vec<String> = topo.replicas.iter().map(|r| r.to_string()).collect();
    proxy.wait_health("replicas up", Duration::from_secs(10), |h| keys.iter().all(|k| h.serves_reads(k))).await;
    // Clients reading continuously, on fresh and long-lived connections, before and during the hang.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for k in 0..4 {
        let (proxy, stop) = (Arc::clone(&proxy), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut ids = Vec::new();
            let mut long_lived = proxy.conn().await;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let id: u32 = if k % 2 == 0 {
                    long_lived.query_first("SELECT @@server_id").await.expect("a read failed").unwrap()
                } else {
                    server_id(&proxy).await
                };
                slowest = slowest.max(started.elapsed());
                // The master may answer if the healthy replica's probe is slow under this load (by design).
                ids.push((started, id));
            }
            (slowest, ids)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    topo.pause(hung);
    let paused_at = Instant::now();
    let hung_key = hung.to_string();
    // Hysteresis (health.fall, default 3): the first failed probe stops new reads; reads in flight on the
    // hung replica are abandoned (and retried elsewhere) only after three failed probes in a row.
    proxy
        .wait_health("the hung replica gets no new reads", Duration::from_secs(5), |h| !h.serves_reads(&hung_key))
        .await;
    let out_at = Instant::now();
    proxy.wait_health("the hung replica is ejected", Duration::from_secs(5), |h| !h.reachable(&hung_key)).await;
    let ejected_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for c in clients {
        results.push(c.await.expect("client task (a read failed)"));
    }
    topo.resume(hung);
    let (out_after, ejected_after) = (out_at - paused_at, ejected_at - paused_at);
    assert!(out_after < Duration::from_secs(1), "out of rotation after {out_after:?} (timeout 500ms + interval 100ms)");
    assert!(ejected_after < Duration::from_secs(3), "ejected after {ejected_after:?} (3 × (500ms + 100ms))");
    let hung_id = topo.server_id_of(hung);
    for (slowest, ids) in results {
        assert!(!ids.is_empty());
        let bound = ejected_after + Duration::from_millis(500);
        assert!(slowest < bound, "a read took {slowest:?} while a replica hung (ejected after {ejected_after:?})");
        let late = ids.iter().filter(|(at, id)| *at > out_at && *id == hung_id).count();
        assert_eq!(late, 0, "reads started after the replica left the rotation reached it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeat_lag_matches_the_true_replica_delay_within_a_quarter_second() {
    let _serial = SERIAL.lock().await;
    let topo = Topology::private();
    let extra = "  lag_source: heartbeat\n  interval: 250ms\n  max_replica_lag: 500ms\n";
    let yaml = config_with_health(&topo, extra).replace("  interval: 100ms\n", "");
    let proxy = Proxy::start_yaml(&yaml).await;
    let delayed = topo.replicas[0];
    let key = delayed.to_string();
    proxy
        .wait_health("heartbeat lag measured", Duration::from_secs(10), |h| {
            h.servers.get(&*key).is_some_and(|s| s.lag.is_some())
        })
        .await;
    let fresh = proxy.shared.health.load().servers[&*key].lag.unwrap_or(f64::MAX);
    assert!(fresh < 0.5, "an up-to-date replica shows sub-second lag, got {fresh}");

    // Ground truth, independent of the checker: marker rows stamped with this process's clock every 20 ms on
    // the master; the replica's newest marker tells how far behind it is (to ~20 ms).
    let mut m = topo.root(topo.master).await;
    m.query_drop("CREATE TABLE app.markers (at BIGINT PRIMARY KEY)").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        while !flag.load(Ordering::Relaxed) {
            let _ = m.query_drop(format!("INSERT INTO app.markers VALUES ({})", micros())).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // MASTER_DELAY works on whole-second binlog timestamps, so the true lag of a "1 s delay" is a sawtooth
    // (seen here between 0.25 s and 2 s depending on phase): compare with the ground truth, not with 1 s.
    set_delay(&topo, delayed, 1).await;
    proxy
        .wait_health("the delay shows", Duration::from_secs(15), |h| h.servers[&*key].lag.is_some_and(|l| l > 0.9))
        .await;
    let mut r = topo.root(delayed).await;
    let mut truth: Vec<(i64, f64)> = Vec::new();
    let mut measured: Vec<(i64, f64)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        // The markers table itself replicates with the delay: no truth until it exists.
        let newest: Option<i64> = r.query_first("SELECT MAX(at) FROM app.markers").await.ok().flatten().flatten();
        let now = micros();
        if let Some(at) = newest {
            truth.push((now, (now - at) as f64 / 1e6));
        }
        let s = proxy.shared.health.load().servers[&*key].clone();
        let probed = s.probed_at.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
        if let (Some(lag), false) = (s.lag, measured.last().is_some_and(|(t, _)| *t == probed)) {
            measured.push((probed, lag));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    // Compare each probe with the ground truth sampled nearest to it (within 15 ms).
    let mut errors: Vec<f64> = measured
        .iter()
        .filter_map(|(t, lag)| {
            let (tt, true_lag) = truth.iter().min_by_key(|(tt, _)| (tt - t).abs())?;
            ((tt - t).abs() < 15_000).then(|| lag - true_lag)
        })
        .collect();
    assert!(errors.len() >= 8, "too few comparable samples: {} probes, {} truths", measured.len(), truth.len());
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    let lags: Vec<f64> = measured.iter().map(|(_, l)| *l).collect();
    assert!(median.abs() <= 0.25, "median error {median:.3}s (errors {errors:.3?}, lags {lags:.3?})");
    assert!(lags.iter().any(|l| *l >= 0.9), "the delay is visible in the measured lag: {lags:.3?}");
}

fn micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn detect_master_follows_the_writable_server_and_refuses_ambiguity() {
    let _serial = SERIAL.lock().await;
    let topo = Topology::private();
    let proxy = Proxy::start_yaml(&config_with_health(&topo, "  detect_master: true\n")).await;
    let master = topo.master.to_string();
    proxy
        .wait_health(
            "the configured master is detected",
            Duration::from_secs(10),
            |h| matches!(&h.writer, rwsplit::health::Writer::Detected(a) if **a == *master),
        )
        .await;
    let mut c = proxy.conn().await;
    c.query_drop("CREATE TABLE app.detect (id INT PRIMARY KEY, server INT)").await.unwrap();
    c.query_drop("INSERT INTO app.detect VALUES (1, @@server_id)").await.unwrap();
    topo.wait_replicated().await;
    // An external tool "fails over": the master becomes read-only, replica 1 writable.
    let promoted = topo.replicas[0];
    topo.root(topo.master).await.query_drop("SET GLOBAL read_only = 1").await.unwrap();
    topo.root(promoted).await.query_drop("SET GLOBAL read_only = 0").await.unwrap();
    let p = promoted.to_string();
    proxy
        .wait_health(
            "the promoted replica is the writer",
            Duration::from_secs(10),
            |h| matches!(&h.writer, rwsplit::health::Writer::Detected(a) if **a == *p),
        )
        .await;
    c.query_drop("INSERT INTO app.detect VALUES (2, @@server_id)").await.expect("write goes to the new writer");
    let server: u32 =
        topo.root(promoted).await.query_first("SELECT server FROM app.detect WHERE id = 2").await.unwrap().unwrap();
    assert_eq!(server, topo.server_id_of(promoted));
    // Both writable: writes are refused, never sent to two masters.
    topo.root(topo.master).await.query_drop("SET GLOBAL read_only = 0").await.unwrap();
    proxy
        .wait_health("ambiguity detected", Duration::from_secs(10), |h| {
            matches!(h.writer, rwsplit::health::Writer::Ambiguous(_))
        })
        .await;
    let err = c.query_drop("INSERT INTO app.detect VALUES (3, @@server_id)").await.unwrap_err();
    let refused = matches!(err, mysql_async::Error::Server(ref e) if e.code == 1105 && e.message.contains("several servers are writable"));
    assert!(refused, "{err:?}");
}

/// A TCP relay to `upstream` that holds every chunk the server sends for `delay` (a slow network or an
/// overloaded server: everything arrives, late). Returns the relay's address; it runs until the test ends.
async fn slow_relay(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut client_rx, &mut server_tx).await });
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
                    if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some((due, chunk)) = rx.recv().await {
                    tokio::time::sleep_until(due.into()).await;
                    if client_tx.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_master_stays_reachable_and_takes_writes() {
    // Every answer from the master arrives 250 ms late, longer than the probe `timeout` (200 ms): each probe
    // (one round trip once the connection knows its server, several for the first, which connects) answers
    // after it has been counted as failed, but within `timeout + (fall-1) * interval`. A probe that is slow
    // is not abandoned, so it keeps its connection and the master never becomes unreachable; cancelling it
    // at the timeout would make every next probe reconnect through the slow link, time out as well, and
    // fail writes with 1053.
    let topo = Topology::shared();
    let relay = slow_relay(topo.master, Duration::from_millis(250)).await;
    let replicas: String = topo.replicas.iter().map(|r| format!("  - address: {r}\n")).collect();
    let yaml = format!(
        "listen: 127.0.0.1:0\nusers:\n  - user: app\n    password: apppw\nmaster:\n  address: {relay}\n\
         replicas:\n{replicas}connect_timeout: 5s\nhealth:\n  user: monitor\n  password: monitorpw\n  \
         interval: 100ms\n  timeout: 200ms\n  fall: 40\n"
    );
    let proxy = Proxy::start_yaml(&yaml).await;
    let master = relay.to_string();
    let answered =
        |h: &rwsplit::health::Snapshot| h.servers.get(master.as_str()).is_some_and(|s| s.probe_started.is_some());
    proxy.wait_health("a first answer from the slow master", Duration::from_secs(10), answered).await;
    let table = common::unique_name("slow_master");
    let mut c = proxy.conn_db("app").await;
    c.query_drop(format!("CREATE TABLE {table} (id INT PRIMARY KEY AUTO_INCREMENT)")).await.unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let (mut writes, mut slow_seen) = (0, 0);
    while Instant::now() < until {
        let snap = proxy.shared.health.load_full();
        assert!(snap.reachable(&master), "the slow master was taken for unreachable: {snap:#?}");
        let error = snap.servers.get(master.as_str()).and_then(|s| s.last_error.clone()).unwrap_or_default();
        slow_seen += usize::from(error.contains("no answer within") || error.contains("answered only after"));
        c.query_drop(format!("INSERT INTO {table} () VALUES ()")).await.expect("a write to the slow master failed");
        writes += 1;
    }
    assert!(slow_seen > 0, "no probe was ever slower than the timeout: the test did not exercise slow probes");
    // Operators see the slowness before it becomes an outage: the probe duration gauge is past the timeout.
    let text = rwsplit::metrics::render(&proxy.shared);
    let key = format!("rwsplit_probe_duration_seconds{{backend=\"{master}\"}} ");
    let took: f64 = text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
    assert!(took >= 0.2, "the master's probe duration is {took} s, under the 200 ms timeout:\n{text}");
    assert!(writes > 0);
    c.query_drop(format!("DROP TABLE {table}")).await.ok();
}
