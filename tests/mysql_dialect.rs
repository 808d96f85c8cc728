//! The health checker against MySQL's dialects, which real MySQL cannot be installed here to show: a
//! scripted master and replica answer the probes the way MySQL 8.4 does — `SHOW SLAVE STATUS` and `SHOW
//! MASTER STATUS` are gone (error 1064), `SHOW REPLICA STATUS` has `Replica_*`/`Source_*` columns and
//! `Auto_Position`, positions are `@@gtid_executed` GTID sets, semi-sync reports `Rpl_semi_sync_source_*`,
//! the monitor account logs in with caching_sha2_password — or the way MySQL 5.7 (and 8.0 before 8.0.22)
//! does: `SHOW SLAVE STATUS` with `Slave_*`/`Master_*` columns, `SHOW MASTER STATUS`, no `SHOW BINARY LOG
//! STATUS` (1064), `Rpl_semi_sync_master_*`, mysql_native_password. The checker must read them all: the
//! replica serves reads, and the replication view shows its mode, threads, source server, distance in
//! bytes and the master's semi-sync state.

mod common;

use std::time::Duration;

use common::packets::{text_result, wire_bytes};
use common::proxy::Proxy;
use common::raw::{read_frame, write_frame};
use rwsplit_wire::auth;
use rwsplit_wire::packet::{com, err_payload, ok_payload};
use rwsplit_wire::{CapabilityFlags, StatusFlags};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

/// Which MySQL the scripted servers imitate.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dialect {
    /// MySQL 8.4: `SHOW REPLICA STATUS`, `SHOW BINARY LOG STATUS`, `source`/`replica` names.
    Mysql84,
    /// MySQL 5.7: `SHOW SLAVE STATUS`, `SHOW MASTER STATUS`, `master`/`slave` names.
    Mysql57,
}

impl Dialect {
    fn version(self) -> &'static str {
        match self {
            Dialect::Mysql84 => "8.4.3",
            Dialect::Mysql57 => "5.7.44-log",
        }
    }
}

/// The value of a system variable as the scripted server has it.
fn variable(name: &str, master: bool, dialect: Dialect) -> &'static str {
    match name.trim().to_ascii_lowercase().as_str() {
        "@@read_only" => {
            if master {
                "0"
            } else {
                "1"
            }
        }
        "@@version" => dialect.version(),
        "@@global.server_id" | "@@server_id" => {
            if master {
                "1"
            } else {
                "2"
            }
        }
        "@@gtid_mode" => "ON",
        // The replica forgot super_read_only: SUPER accounts could write to it.
        "@@super_read_only" => "0",
        "@@gtid_executed" => "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-30",
        "@@max_allowed_packet" => "67108864",
        "@@wait_timeout" => "28800",
        _ => "0",
    }
}

