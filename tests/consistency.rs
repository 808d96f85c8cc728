//! Read-your-writes and the other consistency levels, through rwsplit against real replication lag.
//!
//! The checker runs sessions that each update their own row and then read it back: a read that returns an
//! older value is stale. It runs with no lag, with about 200 ms of lag (a table lock on each replica that
//! holds its SQL thread for 200 ms of every 600), and with 2 s of lag (`MASTER_DELAY = 2`). Lagged
//! topologies are private (the lag would slow every other test of the binary).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{config_with_health, Proxy};
use common::{unique_name, Topology, APP_PASSWORD, APP_USER, ROOT_PASSWORD, ROOT_USER};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

const MASTER: u32 = 1;

/// Tests with a private topology run one at a time: four MariaDB topologies starting at once on a 2-core
/// machine once failed to start, and the lag of one would slow the others' replication.
static PRIVATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the checker saw.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    reads: usize,
    stale: usize,
    /// Reads served by a replica.
    on_replicas: usize,
    /// Reads whose previous operation was a read (not the write they follow).
    not_after_write: usize,
    /// Of those, served by a replica.
    not_after_write_on_replicas: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.reads += o.reads;
        self.stale += o.stale;
        self.on_replicas += o.on_replicas;
        self.not_after_write += o.not_after_write;
        self.not_after_write_on_replicas += o.not_after_write_on_replicas;
    }
}

/// A database with `rw (id INT PRIMARY KEY, v INT)` holding rows 0..rows (v = 0), replicated.
async fn rows_table(topo: &Topology, rows: usize) -> String {
    let db = unique_name("c");
    let mut c = topo.root(topo.master).await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.rw (id INT PRIMARY KEY, v INT NOT NULL)")).await.unwrap();
    let values: Vec<String> = (0..rows).map(|i| format!("({i}, 0)")).collect();
    c.query_drop(format!("INSERT INTO {db}.rw VALUES {}", values.join(","))).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.tokens (id INT PRIMARY KEY)")).await.unwrap();
    c.query_drop(format!("GRANT ALL ON {db}.* TO 'app'@'%'")).await.unwrap();
    topo.wait_replicated().await;
    db
}

/// One checker session: `ops` operations on row `id`, a write when `is_write(k)` (an UPDATE to a new value),
/// otherwise a read of the row that must return the last value written. Odd sessions use prepared
/// statements, even ones the text protocol.
async fn session(opts: mysql_async::Opts, id: usize, ops: usize, is_write: impl Fn(usize) -> bool) -> Counts {
    let mut c = Conn::new(opts).await.expect("connect through rwsplit");
    let prepared = id % 2 == 1;
    let mut counts = Counts::default();
    // Where an earlier run left the row.
    let mut value: i64 =
        c.query_first(format!("SELECT /* rwsplit:master */ v FROM rw WHERE id = {id}")).await.unwrap().unwrap();
    let mut after_write = false;
    for k in 0..ops {
        if is_write(k) {
            value += 1;
            if prepared {
                c.exec_drop("UPDATE rw SET v = ? WHERE id = ?", (value, id)).await.unwrap();
            } else {
                c.query_drop(format!("UPDATE rw SET v = {value} WHERE id = {id}")).await.unwrap();
            }
            after_write = true;
            continue;
        }
        let (v, server): (i64, u32) = if prepared {
            c.exec_first("SELECT v, @@server_id FROM rw WHERE id = ?", (id,)).await.unwrap().unwrap()
        } else {
            c.query_first(format!("SELECT v, @@server_id FROM rw WHERE id = {id}")).await.unwrap().unwrap()
        };
        counts.reads += 1;
        counts.stale += usize::from(v != value);
        counts.on_replicas += usize::from(server != MASTER);
        if !after_write {
            counts.not_after_write += 1;
            counts.not_after_write_on_replicas += usize::from(server != MASTER);
        }
        after_write = false;
    }
    counts
}

/// `sessions` checker sessions at once; `ops` operations each.
async fn checker(
    proxy: &Proxy,
    db: &str,
    sessions: usize,
    ops: usize,
    is_write: impl Fn(usize, usize) -> bool + Copy + Send + 'static,
) -> Counts {
    let opts: mysql_async::Opts = OptsBuilder::from_opts(proxy.opts(APP_USER, APP_PASSWORD)).db_name(Some(db)).into();
    let mut runs = tokio::task::JoinSet::new();
    for s in 0..sessions {
        runs.spawn(session(opts.clone(), s, ops, move |k| is_write(s, k)));
    }
    let mut total = Counts::default();
    while let Some(counts) = runs.join_next().await {
        total.add(counts.expect("a checker session panicked"));
    }
    total
}

