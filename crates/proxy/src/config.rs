//! `proxy.yaml`: parsed into a raw, serde-shaped file, then validated as a whole into a [`Config`] snapshot.
//!
//! Validation collects every problem (each with its field path) instead of stopping at the first, so
//! `rwsplit --check` and a rejected reload tell the operator everything at once. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The protocol's limit on a packet, and the largest `max_allowed_packet` accepted (1G, as in MySQL).
pub const MAX_PACKET_LIMIT: usize = 1 << 30;

/// The largest replica weight (the weighted schedule holds one slot per unit of weight).
pub const MAX_WEIGHT: u32 = 1000;

/// A password: `Debug`/`Display` print `***` so it can never reach a log line by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The password bytes, for computing scrambles only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The validated configuration: one immutable snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// File it came from, for messages.
    pub source: Option<PathBuf>,
    /// Client listener address.
    pub listen: SocketAddr,
    /// Accounts clients log in with; the same credentials are used on the backends.
    pub users: Vec<User>,
    /// The master: writes, DDL, transactions, anything not proven a read.
    pub master: Backend,
    /// Replicas serving plain reads.
    pub replicas: Vec<Replica>,
    /// Replication health checking (issue: health checker).
    pub health: Option<Health>,
    /// Prometheus endpoint.
    pub metrics: Option<Metrics>,
    /// TLS for client connections (`tls:`): None, plain only.
    pub tls: Option<Tls>,
    /// Admin interface.
    pub admin: Option<Admin>,
    /// Backend connection pool settings.
    pub pool: Pool,
    /// Time allowed to connect and log in to a backend.
    pub connect_timeout: Duration,
    /// The longest one of rwsplit's own commands on a backend may take (replaying session state, a lazy
    /// prepare, KILL, resetting a pooled connection, ending a READ ONLY transaction); the connection is
    /// then treated as failed.
    pub backend_timeout: Duration,
    /// Largest client packet accepted (a larger one gets error 1153 and the session is closed). `None`
    /// (the default): the master's own `max_allowed_packet`, as read on each new master connection, so a
    /// client meets the limit it would meet connected to the master directly.
    pub max_allowed_packet: Option<usize>,
    /// How long a client command may run on a backend before rwsplit sends `KILL QUERY` for it (the client
    /// then gets the server's own "interrupted" error); None (`off`, the default): no limit.
    pub query_timeout: Option<Duration>,
    /// How long shutdown waits for sessions to finish.
    pub shutdown_grace: Duration,
    /// Open client connections at most; more get error 1040 before the handshake.
    pub max_client_connections: usize,
    /// Open client connections from one peer address at most (0: no such cap).
    pub max_client_connections_per_peer: usize,
    /// Event loops running sessions (`workers: N | auto`): each is a single-threaded runtime on a thread of
    /// its own with its own listener (`SO_REUSEPORT`) and pool; a session never moves between loops. 1 (the
    /// default) is one loop; `auto` is one per core this process may use. Needs a restart.
    pub workers: usize,
    /// What a read on a replica must see (per user overridable); see [`Consistency`].
    pub consistency: Consistency,
    /// How long a read waits for a replica to apply what it must see before it runs on the master instead.
    pub consistency_timeout: Duration,
}

/// What a read on a replica must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Every write its own session made before it (read-your-writes; the default).
    Session,
    /// Every write acknowledged by this rwsplit process before the read arrived, from any session.
    Global,
    /// Whatever the replica has (no waiting).
    Eventual,
}

impl Consistency {
    /// The config word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Session => "session",
            Consistency::Global => "global",
            Consistency::Eventual => "eventual",
        }
    }
}

/// A client account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Account name.
    pub name: String,
    /// Its password.
    pub password: Secret,
    /// Its own consistency, instead of the top-level one.
    pub consistency: Option<Consistency>,
    /// Client networks it may log in from (empty: any), like the host part of a MySQL account, which
    /// the backends cannot check themselves (they see rwsplit's address).
    pub allowed_networks: Vec<Network>,
}

impl User {
    /// Whether a client at `ip` may log in as this account.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.allowed_networks.is_empty() || self.allowed_networks.iter().any(|n| n.contains(ip))
    }
}

/// An IP network, `address/prefix` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network's address.
    pub addr: std::net::IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Network {
    /// Parses `10.0.0.0/8`, `fd00::/8`, `192.0.2.7`.
    pub fn parse(s: &str) -> Option<Network> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<std::net::IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse().ok()?, None),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Network { addr, prefix })
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let masked = |bytes: &[u8], prefix: u8| -> Vec<u8> {
            bytes
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let keep = (i32::from(prefix) - 8 * i as i32).clamp(0, 8) as u32;
                    if keep == 0 {
                        0
                    } else {
                        b & (0xffu8 << (8 - keep))
                    }
                })
                .collect()
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked(&n.octets(), self.prefix) == masked(&a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(&n.octets(), self.prefix) == masked(&a.octets(), self.prefix),
            _ => false,
        }
    }
}

