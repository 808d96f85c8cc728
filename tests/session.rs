//! Session fidelity: a session through rwsplit behaves like a direct connection to the master. Most tests
//! run the same scenario on a direct connection and through rwsplit and compare what the client sees
//! (values, error codes, ids, session state); where a test checks routing, `@@server_id` tells which backend
//! answered (1 = master, 2 and 3 = replicas).

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{unique_name, Topology, APP_PASSWORD, APP_USER, ROOT_PASSWORD, ROOT_USER};
use mysql_async::prelude::*;
use mysql_async::{Conn, Error, OptsBuilder};

const MASTER: u32 = 1;

fn is_replica(id: u32) -> bool {
    id == 2 || id == 3
}

/// The server error code of a result, if it is one.
fn code<T>(r: &Result<T, Error>) -> Option<u16> {
    match r {
        Err(Error::Server(e)) => Some(e.code),
        _ => None,
    }
}

/// A database with `t (id INT PRIMARY KEY, v INT)`, one row (1, 5), and procedure `p(OUT o)` setting 42;
/// created on the master and replicated.
async fn fixture(topo: &Topology) -> String {
    let db = unique_name("s");
    let mut c = root(topo).await;
    for sql in [
        format!("CREATE DATABASE {db}"),
        format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)"),
        format!("INSERT INTO {db}.t VALUES (1, 5)"),
        format!("CREATE PROCEDURE {db}.p(OUT o INT) BEGIN SET o = 42; END"),
        format!("GRANT ALL ON {db}.* TO 'app'@'%'"),
    ] {
        c.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    topo.wait_replicated().await;
    db
}

async fn root(topo: &Topology) -> Conn {
    topo.root(topo.master).await
}

/// A direct connection to the master as app, in `db`.
async fn direct(topo: &Topology, db: &str) -> Conn {
    let opts = OptsBuilder::from_opts(topo.direct_opts(topo.master, APP_USER, APP_PASSWORD)).db_name(Some(db));
    Conn::new(opts).await.expect("direct connection")
}

/// A connection through rwsplit as app, in `db`.
async fn through(proxy: &Proxy, db: &str) -> Conn {
    proxy.conn_db(db).await
}

async fn server_id(c: &mut Conn) -> u32 {
    c.query_first("SELECT @@server_id").await.expect("server_id").expect("a row")
}

/// The master thread of a connection: its own id direct, the session's master connection through rwsplit.
async fn master_thread(c: &mut Conn) -> u64 {
    c.query_first("SELECT /* rwsplit:master */ @@pseudo_thread_id").await.expect("thread id").expect("a row")
}

/// Kills a master thread from a separate root connection, and waits until it is gone.
async fn kill_master_thread(topo: &Topology, thread: u64) {
    let mut r = root(topo).await;
    r.query_drop(format!("KILL CONNECTION {thread}")).await.expect("kill the backend thread");
    wait_thread_gone(topo, thread).await;
}

/// Polls the master's process list until `thread` is gone (at most 10 s).
async fn wait_thread_gone(topo: &Topology, thread: u64) {
    let mut r = root(topo).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: u64 = r
            .query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread}"))
            .await
            .expect("processlist")
            .expect("a row");
        if n == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "thread {thread} is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until session `id` of `proxy` runs `sql` on one of its backends (at most 10 s).