/// 500 × (write, then read of what was written).
fn write_then_read(_session: usize, k: usize) -> bool {
    k.is_multiple_of(2)
}

/// A value of `rwsplit_consistent_reads_total` by outcome.
fn consistent_reads(proxy: &Proxy, outcome: &str) -> u64 {
    let text = rwsplit::metrics::render(&proxy.shared);
    let key = format!("rwsplit_consistent_reads_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Waits until the proxy's health checker has both replicas serving reads.
async fn replicas_serving(proxy: &Proxy, topo: &Topology) {
    let serving = |s: &rwsplit::health::Snapshot| {
        s.checked && topo.replicas.iter().all(|r| s.servers.get(r.to_string().as_str()).is_some_and(|h| h.serves_reads))
    };
    proxy.wait_health("both replicas serve reads", Duration::from_secs(10), serving).await;
}

/// Sets `MASTER_DELAY` on every replica.
async fn delay_replicas(topo: &Topology, seconds: u32) {
    for &r in &topo.replicas {
        let mut c = topo.root(r).await;
        for sql in
            ["STOP SLAVE".to_string(), format!("CHANGE MASTER TO MASTER_DELAY = {seconds}"), "START SLAVE".into()]
        {
            c.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

/// Holds a write lock on `db.rw` on every replica for `hold` of every `period`, until the flag is set:
/// the replica's SQL thread waits for it, so writes reach the replicas up to `hold` late.
fn lock_cycles(
    topo: &Topology,
    db: &str,
    hold: Duration,
    period: Duration,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = topo
        .replicas
        .iter()
        .map(|&r| {
            let opts = topo.direct_opts(r, ROOT_USER, ROOT_PASSWORD);
            let (stop, lock) = (Arc::clone(&stop), format!("LOCK TABLES {db}.rw WRITE"));
            tokio::spawn(async move {
                let mut c = Conn::new(opts).await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    c.query_drop(&lock).await.unwrap();
                    tokio::time::sleep(hold).await;
                    c.query_drop("UNLOCK TABLES").await.unwrap();
                    tokio::time::sleep(period - hold).await;
                }
            })
        })
        .collect();
    (stop, tasks)
}

/// Without lag: 8 sessions × 500 × (write, read) see every write; in a 10 %-write mix, reads that do not
/// follow a write still go to replicas (at least 90 % of them).
#[tokio::test(flavor = "multi_thread")]
async fn sessions_read_their_writes_without_lag() {
    let topo = Topology::shared();
    let db = rows_table(topo, 8).await;
    let proxy = Proxy::start_yaml(&config_with_health(topo, "")).await;
    replicas_serving(&proxy, topo).await;
    let counts = checker(&proxy, &db, 8, 1000, write_then_read).await;
    eprintln!("no lag, write then read: {counts:?}");
    assert_eq!((counts.reads, counts.stale), (4000, 0), "{counts:?}");
    let mix = checker(&proxy, &db, 8, 1000, |s, k| (k * 7 + s) % 10 == 0).await;
    eprintln!("no lag, 10 % writes: {mix:?}");
    assert_eq!(mix.stale, 0, "{mix:?}");
    let share = mix.not_after_write_on_replicas as f64 / mix.not_after_write as f64;
    assert!(share >= 0.9, "only {:.1} % of the reads not following a write went to replicas: {mix:?}", share * 100.0);
}

/// With about 200 ms of lag, no read is stale; replicas waited (in the same round trip) for what reads must
/// see, so the lag was real.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_read_their_writes_under_200ms_of_lag() {
    let _one_at_a_time = PRIVATE.lock().await;
    let topo = Topology::private();
    let db = rows_table(&topo, 8).await;
    let proxy = Proxy::start_yaml(&config_with_health(&topo, "")).await;
    replicas_serving(&proxy, &topo).await;
    let (stop, lockers) = lock_cycles(&topo, &db, Duration::from_millis(200), Duration::from_millis(600));
    let counts = checker(&proxy, &db, 8, 1000, write_then_read).await;
    // The same with eventual reads: the lag is real.
    let eventual = Proxy::start_yaml(&format!("{}consistency: eventual\n", config_with_health(&topo, ""))).await;
    replicas_serving(&eventual, &topo).await;
    let control = checker(&eventual, &db, 1, 1000, write_then_read).await;
    stop.store(true, Ordering::Relaxed);
    for t in lockers {
        t.await.unwrap();
    }
    let (waited, master) = (consistent_reads(&proxy, "waited"), consistent_reads(&proxy, "master"));
    eprintln!(
        "~200 ms lag: {counts:?}; waited {waited}, timed out {}, master {master}",
        consistent_reads(&proxy, "timed_out")
    );
    assert_eq!((counts.reads, counts.stale), (4000, 0), "{counts:?}");
    assert!(waited > 0, "no read had to wait");
    assert!(control.stale > 0, "eventual reads saw every write: the lag was not real ({control:?})");
}

/// With 2 s of lag: no read is stale (reads after writes go to the master, where no replica can have the
/// write in time), while an `eventual` session on the same topology does read stale rows. A token
/// (`@@last_gtid`) carried to another rwsplit instance makes a read there see the write, and
/// `rwsplit:consistent` (or `consistency: global`) makes another session's read see it.
#[tokio::test(flavor = "multi_thread")]
async fn lagging_replicas_never_answer_reads_that_must_see_writes() {
    let _one_at_a_time = PRIVATE.lock().await;
    let topo = Topology::private();
    let db = rows_table(&topo, 9).await;
    delay_replicas(&topo, 2).await;
    let yaml = config_with_health(&topo, "  max_replica_lag: 10s\n").replacen(
        "    password: rootpw\n",
        "    password: rootpw\n    consistency: global\n",
        1,
    );
    let proxy = Proxy::start_yaml(&yaml).await;
    replicas_serving(&proxy, &topo).await;
    let counts = checker(&proxy, &db, 8, 1000, write_then_read).await;
    eprintln!(
        "2 s lag: {counts:?}; master {}, timed out {}",
        consistent_reads(&proxy, "master"),
        consistent_reads(&proxy, "timed_out")
    );
    assert_eq!((counts.reads, counts.stale), (4000, 0), "{counts:?}");
    // The same with eventual reads: the lag is real.
    let eventual =
        Proxy::start_yaml(&format!("{}consistency: eventual\n", config_with_health(&topo, "  max_replica_lag: 10s\n")))
            .await;
    replicas_serving(&eventual, &topo).await;
    let stale = checker(&eventual, &db, 1, 100, |_, k| k.is_multiple_of(2)).await;
    assert!(stale.stale > 0, "eventual reads saw every write under 2 s of lag: {stale:?}");

    // Tokens and global reads, against a write the replicas cannot have yet.
    let in_db = |p: &Proxy, user: &str, password: &str| {
        Conn::new(OptsBuilder::from_opts(p.opts(user, password)).db_name(Some(db.as_str())))
    };
    let mut writer = in_db(&proxy, APP_USER, APP_PASSWORD).await.unwrap();
    writer.query_drop("INSERT INTO tokens VALUES (1)").await.unwrap();
    let token: String = writer.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    assert_eq!(token.split('-').count(), 3, "a MariaDB GTID: {token}");
    let other = Proxy::start_yaml(&config_with_health(&topo, "  max_replica_lag: 10s\n")).await;
    replicas_serving(&other, &topo).await;
    let mut elsewhere = in_db(&other, APP_USER, APP_PASSWORD).await.unwrap();
    let count = "SELECT COUNT(*), @@server_id FROM tokens WHERE id = 1";
    let plain: (u64, u32) = elsewhere.query_first(count).await.unwrap().unwrap();
    assert!(plain.0 == 0 && plain.1 != MASTER, "without a token, a replica that lacks the row answers: {plain:?}");
    let with_token: (u64, u32) =
        elsewhere.query_first(format!("/* rwsplit:min_gtid={token} */ {count}")).await.unwrap().unwrap();
    assert_eq!(with_token.0, 1, "the token makes the read see the write, on another rwsplit instance");
    let mut reader = in_db(&proxy, APP_USER, APP_PASSWORD).await.unwrap();
    let hinted: (u64, u32) = reader.query_first(format!("/* rwsplit:consistent */ {count}")).await.unwrap().unwrap();
    assert_eq!(hinted.0, 1, "rwsplit:consistent sees every write this rwsplit acknowledged");
    let mut global = in_db(&proxy, ROOT_USER, ROOT_PASSWORD).await.unwrap();
    let (seen, _): (u64, u32) = global.query_first(count).await.unwrap().unwrap();
    assert_eq!(seen, 1, "an account with consistency: global sees every acknowledged write");
    // A bounded-staleness read may use a lagging replica it knows to be within the bound, or none.
    let bounded: (u64, u32) =
        reader.query_first(format!("/* rwsplit:max_lag=100ms */ {count}")).await.unwrap().unwrap();
    assert_eq!(bounded, (1, MASTER), "no replica is known to lag under 100 ms: the master answers");
    let loose: (u64, u32) = reader.query_first(format!("/* rwsplit:max_lag=1m */ {count}")).await.unwrap().unwrap();
    assert_ne!(loose.1, MASTER, "a replica within a minute serves a max_lag=1m read");
    delay_replicas(&topo, 0).await;
}

/// A long-lived connection's plain reads spread over both replicas; when one stops answering they go to the
/// other, and they come back to it as soon as it serves reads again.
#[tokio::test(flavor = "multi_thread")]
async fn one_connection_spreads_its_reads_and_returns_to_a_recovered_replica() {
    let _one_at_a_time = PRIVATE.lock().await;
    let topo = Topology::private();
    let proxy = Proxy::start_yaml(&config_with_health(&topo, "")).await;
    replicas_serving(&proxy, &topo).await;
    let mut c = proxy.conn().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        seen.insert(id);
    }
    assert_eq!(seen, [2, 3].into(), "one connection's reads use both replicas");
    let paused = topo.replicas[0];
    let paused_id = topo.server_id_of(paused);
    proxy.wait_health("the replica serves reads", Duration::from_secs(10), |_| proxy.serves_reads(paused)).await;
    topo.pause(paused);
    proxy.wait_health("the paused replica is out", Duration::from_secs(10), |_| !proxy.serves_reads(paused)).await;
    for _ in 0..6 {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_ne!(id, paused_id, "a paused replica gets no reads");
    }
    topo.resume(paused);
    let resumed = Instant::now();
    proxy.wait_health("the replica is back", Duration::from_secs(10), |_| proxy.serves_reads(paused)).await;
    let mut back = false;
    for _ in 0..4 {
        let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        back |= id == paused_id;
    }
    eprintln!("replica serving reads again {:?} after SIGCONT", resumed.elapsed());
    assert!(back, "reads come back to the recovered replica as soon as it serves reads");
}

/// A scripted MySQL 8 pair (master and replica): the master reports each write's GTID with
/// `session_track_gtids`, and the next read waits for it on the replica with `WAIT_FOR_EXECUTED_GTID_SET`
/// in MySQL's GTID-set form; a wait that times out sends the read to the master.
#[tokio::test]
async fn mysql_gtid_sets_from_session_tracking_drive_replica_waits() {
    use scripted::{mysql_backend, Role};
    let (master, _) = mysql_backend(Role::Master).await;
    let (replica, waits) = mysql_backend(Role::Replica).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nusers:\n  - user: app\n    password: apppw\nmaster:\n  address: {master}\n\
         replicas:\n  - address: {replica}\nconnect_timeout: 1s\nshutdown_grace: 1s\n"
    );
    let proxy = Proxy::start_yaml(&yaml).await;
    let mut raw = common::raw::Raw::login(proxy.addr, "app", "apppw", None).await;
    let value = |resp: &[Vec<u8>]| {
        let row = &resp[resp.len() - 2];
        String::from_utf8_lossy(rwsplit_wire::packet::lenenc_str(row).unwrap().0).into_owned()
    };
    use rwsplit_wire::walk::Expect;
    let ok = raw.command(b"\x03INSERT INTO t VALUES (1)", Expect::ResultSets).await;
    assert_eq!(ok[0][0], 0, "the write is acknowledged");
    let first = raw.command(b"\x03SELECT who", Expect::ResultSets).await;
    assert_eq!(value(&first), "replica", "the replica reached the write's GTID");
    raw.command(b"\x03INSERT INTO t VALUES (2)", Expect::ResultSets).await;
    let second = raw.command(b"\x03SELECT who", Expect::ResultSets).await;
    assert_eq!(value(&second), "master", "the replica's wait timed out: the master answered");
    let waits = waits.lock().unwrap().clone();
    assert_eq!(
        waits,
        [
            format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{}:23', 1.000)", scripted::UUID),
            format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{}:23-24', 1.000)", scripted::UUID),
        ],
        "waits in MySQL's GTID-set form, for every write of the session"
    );
}

/// A scripted MySQL 8 server: enough of the protocol for a proxy session.
mod scripted {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use bytes::{BufMut, BytesMut};
    use rwsplit_wire::auth;
    use rwsplit_wire::packet::{com, ok_payload, put_lenenc_int, state_type};
    use rwsplit_wire::{CapabilityFlags, StatusFlags};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::common::packets::{lenenc_str, text_result};
    use super::common::raw::{read_frame, write_frame};

    /// The source uuid of the scripted master's GTIDs.
    pub const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[derive(Clone, Copy, PartialEq)]
    pub enum Role {
        Master,
        Replica,
    }

    /// A one-column, one-row text result.
    fn one_value(value: &str, deprecate_eof: bool) -> Vec<u8> {
        text_result(&["c"], &[vec![value]], deprecate_eof)
    }

    /// An OK reporting the transaction's GTID as `session_track_gtids = OWN_GTID` does.
    fn ok_with_gtid(gtid: &str) -> Vec<u8> {
        let mut entry = BytesMut::new();
        entry.put_u8(0);
        lenenc_str(&mut entry, gtid.as_bytes());
        let mut block = BytesMut::new();
        block.put_u8(state_type::GTIDS);
        put_lenenc_int(&mut block, entry.len() as u64);
        block.put_slice(&entry);
        let status = StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits() | rwsplit_wire::packet::SESSION_STATE_CHANGED;
        let mut p = BytesMut::from(&[0u8, 1, 0][..]);
        p.put_u16_le(status);
        p.put_u16_le(0);
        put_lenenc_int(&mut p, 0);
        put_lenenc_int(&mut p, block.len() as u64);
        p.put_slice(&block);
        p.to_vec()
    }

    async fn connection(mut s: TcpStream, role: Role, waits: Arc<Mutex<Vec<String>>>) {
        let nonce = auth::new_scramble();
        let greeting = auth::greeting("8.0.36", 11, &nonce, 45, auth::supported_capabilities());
        if write_frame(&mut s, 0, &greeting).await.is_err() {
            return;
        }
        let Ok(login) = read_frame(&mut s).await else { return };
        let caps = auth::parse_client_login(login.payload(), auth::supported_capabilities()).unwrap().capabilities;
        let deprecate_eof = caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        let ok = ok_payload(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0);
        write_frame(&mut s, 2, &ok).await.unwrap();
        let mut writes = 22;
        while let Ok(command) = read_frame(&mut s).await {
            let p = command.payload();
            if p.first() != Some(&com::QUERY) {
                if p.first() == Some(&com::QUIT) {
                    return;
                }
                write_frame(&mut s, 1, &ok).await.unwrap();
                continue;
            }
            let sql = String::from_utf8_lossy(&p[1..]).into_owned();
            if sql.starts_with("SELECT WAIT_FOR_EXECUTED_GTID_SET") {
                // Reached for the first write only (…:23), not for the second.
                let reached = if sql.contains(":23'") { "0" } else { "1" };
                waits.lock().unwrap().push(sql);
                s.write_all(&one_value(reached, deprecate_eof)).await.unwrap();
            } else if sql.starts_with("INSERT") && role == Role::Master {
                writes += 1;
                write_frame(&mut s, 1, &ok_with_gtid(&format!("{UUID}:{writes}"))).await.unwrap();
            } else if sql == "SELECT who" {
                let who = if role == Role::Master { "master" } else { "replica" };
                s.write_all(&one_value(who, deprecate_eof)).await.unwrap();
            } else {
                write_frame(&mut s, 1, &ok).await.unwrap();
            }
        }
    }

    /// Starts a scripted server; returns its address and the wait statements it received.
    pub async fn mysql_backend(role: Role) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let waits = Arc::new(Mutex::new(Vec::new()));
        let w = Arc::clone(&waits);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(connection(s, role, Arc::clone(&w)));
            }
        });
        (addr, waits)
    }
}