async fn connection(mut s: TcpStream, master: bool, dialect: Dialect) {
    // MySQL 8's default: caching_sha2_password, answered with fast authentication (the password checked
    // against the scramble, as a server with the account in its cache does). MySQL 5.7's:
    // mysql_native_password.
    let nonce = auth::new_scramble();
    let mut greeting = auth::greeting(dialect.version(), 11, &nonce, 45, auth::supported_capabilities()).to_vec();
    let plugin = if dialect == Dialect::Mysql84 { auth::CACHING_SHA2 } else { auth::NATIVE };
    let native = greeting.windows(21).position(|w| w == auth::NATIVE.as_bytes()).unwrap();
    greeting.truncate(native);
    greeting.extend_from_slice(plugin.as_bytes());
    greeting.push(0);
    if write_frame(&mut s, 0, &greeting).await.is_err() {
        return;
    }
    let Ok(login) = read_frame(&mut s).await else { return };
    let parsed = auth::parse_client_login(login.payload(), auth::supported_capabilities()).unwrap();
    let deprecate_eof = parsed.capabilities.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    let password: &[u8] = if parsed.user == "monitor" { b"monitorpw" } else { b"apppw" };
    if parsed.plugin != plugin || !auth::verify_scramble(plugin, &nonce, password, &parsed.auth_response) {
        let _ = write_frame(&mut s, 2, &err_payload(1045, b"28000", "Access denied")).await;
        return;
    }
    let ok = ok_payload(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0);
    if dialect == Dialect::Mysql84 {
        write_frame(&mut s, 2, &[0x01, auth::sha2_msg::FAST_AUTH_OK]).await.unwrap();
        write_frame(&mut s, 3, &ok).await.unwrap();
    } else {
        write_frame(&mut s, 2, &ok).await.unwrap();
    }
    while let Ok(command) = read_frame(&mut s).await {
        let p = command.payload();
        match p.first() {
            Some(&com::QUIT) => return,
            Some(&com::QUERY) => {}
            _ => {
                write_frame(&mut s, 1, &ok).await.unwrap();
                continue;
            }
        }
        let sql = String::from_utf8_lossy(&p[1..]).into_owned();
        let upper = sql.to_ascii_uppercase();
        let syntax_error = || {
            let err = err_payload(1064, b"42000", "You have an error in your SQL syntax");
            wire_bytes(&[err])
        };
        let old = dialect == Dialect::Mysql57;
        let reply = if upper.starts_with("SHOW SLAVE STATUS") && old {
            let columns = [
                "Slave_IO_Running",
                "Slave_SQL_Running",
                "Seconds_Behind_Master",
                "Relay_Master_Log_File",
                "Exec_Master_Log_Pos",
                "Auto_Position",
                "Master_Server_Id",
                "Last_IO_Error",
                "Last_SQL_Error",
            ];
            let rows = if master {
                vec![]
            } else {
                vec![vec!["Yes", "Yes", "1", "mysql-bin.000007", "4000", "1", "1", "", ""]]
            };
            text_result(&columns, &rows, deprecate_eof)
        } else if upper.starts_with("SHOW MASTER STATUS") && old {
            text_result(&["File", "Position"], &[vec!["mysql-bin.000007", "4500"]], deprecate_eof)
        } else if upper.starts_with("SHOW SLAVE STATUS")
            || upper.starts_with("SHOW MASTER STATUS")
            || (old && (upper.starts_with("SHOW REPLICA STATUS") || upper.starts_with("SHOW BINARY LOG STATUS")))
        {
            // Removed in MySQL 8.4; not there yet in 5.7.
            syntax_error()
        } else if upper.starts_with("SHOW REPLICA STATUS") {
            let columns = [
                "Replica_IO_Running",
                "Replica_SQL_Running",
                "Seconds_Behind_Source",
                "Relay_Source_Log_File",
                "Exec_Source_Log_Pos",
                "Auto_Position",
                "Source_Server_Id",
                "Last_IO_Error",
                "Last_SQL_Error",
            ];
            let rows =
                if master { vec![] } else { vec![vec!["Yes", "Yes", "0", "binlog.000003", "1234", "1", "1", "", ""]] };
            text_result(&columns, &rows, deprecate_eof)
        } else if upper.starts_with("SHOW BINARY LOG STATUS") {
            text_result(&["File", "Position"], &[vec!["binlog.000003", "2234"]], deprecate_eof)
        } else if upper.starts_with("SHOW BINARY LOGS") && old {
            let rows = [vec!["mysql-bin.000006", "10000"], vec!["mysql-bin.000007", "4500"]];
            text_result(&["Log_name", "File_size"], &rows, deprecate_eof)
        } else if upper.starts_with("SHOW BINARY LOGS") {
            let rows = [vec!["binlog.000002", "900"], vec!["binlog.000003", "2234"]];
            text_result(&["Log_name", "File_size"], &rows, deprecate_eof)
        } else if upper.starts_with("SHOW GLOBAL STATUS") {
            let rows = match (master, old) {
                (true, false) => {
                    vec![vec!["Rpl_semi_sync_source_status", "ON"], vec!["Rpl_semi_sync_source_clients", "1"]]
                }
                (false, false) => vec![vec!["Rpl_semi_sync_replica_status", "ON"]],
                // The 5.7 master fell back to asynchronous replication.
                (true, true) => {
                    vec![vec!["Rpl_semi_sync_master_status", "OFF"], vec!["Rpl_semi_sync_master_clients", "0"]]
                }
                (false, true) => vec![vec!["Rpl_semi_sync_slave_status", "OFF"]],
            };
            text_result(&["Variable_name", "Value"], &rows, deprecate_eof)
        } else if let Some(list) = upper.strip_prefix("SELECT ") {
            let names: Vec<&str> = list.split(',').collect();
            let values: Vec<&str> = names.iter().map(|n| variable(n, master, dialect)).collect();
            text_result(&names, &[values], deprecate_eof)
        } else {
            wire_bytes(std::slice::from_ref(&ok))
        };
        if s.write_all(&reply).await.is_err() {
            return;
        }
    }
}

async fn scripted(master: bool, dialect: Dialect) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(connection(s, master, dialect));
        }
    });
    addr
}

