//! The fault-injection suite: a steady mixed load runs through rwsplit (with its health checker) while the
//! harness injects one fault after another into a private topology, and scores each fault:
//!
//! - **errors on sessions the fault did not concern**: readers during master faults; every session during
//!   replica faults, reloads and dropped clients. Goal 0, asserted.
//! - **acknowledged writes missing** afterwards, on the master and on every replica: must be 0, asserted.
//!   Every writer keeps a ledger of the writes it got an OK for.
//! - **reads served during a master outage**: all, asserted (no read error while the master is away).
//! - **writes applied twice** (a write the proxy re-sent after a failure): must be 0, asserted. Each write
//!   carries a unique token in a column without a key, so a re-sent write would leave two rows.
//! - **time to recover**, from the fault's end: until writes succeed again (master faults), until the
//!   replica gets reads again (replica faults), until the new topology serves (reload).
//!
//! The table is printed and written to `target/faults.md`; the README's copy comes from a run of it.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{config_with_health, Proxy};
use common::raw::Raw;
use common::Topology;
use mysql_async::prelude::*;
use rwsplit::Config;

const WRITERS: u64 = 4;
const READERS: u64 = 4;
/// Pause after a failed statement, so an outage does not turn into a busy loop.
const AFTER_ERROR: Duration = Duration::from_millis(20);

/// What one client saw, when.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Write { token: u64 },
    WriteErr { code: u16 },
    Read { server: u32, took_ms: u32 },
    ReadErr { code: u16 },
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: Instant,
    kind: Kind,
}

type Log = Arc<Mutex<Vec<Event>>>;

fn record(log: &Log, kind: Kind) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(Event { at: Instant::now(), kind });
}

/// The MySQL error code a client saw (client-side failures as 2013, "lost connection", as the client library
/// reports them).
fn code_of(e: &mysql_async::Error) -> u16 {
    match e {
        mysql_async::Error::Server(e) => e.code,
        _ => 2013,
    }
}

/// Whether the connection must be replaced after this error.
fn broken(e: &mysql_async::Error) -> bool {
    !matches!(e, mysql_async::Error::Server(s) if s.code != 1927)
}

/// The client's connection, opened again if it was dropped; None (the failure logged as `failed`, after a
/// pause) when that fails.
async fn connected<'a>(
    conn: &'a mut Option<mysql_async::Conn>,
    opts: &mysql_async::Opts,
    log: &Log,
    failed: fn(u16) -> Kind,
) -> Option<&'a mut mysql_async::Conn> {
    if conn.is_none() {
        match mysql_async::Conn::new(opts.clone()).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                record(log, failed(code_of(&e)));
                tokio::time::sleep(AFTER_ERROR).await;
                return None;
            }
        }
    }
    conn.as_mut()
}

async fn writer(opts: mysql_async::Opts, id: u64, log: Log, stop: Arc<AtomicBool>) {
    let mut conn: Option<mysql_async::Conn> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = connected(&mut conn, &opts, &log, |code| Kind::WriteErr { code }).await else { continue };
        n += 1;
        let token = id << 32 | n;
        match c.query_drop(format!("INSERT INTO faults.ledger (token, writer) VALUES ({token}, {id})")).await {
            Ok(()) => record(&log, Kind::Write { token }),
            Err(e) => {
                record(&log, Kind::WriteErr { code: code_of(&e) });
                if broken(&e) {
                    conn = None;
                }
                tokio::time::sleep(AFTER_ERROR).await;
            }
        }
    }
}

/// The health snapshot in one line per server, for failure messages.
type Diagnose = Arc<dyn Fn() -> String + Send + Sync>;

async fn reader(opts: mysql_async::Opts, id: u64, log: Log, stop: Arc<AtomicBool>, diagnose: Diagnose) {
    let mut conn: Option<mysql_async::Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = connected(&mut conn, &opts, &log, |code| Kind::ReadErr { code }).await else { continue };
        let began = Instant::now();
        let read: Result<Option<(u32, Option<u64>)>, _> =
            c.exec_first("SELECT @@server_id, MAX(seq) FROM faults.ledger WHERE writer = ?", (id % WRITERS,)).await;
        match read {
            Ok(row) => {
                let server = row.map_or(0, |(id, _)| id);
                record(&log, Kind::Read { server, took_ms: began.elapsed().as_millis() as u32 })
            }
            Err(e) => {
                record(&log, Kind::ReadErr { code: code_of(&e) });
                eprintln!("reader {id} at {:?}: {e}\n{}", Instant::now(), diagnose());
                if broken(&e) {
                    conn = None;
                }
                tokio::time::sleep(AFTER_ERROR).await;
            }
        }
    }
}