/// Reads a PEM file of at most 1 MiB (a path like /dev/zero must not hang or exhaust the loader).
fn read_small(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    const MAX: u64 = 1024 * 1024;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX {
        return Err(std::io::Error::other("larger than 1 MiB: not a PEM file"));
    }
    Ok(bytes)
}

/// TLS on the client listener.
#[derive(Clone)]
pub struct Tls {
    /// The certificate chain's PEM file.
    pub cert: String,
    /// The private key's PEM file.
    pub key: String,
    /// With it, clients must present a certificate signed by one of its CAs.
    pub client_ca: Option<String>,
    /// Clients that do not use TLS are refused.
    pub require: bool,
    /// The files' contents as loaded (a renewed certificate is a change on reload).
    pem: Vec<u8>,
    /// The rustls acceptor built from them.
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        (&self.cert, &self.key, &self.client_ca, self.require, &self.pem)
            == (&other.cert, &other.key, &other.client_ca, other.require, &other.pem)
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key's contents.
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("client_ca", &self.client_ca)
            .field("require", &self.require)
            .finish()
    }
}

/// TLS from the proxy to one backend (`master.tls`, `replicas[].tls`): the server's certificate is verified
/// against `ca` and must name `server_name`; a backend without TLS support is refused, never used in plain.
#[derive(Clone)]
pub struct BackendTls {
    /// The PEM file of the CAs the server's certificate must chain to.
    pub ca: String,
    /// The name the certificate must carry (a DNS name or an IP address): by default the address's host.
    pub server_name: String,
    /// The PEM file of the client certificate the proxy presents, if any.
    pub cert: Option<String>,
    /// Its private key's PEM file.
    pub key: Option<String>,
    /// The files' contents as loaded (a renewed file is a change on reload).
    pem: Vec<u8>,
    /// The rustls connector built from them.
    pub connector: tokio_rustls::TlsConnector,
    /// `server_name`, parsed.
    pub name: rustls_pki_types::ServerName<'static>,
}

impl PartialEq for BackendTls {
    fn eq(&self, other: &BackendTls) -> bool {
        (&self.ca, &self.server_name, &self.cert, &self.key, &self.pem)
            == (&other.ca, &other.server_name, &other.cert, &other.key, &other.pem)
    }
}

impl Eq for BackendTls {}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key's contents.
        f.debug_struct("BackendTls")
            .field("ca", &self.ca)
            .field("server_name", &self.server_name)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// A backend address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `host:port`.
    pub address: String,
    /// Its pinned RSA public key (PEM), for caching_sha2_password full authentication without TLS.
    pub public_key: Option<std::sync::Arc<Vec<u8>>>,
    /// TLS to it (`master.tls`); None, plain TCP.
    pub tls: Option<BackendTls>,
}

/// A replica and its share of reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `host:port`.
    pub address: String,
    /// Relative share of reads (≥ 1).
    pub weight: u32,
    /// Its pinned RSA public key (PEM), for caching_sha2_password full authentication without TLS.
    pub public_key: Option<std::sync::Arc<Vec<u8>>>,
    /// TLS to it (`replicas[].tls`); None, plain TCP.
    pub tls: Option<BackendTls>,
}

/// Health-checker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Monitoring account.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// Probe interval.
    pub interval: Duration,
    /// A probe not answered within this takes the server out at once.
    pub timeout: Duration,
    /// Largest replication lag at which a replica still serves reads.
    pub max_replica_lag: Duration,
    /// Consecutive good probes a replica needs to come back after being taken out.
    pub rise: u32,
    /// Consecutive failed probes after which a backend counts as unreachable: reads in flight on it are
    /// abandoned and writes fail at once (the first failed probe only stops new reads).
    pub fall: u32,
    /// Where lag is measured.
    pub lag_source: LagSource,
    /// What reads do when no replica qualifies.
    pub when_no_replica: WhenNoReplica,
    /// Route writes to whichever configured server is writable (`read_only=0`).
    pub detect_master: bool,
    /// Which replication positions read-your-writes follows.
    pub positions: Positions,
}

/// Which replication positions read-your-writes follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// GTIDs when the master has them (MariaDB always; MySQL with `gtid_mode=ON`), else binary log
    /// coordinates.
    Auto,
    /// Binary log coordinates (file and offset) even when the master has GTIDs.
    Binlog,
}

