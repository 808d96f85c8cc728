//! Backend failures with a private topology (servers are killed and restarted): the master going away and
//! coming back, and a replica dying under a session that uses it.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::Topology;
use mysql_async::prelude::*;

#[tokio::test(flavor = "multi_thread")]
async fn master_outage_gives_errors_then_recovers_and_replica_death_is_invisible_to_reads() {
    let topo = Topology::private();
    let proxy = Proxy::start(&topo).await;
    let mut c = proxy.conn().await;
    c.query_drop("CREATE DATABASE failover").await.unwrap();
    c.query_drop("CREATE TABLE failover.t (id INT PRIMARY KEY)").await.unwrap();
    topo.wait_replicated().await;

    // The master goes away: writes get a clear error, reads keep working, nothing crashes. A write sent on the
    // dying connection gets 1927 and its session closes (it may have committed: as with a direct connection,
    // the client must reconnect); one that finds the connection already closed is refused with 1053.
    topo.kill(topo.master);
    let err = c.query_drop("INSERT INTO failover.t VALUES (1)").await.unwrap_err();
    assert!(matches!(err, mysql_async::Error::Server(ref e) if e.code == 1927 || e.code == 1053), "{err:?}");
    // A new session while the master is down: every write fails fast with 1053 and the session goes on.
    let mut c = proxy.conn().await;
    for _ in 0..2 {
        let err = c.query_drop("INSERT INTO failover.t VALUES (1)").await.unwrap_err();
        assert!(matches!(err, mysql_async::Error::Server(ref e) if e.code == 1053), "{err:?}");
    }
    let mut fresh = proxy.conn().await;
    let id: u32 = fresh.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert!(id == 2 || id == 3);

    // It comes back: the same session writes again without reconnecting.
    topo.restart(topo.master);
    c.query_drop("INSERT INTO failover.t VALUES (2)").await.expect("write after the master returned");

    // The session's replica dies: its next read is served elsewhere without a client error.
    let mut r = proxy.conn().await;
    let first: u32 = r.query_first("SELECT @@server_id").await.unwrap().unwrap();
    let victim = topo.replicas.iter().copied().find(|a| topo.server_id_of(*a) == first).expect("a replica");
    topo.kill(victim);
    let started = Instant::now();
    let other: u32 = r.query_first("SELECT @@server_id").await.expect("read retried elsewhere").unwrap();
    assert_ne!(other, first);
    assert!(started.elapsed() < Duration::from_secs(5), "retry took {:?}", started.elapsed());
    for _ in 0..5 {
        let mut c = proxy.conn().await;
        let id: u32 = c.query_first("SELECT @@server_id").await.expect("no client error").unwrap();
        assert_ne!(id, first, "a dead replica gets no reads");
    }
}
