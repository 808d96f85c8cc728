//! Routing through rwsplit against the real replicated MariaDB: `@@server_id` tells which backend answered
//! (1 = master, 2 and 3 = replicas); writes are verified directly on the master.

mod common;

use std::collections::HashSet;

use common::proxy::Proxy;
use common::{unique_name, Topology};
use mysql_async::prelude::*;
use mysql_async::Conn;

const MASTER: u32 = 1;

async fn server_id(conn: &mut Conn) -> u32 {
    conn.query_first("SELECT @@server_id").await.expect("select server_id").expect("a row")
}

fn is_replica(id: u32) -> bool {
    id == 2 || id == 3
}

/// A database and table `t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)` created through the proxy and
/// replicated.
async fn fixture(topo: &Topology, proxy: &Proxy) -> String {
    let db = unique_name("r");
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT) CHARSET utf8mb4"))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO {db}.t (v) VALUES ('one'), ('two')")).await.unwrap();
    topo.wait_replicated().await;
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_spread_over_both_replicas_and_never_hit_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let mut c = proxy.conn().await;
        let id = server_id(&mut c).await;
        assert!(is_replica(id), "read answered by server {id}");
        seen.insert(id);
        c.disconnect().await.unwrap();
    }
    assert_eq!(seen, HashSet::from([2, 3]), "both replicas should serve reads");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_reach_the_master_and_last_insert_id_works() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn().await;
    c.query_drop(format!("INSERT INTO {db}.t (v) VALUES ('three')")).await.unwrap();
    let id = c.last_insert_id().expect("OK packet carries the insert id");
    let via_fn: u64 = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap().unwrap();
    assert_eq!(via_fn, id, "LAST_INSERT_ID() must run on the master connection that inserted");
    c.query_drop(format!("UPDATE {db}.t SET v = 'THREE' WHERE id = {id}")).await.unwrap();
    let mut direct = topo.root(topo.master).await;
    let v: String = direct.query_first(format!("SELECT v FROM {db}.t WHERE id = {id}")).await.unwrap().unwrap();
    assert_eq!(v, "THREE");
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_and_read_only_transactions() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn().await;
    c.query_drop("BEGIN").await.unwrap();
    assert_eq!(server_id(&mut c).await, MASTER, "reads inside a transaction stay on the master");
    c.query_drop(format!("INSERT INTO {db}.t (v) VALUES ('trx')")).await.unwrap();
    let n: u64 = c.query_first(format!("SELECT COUNT(*) FROM {db}.t WHERE v = 'trx'")).await.unwrap().unwrap();
    assert_eq!(n, 1, "the transaction sees its own write");
    c.query_drop("COMMIT").await.unwrap();
    assert!(is_replica(server_id(&mut c).await), "after COMMIT reads go back to a replica");

    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let first = server_id(&mut c).await;
    assert!(is_replica(first), "a READ ONLY transaction runs on a replica");
    for _ in 0..5 {
        assert_eq!(server_id(&mut c).await, first, "the whole READ ONLY transaction stays on one replica");
    }
    c.query_drop("COMMIT").await.unwrap();

    c.query_drop("START TRANSACTION READ WRITE").await.unwrap();
    assert_eq!(server_id(&mut c).await, MASTER);
    c.query_drop("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn autocommit_off_pins_to_master_until_turned_back_on() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn().await;
    c.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(server_id(&mut c).await, MASTER);
    c.query_drop(format!("INSERT INTO {db}.t (v) VALUES ('ac0')")).await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(server_id(&mut c).await, MASTER, "still autocommit=0 after COMMIT");
    c.query_drop("SET autocommit = 1").await.unwrap();
    assert!(is_replica(server_id(&mut c).await));
    let mut direct = topo.root(topo.master).await;
    let n: u64 = direct.query_first(format!("SELECT COUNT(*) FROM {db}.t WHERE v = 'ac0'")).await.unwrap().unwrap();
    assert_eq!(n, 1, "the committed row is on the master");
}

#[tokio::test(flavor = "multi_thread")]
async fn locking_reads_and_side_effect_functions_go_to_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn().await;
    let cases = [
        format!("SELECT @@server_id FROM {db}.t LIMIT 1 FOR UPDATE"),
        format!("SELECT @@server_id FROM {db}.t LIMIT 1 LOCK IN SHARE MODE"),
        format!("SELECT @@server_id FROM (SELECT id FROM {db}.t WHERE id = 1 FOR UPDATE) AS x"),
        format!(
            "SELECT @@server_id FROM {db}.t WHERE id = 1 UNION SELECT @@server_id FROM {db}.t WHERE id = 2 FOR UPDATE"
        ),
        "SELECT @@server_id FROM DUAL WHERE GET_LOCK('rwsplit_test', 0) IS NOT NULL".to_string(),
        "SELECT @@server_id FROM DUAL WHERE RELEASE_LOCK('rwsplit_test') IS NOT NULL".to_string(),
        "SELECT @@server_id FROM DUAL WHERE LAST_INSERT_ID() >= 0".to_string(),
        "SELECT @@server_id FROM DUAL WHERE (@picked := 1) = 1".to_string(),
    ];
    for sql in cases {
        let id: u32 = c.query_first(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).unwrap();
        assert_eq!(id, MASTER, "{sql}");
    }
    c.query_drop(format!("SELECT id INTO @got FROM {db}.t WHERE id = 1")).await.unwrap();
    let got: u32 = c.query_first("SELECT @got").await.unwrap().unwrap();
    assert_eq!(got, 1, "a variable set by SELECT INTO on the master is read where it exists");
}