async fn wait_running(proxy: &Proxy, topo: &Topology, id: u32, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = proxy.shared.registry.get(id).expect("the session is registered");
        for (addr, thread) in entry.backends.iter().flatten() {
            let addr: std::net::SocketAddr = addr.parse().expect("backend address");
            let mut r = topo.root(addr).await;
            let info: Option<Option<String>> = r
                .query_first(format!("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = {thread}"))
                .await
                .expect("processlist");
            if info.flatten().as_deref() == Some(sql) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "session {id} never ran {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// User variables set by UPDATE, CALL (OUT parameters), DO, SELECT … INTO and INSERT are read where they
/// live: the values match a direct connection's.
#[tokio::test(flavor = "multi_thread")]
async fn user_variables_set_by_writes_calls_and_do_read_as_direct() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let tag = unique_name("u");
        c.query_drop(format!("CREATE TABLE {tag} (id INT PRIMARY KEY, v INT)")).await.unwrap();
        c.query_drop(format!("INSERT INTO {tag} VALUES (1, 5)")).await.unwrap();
        c.query_drop(format!("UPDATE {tag} SET v = (@n := v + 10) WHERE id = 1")).await.unwrap();
        let n: Option<i64> = c.query_first("SELECT @n").await.unwrap().unwrap();
        c.query_drop("CALL p(@o)").await.unwrap();
        let o: Option<i64> = c.query_first("SELECT @o").await.unwrap().unwrap();
        c.query_drop("DO @d := 5").await.unwrap();
        let d: Option<i64> = c.query_first("SELECT @d").await.unwrap().unwrap();
        c.query_drop(format!("SELECT v INTO @into FROM {tag} WHERE id = 1")).await.unwrap();
        let into: Option<i64> = c.query_first("SELECT @into + 1").await.unwrap().unwrap();
        c.query_drop(format!("INSERT INTO {tag} VALUES (2, @ins := 77)")).await.unwrap();
        let ins: Option<i64> = c.query_first("SELECT @ins").await.unwrap().unwrap();
        outputs.push((n, o, d, into, ins));
    }
    assert_eq!(outputs[0], (Some(15), Some(42), Some(5), Some(16), Some(77)), "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// Results of the session's previous statements (`@@last_gtid`, `@@identity`, `@@insert_id`,
/// `LAST_INSERT_ID()`, `ROW_COUNT()`, `FOUND_ROWS()`) are the ones the session's statements produced.
#[tokio::test(flavor = "multi_thread")]
async fn session_results_match_a_direct_connection() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let tag = unique_name("r");
        c.query_drop(format!("CREATE TABLE {tag} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")).await.unwrap();
        c.query_drop(format!("INSERT INTO {tag} (v) VALUES (1), (2), (3)")).await.unwrap();
        let gtid: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
        let ids: (u64, u64, u64) =
            c.query_first("SELECT LAST_INSERT_ID(), @@identity, @@insert_id").await.unwrap().unwrap();
        c.query_drop(format!("UPDATE {tag} SET v = v + 1 WHERE id <= 2")).await.unwrap();
        let row_count: i64 = c.query_first("SELECT ROW_COUNT()").await.unwrap().unwrap();
        let _: Vec<u64> = c.query(format!("SELECT SQL_CALC_FOUND_ROWS id FROM {tag} LIMIT 1")).await.unwrap();
        let found_calc: u64 = c.query_first("SELECT FOUND_ROWS()").await.unwrap().unwrap();
        let _: Vec<u64> = c.query(format!("SELECT id FROM {tag}")).await.unwrap();
        let found_plain: u64 = c.query_first("SELECT FOUND_ROWS()").await.unwrap().unwrap();
        let gtid_shape = gtid.split('-').count() == 3 && gtid.split('-').all(|p| p.parse::<u64>().is_ok());
        outputs.push((gtid_shape, ids, row_count, found_calc, found_plain));
    }
    assert_eq!(outputs[0], (true, (1, 1, 0), 2, 3, 3), "direct");
    assert!(outputs[1].0, "@@last_gtid through rwsplit is the session's write GTID, not a replica's ''");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// A prepared `SET time_zone = ?` (and `SET @id = ?`) reaches the session's replica reads.
#[tokio::test(flavor = "multi_thread")]
async fn prepared_sets_reach_replica_reads() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    // A read first, so the replica connection exists before the SET (it must catch up).
    assert!(is_replica(server_id(&mut c).await));
    c.exec_drop("SET time_zone = ?", ("+05:00",)).await.unwrap();
    c.exec_drop("SET @id = ?", (7,)).await.unwrap();
    let (tz, id): (String, u32) = c.query_first("SELECT @@time_zone, @@server_id").await.unwrap().unwrap();
    assert_eq!(tz, "+05:00");
    assert!(is_replica(id), "a plain read still goes to a replica ({id})");
    let v: Option<i64> = c.query_first("SELECT @id").await.unwrap().unwrap();
    assert_eq!(v, Some(7), "a user variable set by a prepared SET is read where it lives");
    // The text protocol's PREPARE / EXECUTE … USING too.
    c.query_drop("SET @tz = '+06:00'").await.unwrap();
    c.query_drop("PREPARE s FROM 'SET time_zone = ?'").await.unwrap();
    c.query_drop("EXECUTE s USING @tz").await.unwrap();
    let (tz, id): (String, u32) = c.query_first("SELECT @@time_zone, @@server_id").await.unwrap().unwrap();
    assert_eq!((tz.as_str(), is_replica(id)), ("+06:00", true));
}

/// A transaction whose master connection dies is never half committed: every later statement fails, as on a
/// direct connection whose server thread was killed, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_transaction_is_never_half_committed() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for (label, mut c) in [("direct", direct(topo, &db).await), ("rwsplit", through(&proxy, &db).await)] {
        let tag = unique_name("x");
        c.query_drop(format!("CREATE TABLE {tag} (id INT PRIMARY KEY)")).await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(format!("INSERT INTO {tag} VALUES (7777)")).await.unwrap();
        let thread = master_thread(&mut c).await;
        kill_master_thread(topo, thread).await;
        let second = c.query_drop(format!("INSERT INTO {tag} VALUES (9999)")).await;
        let commit = c.query_drop("COMMIT").await;
        let after = c.query_drop("SELECT 1").await;
        let stored: u64 =
            root(topo).await.query_first(format!("SELECT COUNT(*) FROM {db}.{tag}")).await.unwrap().unwrap();
        outputs.push((label, second.is_err(), commit.is_err(), after.is_err(), stored));
    }
    for (label, second, commit, after, stored) in outputs {
        assert!(second && commit && after, "{label}: every statement after the loss fails");
        assert_eq!(stored, 0, "{label}: nothing of the transaction is stored");
    }
}

/// State that lived only on the lost master connection ends the session (an error, then the connection
/// closes); state the history replays survives on a new connection.
#[tokio::test(flavor = "multi_thread")]
async fn losing_the_master_connection_loses_only_what_cannot_be_replayed() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let holds: &[&str] = &[
        "CREATE TEMPORARY TABLE tmp (a INT)",
        "SELECT GET_LOCK('rwsplit_session_test', 0)",
        "LOCK TABLES t READ",
        "SELECT v INTO @v FROM t WHERE id = 1",
        "PREPARE ps FROM 'SELECT 1'",
    ];
    for sql in holds {
        let mut c = through(&proxy, &db).await;
        c.query_drop(*sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let thread = master_thread(&mut c).await;
        kill_master_thread(topo, thread).await;
        let next = c.query_drop("SELECT 1").await;
        assert!(next.is_err(), "{sql}: the statement after losing it fails");
        let again = c.query_drop("SELECT 1").await;
        assert!(again.is_err(), "{sql}: the connection is closed, not carried on");
    }
    // Only replayable state: a new master connection takes over without the client noticing.
    let mut c = through(&proxy, &db).await;
    c.query_drop("SET @a = 1").await.unwrap();
    c.query_drop("SET time_zone = '+04:00'").await.unwrap();
    c.query_drop("CREATE TEMPORARY TABLE gone (a INT)").await.unwrap();
    c.query_drop("DROP TEMPORARY TABLE gone").await.unwrap();
    let thread = master_thread(&mut c).await;
    kill_master_thread(topo, thread).await;
    c.query_drop("UPDATE t SET v = v WHERE id = 1").await.expect("a write on a new master connection");
    let (a, tz, dbname): (i64, String, String) =
        c.query_first("SELECT /* rwsplit:master */ @a, @@time_zone, DATABASE()").await.unwrap().unwrap();
    assert_eq!((a, tz.as_str(), dbname.as_str()), (1, "+04:00", db.as_str()));
    assert_ne!(master_thread(&mut c).await, thread, "a new master connection");
    assert!(is_replica(server_id(&mut c).await), "reads go to replicas again: the dropped table no longer pins");
}

