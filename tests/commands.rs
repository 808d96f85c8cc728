//! Protocol commands that ordinary drivers rarely send, over a raw connection through rwsplit: cursors
//! (COM_STMT_FETCH), COM_FIELD_LIST, COM_STATISTICS, COM_SET_OPTION, COM_INIT_DB, COM_PING, plus
//! COM_CHANGE_USER and LOAD DATA LOCAL INFILE with real clients.

mod common;

use common::proxy::Proxy;
use common::raw::{error_of, Raw};
use common::{mariadb_cli, unique_name, Topology};
use mysql_async::prelude::*;
use mysql_async::ChangeUserOpts;
use rwsplit_wire::auth;
use rwsplit_wire::packet::{self, PrepareOk};
use rwsplit_wire::walk::Expect;
use rwsplit_wire::{CapabilityFlags, StatusFlags};

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    p
}

/// Prepares `sql` and returns the statement id the proxy handed out.
async fn prepare(raw: &mut Raw, sql: &str) -> u32 {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    let resp = raw.command(&p, Expect::Prepare).await;
    PrepareOk::parse(&resp[0]).unwrap_or_else(|| panic!("prepare failed: {:?}", error_of(&resp))).stmt_id
}

async fn cursor_reads(caps: CapabilityFlags) {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut raw = Raw::login(proxy.addr, "app", "apppw", Some(caps)).await;
    let sql = "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10) \
               SELECT @@server_id, CAST(n AS UNSIGNED) FROM s";
    let id = prepare(&mut raw, sql).await;
    // Execute with CURSOR_TYPE_READ_ONLY: metadata only, the rows stay on the server.
    let mut exec = vec![0x17];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.extend_from_slice(&[0x01, 1, 0, 0, 0]);
    let resp = raw.command(&exec, Expect::ResultSets).await;
    assert!(error_of(&resp).is_none(), "{:?}", error_of(&resp));
    let status = packet::terminal_status(resp.last().unwrap()).expect("cursor metadata ends with EOF/OK");
    assert!(status.contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS), "{status:?}");
    let mut fetched = Vec::new();
    for batch in [4u32, 100] {
        let mut fetch = vec![0x1c];
        fetch.extend_from_slice(&id.to_le_bytes());
        fetch.extend_from_slice(&batch.to_le_bytes());
        let resp = raw.command(&fetch, Expect::Rows).await;
        assert!(error_of(&resp).is_none(), "{:?}", error_of(&resp));
        for row in &resp[..resp.len() - 1] {
            // Binary row: 0x00, null bitmap (1 byte), BIGINT server_id, BIGINT seq.
            let server = u64::from_le_bytes(row[2..10].try_into().unwrap());
            let seq = u64::from_le_bytes(row[10..18].try_into().unwrap());
            fetched.push((server, seq));
        }
    }
    assert_eq!(fetched.iter().map(|r| r.1).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(fetched.iter().all(|r| r.0 == 2 || r.0 == 3), "cursor read on a replica: {fetched:?}");
    // COM_STMT_RESET, then COM_STMT_CLOSE (no response), then the id is unknown.
    let mut reset = vec![0x1a];
    reset.extend_from_slice(&id.to_le_bytes());
    let resp = raw.command(&reset, Expect::Single).await;
    assert!(error_of(&resp).is_none());
    let mut close = vec![0x19];
    close.extend_from_slice(&id.to_le_bytes());
    raw.send(&close).await;
    let resp = raw.command(&exec, Expect::ResultSets).await;
    assert_eq!(error_of(&resp).map(|e| e.code), Some(1243));
}

