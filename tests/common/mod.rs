#![allow(dead_code)]
//! The end-to-end harness every integration test uses: a replicated MariaDB topology (one master, two
//! read-only replicas, GTID replication) on loopback, started by `deploy/sandbox.sh` (the one implementation
//! of the topology), plus helpers to talk to its servers directly.
//!
//! - [`Topology::shared`]: one topology per test binary, started on first use, torn down by a watchdog
//!   process when the test process exits (statics are never dropped).
//! - [`Topology::private`]: a topology of its own for destructive tests (kill, pause), torn down on drop.
//! - [`mariadb_cli`] / [`mariadb_dump`]: the real command-line clients, for tests of what users run.
//! - [`unique_name`]: per-test database/table names, so tests sharing a topology never collide.
//!
//! Accounts (see `deploy/sandbox.sh`): root/rootpw (all privileges, over TCP), app/apppw (an ordinary account
//! that `read_only` stops), monitor/monitorpw (replication monitoring), repl/replpw (replication).

// Starting the proxy in-process (owned by the proxy's tests, not by this harness).
pub mod packets;
pub mod proxy;
pub mod raw;

use std::collections::HashSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rand::Rng;

pub const ROOT_USER: &str = "root";
pub const ROOT_PASSWORD: &str = "rootpw";
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "apppw";
pub const MONITOR_USER: &str = "monitor";
pub const MONITOR_PASSWORD: &str = "monitorpw";
/// A database every topology has, writable by `app`.
pub const APP_DB: &str = "app";

/// Instance names used by `deploy/sandbox.sh`, in port order (base, base+1, base+2).
const INSTANCES: [&str; 3] = ["master", "replica1", "replica2"];
/// `deploy/sandbox.sh` exits with this code when one of the requested ports is taken.
const EXIT_PORT_TAKEN: i32 = 3;
/// How many port ranges to try before giving up on starting a topology.
const PORT_ATTEMPTS: usize = 4;
/// Bound on [`Topology::wait_replicated`].
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Base ports are drawn from here: below Linux's ephemeral range (32768+), so outgoing connections of
/// other processes do not take them between our bind test and the server's bind.
const PORT_RANGE: std::ops::Range<u16> = 20000..32000;

/// A running sandbox topology.
pub struct Topology {
    /// The master (server_id 1).
    pub master: SocketAddr,
    /// The replicas, replica1 (server_id 2) then replica2 (server_id 3).
    pub replicas: Vec<SocketAddr>,
    /// The sandbox directory: per-instance datadir, option file, error log.
    pub dir: PathBuf,
    /// Whether dropping this value tears the topology down (private topologies only).
    owned: bool,
}