/// An idle backend connection closed by the server (wait_timeout) is noticed: with nothing lost the next
/// statement runs on a new connection; holding a transaction, the session ends as a direct one would.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_closed_by_the_server_are_noticed() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    let thread = master_thread(&mut c).await;
    c.query_drop("SET SESSION wait_timeout = 1").await.unwrap();
    wait_thread_gone(topo, thread).await;
    c.query_drop("UPDATE t SET v = v WHERE id = 1").await.expect("the write runs on a new master connection");
    let timeout: u64 = c.query_first("SELECT /* rwsplit:master */ @@wait_timeout").await.unwrap().unwrap();
    assert_eq!(timeout, 1, "the new connection has the session's settings");
    // Holding a transaction: both a direct connection and rwsplit's session are closed.
    for (label, mut c) in [("direct", direct(topo, &db).await), ("rwsplit", through(&proxy, &db).await)] {
        c.query_drop("SET SESSION wait_timeout = 1").await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("UPDATE t SET v = v WHERE id = 1").await.unwrap();
        let thread = master_thread(&mut c).await;
        wait_thread_gone(topo, thread).await;
        let next = c.query_drop("SELECT 1").await;
        assert!(next.is_err(), "{label}: the session that held a transaction is gone");
    }
}

/// The id in the handshake is `CONNECTION_ID()`, with the column the function has; KILL QUERY with it from
/// another connection interrupts the query; other KILL forms get the errors a server would give.
#[tokio::test(flavor = "multi_thread")]
async fn one_connection_id_for_the_handshake_connection_id_and_kill() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut columns = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let id: u32 = c.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
        assert_eq!(id, c.id(), "the handshake id is CONNECTION_ID()");
        let result = c.query_iter("SELECT CONNECTION_ID()").await.unwrap();
        let col = result.columns_ref()[0].clone();
        columns.push((col.name_str().into_owned(), col.column_type(), col.flags(), col.column_length()));
        drop(result);
        let inside: u64 =
            c.query_first(format!("SELECT COUNT(*) FROM DUAL WHERE CONNECTION_ID() = {id}")).await.unwrap().unwrap();
        assert_eq!(inside, 1, "CONNECTION_ID() inside an expression is the same id");
    }
    assert_eq!(columns[1], columns[0], "CONNECTION_ID() has the same column through rwsplit");
    // KILL QUERY from a second connection, by the id from CONNECTION_ID() (also with a leading comment).
    for form in ["KILL QUERY {id}", "/* watchdog */ KILL QUERY {id}"] {
        let mut victim = through(&proxy, &db).await;
        let id: u32 = victim.query_first("SELECT CONNECTION_ID()").await.unwrap().unwrap();
        let started = Instant::now();
        let sleeping = tokio::spawn(async move {
            let r: Result<Option<u32>, _> = victim.query_first("SELECT SLEEP(10)").await;
            (r, victim)
        });
        let mut killer = through(&proxy, &db).await;
        wait_running(&proxy, topo, id, "SELECT SLEEP(10)").await;
        killer.query_drop(form.replace("{id}", &id.to_string())).await.expect(form);
        let (r, mut victim) = sleeping.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{form}: the query was interrupted");
        assert!(code(&r) == Some(1317) || matches!(r, Ok(Some(1))), "{form}: {r:?}");
        let one: u32 = victim.query_first("SELECT 1").await.unwrap().unwrap();
        assert_eq!(one, 1, "the victim's connection goes on after KILL QUERY");
    }
    let mut c = through(&proxy, &db).await;
    // A backend thread id (what SHOW PROCESSLIST shows) is not an rwsplit connection id.
    let thread = master_thread(&mut c).await;
    assert_eq!(code(&c.query_drop(format!("KILL {thread}")).await), Some(1094));
    assert_eq!(code(&c.exec_drop("KILL ?", (thread,)).await), Some(1295), "prepared KILL is refused");
    assert_eq!(code(&c.query_drop("KILL USER app").await), Some(1235));
    // Killing itself: 1927 and the connection is gone, as on the server.
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let id = c.id();
        let killed = c.query_drop(format!("KILL CONNECTION {id}")).await;
        let after = c.query_drop("SELECT 1").await;
        outputs.push((code(&killed), after.is_err()));
    }
    assert_eq!(outputs[0], (Some(1927), true));
    assert_eq!(outputs[1], outputs[0]);
}

