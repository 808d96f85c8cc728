//! Smoke test of the test harness itself (no proxy): the sandbox topology replicates, enforces read_only on
//! replicas for ordinary accounts, refuses bad passwords, and survives pause/resume and kill/restart.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    mariadb_cli, mariadb_dump, unique_name, Topology, APP_DB, APP_PASSWORD, APP_USER, ROOT_PASSWORD, ROOT_USER,
};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// MariaDB's ER_OPTION_PREVENTS_STATEMENT (e.g. "running with the --read-only option").
const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;
/// MariaDB's ER_ACCESS_DENIED_ERROR.
const ER_ACCESS_DENIED: u16 = 1045;

async fn connect(topology: &Topology, addr: SocketAddr, user: &str, password: &str) -> Conn {
    Conn::new(topology.direct_opts(addr, user, password))
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr} as {user}: {e}"))
}

async fn query_u64(conn: &mut Conn, sql: &str) -> u64 {
    let value: Option<u64> = conn.query_first(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    value.unwrap_or_else(|| panic!("{sql} returned no row"))
}

fn server_error_code(err: &mysql_async::Error) -> Option<u16> {
    match err {
        mysql_async::Error::Server(e) => Some(e.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_have_their_server_id_and_replicas_are_read_only() {
    let topology = Topology::shared();
    for addr in topology.servers() {
        let mut conn = connect(topology, addr, ROOT_USER, ROOT_PASSWORD).await;
        let server_id = query_u64(&mut conn, "SELECT @@server_id").await;
        assert_eq!(server_id, u64::from(topology.server_id_of(addr)), "server_id of {addr}");
        let read_only = query_u64(&mut conn, "SELECT @@read_only").await;
        let expected = if addr == topology.master { 0 } else { 1 };
        assert_eq!(read_only, expected, "read_only of {}", topology.name_of(addr));
        conn.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn app_write_on_master_replicates_to_both_replicas() {
    let topology = Topology::shared();
    let table = format!("{APP_DB}.{}", unique_name("smoke"));
    let mut master = connect(topology, topology.master, APP_USER, APP_PASSWORD).await;
    master.query_drop(format!("CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(20))")).await.unwrap();
    master.query_drop(format!("INSERT INTO {table} VALUES (1, 'one'), (2, 'two')")).await.unwrap();
    master.disconnect().await.unwrap();

    topology.wait_replicated().await;
    for &replica in &topology.replicas {
        let mut conn = connect(topology, replica, APP_USER, APP_PASSWORD).await;
        let rows: Vec<(i32, String)> = conn.query(format!("SELECT id, note FROM {table} ORDER BY id")).await.unwrap();
        assert_eq!(rows, vec![(1, "one".to_owned()), (2, "two".to_owned())], "rows on {replica}");
        conn.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn app_write_on_a_replica_is_refused() {
    let topology = Topology::shared();
    let replica = topology.replicas[0];
    let mut conn = connect(topology, replica, APP_USER, APP_PASSWORD).await;
    let table = format!("{APP_DB}.{}", unique_name("ro"));
    let err = conn.query_drop(format!("CREATE TABLE {table} (id INT)")).await.unwrap_err();
    assert_eq!(server_error_code(&err), Some(ER_OPTION_PREVENTS_STATEMENT), "{err}");
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_refused_over_tcp() {
    let topology = Topology::shared();
    for (user, addr) in [(ROOT_USER, topology.master), (APP_USER, topology.replicas[1])] {
        let err = Conn::new(topology.direct_opts(addr, user, "wrong")).await.unwrap_err();
        assert_eq!(server_error_code(&err), Some(ER_ACCESS_DENIED), "{user} on {addr}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn command_line_clients_work() {
    let topology = Topology::shared();
    let out = mariadb_cli(topology.master, APP_USER, APP_PASSWORD, &["-N", "-e", "SELECT @@server_id"], None);
    assert!(out.status.success(), "mariadb -e failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    let table = unique_name("cli");
    let script = format!(
        "CREATE TABLE {APP_DB}.{table} (id INT PRIMARY KEY);\nINSERT INTO {APP_DB}.{table} VALUES (7);\n\
         SELECT id FROM {APP_DB}.{table};\n"
    );
    let out = mariadb_cli(topology.master, APP_USER, APP_PASSWORD, &["-N"], Some(&script));
    assert!(out.status.success(), "mariadb < script failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");

    let out = mariadb_dump(topology.master, APP_USER, APP_PASSWORD, &[APP_DB, &table]);
    assert!(out.status.success(), "mariadb-dump failed: {}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains(&format!("CREATE TABLE `{table}`")), "dump:\n{dump}");
    assert!(dump.contains("INSERT INTO"), "dump:\n{dump}");

    let out = mariadb_cli(topology.master, APP_USER, "wrong", &["-e", "SELECT 1"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1045"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn private_topology_survives_pause_and_kill() {
    let topology = Topology::private();
    assert_ne!(topology.master, Topology::shared().master, "private topology has its own ports");
    let replica = topology.replicas[0];

    // A paused server accepts TCP connections but never sends its greeting.
    topology.pause(replica);
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        Conn::new(topology.direct_opts(replica, ROOT_USER, ROOT_PASSWORD)),
    )
    .await;
    assert!(attempt.is_err(), "a paused server answered");
    topology.resume(replica);
    let mut conn = connect(&topology, replica, ROOT_USER, ROOT_PASSWORD).await;
    assert_eq!(query_u64(&mut conn, "SELECT @@server_id").await, 2);
    conn.disconnect().await.unwrap();

    // A killed replica refuses connections; restarted, it catches up on what it missed.
    let killed = topology.replicas[1];
    topology.kill(killed);
    let err = Conn::new(topology.direct_opts(killed, ROOT_USER, ROOT_PASSWORD)).await.unwrap_err();
    assert!(server_error_code(&err).is_none(), "a killed server answered: {err}");
    let table = format!("{APP_DB}.{}", unique_name("restart"));
    let mut master = connect(&topology, topology.master, APP_USER, APP_PASSWORD).await;
    master.query_drop(format!("CREATE TABLE {table} (id INT PRIMARY KEY)")).await.unwrap();
    master.query_drop(format!("INSERT INTO {table} VALUES (1)")).await.unwrap();
    master.disconnect().await.unwrap();
    topology.restart(killed);
    topology.wait_replicated().await;

    // A killed and restarted master: replicas reconnect by themselves and receive later writes.
    topology.kill(topology.master);
    topology.restart(topology.master);
    let mut master = connect(&topology, topology.master, APP_USER, APP_PASSWORD).await;
    master.query_drop(format!("INSERT INTO {table} VALUES (2)")).await.unwrap();
    master.disconnect().await.unwrap();
    topology.wait_replicated().await;
    for &replica in &topology.replicas {
        let mut conn = connect(&topology, replica, APP_USER, APP_PASSWORD).await;
        let count = query_u64(&mut conn, &format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(count, 2, "rows on {}", topology.name_of(replica));
        conn.disconnect().await.unwrap();
    }
}