/// Replication by binary log file and position. MariaDB keeps GTIDs anyway (`gtid_slave_pos` advances on
/// such replicas), so the default follows GTIDs with no extra cost; `health.positions: binlog` follows binary
/// log coordinates (as for a MySQL master without GTIDs): reads after a write go to the master until a probe
/// of the master reads a position covering it, then to replicas that executed past it. No read is stale
/// either way.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_replicating_by_file_and_position_keep_reads_consistent() {
    let _one_at_a_time = PRIVATE.lock().await;
    let topo = Topology::private();
    let db = rows_table(&topo, 8).await;
    for &r in &topo.replicas {
        let mut c = topo.root(r).await;
        for sql in ["STOP SLAVE", "CHANGE MASTER TO MASTER_USE_GTID = no", "START SLAVE"] {
            c.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let status: Option<mysql_async::Row> = c.query_first("SHOW SLAVE STATUS").await.unwrap();
        let using: Option<String> = status.and_then(|row| row.get("Using_Gtid"));
        assert_eq!(using.as_deref(), Some("No"), "the replica replicates by file and position");
    }
    for (label, extra) in [("GTIDs", ""), ("binlog coordinates", "  positions: binlog\n")] {
        let proxy = Proxy::start_yaml(&config_with_health(&topo, extra)).await;
        replicas_serving(&proxy, &topo).await;
        let counts = checker(&proxy, &db, 8, 400, write_then_read).await;
        eprintln!(
            "file/position replication, following {label}: {counts:?}; waited {}, master {}",
            consistent_reads(&proxy, "waited"),
            consistent_reads(&proxy, "master")
        );
        assert_eq!((counts.reads, counts.stale), (1600, 0), "{label}: {counts:?}");
        // The admin interface shows the positions: replicas' GTIDs and executed binary log coordinates, the
        // master's coordinates when they are followed.
        let views = proxy.shared.backend_views();
        assert_eq!(views[0].binlog.is_some(), !extra.is_empty(), "{label}: {views:?}");
        assert!(views.iter().skip(1).all(|b| b.gtid.is_some() && b.binlog.is_some()), "{label}: {views:?}");
        // Once a probe covers the last write, reads of it go to replicas again.
        let opts = OptsBuilder::from_opts(proxy.opts(APP_USER, APP_PASSWORD)).db_name(Some(db.as_str()));
        let mut c = Conn::new(opts).await.unwrap();
        c.query_drop("UPDATE rw SET v = 77777 WHERE id = 0").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (v, server): (i64, u32) =
                c.query_first("SELECT v, @@server_id FROM rw WHERE id = 0").await.unwrap().unwrap();
            assert_eq!(v, 77777, "{label}: a read of the session's write is never stale");
            if server != MASTER {
                break;
            }
            assert!(Instant::now() < deadline, "{label}: reads never went back to a replica");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A `min_gtid` token with binary log positions followed, across sessions with eventual reads: the token
    // (the master's GTID, which MariaDB replicas record even replicating by file and position) makes a
    // read on another connection wait on a replica for the write, which 1 s of MASTER_DELAY keeps from it.
    delay_replicas(&topo, 1).await;
    let extra = "  positions: binlog\nconsistency: eventual\nconsistency_timeout: 5s\n";
    let proxy = Proxy::start_yaml(&config_with_health(&topo, extra)).await;
    replicas_serving(&proxy, &topo).await;
    let opts = OptsBuilder::from_opts(proxy.opts(APP_USER, APP_PASSWORD)).db_name(Some(db.as_str()));
    let (mut writer, mut reader) = (Conn::new(opts.clone()).await.unwrap(), Conn::new(opts).await.unwrap());
    writer.query_drop("UPDATE rw SET v = 424242 WHERE id = 1").await.unwrap();
    let token: String = writer.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    let read = "SELECT v, @@server_id FROM rw WHERE id = 1";
    let plain: (i64, u32) = reader.query_first(read).await.unwrap().unwrap();
    assert!(plain.0 != 424242 && plain.1 != MASTER, "without the token a delayed replica answers: {plain:?}");
    let waited_before = consistent_reads(&proxy, "waited");
    let hinted: (i64, u32) =
        reader.query_first(format!("/* rwsplit:min_gtid={token} */ {read}")).await.unwrap().unwrap();
    assert_eq!(hinted.0, 424242, "the token {token} makes the read see the write: {hinted:?}");
    assert_ne!(hinted.1, MASTER, "a replica waited for the token (MASTER_GTID_WAIT) and answered");
    assert_eq!(consistent_reads(&proxy, "waited"), waited_before + 1, "the read waited on the replica");
    delay_replicas(&topo, 0).await;
}