/// READ ONLY transactions answer as on the server: a write gets 1792, BEGIN and DDL commit them implicitly,
/// and the session's temporary tables and variables are there.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_transactions_behave_as_on_the_server() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let tag = unique_name("ro");
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let write = code(&c.query_drop("INSERT INTO t VALUES (2, 2)").await);
        // DDL commits the READ ONLY transaction implicitly, then runs.
        let ddl = c.query_drop(format!("CREATE TABLE {tag} (a INT)")).await.is_ok();
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        // BEGIN commits it too; the new transaction may write.
        c.query_drop("BEGIN").await.unwrap();
        let insert = c.query_drop(format!("INSERT INTO {tag} VALUES (1)")).await.is_ok();
        c.query_drop("COMMIT").await.unwrap();
        // With a temporary table and a variable the replicas do not have.
        c.query_drop("CREATE TEMPORARY TABLE tmp_ro (a INT)").await.unwrap();
        c.query_drop("INSERT INTO tmp_ro VALUES (3)").await.unwrap();
        c.query_drop("SELECT 4 INTO @ro").await.unwrap();
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let tmp: u32 = c.query_first("SELECT a FROM tmp_ro").await.unwrap().unwrap();
        let var: i64 = c.query_first("SELECT @ro").await.unwrap().unwrap();
        c.query_drop("COMMIT").await.unwrap();
        outputs.push((write, ddl, insert, tmp, var));
    }
    assert_eq!(outputs[0], (Some(1792), true, true, 3, 4), "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// A multi-statement that ends in an error leaves the transaction it opened open, on the master.
#[tokio::test(flavor = "multi_thread")]
async fn a_multi_statement_ending_in_an_error_keeps_its_transaction() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let tag = unique_name("m");
        c.query_drop(format!("CREATE TABLE {tag} (id INT PRIMARY KEY)")).await.unwrap();
        let multi = c.query_drop(format!("BEGIN; INSERT INTO {tag} VALUES (1); INSERT INTO {tag} VALUES (1)")).await;
        let inside: u64 = c.query_first(format!("SELECT COUNT(*) FROM {tag}")).await.unwrap().unwrap();
        let in_trx: u32 = c.query_first("SELECT @@in_transaction").await.unwrap().unwrap();
        c.query_drop("ROLLBACK").await.unwrap();
        let after: u64 =
            c.query_first(format!("SELECT /* rwsplit:master */ COUNT(*) FROM {tag}")).await.unwrap().unwrap();
        outputs.push((code(&multi), inside, in_trx, after));
    }
    assert_eq!(outputs[0], (Some(1062), 1, 1, 0), "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// Pools re-send the same SETs on every checkout: the history keeps the last value per variable, so the
/// session is not pinned to the master after hundreds of them.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_sets_keep_reads_on_replicas() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    for i in 0..300 {
        c.query_drop("SET NAMES utf8mb4").await.unwrap();
        c.query_drop("SET autocommit = 1").await.unwrap();
        c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await.unwrap();
        c.query_drop(format!("SET @rownum = {i}")).await.unwrap();
        c.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, '')").await.unwrap();
    }
    let (id, rownum, iso): (u32, i64, String) =
        c.query_first("SELECT @@server_id, @rownum, @@tx_isolation").await.unwrap().unwrap();
    assert!(is_replica(id), "reads still go to replicas after 1500 SETs (server {id})");
    assert_eq!((rownum, iso.as_str()), (299, "READ-COMMITTED"));
}

/// A replica hint moves plain reads only: locking reads and writes stay on the master.
#[tokio::test(flavor = "multi_thread")]
async fn replica_hints_move_only_plain_reads() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    let locking: u32 = c
        .query_first("/* rwsplit:replica */ SELECT @@server_id FROM t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(locking, MASTER);
    c.query_drop("/* rwsplit:replica */ INSERT INTO t VALUES (50, 50)").await.expect("the write runs on the master");
    let lock: u32 = c
        .query_first("/* rwsplit:replica */ SELECT @@server_id FROM DUAL WHERE GET_LOCK('hint', 0) = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lock, MASTER, "GET_LOCK with a replica hint takes its lock on the master");
    let read: u32 = c.query_first("/* rwsplit:replica */ SELECT @@server_id").await.unwrap().unwrap();
    assert!(is_replica(read));
    // A hint smuggled inside a comment's text (sqlcommenter tags) is not one.
    let tagged: u32 = c.query_first("/*route='rwsplit:master'*/ SELECT @@server_id").await.unwrap().unwrap();
    assert!(is_replica(tagged), "only a comment whose first word is the hint counts");
}

/// A database named at login is checked as the server checks it; COM_RESET_CONNECTION keeps the database.
#[tokio::test(flavor = "multi_thread")]
async fn login_database_and_reset_connection_as_on_the_server() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let nosuch = |opts: mysql_async::Opts| OptsBuilder::from_opts(opts).db_name(Some("rwsplit_no_such_db"));
    let direct_code = code(&Conn::new(nosuch(topo.direct_opts(topo.master, APP_USER, APP_PASSWORD))).await);
    let proxy_code = code(&Conn::new(nosuch(proxy.opts(APP_USER, APP_PASSWORD))).await);
    assert_eq!(direct_code, Some(1049));
    assert_eq!(proxy_code, direct_code, "an unknown database fails the login through rwsplit too");
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        c.query_drop("SET @kept = 1").await.unwrap();
        c.query_drop("USE mysql").await.unwrap();
        c.reset().await.unwrap();
        let (dbname, kept): (String, Option<i64>) = c.query_first("SELECT DATABASE(), @kept").await.unwrap().unwrap();
        outputs.push((dbname, kept));
    }
    assert_eq!(outputs[0], ("mysql".to_string(), None), "direct: the database stays, variables go");
    assert_eq!(outputs[1], outputs[0]);
}