impl Topology {
    /// One topology per test binary, started on first use (thread-safe), on free ports chosen at runtime, in
    /// a temp dir. A detached watchdog tears it down when the test process exits.
    pub fn shared() -> &'static Topology {
        static SHARED: OnceLock<Result<Topology, String>> = OnceLock::new();
        match SHARED.get_or_init(|| Topology::start(false, "gtid")) {
            Ok(topology) => topology,
            Err(e) => panic!("the shared MariaDB topology could not be started: {e}"),
        }
    }

    /// A topology of its own, for destructive tests (kill/pause a server); torn down on drop.
    pub fn private() -> Topology {
        Topology::private_in("gtid")
    }

    /// A private topology replicating in `mode` (`deploy/sandbox.sh up --replication`: gtid, pos, semisync).
    pub fn private_in(mode: &str) -> Topology {
        Topology::start(true, mode)
            .unwrap_or_else(|e| panic!("a private {mode} MariaDB topology could not be started: {e}"))
    }

    /// Every server: the master, then the replicas.
    pub fn servers(&self) -> Vec<SocketAddr> {
        std::iter::once(self.master).chain(self.replicas.iter().copied()).collect()
    }

    /// The server_id of a server of this topology: 1 for the master, 2 and 3 for the replicas.
    pub fn server_id_of(&self, addr: SocketAddr) -> u32 {
        self.index_of(addr) as u32 + 1
    }

    /// The sandbox's name for a server: `master`, `replica1` or `replica2`.
    pub fn name_of(&self, addr: SocketAddr) -> &'static str {
        INSTANCES[self.index_of(addr)]
    }

    /// Freezes a server with SIGSTOP (a hung server: connections are accepted by the kernel, never answered).
    pub fn pause(&self, addr: SocketAddr) {
        self.instance_command("pause", addr);
    }

    /// Undoes [`Topology::pause`] with SIGCONT.
    pub fn resume(&self, addr: SocketAddr) {
        self.instance_command("resume", addr);
    }

    /// SIGKILLs a server and waits until its process is gone.
    pub fn kill(&self, addr: SocketAddr) {
        self.instance_command("kill", addr);
    }

    /// Starts a killed server again and waits until it answers. A replica resumes replicating by itself.
    pub fn restart(&self, addr: SocketAddr) {
        self.instance_command("start", addr);
    }

    /// Waits (at most 30 s, then panics with the topology's status) until every replica has applied
    /// everything in the master's binlog at the time of the call.
    pub async fn wait_replicated(&self) {
        let started = Instant::now();
        let outcome = tokio::time::timeout(REPLICATION_TIMEOUT, self.try_wait_replicated()).await;
        let problem = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => format!("timed out after {:?}", started.elapsed()),
        };
        panic!("replicas did not catch up with the master: {problem}\nsandbox status:\n{}", self.status());
    }

    async fn try_wait_replicated(&self) -> Result<(), String> {
        let target: String =
            query_first(self.direct_opts(self.master, ROOT_USER, ROOT_PASSWORD), "SELECT @@gtid_binlog_pos")
                .await
                .map_err(|e| format!("reading the master's gtid_binlog_pos: {e}"))?;
        let wait_secs = REPLICATION_TIMEOUT.as_secs();
        for &replica in &self.replicas {
            let name = self.name_of(replica);
            let opts = self.direct_opts(replica, ROOT_USER, ROOT_PASSWORD);
            let mut conn =
                mysql_async::Conn::new(opts).await.map_err(|e| format!("connecting to {name} ({replica}): {e}"))?;
            let reached: Option<i64> = conn
                .exec_first("SELECT MASTER_GTID_WAIT(?, ?)", (target.as_str(), wait_secs))
                .await
                .map_err(|e| format!("MASTER_GTID_WAIT on {name} ({replica}): {e}"))?;
            let _ = conn.disconnect().await;
            if reached != Some(0) {
                return Err(format!("{name} ({replica}) did not reach gtid {target}: {reached:?}"));
            }
        }
        Ok(())
    }

    /// Options for a direct TCP connection to one server (never switched to the unix socket).
    /// A direct root connection to the server at `addr`.
    pub async fn root(&self, addr: SocketAddr) -> mysql_async::Conn {
        let opts = self.direct_opts(addr, ROOT_USER, ROOT_PASSWORD);
        mysql_async::Conn::new(opts).await.unwrap_or_else(|e| panic!("direct root connection to {addr}: {e}"))
    }

    pub fn direct_opts(&self, addr: SocketAddr, user: &str, password: &str) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(addr.ip().to_string())
            .tcp_port(addr.port())
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .into()
    }

    /// `deploy/sandbox.sh status` output (one line per instance), for failure messages.
    pub fn status(&self) -> String {
        let out = sandbox(&["status", "--dir", &self.dir.to_string_lossy()]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// The tail of a server's error log, for failure messages.
    pub fn error_log_tail(&self, addr: SocketAddr) -> String {
        let path = self.dir.join(self.name_of(addr)).join("error.log");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(25)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", path.display()),
        }
    }

    fn index_of(&self, addr: SocketAddr) -> usize {
        self.servers()
            .iter()
            .position(|&a| a == addr)
            .unwrap_or_else(|| panic!("{addr} is not a server of the topology in {}", self.dir.display()))
    }

    fn instance_command(&self, command: &str, addr: SocketAddr) {
        let name = self.name_of(addr);
        let out = sandbox(&[command, name, "--dir", &self.dir.to_string_lossy()]);
        if !out.status.success() {
            panic!(
                "deploy/sandbox.sh {command} {name} ({addr}) failed ({}):\n{}\nerror log of {name}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.error_log_tail(addr)
            );
        }
    }

    /// Starts a topology in a fresh temp dir, retrying on other ports if one is taken meanwhile.
    fn start(owned: bool, mode: &str) -> Result<Topology, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rwsplit-sandbox-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let dir_arg = dir.to_string_lossy().into_owned();
        // First, so the topology is torn down even if this process dies while it starts.
        spawn_watchdog(&dir_arg)?;
        let started = Instant::now();
        let mut failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let base = free_base_port().to_string();
            let out = sandbox(&["up", "--dir", &dir_arg, "--port", &base, "--replication", mode]);
            if out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let mut topology = parse_sandbox_line(&stdout)?;
                topology.owned = owned;
                eprintln!(
                    "harness: MariaDB topology up in {:.1?}: master {} replicas {:?} dir {}",
                    started.elapsed(),
                    topology.master,
                    topology.replicas,
                    topology.dir.display()
                );
                return Ok(topology);
            }
            failure = format!(
                "deploy/sandbox.sh up --dir {dir_arg} --port {base} --replication {mode} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.code() != Some(EXIT_PORT_TAKEN) {
                break;
            }
        }
        // Stop whatever started but keep the logs for the developer; the watchdog wipes them at exit.
        let _ = sandbox(&["down", "--dir", &dir_arg]);
        Err(failure)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let out = sandbox(&["down", "--wipe", "--dir", &self.dir.to_string_lossy()]);
        if !out.status.success() {
            eprintln!(
                "harness: tearing down {} failed ({}): {}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Runs the `mariadb` command-line client over TCP (`--no-defaults` first, so /etc/mysql/my.cnf is ignored)
/// with extra `args` (e.g. `["-e", "SELECT 1"]`) and optional SQL on stdin.
pub fn mariadb_cli(addr: SocketAddr, user: &str, password: &str, args: &[&str], stdin: Option<&str>) -> Output {
    run_client("mariadb", addr, user, password, args, stdin)
}

/// Runs `mariadb-dump` over TCP with extra `args` (e.g. `["app"]`).
pub fn mariadb_dump(addr: SocketAddr, user: &str, password: &str, args: &[&str]) -> Output {
    run_client("mariadb-dump", addr, user, password, args, None)
}

/// A name unique across tests, test binaries and runs (lowercase, a valid unquoted identifier).
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{}_{}_{}_{:06x}",
        prefix.to_ascii_lowercase(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        rand::thread_rng().gen::<u32>() & 0xff_ffff
    );
    assert!(name.len() <= 64, "unique_name({prefix:?}) is too long for an identifier: {name}");
    name
}

/// The repository root (where `deploy/sandbox.sh` lives).
pub fn repo_root() -> &'static Path {
    // The harness is also compiled into crates/proxy's tests (for the real binary), so look upwards.
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start.ancestors().find(|d| d.join("deploy/sandbox.sh").is_file()).unwrap_or(start)
}

