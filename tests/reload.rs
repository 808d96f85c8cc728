//! Reload semantics in-process: users added and removed, settings that need a restart, health state and
//! pooled connections of unchanged backends kept.

mod common;

use std::net::SocketAddr;

use common::proxy::{config_with_health, Proxy};
use common::raw::try_login;
use common::Topology;
use mysql_async::prelude::*;
use rwsplit::Config;
use rwsplit_wire::auth;

/// Logs in over a raw socket (no query is sent), returning the first byte of the server's answer.
async fn login_answer(addr: SocketAddr, user: &str, password: &str) -> u8 {
    try_login(addr, user, password, auth::supported_capabilities()).await.1.payload()[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn users_restart_settings_and_kept_state() {
    let topo = Topology::shared();
    let yaml = config_with_health(topo, "");
    let proxy = Proxy::start_yaml(&yaml).await;
    let keys: Vec<String> = topo.replicas.iter().map(|r| r.to_string()).collect();
    proxy
        .wait_health("replicas up", std::time::Duration::from_secs(10), |h| keys.iter().all(|k| h.serves_reads(k)))
        .await;
    let mut open = proxy.conn().await;
    let _: Option<u32> = open.query_first("SELECT /* rwsplit:master */ @@server_id").await.unwrap();
    let probes_before = proxy.shared.health.load().servers[&*keys[0]].probes;

    // Replace user app by app2, change the listen address, keep every backend.
    let new_yaml = yaml
        .replace("  - user: app\n    password: apppw\n", "  - user: app2\n    password: app2pw\n")
        .replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1");
    let report = rwsplit::reload::apply(&proxy.shared, Config::parse(&new_yaml, "t").unwrap());
    assert_eq!(report.restart_needed, vec!["listen"], "{report}");
    assert!(report.added.is_empty() && report.removed.is_empty(), "{report}");
    assert_eq!(proxy.shared.config.load().listen.port(), 0, "a restart-only setting keeps its old value");

    assert_eq!(login_answer(proxy.addr, "app2", "app2pw").await, 0x00, "a new user can log in at once");
    assert_eq!(login_answer(proxy.addr, "app", "apppw").await, 0xFF, "a removed user cannot start a session");
    let id: u32 = open.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert!(id == 2 || id == 3, "an open session of a removed user goes on");

    let h = proxy.shared.health.load();
    assert!(h.servers[&*keys[0]].probes >= probes_before, "health state of unchanged backends is kept");
    assert!(keys.iter().all(|k| h.serves_reads(k)), "unchanged replicas keep serving through the reload");
}

/// A rotated password (changed on the servers, then in the config) is what an open session uses for the
/// backend connections it opens after the reload: it does not fail mid-session.
#[tokio::test(flavor = "multi_thread")]
async fn rotated_passwords_apply_to_new_backend_connections_of_open_sessions() {
    let topo = Topology::shared();
    let user = common::unique_name("rot");
    let mut root = topo.root(topo.master).await;
    root.query_drop(format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'first'")).await.unwrap();
    root.query_drop(format!("GRANT SELECT ON *.* TO '{user}'@'%'")).await.unwrap();
    topo.wait_replicated().await;
    let with_user = |pw: &str| {
        common::proxy::config_yaml(topo).replace("users:\n", &format!("users:\n  - user: {user}\n    password: {pw}\n"))
    };
    let proxy = Proxy::start_yaml(&with_user("first")).await;
    let mut session = mysql_async::Conn::new(proxy.opts(&user, "first")).await.expect("log in");
    // Rotate: servers first, then the config.
    root.query_drop(format!("ALTER USER '{user}'@'%' IDENTIFIED BY 'second'")).await.unwrap();
    topo.wait_replicated().await;
    rwsplit::reload::apply(&proxy.shared, Config::parse(&with_user("second"), "t").unwrap());
    // The session had no backend connection yet: the ones it opens now log in with the new password.
    let id: u32 = session.query_first("SELECT @@server_id").await.expect("a read after the rotation").unwrap();
    assert!(id == 2 || id == 3);
    let master: u32 =
        session.query_first("SELECT /* rwsplit:master */ @@server_id").await.expect("master too").unwrap();
    assert_eq!(master, 1);
    root.query_drop(format!("DROP USER '{user}'@'%'")).await.unwrap();
}