/// mariadb-slap with a schema that does not exist, against a master-only rwsplit: the same outcome as
/// direct (the login fails with 1049; slap reports it and exits).
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_slap_sees_what_it_sees_direct() {
    let topo = Topology::shared();
    let yaml = format!(
        "listen: 127.0.0.1:0\nusers:\n  - user: root\n    password: rootpw\nmaster:\n  address: {}\nconnect_timeout: 1s\n",
        topo.master
    );
    let proxy = Proxy::start_yaml(&yaml).await;
    let slap = |addr: std::net::SocketAddr| {
        let schema = unique_name("slap");
        let out = std::process::Command::new("mariadb-slap")
            .args(["--no-defaults", "--protocol=TCP", "-h", &addr.ip().to_string(), "-P", &addr.port().to_string()])
            .args(["-u", ROOT_USER, &format!("-p{ROOT_PASSWORD}"), &format!("--create-schema={schema}")])
            .args(["--concurrency=4", "--iterations=1", "--delimiter=;"])
            .arg("--query=SELECT SLEEP(0.01); SELECT COUNT(*) FROM information_schema.TABLES")
            .output()
            .expect("run mariadb-slap");
        let text = String::from_utf8_lossy(&out.stderr).replace(&schema, "S");
        (out.status.code(), text.contains("1049 Unknown database 'S'"), text.contains("Cannot run query"))
    };
    let direct = slap(topo.master);
    let proxied = slap(proxy.addr);
    assert!(direct.1, "direct: {direct:?}");
    assert_eq!(proxied, direct, "through rwsplit, as direct");
}

/// A READ ONLY transaction whose replica connection dies is not carried on elsewhere (outside its snapshot):
/// the statement fails and the session closes, as a direct connection would.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_transaction_on_a_lost_replica_is_not_retried_elsewhere() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let first = server_id(&mut c).await;
    assert!(is_replica(first));
    let entry = proxy.shared.registry.get(c.id()).unwrap();
    let (addr, thread) = entry.backends[1].clone().expect("the replica connection");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut r = topo.root(addr).await;
    r.query_drop(format!("KILL CONNECTION {thread}")).await.unwrap();
    let next = c.query_first::<u32, _>("SELECT @@server_id").await;
    assert!(next.is_err(), "the read is not retried outside the transaction's snapshot: {next:?}");
    assert!(c.query_drop("SELECT 1").await.is_err(), "the session is closed");
}

/// LOCK TABLES state comes from the server: released by a commented UNLOCK or by BEGIN, reads go back to
/// replicas; HANDLER no longer pins the session.
#[tokio::test(flavor = "multi_thread")]
async fn table_locks_and_handlers_follow_the_server() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    c.query_drop("LOCK TABLES t READ").await.unwrap();
    assert_eq!(server_id(&mut c).await, MASTER, "under LOCK TABLES reads stay on the master");
    c.query_drop("/* done */ UNLOCK TABLES").await.unwrap();
    assert!(is_replica(server_id(&mut c).await), "a commented UNLOCK releases them too");
    c.query_drop("LOCK TABLES t READ").await.unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert!(is_replica(server_id(&mut c).await), "BEGIN released the table locks");
    c.query_drop("HANDLER t OPEN").await.unwrap();
    let row: (i32, i32) = c.query_first("HANDLER t READ FIRST").await.unwrap().unwrap();
    assert_eq!(row.0, 1);
    c.query_drop("HANDLER t CLOSE").await.unwrap();
    assert!(is_replica(server_id(&mut c).await), "HANDLER does not pin the session");
}

/// A stored function called in a SELECT runs on the master (it may write, lock or set variables), and what
/// it set is there for the session, as direct.
#[tokio::test(flavor = "multi_thread")]
async fn stored_functions_run_on_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    root(topo)
        .await
        .query_drop(format!(
            "CREATE FUNCTION {db}.f() RETURNS INT READS SQL DATA BEGIN SET @fv = 9; RETURN @@server_id; END"
        ))
        .await
        .unwrap();
    topo.wait_replicated().await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let where_: u32 = c.query_first("SELECT f()").await.unwrap().unwrap();
        let fv: Option<i64> = c.query_first("SELECT @fv").await.unwrap().unwrap();
        outputs.push((where_, fv));
    }
    assert_eq!(outputs[0], (MASTER, Some(9)));
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// A client that switches to a multi-byte character set whose second byte can be `\` (SET NAMES sjis) has
/// its statements read as the server reads them: a locking read behind such a character is seen.
#[tokio::test(flavor = "multi_thread")]
async fn multibyte_client_charsets_are_read_as_the_server_reads_them() {
    use common::raw::{error_of, Raw};
    use rwsplit_wire::walk::Expect;
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut raw = Raw::login(proxy.addr, ROOT_USER, ROOT_PASSWORD, None).await;
    assert!(error_of(&raw.command(b"\x03SET NAMES sjis", Expect::ResultSets).await).is_none());
    // 0x95 0x5C is one SJIS character. Read as latin1, its 0x5C escapes the quote, and the string runs to
    // the quote in the comment, hiding FOR UPDATE.
    let mut sql = b"\x03SELECT @@server_id FROM ".to_vec();
    sql.extend_from_slice(db.as_bytes());
    sql.extend_from_slice(b".t WHERE id <> '\x95\x5c' LIMIT 1 FOR UPDATE -- '");
    let resp = raw.command(&sql, Expect::ResultSets).await;
    assert!(error_of(&resp).is_none(), "{:?}", error_of(&resp));
    let (id, _) = rwsplit_wire::packet::lenenc_str(&resp[resp.len() - 2]).expect("a row");
    assert_eq!(id, b"1", "the locking read goes to the master");
}

