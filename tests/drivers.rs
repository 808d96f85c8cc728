//! Real third-party drivers through rwsplit: Node mysql2 (`tests/drivers/mysql2_check.js`) and MySQL
//! Connector/Python, pure-Python implementation (`tests/drivers/connector_check.py`). Each script runs its
//! checks (handshake connection id, KILL QUERY, change user, compression, a 33 MiB blob, LOCAL INFILE, OUT
//! parameters, prepared SET replayed on a replica) through the proxy and directly against the master, and
//! prints one `ok NAME` / `FAIL NAME: why` line per check.
//!
//! The drivers are installed by `tests/drivers/install.sh` (run by tests/run.sh): node_modules in
//! tests/drivers, a venv in target/drivers-venv. Without them these tests fail, never pass silently.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{repo_root, unique_name, Topology, APP_PASSWORD, APP_USER};
use mysql_async::prelude::Queryable;

/// Longer than the scripts' own watchdog (600 s), so a script normally reports its own hang.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(660);

const INSTALL_HINT: &str = "run tests/drivers/install.sh (tests/run.sh does) to install the pinned drivers";

fn drivers_dir() -> PathBuf {
    repo_root().join("tests/drivers")
}

fn require_installed(path: &Path, what: &str) {
    assert!(path.exists(), "{what} is not installed ({} is missing): {INSTALL_HINT}", path.display());
}

/// A fresh database (created directly on the master by `app`, the account the scripts use), replicated.
async fn database(topo: &Topology) -> String {
    let db = unique_name("drv");
    let mut conn = mysql_async::Conn::new(topo.direct_opts(topo.master, APP_USER, APP_PASSWORD))
        .await
        .expect("connect to the master as app");
    conn.query_drop(format!("CREATE DATABASE {db}")).await.expect("create the test database");
    conn.disconnect().await.expect("disconnect");
    topo.wait_replicated().await;
    db
}

/// Runs `program script` with the checks' environment, bounded by [`SCRIPT_DEADLINE`]; panics with the full
/// output unless it exits 0.
async fn run_checks(label: &str, program: PathBuf, script: PathBuf) {
    // One driver at a time: the scripts move tens of MiB each, and on a loaded 2-core machine concurrent
    // runs only add noise (Connector/Python's compressed reader trips over MariaDB's buffer-sized chunks
    // more often then, on the direct comparison run; see connector_check.py).
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = database(topo).await;
    let mut command = Command::new(&program);
    command
        .arg(&script)
        .current_dir(drivers_dir())
        .env("PROXY_HOST", proxy.addr.ip().to_string())
        .env("PROXY_PORT", proxy.addr.port().to_string())
        .env("MASTER_HOST", topo.master.ip().to_string())
        .env("MASTER_PORT", topo.master.port().to_string())
        .env("DB", &db)
        .env_remove("DIRECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{} {}", program.display(), script.display());
    let outcome = tokio::task::spawn_blocking(move || run_bounded(command))
        .await
        .expect("the thread running the script panicked");
    let (status, stdout, stderr) = match outcome {
        Ok(done) => done,
        Err(e) => panic!("{label}: cannot run {what}: {e}"),
    };
    let report = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    match status {
        Some(status) if status.success() => eprintln!("{label}: every check passed\n{stdout}"),
        Some(status) => panic!("{label}: {what} failed ({status}) through rwsplit at {}:\n{report}", proxy.addr),
        None => panic!("{label}: {what} did not finish within {SCRIPT_DEADLINE:?} and was killed:\n{report}"),
    }
    drop(proxy);
}

/// Spawns `command`, collects stdout and stderr, kills it at the deadline (status `None` then).
fn run_bounded(mut command: Command) -> std::io::Result<(Option<std::process::ExitStatus>, String, String)> {
    let mut child = command.spawn()?;
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = collect(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn node_mysql2_through_rwsplit() {
    let dir = drivers_dir();
    require_installed(&dir.join("node_modules/mysql2/package.json"), "Node mysql2");
    let node = Command::new("node").arg("--version").output();
    assert!(
        matches!(&node, Ok(out) if out.status.success()),
        "cannot run `node --version` ({node:?}): Node.js 18+ must be on PATH; then {INSTALL_HINT}"
    );
    run_checks("mysql2", PathBuf::from("node"), dir.join("mysql2_check.js")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_python_through_rwsplit() {
    let python = repo_root().join("target/drivers-venv/bin/python");
    require_installed(&python, "MySQL Connector/Python (the venv target/drivers-venv)");
    run_checks("Connector/Python", python, drivers_dir().join("connector_check.py")).await;
}
