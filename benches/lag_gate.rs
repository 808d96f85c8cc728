//! Lag-gating latency: the time from a replica's lag crossing `max_replica_lag` to the last read it serves,
//! over repeated trials, through rwsplit against a real private MariaDB topology.
//!
//! Each trial makes real lag with both replication threads running: a transaction on the replica holds a
//! row lock, then the master updates that row, so the replica's SQL thread blocks and its lag grows from
//! the moment the master committed (`t_commit`). The lag crosses the bound at `t_commit + max_replica_lag`.
//! Readers query through rwsplit on fresh connections the whole time; the figure is
//! `end of the last read answered by that replica − crossing time` (≤ 0 means it stopped before).
//!
//! `cargo bench --bench lag_gate` (env: `TRIALS`, default 10). Prints median and max per lag source.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{config_yaml, Proxy};
use common::Topology;
use mysql_async::prelude::*;
use mysql_async::Conn;

async fn root(topo: &Topology, addr: std::net::SocketAddr) -> Conn {
    Conn::new(topo.direct_opts(addr, "root", "rootpw")).await.expect("root connection")
}

async fn trial(topo: &Topology, proxy: &Arc<Proxy>, max_lag: Duration) -> f64 {
    let replica = topo.replicas[0];
    let replica_id = topo.server_id_of(replica);
    let key = replica.to_string();
    proxy.wait_health("replica serving", Duration::from_secs(30), |h| h.serves_reads(&key)).await;
    let reads: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (proxy, reads, stop) = (Arc::clone(proxy), Arc::clone(&reads), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut c = proxy.conn().await;
                let id: u32 = c.query_first("SELECT @@server_id").await.expect("read").unwrap();
                reads.lock().unwrap().push((Instant::now(), id));
                c.disconnect().await.ok();
            }
        }));
    }
    let mut lock = root(topo, replica).await;
    lock.query_drop("BEGIN").await.unwrap();
    lock.query_drop("SELECT * FROM app.gate WHERE id = 1 FOR UPDATE").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut master = root(topo, topo.master).await;
    master.query_drop("UPDATE app.gate SET v = v + 1 WHERE id = 1").await.unwrap();
    let crossing = Instant::now() + max_lag;
    proxy.wait_health("replica out", Duration::from_secs(30), |h| !h.serves_reads(&key)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    lock.query_drop("ROLLBACK").await.unwrap();
    let reads = reads.lock().unwrap();
    let last = reads.iter().filter(|(_, id)| *id == replica_id).map(|(at, _)| *at).max().expect("reads on the replica");
    if last >= crossing {
        (last - crossing).as_secs_f64() * 1000.0
    } else {
        -((crossing - last).as_secs_f64() * 1000.0)
    }
}

fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

#[tokio::main]
async fn main() {
    let trials: usize = std::env::var("TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(10);
    let topo = Topology::private();
    root(&topo, topo.master).await.query_drop("CREATE TABLE app.gate (id INT PRIMARY KEY, v INT)").await.unwrap();
    root(&topo, topo.master).await.query_drop("INSERT INTO app.gate VALUES (1, 0)").await.unwrap();
    topo.wait_replicated().await;
    let modes = [
        (
            "heartbeat, interval 250ms, max_replica_lag 500ms",
            "  lag_source: heartbeat\n  max_replica_lag: 500ms\n",
            500,
        ),
        ("replication (Seconds_Behind_Master), interval 250ms, max_replica_lag 1s", "  max_replica_lag: 1s\n", 1000),
    ];
    println!("lag gating: time from lag crossing max_replica_lag to the last read served by that replica");
    for (name, extra, max_ms) in modes {
        let yaml = format!(
            "{}health:\n  user: monitor\n  password: monitorpw\n  interval: 250ms\n{extra}",
            config_yaml(&topo)
        );
        let proxy = Arc::new(Proxy::start_yaml(&yaml).await);
        let mut ms = Vec::new();
        for _ in 0..trials {
            ms.push(trial(&topo, &proxy, Duration::from_millis(max_ms)).await);
        }
        let (median, max) = summary(ms.clone());
        println!(
            "  {name}: {trials} trials, median {median:.0} ms, max {max:.0} ms (goal: <= interval + 100 ms = 350 ms)"
        );
        println!("    trials (ms): {}", ms.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(" "));
    }
}