/// A multi-statement that fails on a replica leaves nothing open there: the next write goes to the master
/// and succeeds, as direct; the error's diagnostics are still there for SHOW ERRORS (the proxy asks the
/// server for its status with COM_PING, which keeps them).
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_multi_statement_read_leaves_no_transaction_on_the_replica() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let id = rand_id();
        let failed = code(&c.query_drop("SELECT * FROM rwsplit_missing; SELECT 1").await);
        let insert = c.query_drop(format!("INSERT INTO t VALUES ({id}, 1)")).await.map_err(|e| e.to_string());
        let in_trx: u32 = c.query_first("SELECT @@in_transaction").await.unwrap().unwrap();
        let _ = c.query_drop("SELECT * FROM rwsplit_missing; SELECT 1").await;
        let errors: Vec<(String, u32, String)> = c.query("SHOW ERRORS").await.unwrap();
        outputs.push((failed, errors.into_iter().map(|e| e.1).collect::<Vec<_>>(), insert, in_trx));
    }
    assert_eq!(outputs[0], (Some(1146), vec![1146], Ok(()), 0), "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// A row id no other test uses.
fn rand_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1000);
    NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id() % 1000 * 10_000
}

/// A SET that changes the client's trackers together with other variables reaches both legs: the
/// other variables are read back from the server, which no longer reports them.
#[tokio::test(flavor = "multi_thread")]
async fn a_set_mixing_trackers_and_variables_reaches_every_backend() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    // Both legs open before the SET.
    assert!(is_replica(server_id(&mut c).await));
    master_thread(&mut c).await;
    c.query_drop("SET SESSION session_track_system_variables = '', time_zone = '+07:00'").await.unwrap();
    let replica: (String, u32) = c.query_first("SELECT @@time_zone, @@server_id").await.unwrap().unwrap();
    let master: (String, u32) =
        c.query_first("SELECT /* rwsplit:master */ @@time_zone, @@server_id").await.unwrap().unwrap();
    assert!(is_replica(replica.1));
    assert_eq!((replica.0.as_str(), master.0.as_str(), master.1), ("+07:00", "+07:00", MASTER));
}

/// What a multi-statement or a procedure created before it failed stays where it was created: the
/// temporary table, the variable, as direct.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_failed_multi_statement_or_procedure_created_is_still_found() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    root(topo)
        .await
        .query_drop(format!(
            "CREATE PROCEDURE {db}.fails() BEGIN CREATE TEMPORARY TABLE tmp_p (x INT); SET @pv = 7; \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'late'; END"
        ))
        .await
        .unwrap();
    topo.wait_replicated().await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let multi = code(&c.query_drop("CREATE TEMPORARY TABLE tmp_m (x INT); SELECT * FROM rwsplit_missing").await);
        let tmp_m = code(&c.query_drop("SELECT * FROM tmp_m").await);
        let call = code(&c.query_drop("CALL fails()").await);
        let pv: Option<i64> = c.query_first("SELECT @pv").await.unwrap().unwrap();
        let tmp_p = code(&c.query_drop("SELECT * FROM tmp_p").await);
        outputs.push((multi, tmp_m, call, pv, tmp_p));
    }
    assert_eq!(outputs[0], (Some(1146), None, Some(1644), Some(7), None), "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// FLUSH TABLES … WITH READ LOCK is held until UNLOCK TABLES: reads stay on the master, which holds it.
#[tokio::test(flavor = "multi_thread")]
async fn flush_tables_with_read_lock_keeps_the_session_on_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = proxy.conn_as(ROOT_USER, ROOT_PASSWORD, &db).await;
    // The global read lock (which the server's session tracking does not report) blocks every writer on
    // the shared master: held for two statements only.
    c.query_drop("FLUSH TABLES WITH READ LOCK").await.unwrap();
    let locked = server_id(&mut c).await;
    c.query_drop("UNLOCK TABLES").await.unwrap();
    assert_eq!(locked, MASTER, "under the read lock, reads stay on the master");
    assert!(is_replica(server_id(&mut c).await));
    c.query_drop("FLUSH TABLES t FOR EXPORT").await.unwrap();
    assert_eq!(server_id(&mut c).await, MASTER);
    c.query_drop("UNLOCK TABLES").await.unwrap();
}

/// CONNECTION_ID() stored in a view stays the function (every connection sees its own id), and compared
/// with server thread ids (IS_USED_LOCK) it is the backend's, so the comparison holds as direct.
#[tokio::test(flavor = "multi_thread")]
async fn connection_id_in_views_and_lock_checks_behaves_as_direct() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    c.query_drop("CREATE VIEW who AS SELECT CONNECTION_ID() AS id").await.unwrap();
    let mut d = direct(topo, &db).await;
    let own: u32 = d.query_first("SELECT id = CONNECTION_ID() FROM who").await.unwrap().unwrap();
    assert_eq!(own, 1, "the view returns the reader's own id, not a constant");
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let lock = unique_name("k");
        let got: u32 = c.query_first(format!("SELECT GET_LOCK('{lock}', 0)")).await.unwrap().unwrap();
        let mine: u32 =
            c.query_first(format!("SELECT IS_USED_LOCK('{lock}') = CONNECTION_ID()")).await.unwrap().unwrap();
        c.query_drop(format!("DO RELEASE_LOCK('{lock}')")).await.unwrap();
        outputs.push((got, mine));
    }
    assert_eq!(outputs[0], (1, 1));
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// A variable the server reports as NULL (character_set_results) is replayed as NULL on a new connection,
/// not as '' (which every statement would then fail on).
#[tokio::test(flavor = "multi_thread")]
async fn a_null_variable_is_replayed_as_null() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    // In a multi-statement the SET is not recorded as text: its value comes from the server's report.
    c.query_drop("SET character_set_results = NULL; SELECT 1").await.unwrap();
    let thread = master_thread(&mut c).await;
    kill_master_thread(topo, thread).await;
    let master: (u32, u32) = c
        .query_first("SELECT /* rwsplit:master */ @@character_set_results IS NULL, @@server_id")
        .await
        .unwrap()
        .unwrap();
    let replica: (u32, u32) =
        c.query_first("SELECT @@character_set_results IS NULL, @@server_id").await.unwrap().unwrap();
    assert_eq!(master, (1, MASTER), "a new master connection took the NULL");
    assert_eq!((replica.0, is_replica(replica.1)), (1, true), "the replica took the NULL");
}

