//! Many-connections load client for `benches/e2e/run.sh` (part `load`): opens N client connections and keeps
//! every one of them issuing queries for a while (point selects on a small table, each connection pausing a
//! random think time between its queries), while sampling the resident memory of the process behind the
//! address (VmRSS from `/proc/PID/status`). Through rwsplit with `pool.max_backend_connections`, the N
//! sessions share a few backend connections per server (a session borrows one per statement).
//!
//! Environment:
//! - `LOAD_ADDR` (required, `host:port`), `LOAD_PID` (required, the process whose RSS is sampled)
//! - `LOAD_USER` (app), `LOAD_PASSWORD` (apppw), `LOAD_DB` (app: the table `load_rows` is read there; it
//!   must exist with ids 1..=`LOAD_ROWS`), `LOAD_ROWS` (1000)
//! - `LOAD_CONNS` (10000), `LOAD_CONCURRENCY` (64: logins at a time while opening), `LOAD_SECS` (30),
//!   `LOAD_THINK_MS` (1000: mean pause between a connection's queries, uniform in 0..2×)
//!
//! Prints one line: `load conns=… secs=… queries=… errors=… qps=… p50_ms=… p99_ms=… p999_ms=… max_ms=…
//! open_secs=… rss_before=… rss_open=… rss_peak=… rss_after=…` (sizes in bytes; `rss_after` once every
//! connection closed), and up to five distinct error messages on the lines after it. Exits 1 if any query
//! or login failed. The process running this needs `ulimit -n` above N.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rand::Rng;

#[path = "common/client.rs"]
mod client;
#[path = "common/rss.rs"]
mod rss;
use rss::rss;

/// What one connection's loop saw.
#[derive(Default)]
struct Tally {
    /// Latency of each query, in microseconds.
    micros: Vec<u32>,
    /// Failed queries (and logins) with their messages.
    errors: Vec<String>,
}

/// The `q`-quantile of sorted latencies, in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let (Ok(addr), Ok(pid)) = (std::env::var("LOAD_ADDR"), std::env::var("LOAD_PID")) else {
        println!("load: skipped (set LOAD_ADDR=host:port and LOAD_PID; benches/e2e/run.sh drives this client)");
        return Ok(());
    };
    let pid: u32 = pid.parse().map_err(|_| anyhow::anyhow!("LOAD_PID={pid:?} is not a pid"))?;
    let user = client::env_or("LOAD_USER", "app");
    let password = client::env_or("LOAD_PASSWORD", "apppw");
    let db = client::env_or("LOAD_DB", "app");
    let rows: u32 = client::env_parse("LOAD_ROWS", 1000)?;
    let n: usize = client::env_parse("LOAD_CONNS", 10_000)?;
    let concurrency: usize = client::env_parse("LOAD_CONCURRENCY", 64)?;
    let secs: f64 = client::env_parse("LOAD_SECS", 30.0)?;
    let think_ms: f64 = client::env_parse("LOAD_THINK_MS", 1000.0)?;
    let opts = client::opts(&addr, &user, &password, Some(db))?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let before = rss(pid)?;
        // Open every connection first (so all N are concurrent for the whole run), `concurrency` at a time.
        let started = Instant::now();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (opts, semaphore) = (opts.clone(), Arc::clone(&semaphore));
            opening.spawn(async move {
                let _slot = semaphore.acquire_owned().await;
                mysql_async::Conn::new(opts).await
            });
        }
        let mut conns = Vec::with_capacity(n);
        let mut login_errors = Vec::new();
        while let Some(r) = opening.join_next().await {
            match r? {
                Ok(c) => conns.push(c),
                Err(e) => login_errors.push(format!("login: {e}")),
            }
        }
        let open_secs = started.elapsed().as_secs_f64();
        let rss_open = rss(pid)?;

        // The sampler: the peak RSS while the load runs.
        let peak = Arc::new(AtomicU64::new(rss_open));
        let running = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    if let Ok(now) = rss(pid) {
                        peak.fetch_max(now, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };

        let end = tokio::time::Instant::now() + client::secs(secs);
        let mut workers = tokio::task::JoinSet::new();
        for mut conn in conns {
            workers.spawn(async move {
                let mut tally = Tally::default();
                // Start spread over one think time, so the connections do not move in step.
                let first = rand::thread_rng().gen_range(0.0..=think_ms.max(0.001));
                tokio::time::sleep(client::secs(first / 1000.0)).await;
                while tokio::time::Instant::now() < end {
                    let id = rand::thread_rng().gen_range(1..=rows.max(1));
                    let sent = Instant::now();
                    // Text protocol: a session with prepared statements keeps its backend connections.
                    let got: mysql_async::Result<Option<(u32, String)>> =
                        conn.query_first(format!("SELECT id, v FROM load_rows WHERE id = {id}")).await;
                    match got {
                        Ok(Some(_)) => tally.micros.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32),
                        Ok(None) => tally.errors.push(format!("row {id} missing")),
                        Err(e) => tally.errors.push(e.to_string()),
                    }
                    let pause = rand::thread_rng().gen_range(0.0..=2.0 * think_ms);
                    tokio::time::sleep_until(
                        end.min(tokio::time::Instant::now() + Duration::from_secs_f64(pause / 1000.0)),
                    )
                    .await;
                }
                if let Err(e) = conn.disconnect().await {
                    tally.errors.push(format!("disconnect: {e}"));
                }
                tally
            });
        }
        let mut micros = Vec::new();
        let mut errors = login_errors;
        while let Some(t) = workers.join_next().await {
            let t = t?;
            micros.extend(t.micros);
            errors.extend(t.errors);
        }
        running.store(false, Ordering::Relaxed);
        sampler.await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss(pid)?;
        micros.sort_unstable();
        let queries = micros.len();
        println!(
            "load conns={n} secs={secs} queries={queries} errors={} qps={:.0} p50_ms={:.2} p99_ms={:.2} \
             p999_ms={:.2} max_ms={:.2} open_secs={open_secs:.1} rss_before={before} rss_open={rss_open} \
             rss_peak={} rss_after={after}",
            errors.len(),
            queries as f64 / secs,
            quantile_ms(&micros, 0.5),
            quantile_ms(&micros, 0.99),
            quantile_ms(&micros, 0.999),
            quantile_ms(&micros, 1.0),
            peak.load(Ordering::Relaxed),
        );
        let mut distinct: Vec<&String> = errors.iter().collect();
        distinct.sort();
        distinct.dedup();
        for e in distinct.iter().take(5) {
            println!("  error: {e}");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{} queries or logins failed", errors.len()))
        }
    })
}