#[tokio::test(flavor = "multi_thread")]
async fn cursors_fetch_from_the_backend_that_opened_them() {
    cursor_reads(auth::supported_capabilities()).await;
    cursor_reads(auth::supported_capabilities() - CapabilityFlags::CLIENT_DEPRECATE_EOF).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn init_db_field_list_statistics_ping_and_set_option() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = unique_name("cmd");
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (a INT, b VARCHAR(5))")).await.unwrap();
    topo.wait_replicated().await;
    for caps in [auth::supported_capabilities(), auth::supported_capabilities() - CapabilityFlags::CLIENT_DEPRECATE_EOF]
    {
        let mut raw = Raw::login(proxy.addr, "app", "apppw", Some(caps)).await;
        let mut init = vec![0x02];
        init.extend_from_slice(db.as_bytes());
        assert!(error_of(&raw.command(&init, Expect::Single).await).is_none());
        let resp = raw.command(b"\x04t\x00", Expect::FieldList).await;
        assert_eq!(resp.len(), 3, "two column definitions and a terminator");
        let resp = raw.command(b"\x04missing\x00", Expect::FieldList).await;
        assert_eq!(error_of(&resp).map(|e| e.code), Some(1146));
        let resp = raw.command(&[0x09], Expect::AnyOne).await;
        assert!(String::from_utf8_lossy(&resp[0]).contains("Uptime"), "statistics: {:?}", resp[0]);
        assert_eq!(raw.command(&[0x0e], Expect::Single).await[0][0], 0, "ping");
        // Multi-statements off: the server refuses a multi-statement query; on again: it runs.
        assert!(error_of(&raw.command(&[0x1b, 1, 0], Expect::Single).await).is_none());
        let resp = raw.command(&query("SELECT 1; SELECT 2"), Expect::ResultSets).await;
        assert_eq!(error_of(&resp).map(|e| e.code), Some(1064));
        assert!(error_of(&raw.command(&[0x1b, 0, 0], Expect::Single).await).is_none());
        let resp = raw.command(&query("SELECT 1; SELECT DATABASE()"), Expect::ResultSets).await;
        assert!(error_of(&resp).is_none(), "{:?}", error_of(&resp));
        assert!(resp.iter().any(|p| p.windows(db.len()).any(|w| w == db.as_bytes())), "COM_INIT_DB replayed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn change_user_and_server_version() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut c = proxy.conn().await;
    let mut direct = mysql_async::Conn::new(topo.direct_opts(topo.master, "app", "apppw")).await.unwrap();
    assert_eq!(c.server_version(), direct.server_version(), "rwsplit announces the backends' version");
    let _: Option<u8> = direct.query_first("SELECT 1").await.unwrap();
    c.query_drop("SET @mine = 1").await.unwrap();
    c.change_user(ChangeUserOpts::default().with_user(Some("root".into())).with_pass(Some("rootpw".into())))
        .await
        .unwrap();
    let (user, mine): (String, Option<i64>) =
        c.query_first("SELECT /* rwsplit:master */ CURRENT_USER(), @mine").await.unwrap().unwrap();
    assert!(user.starts_with("root@"), "{user}");
    assert_eq!(mine, None, "COM_CHANGE_USER resets the session");
    let err = c
        .change_user(ChangeUserOpts::default().with_user(Some("app".into())).with_pass(Some("bad".into())))
        .await
        .unwrap_err();
    assert!(matches!(err, mysql_async::Error::Server(ref e) if e.code == 1045), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn load_data_local_infile_streams_the_client_file_to_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = unique_name("infile");
    let file = std::env::temp_dir().join(format!("{db}.csv"));
    let rows: String = (1..=5000).map(|i| format!("{i},row {i}\n")).collect();
    std::fs::write(&file, rows).unwrap();
    let script = format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20)); \
         LOAD DATA LOCAL INFILE '{}' INTO TABLE {db}.t FIELDS TERMINATED BY ','; SELECT COUNT(*) FROM {db}.t;",
        file.display()
    );
    let out =
        mariadb_cli(proxy.addr, "app", "apppw", &["--local-infile=1", "--batch", "--skip-column-names"], Some(&script));
    std::fs::remove_file(&file).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut direct = topo.root(topo.master).await;
    let n: u64 = direct.query_first(format!("SELECT COUNT(*) FROM {db}.t")).await.unwrap().unwrap();
    assert_eq!(n, 5000);
}