/// COM_RESET_CONNECTION starts the client's view over: its text is read in the login's character set again
/// (here a locking read that gbk would hide in a string), and its trackers are the server's defaults.
#[tokio::test(flavor = "multi_thread")]
async fn reset_connection_restores_the_character_set_and_trackers() {
    use common::raw::{error_of, Raw};
    use rwsplit_wire::walk::Expect;
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut raw = Raw::login(proxy.addr, ROOT_USER, ROOT_PASSWORD, None).await;
    assert!(error_of(&raw.command(b"\x03SET NAMES gbk", Expect::ResultSets).await).is_none());
    assert!(error_of(&raw.command(b"\x03SET session_track_schema = OFF", Expect::ResultSets).await).is_none());
    assert!(error_of(&raw.command(b"\x1f", Expect::Single).await).is_none(), "COM_RESET_CONNECTION");
    // utf8mb4: 中 then \' (an escaped quote) then the closing quote: FOR UPDATE is code. Read as gbk, the
    // backslash is the second byte of a character and FOR UPDATE sits in a string.
    let sql = format!("\x03SELECT @@server_id FROM {db}.t WHERE id <> '中\\'' LIMIT 1 FOR UPDATE -- '");
    let resp = raw.command(sql.as_bytes(), Expect::ResultSets).await;
    assert!(error_of(&resp).is_none(), "{:?}", error_of(&resp));
    let (id, _) = rwsplit_wire::packet::lenenc_str(&resp[resp.len() - 2]).expect("a row");
    assert_eq!(id, b"1", "the locking read goes to the master");
    // The schema tracker is on again (the server's default): USE reports the schema.
    let ok = raw.command(b"\x03USE mysql", Expect::ResultSets).await;
    let ok = rwsplit_wire::packet::OkPacket::parse(&ok[0], true).expect("an OK");
    let schema = ok.changes().any(|c| matches!(c, rwsplit_wire::packet::StateChange::Schema(b"mysql")));
    assert!(schema, "the reset brought back the default trackers");
}

/// Hundreds of `SET @user = '…'` (a per-request audit variable) keep one history entry: reads stay on
/// the replicas.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_string_variables_keep_reads_on_replicas() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut c = through(&proxy, &db).await;
    for i in 0..300 {
        c.query_drop(format!("SET @user = 'alice{i}'")).await.unwrap();
    }
    let (id, user): (u32, String) = c.query_first("SELECT @@server_id, @user").await.unwrap().unwrap();
    assert!(is_replica(id), "reads still go to replicas (server {id})");
    assert_eq!(user, "alice299");
}

