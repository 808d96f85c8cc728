//! Idle-connection client for `benches/e2e/run.sh`: measures a server process's resident memory (VmRSS from
//! `/proc/PID/status`) before and after opening N client connections that completed login and then sit idle.
//! Through rwsplit, a session that has not run a query has no backend connection, so the difference is the
//! proxy's own per-session cost.
//!
//! Environment:
//! - `IDLE_ADDR` (required, `host:port`), `IDLE_PID` (required, the process whose RSS is measured)
//! - `IDLE_USER` (app), `IDLE_PASSWORD` (apppw), `IDLE_CONNS` (10000), `IDLE_CONCURRENCY` (32),
//!   `IDLE_SETTLE_MS` (1000: wait before each RSS sample), `IDLE_CYCLES` (2: open/close cycles; more show
//!   whether memory left after closing grows cycle after cycle, i.e. leaks)
//!
//! Opens and closes the N connections `IDLE_CYCLES` times and prints one line (sizes in bytes):
//! `idle conns=… rss_before=… open_secs=… rss_open=… rss_closed=… open_secs2=… rss_open2=… rss_closed2=… …
//! bytes_per_conn=…`, where `bytes_per_conn = (rss_open - rss_before) / conns` (first cycle).
//! The process running this needs `ulimit -n` above N.

use std::sync::Arc;

use mysql_async::prelude::Queryable;

#[path = "common/client.rs"]
mod client;
#[path = "common/rss.rs"]
mod rss;
use rss::rss;

/// Opens `n` connections, at most `concurrency` handshakes at a time.
async fn open_all(opts: &mysql_async::Opts, n: usize, concurrency: usize) -> anyhow::Result<Vec<mysql_async::Conn>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (opts, next) = (opts.clone(), next.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                mine.push(mysql_async::Conn::new(opts.clone()).await?);
            }
            anyhow::Ok(mine)
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        conns.extend(r??);
    }
    Ok(conns)
}

/// Closes every connection with COM_QUIT, `concurrency` at a time.
async fn close_all(conns: Vec<mysql_async::Conn>, concurrency: usize) -> anyhow::Result<()> {
    let workers = concurrency.max(1);
    let mut chunks: Vec<Vec<mysql_async::Conn>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, c) in conns.into_iter().enumerate() {
        chunks[i % workers].push(c);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        tasks.spawn(async move {
            for c in chunk {
                c.disconnect().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let (Ok(addr), Ok(pid)) = (std::env::var("IDLE_ADDR"), std::env::var("IDLE_PID")) else {
        println!("idle: skipped (set IDLE_ADDR=host:port and IDLE_PID; benches/e2e/run.sh drives this client)");
        return Ok(());
    };
    let pid: u32 = pid.parse().map_err(|_| anyhow::anyhow!("IDLE_PID={pid:?} is not a pid"))?;
    let user = client::env_or("IDLE_USER", "app");
    let password = client::env_or("IDLE_PASSWORD", "apppw");
    let n: usize = client::env_parse("IDLE_CONNS", 10_000)?;
    let concurrency: usize = client::env_parse("IDLE_CONCURRENCY", 32)?;
    let cycles: usize = client::env_parse("IDLE_CYCLES", 2)?;
    let settle = client::secs(client::env_parse::<f64>("IDLE_SETTLE_MS", 1000.0)? / 1000.0);
    let opts = client::opts(&addr, &user, &password, None)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        tokio::time::sleep(settle).await;
        let before = rss(pid)?;
        let mut line = format!("idle conns={n} rss_before={before}");
        let mut first_open = 0;
        // Several open/close cycles: if later peaks are no higher than the first, memory left after closing is
        // kept by the allocator for reuse, not leaked.
        for cycle in 1..=cycles {
            let started = std::time::Instant::now();
            let mut conns = open_all(&opts, n, concurrency).await?;
            let open_secs = started.elapsed().as_secs_f64();
            tokio::time::sleep(settle).await;
            let open = rss(pid)?;
            // The sessions are still alive (COM_PING on a session without a backend is answered by rwsplit).
            for c in conns.iter_mut().step_by((n / 10).max(1)) {
                c.ping().await?;
            }
            close_all(conns, concurrency).await?;
            tokio::time::sleep(settle).await;
            let closed = rss(pid)?;
            let suffix = if cycle == 1 { String::new() } else { cycle.to_string() };
            line += &format!(" open_secs{suffix}={open_secs:.1} rss_open{suffix}={open} rss_closed{suffix}={closed}");
            if cycle == 1 {
                first_open = open;
            }
        }
        let per = (first_open as f64 - before as f64) / n as f64;
        println!("{line} bytes_per_conn={per:.0}");
        anyhow::Ok(())
    })
}