/// Which sessions a fault concerns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Concerns {
    /// The writers (a master fault): their errors are expected; readers must see none.
    Writers,
    /// Nobody: no session may see an error.
    Nobody,
}

/// One fault's window and score.
struct Scored {
    name: &'static str,
    concerns: Concerns,
    /// When the fault was injected, lifted, and the phase ended (recovered and settled).
    start: Instant,
    lifted: Instant,
    end: Instant,
    recovered: Duration,
}

/// Runs a blocking harness command (sandbox.sh) without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Polls (every 20 ms, at most 30 s) until `cond` holds; returns how long it took.
async fn until(what: &str, cond: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Polls until a writer got an OK after `since`; returns the time from `since` to that OK.
async fn first_write_after(log: &Log, since: Instant) -> Duration {
    let found = || {
        let events = log.lock().unwrap_or_else(|e| e.into_inner());
        events
            .iter()
            .rev()
            .take_while(|e| e.at > since)
            .filter(|e| matches!(e.kind, Kind::Write { .. }))
            .last()
            .map(|e| e.at)
    };
    until("a write after the fault", || found().is_some()).await;
    found().map_or(Duration::ZERO, |at| at - since)
}

/// What "recovered" means for a fault.
#[derive(Debug, Clone, Copy)]
enum Recovery {
    /// A write succeeded again (then both replicas serve again before the next fault).
    Writes,
    /// Both replicas serve reads again.
    Serving,
}

/// The faults injected so far, and what scoring needs.
struct Run<'a> {
    proxy: &'a Proxy,
    log: Log,
    replicas: [SocketAddr; 2],
    scored: Vec<Scored>,
}