#[tokio::test(flavor = "multi_thread")]
async fn session_state_follows_the_session_to_replicas() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn().await;
    // Set state before any replica connection exists: the replica opened later must replay it.
    c.query_drop("SET @answer = 42, SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES'").await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci").await.unwrap();
    let row: (u32, i64, String, String, String) = c
        .query_first("SELECT @@server_id, @answer, @@sql_mode, DATABASE(), @@collation_connection")
        .await
        .unwrap()
        .unwrap();
    assert!(is_replica(row.0), "plain read on a replica, got server {}", row.0);
    assert_eq!(row.1, 42);
    assert!(row.2.contains("ANSI_QUOTES"), "sql_mode on the replica: {}", row.2);
    assert_eq!(row.3, db);
    assert_eq!(row.4, "utf8mb4_unicode_ci");
    // COM_INIT_DB (the client's "change database") is replayed the same way.
    c.query_drop("CREATE DATABASE IF NOT EXISTS rwsplit").await.ok();
    topo.wait_replicated().await;
    c.reset().await.unwrap();
    let (id, v): (u32, Option<i64>) = c.query_first("SELECT @@server_id, @answer").await.unwrap().unwrap();
    assert!(is_replica(id));
    assert_eq!(v, None, "COM_RESET_CONNECTION clears user variables");
    // Writes still see the state on the master.
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("INSERT INTO t (v) VALUES ('via use')").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_tables_are_read_on_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn_db(&db).await;
    c.query_drop("CREATE TEMPORARY TABLE scratch (n INT)").await.unwrap();
    c.query_drop("INSERT INTO scratch VALUES (1), (2), (3)").await.unwrap();
    let (id, n): (u32, u64) = c.query_first("SELECT @@server_id, COUNT(*) FROM scratch").await.unwrap().unwrap();
    assert_eq!((id, n), (MASTER, 3));
    assert!(is_replica(server_id(&mut c).await), "other reads still use a replica");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_pass_through_and_the_connection_stays_usable() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut c = proxy.conn().await;
    let err = c.query_drop("SELECT * FROM no_such_db.no_such_table").await.unwrap_err();
    match err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1146, "{e:?}"),
        other => panic!("expected a server error, got {other:?}"),
    }
    let err = c.query_drop("INSERT INTO no_such_db.t VALUES (1)").await.unwrap_err();
    assert!(matches!(err, mysql_async::Error::Server(ref e) if e.code == 1146), "{err:?}");
    let err = c.query_drop("SELEC 1").await.unwrap_err();
    assert!(matches!(err, mysql_async::Error::Server(ref e) if e.code == 1064), "{err:?}");
    // A statement without tables leaves the error in the diagnostics area (the server resets it only for
    // statements that use a table), so it runs where the error is and SHOW WARNINGS shows it, as direct.
    let mut direct = Conn::new(topo.direct_opts(topo.master, "app", "apppw")).await.unwrap();
    direct.query_drop("SELEC 1").await.unwrap_err();
    let mut after = Vec::new();
    for conn in [&mut c, &mut direct] {
        let id = server_id(conn).await;
        let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap();
        after.push((id, warnings));
    }
    assert_eq!(after[0], after[1], "a tableless read and SHOW WARNINGS after an error, through rwsplit and direct");
    assert_eq!(after[0].1.len(), 1, "{after:?}");
    let id: Option<u32> = c.query_first("SELECT @@server_id FROM mysql.user LIMIT 1").await.unwrap();
    assert!(id.is_some_and(is_replica), "a read of a table goes to a replica again: {id:?}");
    // A variable set where the history cannot replay it (SELECT … INTO, on the master) is read there, also
    // right after a warning on a replica: the state a read needs beats the diagnostics, as direct.
    let (mut seen, mut fresh) = (Vec::new(), proxy.conn().await);
    for conn in [&mut fresh, &mut direct] {
        conn.query_drop("SELECT 42 INTO @v").await.unwrap();
        let _: Option<Option<u32>> = conn.query_first("SELECT 1/0").await.unwrap();
        let v: Option<Option<u32>> = conn.query_first("SELECT @v").await.unwrap();
        seen.push(v);
    }
    assert_eq!(seen[0], seen[1], "SELECT @v after a warning, through rwsplit and direct");
    assert_eq!(seen[0], Some(Some(42)));
    // Warnings come from the backend that ran the statement.
    c.query_drop("SELECT CAST('12abc' AS INTEGER)").await.unwrap();
    let warnings: Vec<(String, u32, String)> = c.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "SHOW WARNINGS must run where the previous statement ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_statements_go_to_a_replica_only_if_all_are_reads() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn().await;
    let mut r = c.query_iter("SELECT @@server_id; SELECT @@server_id + 100").await.unwrap();
    let a: Vec<u32> = r.collect().await.unwrap();
    let b: Vec<u32> = r.collect().await.unwrap();
    drop(r);
    assert!(is_replica(a[0]));
    assert_eq!(b[0], a[0] + 100);
    let mut r = c.query_iter(format!("INSERT INTO {db}.t (v) VALUES ('m'); SELECT @@server_id")).await.unwrap();
    let _: Vec<u32> = r.collect().await.unwrap();
    let ids: Vec<u32> = r.collect().await.unwrap();
    drop(r);
    assert_eq!(ids, vec![MASTER]);
    assert!(is_replica(server_id(&mut c).await), "the connection is still usable afterwards");
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_route_by_their_text() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn().await;
    let read = c.prep("SELECT @@server_id, ? + 1").await.unwrap();
    for i in 0..5i64 {
        let (id, n): (u32, i64) = c.exec_first(&read, (i,)).await.unwrap().unwrap();
        assert!(is_replica(id), "prepared read on server {id}");
        assert_eq!(n, i + 1);
    }
    let write = c.prep(format!("INSERT INTO {db}.t (v) VALUES (?)")).await.unwrap();
    for i in 0..5 {
        c.exec_drop(&write, (format!("ps{i}"),)).await.unwrap();
    }
    // The read statement again, now executed inside a transaction: it must be prepared on the master too.
    c.query_drop("BEGIN").await.unwrap();
    let (id, _): (u32, i64) = c.exec_first(&read, (1,)).await.unwrap().unwrap();
    assert_eq!(id, MASTER);
    let n: u64 = c.exec_first(format!("SELECT COUNT(*) FROM {db}.t WHERE v LIKE ?"), ("ps%",)).await.unwrap().unwrap();
    assert_eq!(n, 5, "inside the transaction the master sees every write");
    c.query_drop("COMMIT").await.unwrap();
    c.close(read).await.unwrap();
    c.close(write).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unicode_large_blobs_and_large_results_stream_intact() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let mut c = proxy.conn_db(&db).await;
    let text = "żółw 😀 日本語 — ünïcödé";
    c.exec_drop("INSERT INTO t (v) VALUES (?)", (text,)).await.unwrap();
    c.query_drop("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)").await.unwrap();
    let blob: Vec<u8> = (0..32 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    c.exec_drop("INSERT INTO blobs VALUES (1, ?)", (blob.clone(),)).await.unwrap();
    topo.wait_replicated().await;
    let (id, back): (u32, String) =
        c.query_first("SELECT @@server_id, v FROM t WHERE v LIKE 'żółw%'").await.unwrap().unwrap();
    assert!(is_replica(id));
    assert_eq!(back, text);
    let (id, got): (u32, Vec<u8>) =
        c.query_first("SELECT @@server_id, b FROM blobs WHERE id = 1").await.unwrap().unwrap();
    assert!(is_replica(id));
    assert!(got == blob, "32 MiB blob read back through the text protocol differs");
    let (_, got): (u32, Vec<u8>) =
        c.exec_first("SELECT @@server_id, b FROM blobs WHERE id = ?", (1,)).await.unwrap().unwrap();
    assert!(got == blob, "32 MiB blob read back through the binary protocol differs");
    let mut rows = 0u64;
    let mut sum = 0u64;
    let mut r = c.query_iter("SELECT seq FROM seq_1_to_200000").await.unwrap();
    r.for_each(|row| {
        let v: u64 = mysql_async::from_row(row);
        rows += 1;
        sum += v;
    })
    .await
    .unwrap();
    drop(r);
    assert_eq!((rows, sum), (200_000, 200_000 * 200_001 / 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn drivers_that_prefer_unix_sockets_stay_on_the_proxy() {
    // mysql_async by default asks a localhost server for @@socket and reconnects to that socket: given a
    // backend's path it would bypass rwsplit. rwsplit answers '' (it listens on TCP only; an empty string,
    // not NULL, so drivers that scan it into a string keep working).
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo, &proxy).await;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.addr.port())
        .user(Some("app"))
        .pass(Some("apppw"));
    let mut c = Conn::new(opts).await.unwrap();
    let socket: Option<String> = c.query_first("SELECT @@socket").await.unwrap().unwrap();
    assert_eq!(socket.as_deref(), Some(""));
    assert!(is_replica(server_id(&mut c).await));
    c.query_drop(format!("INSERT INTO {db}.t (v) VALUES ('via tcp')")).await.expect("write reaches the master");
    assert!(!proxy.shared.registry.is_empty(), "the client is connected through rwsplit");
}