/// COMMIT AND CHAIN outside a transaction starts one, XA COMMIT of an unknown transaction fails, and a
/// one-shot setting reaches the statement after it: as direct, even with no master connection yet.
#[tokio::test(flavor = "multi_thread")]
async fn transaction_endings_and_one_shot_settings_run_on_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let id = rand_id();
        c.query_drop("COMMIT AND CHAIN").await.unwrap();
        c.query_drop(format!("INSERT INTO t VALUES ({id}, 1)")).await.unwrap();
        c.query_drop("ROLLBACK").await.unwrap();
        let kept: u64 = c
            .query_first(format!("SELECT /* rwsplit:master */ COUNT(*) FROM t WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        let xa = code(&c.query_drop("XA COMMIT 'rwsplit_no_such_xid'").await);
        c.query_drop("SET rand_seed1 = 1, rand_seed2 = 2").await.unwrap();
        let rand: f64 = c.query_first("SELECT RAND()").await.unwrap().unwrap();
        c.query_drop("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").await.unwrap();
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let in_ro: u32 = server_id(&mut c).await;
        c.query_drop("COMMIT").await.unwrap();
        outputs.push((kept, xa, rand.to_bits(), in_ro));
    }
    assert_eq!((outputs[0].0, outputs[0].1, outputs[0].3), (0, Some(1397), MASTER), "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// SET and USE run on the master, the source of truth, even when only a replica connection is open: a
/// database the replicas do not have is accepted, as direct.
#[tokio::test(flavor = "multi_thread")]
async fn session_commands_are_decided_by_the_master() {
    use common::raw::{error_of, Raw};
    use rwsplit_wire::walk::Expect;
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    fixture(topo).await;
    let only = unique_name("only");
    let mut r = root(topo).await;
    r.query_drop("SET SESSION sql_log_bin = 0").await.unwrap();
    r.query_drop(format!("CREATE DATABASE {only}")).await.unwrap();
    r.query_drop(format!("GRANT ALL ON {only}.* TO 'app'@'%'")).await.unwrap();
    let mut outputs = Vec::new();
    // A raw client with no database and no connect-time queries: through rwsplit only a replica
    // connection is open when the USE arrives.
    for addr in [topo.master, proxy.addr] {
        let mut c = Raw::login(addr, APP_USER, APP_PASSWORD, None).await;
        assert!(error_of(&c.command(b"\x03SELECT 1", Expect::ResultSets).await).is_none());
        let used = error_of(&c.command(format!("\x03USE {only}").as_bytes(), Expect::ResultSets).await);
        let current = c.command(b"\x03SELECT DATABASE()", Expect::ResultSets).await;
        let current = rwsplit_wire::packet::lenenc_str(&current[current.len() - 2]).map(|(v, _)| v.to_vec());
        outputs.push((used.map(|e| e.code), current));
    }
    r.query_drop(format!("DROP DATABASE {only}")).await.unwrap();
    assert_eq!(outputs[0], (None, Some(only.clone().into_bytes())), "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// GET_LOCK inside a READ ONLY transaction (held by a replica) takes the lock on the master, where every
/// other client's GET_LOCK looks: mutual exclusion holds, as direct.
#[tokio::test(flavor = "multi_thread")]
async fn named_locks_in_read_only_transactions_are_taken_on_the_master() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let lock = unique_name("ro_lock");
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let got: u32 = c.query_first(format!("SELECT GET_LOCK('{lock}', 0)")).await.unwrap().unwrap();
        let free: u32 = root(topo).await.query_first(format!("SELECT IS_FREE_LOCK('{lock}')")).await.unwrap().unwrap();
        c.query_drop("COMMIT").await.unwrap();
        c.query_drop(format!("DO RELEASE_LOCK('{lock}')")).await.unwrap();
        outputs.push((got, free));
    }
    assert_eq!(outputs[0], (1, 0), "direct: the lock is held on the master");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// A versioned comment above the server's version is a comment to the server, so the rest of the text is
/// code: a write hidden behind one (in what looks like a string) goes to the master and runs, as direct.
#[tokio::test(flavor = "multi_thread")]
async fn a_versioned_comment_above_the_server_hides_no_write() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = fixture(topo).await;
    let mut outputs = Vec::new();
    for mut c in [direct(topo, &db).await, through(&proxy, &db).await] {
        let id = rand_id();
        c.query_drop(format!("INSERT INTO t VALUES ({id}, 1)")).await.unwrap();
        let sql = format!("SELECT 1 /*M!999999 '*/; DELETE FROM t WHERE id = {id}; SELECT '*/");
        let result = code(&c.query_drop(sql).await);
        let left: u64 = root(topo)
            .await
            .query_first(format!("SELECT COUNT(*) FROM {db}.t WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        outputs.push((result, left));
    }
    assert_eq!(outputs[0], (Some(1064), 0), "direct: the DELETE ran, then the syntax error");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}

/// An execute that omits parameter types ("new params bound" = 0) is read with the types the client sent
/// last, on whichever backend runs it: rwsplit re-sends them to a backend that last saw other types.
#[tokio::test(flavor = "multi_thread")]
async fn omitted_parameter_types_are_the_latest_ones_on_every_backend() {
    use common::raw::{error_of, Raw};
    use rwsplit_wire::walk::Expect;
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    fixture(topo).await;
    const LONGLONG: u8 = 0x08;
    const VAR_STRING: u8 = 0xfd;
    // COM_STMT_EXECUTE of statement `id` with one parameter: types (if bound) and the value's bytes.
    let execute = |id: u32, types: Option<u8>, value: &[u8]| {
        let mut p = vec![0x17];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0]); // flags, iterations, NULL bitmap
        match types {
            Some(t) => p.extend_from_slice(&[1, t, 0]),
            None => p.push(0),
        }
        p.extend_from_slice(value);
        p
    };
    let value = |resp: &[Vec<u8>]| {
        assert!(error_of(resp).is_none(), "{:?}", error_of(resp));
        // Binary row: 0x00 header, NULL bitmap (1 byte for 1 column), then the string.
        let row = &resp[resp.len() - 2];
        rwsplit_wire::packet::lenenc_str(&row[2..]).map(|(v, _)| String::from_utf8_lossy(v).into_owned())
    };
    let mut outputs = Vec::new();
    for addr in [topo.master, proxy.addr] {
        let mut c = Raw::login(addr, APP_USER, APP_PASSWORD, None).await;
        let prepared = c.command(b"\x16SELECT CONCAT(?, '')", Expect::Prepare).await;
        let id = u32::from_le_bytes(prepared[0][1..5].try_into().unwrap());
        // In a transaction (the master): a BIGINT.
        c.command(b"\x03BEGIN", Expect::ResultSets).await;
        let a = value(&c.command(&execute(id, Some(LONGLONG), &5u64.to_le_bytes()), Expect::ResultSets).await);
        c.command(b"\x03COMMIT", Expect::ResultSets).await;
        // Outside it (a replica, through rwsplit): a string.
        let b = value(&c.command(&execute(id, Some(VAR_STRING), b"\x03abc"), Expect::ResultSets).await);
        // In a transaction again, types omitted: still a string.
        c.command(b"\x03BEGIN", Expect::ResultSets).await;
        let z = value(&c.command(&execute(id, None, b"\x03xyz"), Expect::ResultSets).await);
        c.command(b"\x03COMMIT", Expect::ResultSets).await;
        outputs.push((a, b, z));
    }
    let want = (Some("5".to_string()), Some("abc".to_string()), Some("xyz".to_string()));
    assert_eq!(outputs[0], want, "direct");
    assert_eq!(outputs[1], outputs[0], "through rwsplit, as direct");
}