/// A proxy in front of a scripted master and replica, once the checker has probed both and lets the
/// replica serve reads.
async fn probed_proxy(dialect: Dialect) -> (Proxy, std::net::SocketAddr, std::net::SocketAddr) {
    let (master, replica) = (scripted(true, dialect).await, scripted(false, dialect).await);
    let yaml = format!(
        "listen: 127.0.0.1:0\nusers:\n  - user: app\n    password: apppw\nmaster:\n  address: {master}\n\
         replicas:\n  - address: {replica}\nhealth:\n  user: monitor\n  password: monitorpw\n  interval: 100ms\n\
         connect_timeout: 1s\nshutdown_grace: 1s\n"
    );
    let proxy = Proxy::start_yaml(&yaml).await;
    let (key, master_key) = (replica.to_string(), master.to_string());
    let probed = |h: &rwsplit::health::Snapshot| {
        h.checked
            && h.servers.get(&*key).is_some_and(|s| s.probes > 0 && s.serves_reads)
            && h.servers.get(&*master_key).is_some_and(|s| s.probes > 0 && s.reachable)
    };
    proxy.wait_health(&format!("the {dialect:?} replica serves reads"), Duration::from_secs(10), probed).await;
    (proxy, master, replica)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checker_reads_mysql_84_replication_status() {
    let (proxy, _, _) = probed_proxy(Dialect::Mysql84).await;
    let views = proxy.shared.backend_views();
    let (m, r) = (&views[0], &views[1]);
    let rv = r.replication.clone().unwrap_or_default();
    assert_eq!(rv.mode, Some("gtid"), "Auto_Position = 1: {rv:?}");
    assert_eq!((rv.io_state.as_deref(), rv.sql_state.as_deref()), (Some("Yes"), Some("Yes")));
    assert_eq!((rv.source_server_id, rv.server_id), (Some(1), Some(2)));
    assert_eq!(rv.semisync_replica, Some(true));
    assert_eq!(r.gtid.as_deref(), Some(&*format!("{UUID}:1-30")), "the GTID set of @@gtid_executed");
    assert_eq!(r.binlog.as_deref(), Some("binlog.000003:1234"), "Relay_Source_Log_File / Exec_Source_Log_Pos");
    assert_eq!(r.binlog_behind, Some(1000), "SHOW BINARY LOG STATUS end 2234 - executed 1234");
    let mv = m.replication.clone().unwrap_or_default();
    assert_eq!(mv.semisync_master, Some((true, 1)), "Rpl_semi_sync_source_*: {mv:?}");
    assert_eq!(mv.binlog_end.map(|b| (b.file, b.pos)), Some(("binlog.000003".to_string(), 2234)));
    assert_eq!(r.lag, Some(0.0), "Seconds_Behind_Source");
    assert_eq!((r.read_only, rv.super_read_only), (Some(true), Some(false)), "super_read_only is read");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checker_reads_mysql_57_replication_status() {
    let (proxy, _, _) = probed_proxy(Dialect::Mysql57).await;
    let views = proxy.shared.backend_views();
    let (m, r) = (&views[0], &views[1]);
    let rv = r.replication.clone().unwrap_or_default();
    assert_eq!(rv.mode, Some("gtid"), "Auto_Position = 1: {rv:?}");
    assert_eq!((rv.io_state.as_deref(), rv.sql_state.as_deref()), (Some("Yes"), Some("Yes")), "Slave_*_Running");
    assert_eq!((rv.source_server_id, rv.server_id), (Some(1), Some(2)), "Master_Server_Id");
    assert_eq!(rv.semisync_replica, Some(false), "Rpl_semi_sync_slave_status");
    assert_eq!(r.binlog.as_deref(), Some("mysql-bin.000007:4000"), "Relay_Master_Log_File / Exec_Master_Log_Pos");
    assert_eq!(r.binlog_behind, Some(500), "SHOW MASTER STATUS end 4500 - executed 4000");
    assert_eq!(r.lag, Some(1.0), "Seconds_Behind_Master");
    let mv = m.replication.clone().unwrap_or_default();
    assert_eq!(mv.semisync_master, Some((false, 0)), "Rpl_semi_sync_master_*: {mv:?}");
    assert_eq!(mv.binlog_end.map(|b| (b.file, b.pos)), Some(("mysql-bin.000007".to_string(), 4500)));
    assert_eq!(r.gtid.as_deref(), Some(&*format!("{UUID}:1-30")), "the GTID set of @@gtid_executed");
}
