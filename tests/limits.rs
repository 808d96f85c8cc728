//! Pre-authentication limits (review M3, M4): the handshake packet cap, the client connection caps (in all
//! and per peer address), and the growing delay and per-account counter of failed logins.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{config_yaml, Proxy};
use common::raw::{read_frame, try_login};
use common::Topology;
use rwsplit_wire::auth;
use rwsplit_wire::packet::ErrPacket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects and returns the stream with the first packet the proxy sent.
async fn first_packet(proxy: &Proxy) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    let frame = read_frame(&mut s).await.expect("first packet");
    (s, frame.payload().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_handshake_packet_is_refused_before_it_is_read() {
    let proxy = Proxy::start(Topology::shared()).await;
    let (mut s, greeting) = first_packet(&proxy).await;
    assert_eq!(greeting[0], 10, "a greeting");
    // Announce a 16 MiB - 1 handshake response and send only its first kilobyte.
    s.write_all(&[0xff, 0xff, 0xff, 1]).await.unwrap();
    s.write_all(&[0u8; 1024]).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "the proxy kept the connection open: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A normal login still works.
    let (_s, answer) = try_login(proxy.addr, "app", "apppw", auth::supported_capabilities()).await;
    assert_eq!(answer.payload()[0], 0, "{:?}", ErrPacket::parse(answer.payload()));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_a_cap_get_error_1040_first() {
    let topo = Topology::shared();
    let yaml = format!("{}max_client_connections: 3\nmax_client_connections_per_peer: 2\n", config_yaml(topo));
    let proxy = Proxy::start_yaml(&yaml).await;
    let (a, first) = first_packet(&proxy).await;
    assert_eq!(first[0], 10);
    let (_b, second) = first_packet(&proxy).await;
    assert_eq!(second[0], 10);
    // All come from 127.0.0.1: the per-peer cap (2) is reached first.
    let (_c, refused) = first_packet(&proxy).await;
    let err = ErrPacket::parse(&refused).expect("an error packet");
    assert_eq!(err.code, 1040, "{err:?}");
    assert!(err.message.contains("max_client_connections_per_peer"), "{err:?}");
    // A closed connection frees its place.
    drop(a);
    let mut freed = false;
    for _ in 0..100 {
        let (_s, p) = first_packet(&proxy).await;
        if p[0] == 10 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the place of a closed connection was never freed");
    let metrics = proxy.shared.metrics.encode();
    assert!(
        metrics.contains("rwsplit_client_connections_refused_total{reason=\"max_client_connections_per_peer\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_slow_down_and_are_counted_per_account() {
    let proxy = Proxy::start(Topology::shared()).await;
    let caps = auth::supported_capabilities();
    let mut took = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let (_s, answer) = try_login(proxy.addr, "app", "wrong", caps).await;
        took.push(started.elapsed());
        assert_eq!(ErrPacket::parse(answer.payload()).map(|e| e.code), Some(1045));
    }
    // 100, 200, 400, 800 ms: each failure in a row waits longer than the last.
    assert!(took[3] >= Duration::from_millis(800), "{took:?}");
    assert!(took[3] > took[0], "{took:?}");
    let (_s, answer) = try_login(proxy.addr, "nobody", "x", caps).await;
    assert_eq!(ErrPacket::parse(answer.payload()).map(|e| e.code), Some(1045));
    let metrics = proxy.shared.metrics.encode();
    assert!(metrics.contains("rwsplit_login_failures_total{user=\"app\"} 4"), "{metrics}");
    assert!(metrics.contains("rwsplit_login_failures_total{user=\"unknown\"} 1"), "{metrics}");
    assert!(!metrics.contains("nobody"), "client-chosen names never become labels");
    // The right password still works, and clears the delay.
    let (_s, answer) = try_login(proxy.addr, "app", "apppw", caps).await;
    assert_eq!(answer.payload()[0], 0);
    let started = Instant::now();
    let _ = try_login(proxy.addr, "app", "wrong", caps).await;
    assert!(started.elapsed() < Duration::from_millis(800), "the delay starts over after a success");
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_connections_are_capped_and_a_freed_one_is_reused() {
    use mysql_async::prelude::*;
    let topo = Topology::shared();
    let yaml = format!("{}pool:\n  max_backend_connections: 2\n", config_yaml(topo));
    let proxy = Proxy::start_yaml(&yaml).await;
    // Two sessions each hold a master connection (an open transaction).
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    for c in [&mut a, &mut b] {
        c.query_drop("BEGIN").await.unwrap();
        let _: Option<u32> = c.query_first("SELECT @@server_id FOR UPDATE").await.unwrap();
    }
    // A third waits connect_timeout (1 s in the test config) for a master connection, then gets 1040.
    let mut c = proxy.conn().await;
    let started = Instant::now();
    let err = c.query_drop("BEGIN").await.and(c.query_drop("SELECT 1 FOR UPDATE").await).unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1040 && e.message.contains("max_backend_connections")),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited: {:?}", started.elapsed());
    // One session ends: its connection is released, and the waiting kind of request now gets it.
    a.query_drop("COMMIT").await.unwrap();
    a.disconnect().await.unwrap();
    let id: Option<u32> = c.query_first("SELECT /* rwsplit:master */ @@server_id").await.expect("a freed connection");
    assert_eq!(id, Some(1));
    b.query_drop("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_cap_sessions_share_backend_connections_between_statements() {
    use mysql_async::prelude::*;
    let topo = Topology::shared();
    const SESSIONS: usize = 50;
    const READS: usize = 20;
    let yaml = format!("{}pool:\n  max_backend_connections: 2\n", config_yaml(topo));
    let proxy = Proxy::start_yaml(&yaml).await;
    // Fifty sessions, all open at once (each logged in with a database, which the master checks), read in
    // parallel through two connections per backend: each statement borrows one and gives it back.
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(proxy.conn().await);
    }
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let mut served = Vec::new();
                for i in 0..READS {
                    let row: Option<(u32, usize)> = conn.query_first(format!("SELECT @@server_id, {i}")).await?;
                    served.push(row.map(|(id, _)| id));
                }
                conn.disconnect().await?;
                Ok::<_, mysql_async::Error>(served)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("the task ran").expect("every statement succeeds under the cap"));
    }
    assert_eq!(ids.len(), SESSIONS * READS);
    assert!(ids.iter().all(|id| matches!(id, Some(2 | 3))), "plain reads on the replicas: {ids:?}");
    let idle: usize = topo.servers().iter().map(|a| proxy.shared.pool().idle_count(&a.to_string())).sum();
    assert!(idle <= 2 * 3, "{idle} idle connections under a cap of 2 per backend");

    // A statement's warnings stay readable: the connection that has them stays with its session, while
    // other sessions keep borrowing.
    let mut warned = proxy.conn().await;
    let mut busy = proxy.conn().await;
    let _: Option<Option<u32>> = warned.query_first("SELECT 1/0").await.unwrap();
    for _ in 0..4 {
        let _: Option<u32> = busy.query_first("SELECT @@server_id").await.unwrap();
    }
    let warnings: Vec<(String, u32, String)> = warned.query("SHOW WARNINGS").await.unwrap();
    let mut direct = mysql_async::Conn::new(topo.direct_opts(topo.replicas[0], "app", "apppw")).await.unwrap();
    let _: Option<Option<u32>> = direct.query_first("SELECT 1/0").await.unwrap();
    let expected: Vec<(String, u32, String)> = direct.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings, expected, "SHOW WARNINGS through a capped pool, as direct");
    assert_eq!(warnings.len(), 1);
    // A statement that uses no table leaves them where they are (the server resets them only for
    // statements that use a table): after `SELECT 1`, SHOW WARNINGS still shows them, as direct.
    let _: Option<u32> = warned.query_first("SELECT 1").await.unwrap();
    let _: Option<u32> = direct.query_first("SELECT 1").await.unwrap();
    let warnings: Vec<(String, u32, String)> = warned.query("SHOW WARNINGS").await.unwrap();
    let expected: Vec<(String, u32, String)> = direct.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings, expected, "SHOW WARNINGS after a statement without tables, as direct");
    assert_eq!(warnings.len(), 1);
    // Once a statement that uses a table leaves none, the connection is shared again; SHOW WARNINGS is empty.
    let _: Option<u32> = warned.query_first("SELECT 1 FROM mysql.user LIMIT 1").await.unwrap();
    let warnings: Vec<(String, u32, String)> = warned.query("SHOW WARNINGS").await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    // SQL_CALC_FOUND_ROWS: the count stays readable by the next statement.
    let _: Vec<u32> = warned.query("SELECT SQL_CALC_FOUND_ROWS @@server_id FROM mysql.user LIMIT 1").await.unwrap();
    // Another session reads meanwhile, on both replicas: any connection given back is taken and used.
    for _ in 0..4 {
        let _: Option<u32> = busy.query_first("SELECT @@server_id").await.unwrap();
    }
    let found: Option<u64> = warned.query_first("SELECT FOUND_ROWS()").await.unwrap();
    let _: Vec<u32> = direct.query("SELECT SQL_CALC_FOUND_ROWS @@server_id FROM mysql.user LIMIT 1").await.unwrap();
    let expected: Option<u64> = direct.query_first("SELECT FOUND_ROWS()").await.unwrap();
    assert_eq!(found, expected, "FOUND_ROWS() after SQL_CALC_FOUND_ROWS, as direct");
    assert!(expected.unwrap_or(0) > 1, "the test needs more than one row: {expected:?}");
    // Session state keeps a session's connections: its variable is there at every read.
    warned.query_drop("SET @@session.sql_mode = 'ANSI_QUOTES'").await.unwrap();
    for _ in 0..5 {
        let _: Option<u32> = busy.query_first("SELECT @@server_id").await.unwrap();
        let mode: Option<String> = warned.query_first("SELECT @@session.sql_mode").await.unwrap();
        assert_eq!(mode.as_deref(), Some("ANSI_QUOTES"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_pooled_connections_close_after_idle_timeout() {
    use mysql_async::prelude::*;
    let topo = Topology::shared();
    let yaml = format!("{}pool:\n  idle_timeout: 300ms\n", config_yaml(topo));
    let proxy = Proxy::start_yaml(&yaml).await;
    let mut c = proxy.conn().await;
    let _: Option<u32> = c.query_first("SELECT @@server_id").await.unwrap();
    c.disconnect().await.unwrap();
    let idle = || topo.replicas.iter().map(|r| proxy.shared.pool().idle_count(&r.to_string())).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(5);
    while idle() == 0 {
        assert!(Instant::now() < deadline, "the session's replica connection never went back to the pool");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while idle() > 0 {
        assert!(Instant::now() < deadline, "an idle connection outlived idle_timeout by seconds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_restricted_to_client_networks_exist_only_there() {
    let topo = Topology::shared();
    let caps = auth::supported_capabilities();
    let restricted = |networks: &str| {
        config_yaml(topo).replace(
            "  - user: app\n    password: apppw\n",
            &format!("  - user: app\n    password: apppw\n    allowed_networks: [{networks}]\n"),
        )
    };
    let elsewhere = Proxy::start_yaml(&restricted("10.0.0.0/8, 'fd00::/8'")).await;
    let (_s, answer) = try_login(elsewhere.addr, "app", "apppw", caps).await;
    let err = ErrPacket::parse(answer.payload()).expect("refused");
    assert_eq!(err.code, 1045, "{err:?}");
    assert!(err.message.contains("Access denied for user 'app'@'127.0.0.1'"), "{err:?}");
    let (_s, answer) = try_login(elsewhere.addr, "root", "rootpw", caps).await;
    assert_eq!(answer.payload()[0], 0, "an unrestricted account still logs in");
    let here = Proxy::start_yaml(&restricted("127.0.0.0/8")).await;
    let (_s, answer) = try_login(here.addr, "app", "apppw", caps).await;
    assert_eq!(answer.payload()[0], 0, "{:?}", ErrPacket::parse(answer.payload()));
}

#[tokio::test(flavor = "multi_thread")]
async fn query_timeout_kills_a_long_statement_and_the_session_goes_on() {
    use mysql_async::prelude::*;
    let topo = Topology::shared();
    let proxy = Proxy::start_yaml(&format!("{}query_timeout: 500ms\n", config_yaml(topo))).await;
    let mut c = proxy.conn().await;
    for sql in ["SELECT /* rwsplit:master */ SLEEP(5)", "SELECT SLEEP(5)"] {
        let started = Instant::now();
        let outcome: Result<Option<i64>, _> = c.query_first(sql).await;
        let took = started.elapsed();
        // MariaDB ends an interrupted SLEEP with 1 (or error 1317, depending on where the kill lands).
        match &outcome {
            Ok(Some(1)) => {}
            Err(mysql_async::Error::Server(e)) if e.code == 1317 => {}
            other => panic!("{sql}: {other:?}"),
        }
        assert!(took < Duration::from_secs(4), "{sql} ran {took:?} despite query_timeout 500ms");
        let id: Option<u32> = c.query_first("SELECT @@server_id").await.expect("the session goes on");
        assert!(id.is_some());
    }
    // A statement within the limit is untouched.
    let v: Option<i64> = c.query_first("SELECT SLEEP(0.1) + 41").await.unwrap();
    assert_eq!(v, Some(41));
}

/// Prepares `n` statements on `raw`; returns the error of the first refused one, if any.
async fn prepare_many(raw: &mut common::raw::Raw, n: usize) -> Option<(usize, ErrPacket)> {
    for i in 0..n {
        let resp = raw.command(format!("\x16SELECT {i}, ?").as_bytes(), rwsplit_wire::walk::Expect::Prepare).await;
        if let Some(e) = common::raw::error_of(&resp) {
            return Some((i, e));
        }
    }
    None
}

/// A session holds at most 16,382 prepared statements, MariaDB's default `max_prepared_stmt_count`: the
/// 16,383rd PREPARE gets error 1461 from the proxy, as it does direct from a server with that default,
/// even when the servers would take more (the cap bounds what the proxy keeps per session).
#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_per_session_are_capped_as_a_server_caps_them() {
    use mysql_async::prelude::*;
    let topo = Topology::private();
    let limit = 16_382;
    // Direct, with the server's default.
    let mut direct = common::raw::Raw::login(topo.master, "app", "apppw", None).await;
    let (at, direct_err) = prepare_many(&mut direct, limit + 1).await.expect("the server refuses one");
    assert_eq!(at, limit, "{direct_err:?}");
    drop(direct);
    // Through rwsplit, with servers that would take more.
    for addr in topo.servers() {
        let mut root = topo.root(addr).await;
        root.query_drop("SET GLOBAL max_prepared_stmt_count = 100000").await.unwrap();
    }
    let proxy = Proxy::start(&topo).await;
    let mut through = common::raw::Raw::login(proxy.addr, "app", "apppw", None).await;
    let (at, err) = prepare_many(&mut through, limit + 1).await.expect("rwsplit refuses one");
    assert_eq!(at, limit, "{err:?}");
    assert_eq!((err.code, err.state), (direct_err.code, direct_err.state), "{err:?} vs {direct_err:?}");
    assert!(err.message.starts_with("Can't create more than max_prepared_stmt_count statements"), "{err:?}");
    // The session goes on.
    let ok = through.command(b"\x03SELECT 1", rwsplit_wire::walk::Expect::ResultSets).await;
    assert!(common::raw::error_of(&ok).is_none());
}
