//! Connection churn client for `benches/e2e/run.sh`: a few concurrent workers each loop
//! connect → `SELECT 1` → disconnect (COM_QUIT) for a fixed time, and report connections per second.
//!
//! Environment:
//! - `CHURN_ADDR` (required, `host:port`), `CHURN_USER` (app), `CHURN_PASSWORD` (apppw), `CHURN_DB` (none)
//! - `CHURN_SECS` (10), `CHURN_WORKERS` (4)
//!
//! Prints one line: `churn addr=… workers=… secs=… connections=… errors=… conn_per_s=…`.
//! Run: `CHURN_ADDR=127.0.0.1:23406 cargo bench --bench churn`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::Queryable;

#[path = "common/client.rs"]
mod client;

/// One connect / SELECT 1 / disconnect cycle.
async fn cycle(opts: &mysql_async::Opts) -> mysql_async::Result<()> {
    let mut conn = mysql_async::Conn::new(opts.clone()).await?;
    let one: Option<u8> = conn.query_first("SELECT 1").await?;
    if one != Some(1) {
        return Err(mysql_async::Error::Other("SELECT 1 did not return 1".into()));
    }
    conn.disconnect().await
}

fn main() -> anyhow::Result<()> {
    let Ok(addr) = std::env::var("CHURN_ADDR") else {
        println!("churn: skipped (set CHURN_ADDR=host:port; benches/e2e/run.sh drives this client)");
        return Ok(());
    };
    let user = client::env_or("CHURN_USER", "app");
    let password = client::env_or("CHURN_PASSWORD", "apppw");
    let db = std::env::var("CHURN_DB").ok();
    let secs: f64 = client::env_parse("CHURN_SECS", 10.0)?;
    let workers: usize = client::env_parse("CHURN_WORKERS", 4)?;
    let opts = client::opts(&addr, &user, &password, db)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (done, errors, elapsed) = runtime.block_on(async {
        // One cycle first, so a wrong address or password fails loudly instead of counting errors.
        cycle(&opts).await.map_err(|e| anyhow::anyhow!("first connection to {addr} failed: {e}"))?;
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + client::secs(secs);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (opts, done, errors) = (opts.clone(), done.clone(), errors.clone());
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    match cycle(&opts).await {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("churn: first error: {e}");
                            }
                            0
                        }
                    };
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::Ok((done.load(Ordering::Relaxed), errors.load(Ordering::Relaxed), elapsed))
    })?;
    println!(
        "churn addr={addr} workers={workers} secs={elapsed:.2} connections={done} errors={errors} conn_per_s={:.1}",
        done as f64 / elapsed
    );
    anyhow::ensure!(done > 0, "no connection completed");
    Ok(())
}