/// Runs `deploy/sandbox.sh ARGS` and returns its output.
fn sandbox(args: &[&str]) -> Output {
    let script = repo_root().join("deploy/sandbox.sh");
    Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()))
}

/// A detached process (own process group, so a Ctrl-C of the tests does not reach it) that waits for this
/// process to exit and then runs `deploy/sandbox.sh down --wipe --dir DIR`.
fn spawn_watchdog(dir: &str) -> Result<(), String> {
    let script = repo_root().join("deploy/sandbox.sh");
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec bash "$2" down --wipe --dir "$3""#)
        .arg("rwsplit-sandbox-watchdog")
        .arg(std::process::id().to_string())
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot spawn the sandbox watchdog: {e}"))
}

/// A base port such that base, base+1 and base+2 are free on 127.0.0.1 right now, and not handed out before
/// by this process (two topologies starting concurrently must not race for the same ports).
fn free_base_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let base = rng.gen_range(PORT_RANGE);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        let handed_out = handed_out.get_or_insert_with(HashSet::new);
        if (base - 2..=base + 2).any(|p| handed_out.contains(&p)) {
            continue;
        }
        let listeners: Vec<_> =
            (base..base + 3).map_while(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).ok()).collect();
        if listeners.len() == 3 {
            handed_out.insert(base);
            return base;
        }
    }
    panic!("found no three consecutive free loopback ports in {PORT_RANGE:?}");
}

/// Parses `SANDBOX master=IP:PORT replicas=IP:PORT,IP:PORT dir=/abs/dir`, the last line of `sandbox.sh up`.
fn parse_sandbox_line(stdout: &str) -> Result<Topology, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("SANDBOX "))
        .ok_or_else(|| format!("no SANDBOX line in the output of sandbox.sh up:\n{stdout}"))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
            .ok_or_else(|| format!("no {key}= in {line:?}"))
    };
    let addr = |s: &str| s.parse::<SocketAddr>().map_err(|e| format!("bad address {s:?} in {line:?}: {e}"));
    let master = addr(field("master")?)?;
    let replicas = field("replicas")?.split(',').map(addr).collect::<Result<Vec<_>, _>>()?;
    if replicas.len() != 2 {
        return Err(format!("expected two replicas in {line:?}"));
    }
    Ok(Topology { master, replicas, dir: PathBuf::from(field("dir")?), owned: false })
}

async fn query_first(opts: mysql_async::Opts, sql: &str) -> mysql_async::Result<String> {
    let mut conn = mysql_async::Conn::new(opts).await?;
    let value: Option<String> = conn.query_first(sql).await?;
    conn.disconnect().await?;
    Ok(value.unwrap_or_default())
}

fn run_client(tool: &str, addr: SocketAddr, user: &str, password: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(tool);
    command
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    // Feed stdin from a thread so a large script and a large result cannot deadlock on full pipes.
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_owned();
        std::thread::spawn(move || pipe.write_all(input.as_bytes()))
    });
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {tool}: {e}"));
    if let Some(writer) = writer {
        // A client that exits early (e.g. on a login error) closes stdin: that is its result, not ours.
        let _ = writer.join();
    }
    output
}
