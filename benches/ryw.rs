//! Write-then-read client for `benches/e2e/run.sh`: workers each loop "UPDATE my row to a new value, then
//! SELECT it back" for a fixed time, the pattern of a web request that saves and then reloads. Reports the
//! pairs per second, the p95 latency of a pair, the reads that came back stale (an older value), and how many
//! reads a replica answered (`@@server_id` other than the master's 1).
//!
//! Environment:
//! - `RYW_ADDR` (required, `host:port`), `RYW_USER` (app), `RYW_PASSWORD` (apppw), `RYW_DB` (app)
//! - `RYW_SECS` (10), `RYW_WORKERS` (8), `RYW_TABLE` (`ryw`, created on the first run with one row per worker)
//!
//! Prints one line: `ryw addr=… workers=… secs=… pairs=… pairs_per_s=… p95_ms=… stale=… replica_reads=…`.
//! Run: `RYW_ADDR=127.0.0.1:23317 cargo bench --bench ryw`.

use std::time::Instant;

use mysql_async::prelude::Queryable;

#[path = "common/client.rs"]
mod client;

/// What one worker saw.
#[derive(Default)]
struct Tally {
    pairs: u64,
    stale: u64,
    replica_reads: u64,
    latencies_us: Vec<u64>,
}

async fn worker(opts: mysql_async::Opts, table: String, id: usize, deadline: Instant) -> anyhow::Result<Tally> {
    let mut conn = mysql_async::Conn::new(opts).await?;
    let mut value: i64 =
        conn.query_first(format!("SELECT /* rwsplit:master */ v FROM {table} WHERE id = {id}")).await?.unwrap_or(0);
    let mut t = Tally::default();
    while Instant::now() < deadline {
        let start = Instant::now();
        value += 1;
        conn.query_drop(format!("UPDATE {table} SET v = {value} WHERE id = {id}")).await?;
        let (v, server): (i64, u32) = conn
            .query_first(format!("SELECT v, @@server_id FROM {table} WHERE id = {id}"))
            .await?
            .ok_or_else(|| anyhow::anyhow!("row {id} is missing"))?;
        t.latencies_us.push(start.elapsed().as_micros() as u64);
        t.pairs += 1;
        t.stale += u64::from(v != value);
        t.replica_reads += u64::from(server != 1);
    }
    Ok(t)
}

fn main() -> anyhow::Result<()> {
    let Ok(addr) = std::env::var("RYW_ADDR") else {
        println!("ryw: skipped (set RYW_ADDR=host:port; benches/e2e/run.sh drives this client)");
        return Ok(());
    };
    let user = client::env_or("RYW_USER", "app");
    let password = client::env_or("RYW_PASSWORD", "apppw");
    let db = client::env_or("RYW_DB", "app");
    let table = client::env_or("RYW_TABLE", "ryw");
    let secs: f64 = client::env_parse("RYW_SECS", 10.0)?;
    let workers: usize = client::env_parse("RYW_WORKERS", 8)?;
    let opts = client::opts(&addr, &user, &password, Some(db))?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (tally, elapsed) = runtime.block_on(async {
        let mut setup = mysql_async::Conn::new(opts.clone()).await?;
        setup.query_drop(format!("CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, v BIGINT NOT NULL)")).await?;
        let rows: Vec<String> = (0..workers).map(|i| format!("({i}, 0)")).collect();
        setup.query_drop(format!("INSERT IGNORE INTO {table} VALUES {}", rows.join(","))).await?;
        drop(setup);
        let start = Instant::now();
        let deadline = start + client::secs(secs);
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..workers {
            tasks.spawn(worker(opts.clone(), table.clone(), id, deadline));
        }
        let mut all = Tally::default();
        while let Some(r) = tasks.join_next().await {
            let t = r??;
            all.pairs += t.pairs;
            all.stale += t.stale;
            all.replica_reads += t.replica_reads;
            all.latencies_us.extend(t.latencies_us);
        }
        anyhow::Ok((all, start.elapsed().as_secs_f64()))
    })?;
    let mut lat = tally.latencies_us;
    lat.sort_unstable();
    let p95 = lat.get(lat.len().saturating_sub(1) * 95 / 100).copied().unwrap_or(0) as f64 / 1000.0;
    println!(
        "ryw addr={addr} workers={workers} secs={elapsed:.2} pairs={} pairs_per_s={:.1} p95_ms={p95:.3} stale={} \
         replica_reads={}",
        tally.pairs,
        tally.pairs as f64 / elapsed,
        tally.stale,
        tally.replica_reads
    );
    anyhow::ensure!(tally.pairs > 0, "no pair completed");
    Ok(())
}