impl Run<'_> {
    fn all_serving(&self) -> bool {
        self.replicas.iter().all(|&r| self.proxy.serves_reads(r))
    }

    /// Ends a fault injected at `start` and lifted now: waits for recovery and records the window.
    async fn score(&mut self, name: &'static str, concerns: Concerns, start: Instant, recovery: Recovery) {
        let lifted = Instant::now();
        let recovered = match recovery {
            Recovery::Writes => first_write_after(&self.log, lifted).await,
            Recovery::Serving => until(name, || self.all_serving()).await,
        };
        // Settled, before the next fault: both replicas replicate again (not merely serving on frozen data,
        // which a master back from an outage ends as soon as it answers the checker).
        let settled = || {
            let health = self.proxy.shared.health.load();
            self.replicas.iter().all(|r| {
                let key = r.to_string();
                health.serves_reads(&key) && health.servers.get(&*key).is_some_and(|s| s.replicating && !s.frozen)
            })
        };
        until("both replicas replicating before the next fault", settled).await;
        self.scored.push(Scored { name, concerns, start, lifted, end: Instant::now(), recovered });
    }

    /// A fault made by a signal or a kill: injected, held for `hold`, lifted, scored.
    async fn signal(
        &mut self,
        name: &'static str,
        concerns: Concerns,
        inject: impl FnOnce(),
        hold: Duration,
        lift: impl FnOnce(),
    ) {
        let start = Instant::now();
        blocking(inject);
        tokio::time::sleep(hold).await;
        blocking(lift);
        let recovery = if concerns == Concerns::Writers { Recovery::Writes } else { Recovery::Serving };
        self.score(name, concerns, start, recovery).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_under_load_lose_nothing_and_reads_survive_a_master_outage() {
    let topo = Topology::private();
    let [r1, r2] = [topo.replicas[0], topo.replicas[1]];
    let yaml = config_with_health(&topo, "  max_replica_lag: 2s\n");
    let proxy = Proxy::start_yaml(&yaml).await;
    until("both replicas serving", || proxy.serves_reads(r1) && proxy.serves_reads(r2)).await;
    {
        let mut c = proxy.conn().await;
        c.query_drop("CREATE DATABASE faults").await.unwrap();
        c.query_drop("CREATE TABLE faults.ledger (seq BIGINT AUTO_INCREMENT PRIMARY KEY, token BIGINT NOT NULL, writer INT NOT NULL, KEY (writer))")
            .await
            .unwrap();
    }
    topo.wait_replicated().await;

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = proxy.opts("app", "apppw");
    let mut load = Vec::new();
    for id in 0..WRITERS {
        load.push(tokio::spawn(writer(opts.clone(), id, Arc::clone(&log), Arc::clone(&stop))));
    }
    let read_log: Log = Arc::default();
    let shared = Arc::clone(&proxy.shared);
    let diagnose: Diagnose = Arc::new(move || {
        let health = shared.health.load();
        let mut servers: Vec<_> = health.servers.iter().collect();
        servers.sort_by_key(|(a, _)| Arc::clone(a));
        let line = |(a, s): (&Arc<str>, &rwsplit::health::ServerHealth)| {
            format!(
                "  {a}: reachable {} fails {} serving {} io+sql {} sql {} lag {:?} frozen {} io seen {:?} ago, error {:?}",
                s.reachable,
                s.fail_streak,
                s.serves_reads,
                s.replicating,
                s.sql_running,
                s.lag,
                s.frozen,
                s.io_seen.map(|(at, _)| at.elapsed()),
                s.last_error
            )
        };
        servers.into_iter().map(line).collect::<Vec<_>>().join("\n")
    });
    for id in 0..READERS {
        let diagnose = Arc::clone(&diagnose);
        load.push(tokio::spawn(reader(opts.clone(), id, Arc::clone(&read_log), Arc::clone(&stop), diagnose)));
    }
    let _ = first_write_after(&log, Instant::now()).await;
    let mut run = Run { proxy: &proxy, log: Arc::clone(&log), replicas: [r1, r2], scored: Vec::new() };

    let master = topo.master;
    let hold = |secs| Duration::from_secs(secs);
    run.signal(
        "master SIGKILL, restarted after 2 s",
        Concerns::Writers,
        || topo.kill(master),
        hold(2),
        || topo.restart(master),
    )
    .await;
    run.signal("master SIGSTOP for 5 s", Concerns::Writers, || topo.pause(master), hold(5), || topo.resume(master))
        .await;
    run.signal(
        "replica SIGKILL, restarted after 2 s",
        Concerns::Nobody,
        || topo.kill(r1),
        hold(2),
        || topo.restart(r1),
    )
    .await;
    run.signal("replica SIGSTOP for 3 s", Concerns::Nobody, || topo.pause(r2), hold(3), || topo.resume(r2)).await;

    // A replica lags (replication delayed by 4 s) until it is taken out, and for 3 s more.
    let start = Instant::now();
    let mut r1_root = topo.root(r1).await;
    r1_root.query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 4; START SLAVE").await.unwrap();
    until("the delayed replica taken out", || !proxy.serves_reads(r1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    r1_root.query_drop("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE").await.unwrap();
    run.score("replica lags 4 s (MASTER_DELAY)", Concerns::Nobody, start, Recovery::Serving).await;

    // A reload removes a replica, another adds it back.
    let start = Instant::now();
    let without = yaml.replace(&format!("  - address: {r2}\n"), "");
    assert_ne!(without, yaml);
    rwsplit::reload::apply(&proxy.shared, Config::parse(&without, "faults").unwrap());
    until("the removed replica out of the topology", || proxy.shared.topology.load().replicas.len() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    rwsplit::reload::apply(&proxy.shared, Config::parse(&yaml, "faults").unwrap());
    run.score("reload: a replica removed, then added back", Concerns::Nobody, start, Recovery::Serving).await;

    // Clients vanish abruptly: mid-query, mid-result and mid-login.
    let start = Instant::now();
    for i in 0..30u32 {
        let mut raw = Raw::login(proxy.addr, "app", "apppw", None).await;
        let sql = match i % 3 {
            0 => "SELECT SLEEP(0.5)",
            1 => "SELECT * FROM faults.ledger",
            _ => "INSERT INTO faults.ledger (token, writer) VALUES (0, 99)",
        };
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        raw.send(&payload).await;
        drop(raw);
        let mut half = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
        let _ = common::raw::read_frame(&mut half).await;
        tokio::io::AsyncWriteExt::write_all(&mut half, &[0x40, 0, 0, 1, 0x85, 0xa6]).await.ok();
        drop(half);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.score("30 clients dropped mid-query and mid-login", Concerns::Nobody, start, Recovery::Writes).await;
    let scored = run.scored;

    // Stop the load, let replication settle, and check the ledgers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    topo.wait_replicated().await;
    let count_tokens = |rows: Vec<(u64, u64)>| rows.into_iter().collect::<HashMap<u64, u64>>();
    let sql = "SELECT token, COUNT(*) FROM faults.ledger WHERE writer < 99 GROUP BY token";
    let on_master = count_tokens(topo.root(topo.master).await.query(sql).await.unwrap());
    let mut on_replicas = Vec::new();
    for r in [r1, r2] {
        on_replicas.push(count_tokens(topo.root(r).await.query(sql).await.unwrap()));
    }

    let writes = log.lock().unwrap().clone();
    let reads = read_log.lock().unwrap().clone();
    let mut table = String::from(
        "| fault | writes ok / failed | reads ok / failed (on the master) | slowest read | errors on unconcerned sessions | acked writes missing | writes applied twice | reads served during a master outage | recovered in |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut problems = Vec::new();
    for s in &scored {
        let within = |e: &&Event| e.at >= s.start && e.at < s.end;
        let w: Vec<&Event> = writes.iter().filter(within).collect();
        let r: Vec<&Event> = reads.iter().filter(within).collect();
        let w_ok: Vec<u64> =
            w.iter().filter_map(|e| if let Kind::Write { token } = e.kind { Some(token) } else { None }).collect();
        let w_err = w.iter().filter(|e| matches!(e.kind, Kind::WriteErr { .. })).count();
        let r_ok = r.iter().filter(|e| matches!(e.kind, Kind::Read { .. })).count();
        let slowest =
            r.iter().filter_map(|e| if let Kind::Read { took_ms, .. } = e.kind { Some(took_ms) } else { None }).max();
        let by_master = r.iter().filter(|e| matches!(e.kind, Kind::Read { server: 1, .. })).count();
        let r_err: Vec<u16> =
            r.iter().filter_map(|e| if let Kind::ReadErr { code } = e.kind { Some(code) } else { None }).collect();
        let unconcerned = match s.concerns {
            Concerns::Writers => r_err.len(),
            Concerns::Nobody => r_err.len() + w_err,
        };
        let missing = w_ok
            .iter()
            .filter(|t| !on_master.contains_key(t) || on_replicas.iter().any(|m| !m.contains_key(t)))
            .count();
        let twice = w_ok.iter().filter(|t| on_master.get(t).is_some_and(|&n| n > 1)).count();
        let outage = match s.concerns {
            Concerns::Writers => {
                let during = |e: &&&Event| e.at >= s.start && e.at < s.lifted;
                let ok = r.iter().filter(during).filter(|e| matches!(e.kind, Kind::Read { .. })).count();
                let failed = r.iter().filter(during).filter(|e| matches!(e.kind, Kind::ReadErr { .. })).count();
                format!("{ok} of {}", ok + failed)
            }
            Concerns::Nobody => "-".into(),
        };
        let _ = writeln!(
            table,
            "| {} | {} / {w_err} | {r_ok} / {} ({by_master}) | {} ms | {unconcerned} | {missing} | {twice} | {outage} | {:.2} s |",
            s.name,
            w_ok.len(),
            r_err.len(),
            slowest.unwrap_or(0),
            s.recovered.as_secs_f64()
        );
        if unconcerned > 0 || missing > 0 || twice > 0 {
            let codes: Vec<u16> = match s.concerns {
                Concerns::Writers => r_err.clone(),
                Concerns::Nobody => r_err
                    .iter()
                    .copied()
                    .chain(
                        w.iter().filter_map(|e| if let Kind::WriteErr { code } = e.kind { Some(code) } else { None }),
                    )
                    .collect(),
            };
            problems.push(format!("{}: unconcerned errors {codes:?}, missing {missing}, twice {twice}", s.name));
        }
    }
    // Every acknowledged write, in any phase or between them, is on every server exactly once.
    let acked: Vec<u64> =
        writes.iter().filter_map(|e| if let Kind::Write { token } = e.kind { Some(token) } else { None }).collect();
    let lost =
        acked.iter().filter(|t| on_master.get(t) != Some(&1) || on_replicas.iter().any(|m| m.get(t) != Some(&1)));
    let lost: Vec<&u64> = lost.collect();
    eprintln!("\n{table}\n{} acknowledged writes in all, {} not exactly once everywhere", acked.len(), lost.len());
    let _ = std::fs::write(common::repo_root().join("target/faults.md"), &table);
    assert!(lost.is_empty(), "acknowledged writes lost or duplicated: {:?}", &lost[..lost.len().min(10)]);
    assert!(problems.is_empty(), "{problems:#?}\n{table}");
}
