//! Third-party clients, bad input and failing backends, through rwsplit against the real MariaDB topology.

mod common;

use std::net::SocketAddr;

use common::proxy::{config_yaml, Proxy};
use common::raw::{login_params, read_frame, write_frame, Raw};
use common::{mariadb_cli, mariadb_dump, unique_name, Topology};
use mysql_async::prelude::*;
use rwsplit_wire::auth;
use rwsplit_wire::packet::ErrPacket;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Logs in over a raw socket as app/apppw; returns the stream ready for commands.
async fn raw_login(addr: SocketAddr) -> TcpStream {
    Raw::login(addr, "app", "apppw", None).await.stream
}

async fn assert_proxy_serves(proxy: &Proxy) {
    let mut c = proxy.conn().await;
    let one: u32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_user_get_1045() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    for (user, pw) in [("app", "nope"), ("nobody", "apppw"), ("app", "")] {
        let err = mysql_async::Conn::new(proxy.opts(user, pw)).await.unwrap_err();
        match err {
            mysql_async::Error::Server(e) => {
                assert_eq!(e.code, 1045, "{user}/{pw}: {e:?}");
                assert!(!e.message.contains("apppw"), "no password in messages");
            }
            other => panic!("expected 1045, got {other:?}"),
        }
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caching_sha2_clients_log_in() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    // A client that answers the greeting with caching_sha2_password, as MySQL 8 clients do by default.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let greeting = read_frame(&mut s).await.unwrap();
    let mut greeting = auth::parse_greeting(greeting.payload()).unwrap();
    greeting.plugin = auth::CACHING_SHA2.into();
    let login = login_params("app", "apppw", auth::supported_capabilities());
    let (payload, plugin) = auth::handshake_response(&greeting, &login);
    assert_eq!(plugin, auth::CACHING_SHA2);
    write_frame(&mut s, 1, &payload).await.unwrap();
    let fast = read_frame(&mut s).await.unwrap();
    assert_eq!(fast.payload(), &[0x01, 0x03], "fast-auth success");
    let ok = read_frame(&mut s).await.unwrap();
    assert_eq!(ok.payload()[0], 0);
    // A client with an unknown plugin is switched to mysql_native_password.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let g = read_frame(&mut s).await.unwrap();
    let mut g = auth::parse_greeting(g.payload()).unwrap();
    g.plugin = "dialog".into();
    let (mut payload, _) = auth::handshake_response(&g, &login);
    let at = payload.windows(21).position(|w| w == b"mysql_native_password").unwrap();
    payload.splice(at..at + 21, b"dialog_plugin_x_y_z_w".iter().copied());
    write_frame(&mut s, 1, &payload).await.unwrap();
    let switch = read_frame(&mut s).await.unwrap();
    let (plugin, nonce) = auth::parse_auth_switch(switch.payload()).expect("auth switch request");
    assert_eq!(plugin, auth::NATIVE);
    let answer = auth::expected_scramble(auth::NATIVE, &nonce, b"apppw").unwrap();
    write_frame(&mut s, switch.seq() + 1, &answer).await.unwrap();
    let ok = read_frame(&mut s).await.unwrap();
    assert_eq!(ok.payload()[0], 0, "{:?}", ErrPacket::parse(ok.payload()));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_packets_end_only_that_session() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut keep = proxy.conn().await;
    // Garbage instead of a handshake response.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    read_frame(&mut s).await.unwrap();
    write_frame(&mut s, 1, &[0xff, 0xff, 0x01]).await.unwrap();
    let err = read_frame(&mut s).await.unwrap();
    assert_eq!(ErrPacket::parse(err.payload()).map(|e| e.code), Some(1043));
    // A header promising more than is sent, then a close.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    read_frame(&mut s).await.unwrap();
    s.write_all(&[100, 0, 0, 1, 1, 2, 3]).await.unwrap();
    drop(s);
    // After login: an empty command, an unknown command, a truncated execute, a wrong sequence id.
    let mut s = raw_login(proxy.addr).await;
    write_frame(&mut s, 0, &[0x1d]).await.unwrap(); // COM_DAEMON: unsupported
    let err = read_frame(&mut s).await.unwrap();
    assert_eq!(ErrPacket::parse(err.payload()).map(|e| e.code), Some(1047), "unknown command gets a real error");
    write_frame(&mut s, 0, &[0x17, 1]).await.unwrap(); // COM_STMT_EXECUTE, truncated
    let err = read_frame(&mut s).await.unwrap();
    assert_eq!(ErrPacket::parse(err.payload()).map(|e| e.code), Some(1243));
    write_frame(&mut s, 5, &[0x03, b'S']).await.unwrap(); // bad sequence id: session closed
    let closed = read_frame(&mut s).await;
    assert!(closed.is_err(), "session must be closed after a protocol violation");
    let mut s = raw_login(proxy.addr).await;
    write_frame(&mut s, 0, &[]).await.unwrap();
    assert!(read_frame(&mut s).await.is_err(), "empty command closes the session");
    // The long-lived session and new ones are unaffected.
    let one: u32 = keep.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_packets_get_1153_and_close_that_session() {
    let topo = Topology::shared();
    let proxy = Proxy::start_yaml(&format!("{}max_allowed_packet: 1M\n", config_yaml(topo))).await;
    let mut big = proxy.conn().await;
    let sql = format!("SELECT LENGTH('{}')", "x".repeat(17 * 1024 * 1024));
    let err = big.query_drop(sql).await.unwrap_err();
    assert!(
        matches!(err, mysql_async::Error::Server(ref e) if e.code == 1153) || matches!(err, mysql_async::Error::Io(_)),
        "{err:?}"
    );
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_leaving_mid_result_does_not_disturb_others() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut s = raw_login(proxy.addr).await;
    let q = b"\x03SELECT seq, REPEAT('x', 100) FROM mysql.seq_1_to_1000000";
    write_frame(&mut s, 0, q).await.unwrap();
    read_frame(&mut s).await.unwrap();
    drop(s);
    for _ in 0..5 {
        assert_proxy_serves(&proxy).await;
    }
}

/// A loopback address nothing listens on: connections to it are refused.
fn refused_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_master_gives_clear_write_errors_while_reads_go_on() {
    let topo = Topology::shared();
    let dead_addr = refused_addr();
    let yaml = config_yaml(topo).replace(&format!("address: {}", topo.master), &format!("address: {dead_addr}"));
    let proxy = Proxy::start_yaml(&yaml).await;
    let mut c = proxy.conn().await;
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert!(id == 2 || id == 3);
    let err = c.query_drop("CREATE DATABASE never_created").await.unwrap_err();
    match err {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1053);
            assert!(e.message.contains("master") && e.message.contains(&dead_addr.to_string()), "{}", e.message);
        }
        other => panic!("expected a MySQL error, got {other:?}"),
    }
    let again: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert!(again == 2 || again == 3, "the session survives the failed write and reads from a replica");
    // MariaDB Connector/C (the mariadb client) shows the same error: it turns a server error with a code
    // of its own range (2003 was used once) into 2027 "Received malformed packet".
    let out = tokio::task::block_in_place(|| {
        common::mariadb_cli(proxy.addr, "app", "apppw", &["-e", "CREATE DATABASE never_created"], None)
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR 1053 (08S01)") && stderr.contains(&dead_addr.to_string()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_refusing_connections_is_skipped() {
    let topo = Topology::shared();
    let dead_addr = refused_addr();
    let yaml = config_yaml(topo).replace(&format!("address: {}", topo.replicas[0]), &format!("address: {dead_addr}"));
    let proxy = Proxy::start_yaml(&yaml).await;
    let live = topo.server_id_of(topo.replicas[1]);
    for _ in 0..10 {
        let mut c = proxy.conn().await;
        let id: u32 = c.query_first("SELECT @@server_id").await.expect("no client error").unwrap();
        assert_eq!(id, live);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pooled_backend_connections_are_reused_and_reset() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut c = proxy.conn().await;
    c.query_drop("SET @leak = 'secret'").await.unwrap();
    let _: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    let master_thread: u64 = c.query_first("SELECT /* rwsplit:master */ @@pseudo_thread_id").await.unwrap().unwrap();
    c.disconnect().await.unwrap();
    let master = topo.master.to_string();
    let pool = std::sync::Arc::clone(proxy.shared.pool());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pool.idle_count(&master) == 0 {
        assert!(std::time::Instant::now() < deadline, "master connection never returned to the pool");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut c = proxy.conn().await;
    let thread: u64 = c.query_first("SELECT /* rwsplit:master */ @@pseudo_thread_id").await.unwrap().unwrap();
    assert_eq!(thread, master_thread, "the pooled master connection is reused");
    let leaked: Option<String> = c.query_first("SELECT /* rwsplit:master */ @leak").await.unwrap().unwrap();
    assert_eq!(leaked, None, "state must not leak between sessions through the pool");
    // Replica connections too: one that ran SET is reset before reuse, one that only read is reused as is.
    let mut threads = std::collections::HashSet::new();
    let mut reused = false;
    let open_before = proxy.shared.registry.len();
    for i in 0..12 {
        let mut c = proxy.conn().await;
        if i % 3 == 0 {
            c.query_drop("SET @leak = 'secret'").await.unwrap();
        }
        let (leak, thread, server): (Option<String>, u64, u32) =
            c.query_first("SELECT @leak, @@pseudo_thread_id, @@server_id").await.unwrap().unwrap();
        if i % 3 != 0 {
            assert_eq!(leak, None, "a pooled replica connection carried another session's variable");
        }
        reused |= !threads.insert((server, thread));
        c.disconnect().await.unwrap();
        // Wait until the proxy has ended the session and released its connections.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proxy.shared.registry.len() > open_before {
            assert!(std::time::Instant::now() < deadline, "session never ended");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    assert!(reused, "pooled replica connections are reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_cli_and_dump_work_through_the_proxy() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = unique_name("cli");
    let script = format!(
        "CREATE DATABASE {db}; USE {db}; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO t VALUES (1, 'a'), (2, 'b'); SELECT @@server_id;"
    );
    let out = mariadb_cli(proxy.addr, "app", "apppw", &["--batch", "--skip-column-names"], Some(&script));
    assert!(out.status.success(), "mariadb failed: {}", String::from_utf8_lossy(&out.stderr));
    topo.wait_replicated().await;
    let out = mariadb_cli(
        proxy.addr,
        "app",
        "apppw",
        &["--batch", "--skip-column-names", "-e", &format!("SELECT @@server_id, COUNT(*) FROM {db}.t")],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert!(fields[0] == "2" || fields[0] == "3", "read via the CLI on a replica: {text}");
    assert_eq!(fields[1], "2");
    let dump = mariadb_dump(proxy.addr, "app", "apppw", &["--single-transaction", &db]);
    assert!(dump.status.success(), "mariadb-dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let sql = String::from_utf8_lossy(&dump.stdout);
    assert!(sql.contains("CREATE TABLE `t`") && sql.contains("(1,'a')") && sql.contains("(2,'b')"), "dump:\n{sql}");
    let bad = mariadb_cli(proxy.addr, "app", "wrong", &["-e", "SELECT 1"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("1045"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_uses_proxy_connection_ids() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut victim = proxy.conn().await;
    let victim_id = victim.id();
    let _: u32 = victim.query_first("SELECT @@server_id").await.unwrap().unwrap();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move {
        let r: Result<Option<u32>, _> = victim.query_first("SELECT SLEEP(30)").await;
        (victim, r)
    });
    let mut killer = proxy.conn().await;
    // Poll until the victim's SLEEP is running on its replica, then kill it by the proxy's connection id.
    let mut direct: Vec<mysql_async::Conn> = Vec::new();
    for r in &topo.replicas {
        direct.push(topo.root(*r).await);
    }
    'wait: loop {
        for c in &mut direct {
            let n: u64 = c
                .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(30)'")
                .await
                .unwrap()
                .unwrap();
            if n > 0 {
                break 'wait;
            }
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the SLEEP never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    killer.query_drop(format!("KILL QUERY {victim_id}")).await.unwrap();
    let (mut victim, r) = sleeper.await.unwrap();
    // Interrupted: SLEEP returns 1, or the server reports 1317 (query execution was interrupted).
    let interrupted = match r {
        Ok(v) => v == Some(1),
        Err(mysql_async::Error::Server(e)) => e.code == 1317,
        Err(_) => false,
    };
    assert!(interrupted, "KILL QUERY did not interrupt the SLEEP");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "KILL QUERY did not interrupt the query");
    let again: u32 = victim.query_first("SELECT 7").await.unwrap().unwrap();
    assert_eq!(again, 7, "KILL QUERY leaves the connection usable");

    let err = killer.query_drop("KILL QUERY 999999").await.unwrap_err();
    assert!(matches!(err, mysql_async::Error::Server(ref e) if e.code == 1094), "{err:?}");
    killer.query_drop(format!("KILL CONNECTION {victim_id}")).await.unwrap();
    assert!(victim.query_drop("SELECT 1").await.is_err(), "KILL CONNECTION closes the session");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_of_clients_sending_attributes_are_pooled_too() {
    // The mariadb client negotiates CLIENT_CONNECT_ATTRS, which changes the COM_CHANGE_USER reset packet.
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let out = mariadb_cli(proxy.addr, "app", "apppw", &["--comments", "-e", "SELECT /* rwsplit:master */ 1"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let master = topo.master.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proxy.shared.pool().idle_count(&master) == 0 {
        assert!(std::time::Instant::now() < deadline, "the CLI's master connection was not reset into the pool");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
