//! The routing and lag-gating checks in the replication modes other than GTID (which every other test file
//! uses): `pos` (replicas seeded from `mariadb-dump --master-data` and replicating by binary log file and
//! position, `MASTER_USE_GTID=no`) and `semisync` (GTID plus MariaDB's semi-synchronous replication), each on
//! a private topology started with `deploy/sandbox.sh up --replication MODE`. Per mode: writes on the master
//! and plain reads on the replicas, a session reading its own write at once, a replica made to lag (by
//! MASTER_DELAY) taken out and readmitted, a stopped SQL thread, a hung replica (SIGSTOP), heartbeat lag;
//! and what the
//! replication view (admin `SHOW REPLICATION`, the replication metrics) shows: the mode, the threads, the
//! distance in bytes, and in semisync mode the master falling back to asynchronous replication; and the
//! operator mistakes named: a monitor account without the grant, a replica replicating from another
//! server, two servers sharing a server_id.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::proxy::{config_with_health, Proxy};
use common::Topology;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// Writes on the master every 50 ms until the flag is set (lag shows only while events arrive).
fn keep_writing(topo: &Topology, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let opts = topo.direct_opts(topo.master, "root", "rootpw");
    tokio::spawn(async move {
        let mut c = Conn::new(opts).await.expect("root connection");
        while !stop.load(Ordering::Relaxed) {
            if c.query_drop("INSERT INTO app.mode_ticks (at) VALUES (NOW(6))").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

async fn routing_and_gating(mode: &str) {
    let topo = Topology::private_in(mode);
    let mut master = topo.root(topo.master).await;
    let using_gtid: String = topo
        .root(topo.replicas[0])
        .await
        .query_first("SHOW SLAVE STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| row.get::<String, _>("Using_Gtid").unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(using_gtid, if mode == "pos" { "No" } else { "Slave_Pos" }, "the sandbox replicates in {mode} mode");
    if mode == "semisync" {
        let on: Option<(String, String)> =
            master.query_first("SHOW STATUS LIKE 'Rpl_semi_sync_master_status'").await.unwrap();
        assert_eq!(on.map(|(_, v)| v).as_deref(), Some("ON"), "semi-sync is on");
    }
    master
        .query_drop("CREATE TABLE IF NOT EXISTS app.mode_ticks (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))")
        .await
        .unwrap();

    let proxy = Proxy::start_yaml(&config_with_health(&topo, "  max_replica_lag: 1s\n")).await;
    let keys: Vec<String> = topo.replicas.iter().map(|r| r.to_string()).collect();
    let all_serve = |h: &rwsplit::health::Snapshot| keys.iter().all(|k| h.serves_reads(k));
    proxy.wait_health("both replicas serve", Duration::from_secs(15), all_serve).await;

    // The replication view: each replica's mode and threads, caught up to the byte, and semi-sync.
    let want_mode = if mode == "pos" { "position" } else { "gtid" };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let views = proxy.shared.backend_views();
        let replicas_ok = views.iter().filter(|v| !v.is_writer).all(|v| {
            let r = v.replication.clone().unwrap_or_default();
            r.mode == Some(want_mode)
                && r.io_state.as_deref() == Some("Yes")
                && r.sql_state.as_deref() == Some("Yes")
                && r.source_server_id == Some(1)
                && v.binlog_behind == Some(0)
        });
        let master = views.iter().find(|v| v.is_writer).and_then(|v| v.replication.clone()).unwrap_or_default();
        let semisync_ok = if mode == "semisync" { master.semisync_master == Some((true, 2)) } else { true };
        if replicas_ok && semisync_ok && master.binlog_end.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{mode}: replication view {views:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = rwsplit::metrics::render(&proxy.shared);
    for r in &topo.replicas {
        for name in ["rwsplit_replica_io_running", "rwsplit_replica_sql_running"] {
            assert!(metrics.contains(&format!("{name}{{backend=\"{r}\"}} 1")), "{name} for {r}:\n{metrics}");
        }
        assert!(metrics.contains(&format!("rwsplit_replica_binlog_behind_bytes{{backend=\"{r}\"}} 0")), "{metrics}");
    }

    // Writes on the master, plain reads on the replicas, and a session sees its own write at once.
    let mut c = proxy.conn_db("app").await;
    c.query_drop("CREATE TABLE IF NOT EXISTS ryw (id INT PRIMARY KEY)").await.unwrap();
    for id in 0..50u32 {
        c.query_drop(format!("INSERT INTO ryw VALUES ({id})")).await.unwrap();
        let seen: Option<u32> = c.query_first(format!("SELECT id FROM ryw WHERE id = {id}")).await.unwrap();
        assert_eq!(seen, Some(id), "{mode}: the session reads its own write");
    }
    let mut on_replicas = 0;
    for _ in 0..40 {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        on_replicas += u32::from(id == 2 || id == 3);
    }
    assert_eq!(on_replicas, 40, "{mode}: plain reads go to the replicas");
    let id: u32 = c.query_first("SELECT @@server_id FOR UPDATE").await.unwrap().unwrap();
    assert_eq!(id, 1, "{mode}: a locking read goes to the master");

    // A lagging replica is taken out and readmitted.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(&topo, Arc::clone(&stop));
    let lagging = topo.replicas[0];
    let key = lagging.to_string();
    let mut r = topo.root(lagging).await;
    r.query_drop("STOP SLAVE").await.unwrap();
    r.query_drop("CHANGE MASTER TO MASTER_DELAY = 3").await.unwrap();
    r.query_drop("START SLAVE").await.unwrap();
    proxy.wait_health("the delayed replica is out", Duration::from_secs(20), |h| !h.serves_reads(&key)).await;
    for _ in 0..20 {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_ne!(id, topo.server_id_of(lagging), "{mode}: no reads for the lagging replica");
    }
    r.query_drop("STOP SLAVE").await.unwrap();
    r.query_drop("CHANGE MASTER TO MASTER_DELAY = 0").await.unwrap();
    r.query_drop("START SLAVE").await.unwrap();
    proxy.wait_health("the caught-up replica is back", Duration::from_secs(20), |h| h.serves_reads(&key)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    // A stopped SQL thread takes it out; starting it brings it back.
    r.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    proxy
        .wait_health("out with its SQL thread stopped", Duration::from_secs(10), |h| {
            !h.servers[&*key].serves_reads && !h.servers[&*key].replicating
        })
        .await;
    r.query_drop("START SLAVE SQL_THREAD").await.unwrap();
    proxy.wait_health("back with its SQL thread running", Duration::from_secs(10), |h| h.serves_reads(&key)).await;

    // A hung replica: reads go on elsewhere; it comes back when it resumes.
    let hung = topo.replicas[1];
    let hung_key = hung.to_string();
    topo.pause(hung);
    proxy.wait_health("the hung replica is out", Duration::from_secs(10), |h| !h.serves_reads(&hung_key)).await;
    for _ in 0..20 {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_ne!(id, topo.server_id_of(hung), "{mode}: no reads for the hung replica");
    }
    topo.resume(hung);
    proxy.wait_health("the resumed replica is back", Duration::from_secs(20), all_serve).await;

    // Heartbeat lag (a row the checker writes on the master and reads on each replica) works in this mode too.
    let heartbeat = Proxy::start_yaml(&config_with_health(&topo, "  lag_source: heartbeat\n")).await;
    heartbeat
        .wait_health("heartbeat lag measured on both replicas", Duration::from_secs(15), |h| {
            keys.iter().all(|k| h.servers.get(k.as_str()).is_some_and(|s| s.lag.is_some_and(|l| l < 1.0)))
        })
        .await;
    drop(heartbeat);

    if mode == "semisync" {
        // Without a replica to acknowledge, the master falls back to asynchronous replication after
        // rpl_semi_sync_master_timeout (1 s in the sandbox) on the next commit; the view and the metric say so.
        for r in &topo.replicas {
            topo.root(*r).await.query_drop("STOP SLAVE IO_THREAD").await.unwrap();
        }
        master.query_drop("INSERT INTO app.mode_ticks (at) VALUES (NOW(6))").await.unwrap();
        let key = topo.master.to_string();
        proxy
            .wait_health("the master reports asynchronous replication", Duration::from_secs(10), |h| {
                h.servers.get(&*key).is_some_and(|s| s.replication.semisync_master.is_some_and(|(on, _)| !on))
            })
            .await;
        let metrics = rwsplit::metrics::render(&proxy.shared);
        let off = format!("rwsplit_semisync_master_status{{backend=\"{}\"}} 0", topo.master);
        assert!(metrics.contains(&off), "{metrics}");
        for r in &topo.replicas {
            topo.root(*r).await.query_drop("START SLAVE IO_THREAD").await.unwrap();
        }
        master.query_drop("INSERT INTO app.mode_ticks (at) VALUES (NOW(6))").await.unwrap();
        proxy
            .wait_health("the master is semi-synchronous again", Duration::from_secs(15), |h| {
                h.servers.get(&*key).is_some_and(|s| s.replication.semisync_master.is_some_and(|(on, _)| on))
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_position_replication_routes_and_gates() {
    routing_and_gating("pos").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn semisync_replication_routes_and_gates() {
    routing_and_gating("semisync").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_mistakes_are_named() {
    let topo = Topology::private_in("gtid");
    // A monitor account without the replication privileges: the probe error says which GRANT is missing.
    let mut master = topo.root(topo.master).await;
    master.query_drop("CREATE USER IF NOT EXISTS 'nomon'@'%' IDENTIFIED BY 'nomonpw'").await.unwrap();
    topo.wait_replicated().await;
    let weak = config_with_health(&topo, "")
        .replace("user: monitor\n  password: monitorpw", "user: nomon\n  password: nomonpw");
    let proxy = Proxy::start_yaml(&weak).await;
    let key = topo.replicas[0].to_string();
    proxy
        .wait_health("the probe names the missing grant", Duration::from_secs(10), |h| {
            let error = h.servers.get(&*key).and_then(|s| s.last_error.as_deref());
            error.is_some_and(|e| e.contains("GRANT SLAVE MONITOR, REPLICATION CLIENT"))
        })
        .await;
    drop(proxy);

    // A replica replicating from another replica, not from the configured master: out of the rotation, with
    // both server ids named.
    let proxy = Proxy::start_yaml(&config_with_health(&topo, "")).await;
    let keys: Vec<String> = topo.replicas.iter().map(|r| r.to_string()).collect();
    proxy.wait_health("both serve", Duration::from_secs(15), |h| keys.iter().all(|k| h.serves_reads(k))).await;
    let chained = topo.replicas[1];
    let mut r = topo.root(chained).await;
    r.query_drop("STOP SLAVE").await.unwrap();
    r.query_drop(format!("CHANGE MASTER TO MASTER_PORT = {}", topo.replicas[0].port())).await.unwrap();
    r.query_drop("START SLAVE").await.unwrap();
    let chained_key = chained.to_string();
    proxy
        .wait_health("the chained replica is out, named", Duration::from_secs(15), |h| {
            let s = &h.servers[&*chained_key];
            !s.serves_reads
                && s.last_error.as_deref().is_some_and(|e| e.contains("server_id 2") && e.contains("server_id 1"))
        })
        .await;
    let views = proxy.shared.backend_views();
    let view = views.iter().find(|v| *v.addr == *chained_key).and_then(|v| v.replication.clone()).unwrap();
    assert_eq!(view.source_server_id, Some(2), "{view:?}");
    r.query_drop("STOP SLAVE").await.unwrap();
    r.query_drop(format!("CHANGE MASTER TO MASTER_PORT = {}", topo.master.port())).await.unwrap();
    r.query_drop("START SLAVE").await.unwrap();
    proxy.wait_health("back from the master", Duration::from_secs(15), |h| h.serves_reads(&chained_key)).await;

    // Two servers with one server_id: named, and the replica does not serve reads until it is fixed.
    r.query_drop("SET GLOBAL server_id = 2").await.unwrap();
    proxy
        .wait_health("the duplicate server_id is named", Duration::from_secs(15), |h| {
            h.servers.get(&*chained_key).is_some_and(|s| {
                !s.serves_reads
                    && s.last_error.as_deref().is_some_and(|e| e.contains("server_id 2") && e.contains("unique"))
            })
        })
        .await;
    r.query_drop("SET GLOBAL server_id = 3").await.unwrap();
    proxy.wait_health("both back", Duration::from_secs(20), |h| keys.iter().all(|k| h.serves_reads(k))).await;
}