/// How replication lag is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LagSource {
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`: whole seconds, no write access needed.
    Replication,
    /// A timestamp row the checker writes on the master every interval and reads on each replica:
    /// millisecond resolution; needs CREATE, INSERT, UPDATE and SELECT on the table's schema.
    Heartbeat {
        /// `schema.table`.
        table: String,
    },
}

/// What a read does when no replica qualifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNoReplica {
    /// Read from the master (default).
    Master,
    /// Return an error to the client.
    Error,
}

/// Metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Serve HTTPS with the `tls:` section's certificate.
    pub tls: bool,
}

/// Admin interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// MySQL-protocol listen address.
    pub listen: SocketAddr,
    /// Admin account.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// TLS with the `tls:` section's certificate, required of every admin client.
    pub tls: bool,
}

/// Backend pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Idle connections kept per backend and login (user, database, character set).
    pub max_idle: usize,
    /// Idle connections kept in all (the oldest idle one is closed to make room).
    pub max_idle_total: usize,
    /// An idle connection unused this long is closed.
    pub idle_timeout: Duration,
    /// A connection older than this is closed instead of being pooled or reused.
    pub max_lifetime: Duration,
    /// Open connections (in use and idle) per backend at most (0: no cap). A session that needs one more
    /// waits up to `connect_timeout` for one to be freed, then gets error 1040.
    pub max_backend_connections: usize,
}

/// A problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `replicas[1].weight`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Why a config was rejected: the file and every problem in it.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// File name, or `<string>`.
    pub origin: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} problem(s)", self.origin, self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {}: {}: {}", self.origin, p.field, p.message)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    users: Vec<RawUser>,
    master: RawBackend,
    #[serde(default)]
    replicas: Vec<RawReplica>,
    health: Option<RawHealth>,
    metrics: Option<RawMetrics>,
    admin: Option<RawAdmin>,
    tls: Option<RawTls>,
    pool: Option<RawPool>,
    connect_timeout: Option<String>,
    backend_timeout: Option<String>,
    query_timeout: Option<String>,
    max_allowed_packet: Option<String>,
    shutdown_grace: Option<String>,
    workers: Option<RawWorkers>,
    max_client_connections: Option<usize>,
    max_client_connections_per_peer: Option<usize>,
    consistency: Option<String>,
    consistency_timeout: Option<String>,
}

/// `workers:` is a number or `auto`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawWorkers {
    Count(usize),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    client_ca: Option<String>,
    require: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    user: String,
    password: Option<String>,
    password_env: Option<String>,
    consistency: Option<String>,
    allowed_networks: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: String,
    public_key: Option<String>,
    tls: Option<RawBackendTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTls {
    ca: String,
    server_name: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplica {
    address: String,
    weight: Option<u32>,
    public_key: Option<String>,
    tls: Option<RawBackendTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    user: String,
    password: Option<String>,
    password_env: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    max_replica_lag: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
    lag_source: Option<String>,
    heartbeat_table: Option<String>,
    when_no_replica: Option<String>,
    detect_master: Option<bool>,
    positions: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
    tls: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
    user: String,
    password: Option<String>,
    password_env: Option<String>,
    tls: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    max_idle: Option<usize>,
    max_idle_total: Option<usize>,
    idle_timeout: Option<String>,
    max_lifetime: Option<String>,
    max_backend_connections: Option<usize>,
}

impl Config {
    /// TLS to the backend at `addr` (`master.tls`, `replicas[].tls`).
    pub fn tls_of(&self, addr: &str) -> Option<BackendTls> {
        if addr == self.master.address {
            return self.master.tls.clone();
        }
        self.replicas.iter().find(|r| r.address == addr).and_then(|r| r.tls.clone())
    }

    /// The pinned RSA public key of the backend at `addr` (`master.public_key`, `replicas[].public_key`).
    pub fn public_key_of(&self, addr: &str) -> Option<std::sync::Arc<Vec<u8>>> {
        if self.master.address == addr {
            return self.master.public_key.clone();
        }
        self.replicas.iter().find(|r| r.address == addr).and_then(|r| r.public_key.clone())
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            problems: vec![Problem { field: "(file)".into(), message: format!("cannot read: {e}") }],
        })?;
        let mut config = Config::parse(&text, &origin)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates YAML text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { "(document)".to_string() } else { field };
            ConfigError { origin: origin.into(), problems: vec![Problem { field, message: e.inner().to_string() }] }
        })?;
        let mut v = Validator::default();
        let config = v.config(raw);
        match (v.problems.is_empty(), config) {
            (true, Some(c)) => Ok(c),
            _ => Err(ConfigError { origin: origin.into(), problems: v.problems }),
        }
    }

    /// The password of a client account, if it exists.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The consistency of an account's reads: its own, else the top-level one.
    pub fn consistency_of(&self, user: &str) -> Consistency {
        self.user(user).and_then(|u| u.consistency).unwrap_or(self.consistency)
    }
}

/// Collects problems while turning the raw file into a `Config`.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { field: field.into(), message: message.into() });
    }

    /// A file a field names (certificates, keys), read with the small-file bound; a problem if it cannot be.
    fn file(&mut self, field: impl Into<String>, path: &str) -> Option<Vec<u8>> {
        match read_small(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.problem(field, format!("cannot read '{path}': {e}"));
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let listen = self.socket_addr("listen", &raw.listen);
        let tls = raw.tls.and_then(|t| self.tls(t));
        if raw.users.is_empty() {
            self.problem("users", "at least one user is required");
        }
        let mut users: Vec<User> = Vec::new();
        for (i, u) in raw.users.into_iter().enumerate() {
            let field = format!("users[{i}]");
            if u.user.is_empty() {
                self.problem(format!("{field}.user"), "must not be empty");
            }
            if users.iter().any(|x| x.name == u.user) {
                self.problem(format!("{field}.user"), format!("duplicate user '{}'", u.user));
            }
            let consistency =
                u.consistency.as_deref().and_then(|c| self.consistency(&format!("{field}.consistency"), c));
            let mut allowed_networks = Vec::new();
            for (j, n) in u.allowed_networks.unwrap_or_default().iter().enumerate() {
                match Network::parse(n) {
                    Some(net) => allowed_networks.push(net),
                    None => self.problem(
                        format!("{field}.allowed_networks[{j}]"),
                        format!("'{n}' is not an address or address/prefix (e.g. 10.0.0.0/8, ::1)"),
                    ),
                }
            }
            if let Some(password) = self.password(&field, u.password, u.password_env) {
                users.push(User { name: u.user, password, consistency, allowed_networks });
            }
        }
        self.host_port("master.address", &raw.master.address);
        let mut replicas = Vec::new();
        for (i, r) in raw.replicas.into_iter().enumerate() {
            let field = format!("replicas[{i}]");
            self.host_port(&format!("{field}.address"), &r.address);
            if r.address == raw.master.address {
                self.problem(format!("{field}.address"), "is the master's address");
            }
            if replicas.iter().any(|x: &Replica| x.address == r.address) {
                self.problem(format!("{field}.address"), format!("duplicate replica '{}'", r.address));
            }
            let weight = r.weight.unwrap_or(1);
            if weight == 0 {
                self.problem(format!("{field}.weight"), "must be at least 1 (remove the replica to give it no reads)");
            }
            if weight > MAX_WEIGHT {
                self.problem(format!("{field}.weight"), format!("must be at most {MAX_WEIGHT} (weights are relative)"));
            }
            let public_key = self.public_key(&format!("{field}.public_key"), r.public_key.as_deref());
            let tls = r.tls.and_then(|t| self.backend_tls(&format!("{field}.tls"), &r.address, t));
            replicas.push(Replica { address: r.address, weight, public_key, tls });
        }
        let health = raw.health.and_then(|h| self.health(h));
        let metrics = raw.metrics.and_then(|m| {
            let tls_wanted = m.tls.unwrap_or(false);
            if tls_wanted && tls.is_none() {
                self.problem("metrics.tls", "needs a tls: section (its certificate is served)");
            }
            Some(Metrics { listen: self.socket_addr("metrics.listen", &m.listen)?, tls: tls_wanted })
        });
        let admin = raw.admin.and_then(|a| {
            let listen = self.socket_addr("admin.listen", &a.listen);
            let tls_wanted = a.tls.unwrap_or(false);
            if tls_wanted && tls.is_none() {
                self.problem("admin.tls", "needs a tls: section (its certificate is served)");
            }
            let password = self.password("admin", a.password, a.password_env)?;
            Some(Admin { listen: listen?, user: a.user, password, tls: tls_wanted })
        });
        let raw_pool = raw.pool.unwrap_or(RawPool {
            max_idle: None,
            max_idle_total: None,
            idle_timeout: None,
            max_lifetime: None,
            max_backend_connections: None,
        });
        let idle_timeout =
            self.duration("pool.idle_timeout", raw_pool.idle_timeout.as_deref(), Duration::from_secs(60));
        let max_lifetime =
            self.duration("pool.max_lifetime", raw_pool.max_lifetime.as_deref(), Duration::from_secs(3600));
        let pool = Pool {
            max_idle: raw_pool.max_idle.unwrap_or(64),
            max_idle_total: raw_pool.max_idle_total.unwrap_or(1024),
            idle_timeout: idle_timeout.unwrap_or_default(),
            max_lifetime: max_lifetime.unwrap_or_default(),
            max_backend_connections: raw_pool.max_backend_connections.unwrap_or(0),
        };
        let connect_timeout = self.duration("connect_timeout", raw.connect_timeout.as_deref(), Duration::from_secs(2));
        let backend_timeout = self.duration("backend_timeout", raw.backend_timeout.as_deref(), Duration::from_secs(10));
        let query_timeout = match raw.query_timeout.as_deref() {
            None | Some("off") => Some(None),
            Some(s) => self.duration("query_timeout", Some(s), Duration::ZERO).map(Some),
        };
        let shutdown_grace = self.duration("shutdown_grace", raw.shutdown_grace.as_deref(), Duration::from_secs(10));
        let max_allowed_packet = match raw.max_allowed_packet.as_deref() {
            None | Some("auto") => Some(None),
            Some(s) => self.size("max_allowed_packet", Some(s), 0).map(Some),
        };
        let consistency = self.consistency("consistency", raw.consistency.as_deref().unwrap_or("session"));
        let consistency_timeout =
            self.duration("consistency_timeout", raw.consistency_timeout.as_deref(), Duration::from_secs(1));
        let max_client_connections = raw.max_client_connections.unwrap_or(10_000);
        if max_client_connections == 0 {
            self.problem("max_client_connections", "must be at least 1");
        }
        let workers = match raw.workers {
            None => 1,
            Some(RawWorkers::Count(n)) => n,
            // The cores this process may run on (cgroup quota and CPU affinity included).
            Some(RawWorkers::Word(w)) if w == "auto" => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(RawWorkers::Word(w)) => {
                self.problem("workers", format!("'{w}' is neither a number nor auto"));
                1
            }
        };
        if !(1..=1024).contains(&workers) {
            self.problem("workers", "must be between 1 and 1024 (or auto)");
        }
        Some(Config {
            source: None,
            listen: listen?,
            users,
            master: Backend {
                public_key: self.public_key("master.public_key", raw.master.public_key.as_deref()),
                tls: raw.master.tls.and_then(|t| self.backend_tls("master.tls", &raw.master.address, t)),
                address: raw.master.address,
            },
            replicas,
            health,
            metrics,
            admin,
            tls,
            pool,
            connect_timeout: connect_timeout?,
            backend_timeout: backend_timeout?,
            query_timeout: query_timeout?,
            max_client_connections,
            max_client_connections_per_peer: raw.max_client_connections_per_peer.unwrap_or(0),
            max_allowed_packet: max_allowed_packet?,
            shutdown_grace: shutdown_grace?,
            workers,
            consistency: consistency?,
            consistency_timeout: consistency_timeout?,
        })
    }

    /// A backend's pinned RSA public key: the file's PEM, checked to be one.
    fn public_key(&mut self, field: &str, path: Option<&str>) -> Option<std::sync::Arc<Vec<u8>>> {
        let path = path?;
        let pem = self.file(field, path)?;
        if !pem.windows(10).any(|w| w == b"PUBLIC KEY") {
            self.problem(field, format!("'{path}' holds no PEM public key"));
            return None;
        }
        Some(std::sync::Arc::new(pem))
    }

    /// A backend's `tls:`: its files read and the connector built; `address` gives the default server name.
    fn backend_tls(&mut self, field: &str, address: &str, raw: RawBackendTls) -> Option<BackendTls> {
        let ca = self.file(format!("{field}.ca"), &raw.ca);
        let client = match (&raw.cert, &raw.key) {
            (None, None) => Some(None),
            (Some(cert), Some(key)) => {
                match (self.file(format!("{field}.cert"), cert), self.file(format!("{field}.key"), key)) {
                    (Some(c), Some(k)) => Some(Some((c, k))),
                    _ => None,
                }
            }
            (Some(_), None) => {
                self.problem(format!("{field}.key"), "is needed with cert (the client certificate's key)");
                None
            }
            (None, Some(_)) => {
                self.problem(format!("{field}.cert"), "is needed with key (the client certificate)");
                None
            }
        };
        // The host part of `host:port` (an IPv6 address may be in brackets).
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        let server_name = raw.server_name.unwrap_or_else(|| host.to_string());
        let name = match rustls_pki_types::ServerName::try_from(server_name.clone()) {
            Ok(n) => Some(n),
            Err(e) => {
                self.problem(
                    format!("{field}.server_name"),
                    format!("'{server_name}' is not a DNS name or IP address: {e}"),
                );
                None
            }
        };
        let (ca, client, name) = (ca?, client?, name?);
        match crate::tls::client_config(&ca, client.as_ref().map(|(c, k)| (&c[..], &k[..]))) {
            Ok(config) => {
                let mut pem = ca;
                if let Some((c, k)) = client {
                    pem.extend(c);
                    pem.extend(k);
                }
                Some(BackendTls {
                    ca: raw.ca,
                    server_name,
                    cert: raw.cert,
                    key: raw.key,
                    pem,
                    connector: tokio_rustls::TlsConnector::from(config),
                    name,
                })
            }
            Err((name, why)) => {
                self.problem(format!("{field}.{name}"), why);
                None
            }
        }
    }

    fn tls(&mut self, raw: RawTls) -> Option<Tls> {
        let cert = self.file("tls.cert", &raw.cert);
        let key = self.file("tls.key", &raw.key);
        let ca = match &raw.client_ca {
            Some(path) => Some(self.file("tls.client_ca", path)?),
            None => None,
        };
        let (cert, key) = (cert?, key?);
        match crate::tls::server_config(&cert, &key, ca.as_deref()) {
            Ok(server) => {
                let mut pem = cert;
                pem.extend_from_slice(&key);
                pem.extend(ca.unwrap_or_default());
                Some(Tls {
                    cert: raw.cert,
                    key: raw.key,
                    client_ca: raw.client_ca,
                    require: raw.require.unwrap_or(false),
                    pem,
                    acceptor: tokio_rustls::TlsAcceptor::from(server),
                })
            }
            Err((field, why)) => {
                self.problem(field, why);
                None
            }
        }
    }

    fn consistency(&mut self, field: &str, word: &str) -> Option<Consistency> {
        match word {
            "session" => Some(Consistency::Session),
            "global" => Some(Consistency::Global),
            "eventual" => Some(Consistency::Eventual),
            other => {
                self.problem(field, format!("'{other}' is not one of: session, global, eventual"));
                None
            }
        }
    }

    fn health(&mut self, h: RawHealth) -> Option<Health> {
        let password = self.password("health", h.password, h.password_env);
        let interval = self.duration("health.interval", h.interval.as_deref(), Duration::from_millis(250));
        let timeout = self.duration("health.timeout", h.timeout.as_deref(), Duration::from_millis(500));
        let max_lag = self.duration("health.max_replica_lag", h.max_replica_lag.as_deref(), Duration::from_secs(2));
        let rise = h.rise.unwrap_or(2);
        if rise == 0 {
            self.problem("health.rise", "must be at least 1");
        }
        let fall = h.fall.unwrap_or(3);
        if fall == 0 {
            self.problem("health.fall", "must be at least 1");
        }
        let table = h.heartbeat_table.unwrap_or_else(|| "rwsplit.heartbeat".to_string());
        let valid_table = table.split_once('.').is_some_and(|(a, b)| ident_ok(a) && ident_ok(b));
        if !valid_table {
            self.problem("health.heartbeat_table", format!("'{table}' is not schema.table (letters, digits, _, $)"));
        }
        let lag_source = match h.lag_source.as_deref().unwrap_or("replication") {
            "replication" => Some(LagSource::Replication),
            "heartbeat" => Some(LagSource::Heartbeat { table }),
            other => {
                self.problem("health.lag_source", format!("'{other}' is not one of: replication, heartbeat"));
                None
            }
        };
        if let (Some(LagSource::Replication), Some(lag)) = (&lag_source, max_lag) {
            if lag < Duration::from_secs(1) {
                self.problem(
                    "health.max_replica_lag",
                    "below 1s needs lag_source: heartbeat (Seconds_Behind_Master counts whole seconds)",
                );
            }
        }
        let positions = match h.positions.as_deref().unwrap_or("auto") {
            "auto" => Some(Positions::Auto),
            "binlog" => Some(Positions::Binlog),
            other => {
                self.problem("health.positions", format!("'{other}' is not one of: auto, binlog"));
                None
            }
        };
        let when_no_replica = match h.when_no_replica.as_deref().unwrap_or("master") {
            "master" => Some(WhenNoReplica::Master),
            "error" => Some(WhenNoReplica::Error),
            other => {
                self.problem("health.when_no_replica", format!("'{other}' is not one of: master, error"));
                None
            }
        };
        Some(Health {
            user: h.user,
            password: password?,
            interval: interval?,
            timeout: timeout?,
            max_replica_lag: max_lag?,
            rise,
            fall,
            lag_source: lag_source?,
            when_no_replica: when_no_replica?,
            detect_master: h.detect_master.unwrap_or(false),
            positions: positions?,
        })
    }

    fn password(&mut self, field: &str, plain: Option<String>, env: Option<String>) -> Option<Secret> {
        match (plain, env) {
            (Some(p), None) => Some(Secret(p)),
            (None, Some(var)) => match std::env::var(&var) {
                Ok(p) => Some(Secret(p)),
                Err(_) => {
                    self.problem(format!("{field}.password_env"), format!("environment variable '{var}' is not set"));
                    None
                }
            },
            (Some(_), Some(_)) => {
                self.problem(format!("{field}.password"), "give either password or password_env, not both");
                None
            }
            (None, None) => {
                self.problem(format!("{field}.password"), "missing: give password or password_env");
                None
            }
        }
    }

    fn socket_addr(&mut self, field: &str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(field, format!("'{s}' is not an IP:port address (e.g. 127.0.0.1:6033)"));
                None
            }
        }
    }

    fn host_port(&mut self, field: &str, s: &str) {
        let ok = s.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            self.problem(field, format!("'{s}' is not a host:port address"));
        }
    }

    fn duration(&mut self, field: &str, s: Option<&str>, default: Duration) -> Option<Duration> {
        let Some(s) = s else { return Some(default) };
        match parse_duration(s) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.problem(field, format!("'{s}' is not a positive duration (e.g. 250ms, 2s, 1m)"));
                None
            }
        }
    }

    fn size(&mut self, field: &str, s: Option<&str>, default: usize) -> Option<usize> {
        let Some(s) = s else { return Some(default) };
        match parse_size(s) {
            Some(n) if (1024..=MAX_PACKET_LIMIT).contains(&n) => Some(n),
            _ => {
                self.problem(field, format!("'{s}' is not a size between 1K and 1G (e.g. 64M), or auto"));
                None
            }
        }
    }
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h`, `100us`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses `1024`, `64K`, `64M`, `1G` (binary units).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../../proxy.yaml");

    #[test]
    fn shipped_config_is_valid() {
        let c = Config::parse(GOOD, "proxy.yaml").unwrap();
        assert_eq!(c.replicas.len(), 2);
        assert_eq!(c.replicas[1].weight, 1);
        assert_eq!(c.health.as_ref().unwrap().interval, Duration::from_millis(250));
        assert!(!format!("{c:?}").contains("apppw"), "passwords must not appear in Debug output");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let text =
            "listen: nowhere\nusers:\n  - user: a\n    password: x\n  - user: a\n    password_env: RWSPLIT_UNSET_VAR\n\
                    master:\n  address: 127.0.0.1:13306\nreplicas:\n  - address: 127.0.0.1\n    weight: 0\n\
                    connect_timeout: soon\nworkers: 0\n";
        let err = Config::parse(text, "t.yaml").unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        for want in [
            "listen",
            "users[1].user",
            "users[1].password_env",
            "replicas[0].address",
            "replicas[0].weight",
            "connect_timeout",
            "workers",
        ] {
            assert!(fields.contains(&want), "missing {want} in {err}");
        }
        assert!(err.to_string().starts_with("t.yaml: 7 problem(s)"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_with_a_path() {
        let text = GOOD.replace("  address: 127.0.0.1:13306", "  address: 127.0.0.1:13306\n  adress: x");
        let err = Config::parse(&text, "t.yaml").unwrap_err();
        assert_eq!(err.problems[0].field, "master.adress");
        assert!(err.problems[0].message.contains("unknown field `adress`"), "{err}");
    }

    #[test]
    fn health_options_are_validated() {
        let c = Config::parse(GOOD, "t").unwrap();
        let h = c.health.unwrap();
        assert_eq!((h.timeout, h.rise, h.fall), (Duration::from_millis(500), 2, 3));
        assert_eq!(h.lag_source, LagSource::Replication);
        assert_eq!((h.when_no_replica, h.detect_master), (WhenNoReplica::Master, false));
        let sub_second = GOOD.replace("max_replica_lag: 2s", "max_replica_lag: 500ms");
        let err = Config::parse(&sub_second, "t").unwrap_err();
        assert_eq!(err.problems[0].field, "health.max_replica_lag", "{err}");
        let heartbeat = sub_second.replace("  interval: 250ms", "  interval: 250ms\n  lag_source: heartbeat");
        let h = Config::parse(&heartbeat, "t").unwrap().health.unwrap();
        assert_eq!(h.lag_source, LagSource::Heartbeat { table: "rwsplit.heartbeat".into() });
        let bad = GOOD.replace(
            "  interval: 250ms",
            "  interval: 250ms\n  lag_source: gossip\n  when_no_replica: panic\n  rise: 0\n  fall: 0\n  heartbeat_table: nodot",
        );
        let err = Config::parse(&bad, "t").unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        for f in ["health.lag_source", "health.when_no_replica", "health.rise", "health.fall", "health.heartbeat_table"]
        {
            assert!(fields.contains(&f), "missing {f}: {err}");
        }
    }

    #[test]
    fn packet_limit_and_weights() {
        let c = Config::parse(GOOD, "t").unwrap();
        assert_eq!(c.max_allowed_packet, None, "auto: the master's own");
        let set = GOOD.replace("listen: 127.0.0.1:6033", "listen: 127.0.0.1:6033\nmax_allowed_packet: 64M");
        assert_eq!(Config::parse(&set, "t").unwrap().max_allowed_packet, Some(64 << 20));
        let auto = GOOD.replace("listen: 127.0.0.1:6033", "listen: 127.0.0.1:6033\nmax_allowed_packet: auto");
        assert_eq!(Config::parse(&auto, "t").unwrap().max_allowed_packet, None);
        let huge = GOOD.replace("    # weight: 1 ", "    weight: 5000 #");
        let err = Config::parse(&huge, "t").unwrap_err();
        assert_eq!(err.problems[0].field, "replicas[1].weight", "{err}");
    }

    #[test]
    fn consistency_defaults_and_overrides() {
        let c = Config::parse(GOOD, "t").unwrap();
        assert_eq!((c.consistency, c.consistency_timeout), (Consistency::Session, Duration::from_secs(1)));
        let text = GOOD.replace(
            "listen: 127.0.0.1:6033",
            "listen: 127.0.0.1:6033\nconsistency: global\nconsistency_timeout: 250ms",
        );
        let text = text.replacen("    password: apppw", "    password: apppw\n    consistency: eventual", 1);
        let c = Config::parse(&text, "t").unwrap();
        assert_eq!((c.consistency, c.consistency_timeout), (Consistency::Global, Duration::from_millis(250)));
        assert_eq!(c.consistency_of("app"), Consistency::Eventual);
        assert_eq!(c.consistency_of("someone"), Consistency::Global);
        let bad = GOOD.replace("listen: 127.0.0.1:6033", "listen: 127.0.0.1:6033\nconsistency: strong");
        let err = Config::parse(&bad, "t").unwrap_err();
        assert_eq!(err.problems[0].field, "consistency", "{err}");
        assert!(err.problems[0].message.contains("session, global, eventual"), "{err}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn allowed_networks() {
        let yaml = GOOD.replace(
            "    password: apppw\n",
            "    password: apppw\n    allowed_networks: [10.1.0.0/16, '::1', 192.0.2.7]\n",
        );
        assert_ne!(yaml, GOOD);
        let config = Config::parse(&yaml, "t").unwrap();
        let user = config.users.iter().find(|u| !u.allowed_networks.is_empty()).expect("a restricted user");
        for (ip, ok) in [
            ("10.1.200.3", true),
            ("10.2.0.1", false),
            ("::1", true),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("::ffff:10.1.0.9", true),
        ] {
            assert_eq!(user.allows(ip.parse().unwrap()), ok, "{ip}");
        }
        let bad = GOOD.replace("    password: apppw\n", "    password: apppw\n    allowed_networks: [10.0.0.0/33]\n");
        let err = Config::parse(&bad, "t").unwrap_err();
        assert!(err.problems.iter().any(|p| p.field.ends_with(".allowed_networks[0]")), "{err}");
    }

    #[test]
    fn pinned_backend_public_keys() {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rsa_public_key.pem");
        let master = GOOD.lines().find(|l| l.trim_start().starts_with("address:")).expect("an address line");
        let yaml = GOOD.replacen(master, &format!("{master}\n  public_key: {key}"), 1);
        let config = Config::parse(&yaml, "t").unwrap();
        let pem = config.public_key_of(&config.master.address).expect("the master's pinned key");
        assert!(pem.starts_with(b"-----BEGIN PUBLIC KEY-----"));
        assert!(config.public_key_of(&config.replicas[0].address).is_none());
        let not_a_key = GOOD.replacen(
            master,
            &format!("{master}\n  public_key: {}", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")),
            1,
        );
        let err = Config::parse(&not_a_key, "t").unwrap_err();
        assert!(err.problems.iter().any(|p| p.field == "master.public_key"), "{err}");
    }

    #[test]
    fn backend_tls_problems_name_their_field() {
        let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rsa_public_key.pem");
        let master = GOOD.lines().find(|l| l.trim_start().starts_with("address:")).expect("an address line");
        let with = |tls: &str| GOOD.replacen(master, &format!("{master}\n  tls:\n{tls}"), 1);
        let fields = |yaml: &str| -> Vec<String> {
            Config::parse(yaml, "t").unwrap_err().problems.into_iter().map(|p| p.field).collect()
        };
        assert_eq!(fields(&with("    ca: /nonexistent/ca.pem\n")), ["master.tls.ca"]);
        assert_eq!(fields(&with(&format!("    ca: {pem}\n"))), ["master.tls.ca"], "a public key is no CA");
        let cert_only = format!("    ca: /nonexistent/ca.pem\n    cert: {pem}\n");
        assert!(fields(&with(&cert_only)).contains(&"master.tls.key".to_string()));
        let bad_name = "    ca: /nonexistent/ca.pem\n    server_name: 'not a name'\n";
        assert!(fields(&with(bad_name)).contains(&"master.tls.server_name".to_string()));
        let unknown = "    ca: /nonexistent/ca.pem\n    verify: false\n";
        assert!(Config::parse(&with(unknown), "t").is_err(), "unknown keys are errors");
        let admin_tls = GOOD.replacen("  password: adminpw\n", "  password: adminpw\n  tls: true\n", 1);
        assert_eq!(fields(&admin_tls), ["admin.tls"]);
    }

    #[test]
    fn workers_is_a_count_or_auto() {
        let with = |w: &str| format!("{GOOD}\nworkers: {w}\n");
        assert_eq!(Config::parse(&with("3"), "t").unwrap().workers, 3);
        let auto = Config::parse(&with("auto"), "t").unwrap().workers;
        assert_eq!(auto, std::thread::available_parallelism().map_or(1, |n| n.get()));
        for bad in ["many", "0", "2000"] {
            let err = Config::parse(&with(bad), "t").unwrap_err();
            assert!(err.problems.iter().any(|p| p.field == "workers"), "{bad}: {err}");
        }
    }
}
