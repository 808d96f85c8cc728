//! Running admin commands and the tables they answer with (SHOW BACKENDS, POOLS, CLIENTS, CONFIG, RELOAD,
//! SET BACKEND, SELECT of variables), formatted for the MySQL protocol by opensrv-mysql.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opensrv_mysql::{Column, ColumnFlags, ColumnType, ErrorKind, OkResponse, QueryResultWriter};

use super::command::{Command, SelectItem, SelectValue};
use super::{Out, MASK, MAX_PACKET, VERSION, VERSION_COMMENT};
use crate::config::{Config, Health, LagSource, WhenNoReplica};
use crate::Shared;

/// A value in an admin result set.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    /// SQL NULL.
    Null,
    /// An integer (also 0/1 flags).
    Int(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
}

impl Cell {
    /// Text from anything displayable.
    fn text(value: impl std::fmt::Display) -> Cell {
        Cell::Text(value.to_string())
    }

    /// A 0/1 flag.
    fn flag(value: bool) -> Cell {
        Cell::Int(value.into())
    }

    /// A 0/1 flag, or NULL when unknown.
    fn opt_flag(value: Option<bool>) -> Cell {
        value.map_or(Cell::Null, Cell::flag)
    }

    /// Text, or NULL.
    fn opt_text(value: Option<impl std::fmt::Display>) -> Cell {
        value.map_or(Cell::Null, Cell::text)
    }

    /// A count.
    fn count(n: usize) -> Cell {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// Column types used in admin result sets.
const TEXT: ColumnType = ColumnType::MYSQL_TYPE_VAR_STRING;
/// A 0/1 flag.
const TINY: ColumnType = ColumnType::MYSQL_TYPE_TINY;
/// A count or id.
const BIGINT: ColumnType = ColumnType::MYSQL_TYPE_LONGLONG;
/// Lag in seconds.
const DOUBLE: ColumnType = ColumnType::MYSQL_TYPE_DOUBLE;

/// A result set: columns, then rows of cells.
#[derive(Debug)]
pub(super) struct Table {
    /// Column definitions.
    columns: Vec<Column>,
    /// Rows, each with one cell per column.
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these column names and types.
    fn new(spec: &[(&str, ColumnType)]) -> Table {
        let column = |&(name, coltype): &(&str, ColumnType)| Column {
            table: String::new(),
            column: name.to_string(),
            coltype,
            colflags: ColumnFlags::empty(),
        };
        Table { columns: spec.iter().map(column).collect(), rows: Vec::new() }
    }
}

/// What a command answers.
#[derive(Debug)]
pub(super) enum Reply {
    /// A result set.
    Rows(Table),
    /// OK, with this message (`info`).
    Done(String),
}

/// A command that failed: the error sent to the client.
#[derive(Debug)]
pub(super) struct Failure {
    /// Error code (its SQLSTATE comes with it).
    kind: ErrorKind,
    /// Message.
    message: String,
}

impl Failure {
    /// An error of a kind.
    pub(super) fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }

    /// Error 1105 (HY000): the command was understood and could not be done.
    fn failed(message: impl Into<String>) -> Failure {
        Failure::new(ErrorKind::ER_UNKNOWN_ERROR, message)
    }
}

/// Sends a command's outcome.
pub(super) async fn respond(results: QueryResultWriter<'_, Out>, outcome: Result<Reply, Failure>) -> io::Result<()> {
    match outcome {
        Ok(Reply::Rows(table)) => write_table(results, &table).await,
        Ok(Reply::Done(info)) => results.completed(OkResponse { info, ..OkResponse::default() }).await,
        Err(failure) => results.error(failure.kind, failure.message.as_bytes()).await,
    }
}

/// Writes a result set (text protocol).
async fn write_table<'t>(results: QueryResultWriter<'t, Out>, table: &'t Table) -> io::Result<()> {
    let mut rows = results.start(&table.columns).await?;
    for row in &table.rows {
        for cell in row {
            match cell {
                Cell::Null => rows.write_col(None::<i64>)?,
                Cell::Int(v) => rows.write_col(*v)?,
                Cell::Float(v) => rows.write_col(*v)?,
                Cell::Text(s) => rows.write_col(s)?,
            }
        }
        rows.end_row().await?;
    }
    rows.finish().await
}

/// Runs a parsed command.
pub(super) fn execute(shared: &Arc<Shared>, command: &Command) -> Result<Reply, Failure> {
    match command {
        Command::ShowBackends => Ok(Reply::Rows(show_backends(shared))),
        Command::ShowReplication => Ok(Reply::Rows(show_replication(shared))),
        Command::ShowPools => Ok(Reply::Rows(show_pools(shared))),
        Command::ShowClients => Ok(Reply::Rows(show_clients(shared))),
        Command::ShowConfig => Ok(Reply::Rows(show_config(&shared.config.load()))),
        Command::Reload => reload(shared),
        Command::SetBackend { addr, offline } => set_backend(shared, addr, *offline),
        Command::Select(items) => select(items).map(Reply::Rows),
    }
}

/// `SHOW BACKENDS`.
fn show_backends(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("address", TEXT),
        ("role", TEXT),
        ("reachable", TINY),
        ("serving", TINY),
        ("offline", TINY),
        ("lag_seconds", DOUBLE),
        ("lag_frozen", TINY),
        ("weight", BIGINT),
        ("read_only", TINY),
        ("gtid", TEXT),
        ("binlog_position", TEXT),
        ("connections_in_use", BIGINT),
        ("connections_idle", BIGINT),
        ("last_error", TEXT),
        ("last_change", TEXT),
    ]);
    for b in shared.backend_views() {
        table.rows.push(vec![
            Cell::text(&b.addr),
            Cell::text(if b.is_writer { "master" } else { "replica" }),
            Cell::opt_flag(b.reachable),
            Cell::flag(b.serving),
            Cell::flag(b.offline),
            b.lag.map_or(Cell::Null, |lag| Cell::Float((lag * 1000.0).round() / 1000.0)),
            Cell::flag(b.lag_frozen),
            b.weight.map_or(Cell::Null, |w| Cell::Int(w.into())),
            Cell::opt_flag(b.read_only),
            Cell::opt_text(b.gtid.as_deref()),
            Cell::opt_text(b.binlog.as_deref()),
            Cell::count(b.in_use),
            Cell::count(b.idle),
            Cell::opt_text(b.last_error.as_deref()),
            Cell::opt_text(b.last_change.map(rfc3339)),
        ]);
    }
    table
}

/// `SHOW REPLICATION`: one row per server, the master first: role, mode, threads, lag, positions, semi-sync,
/// the server it replicates from, the last replication errors (see the module doc).
fn show_replication(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("address", TEXT),
        ("role", TEXT),
        ("server_id", BIGINT),
        ("mode", TEXT),
        ("io_running", TEXT),
        ("sql_running", TEXT),
        ("lag_seconds", DOUBLE),
        ("gtid", TEXT),
        ("binlog_position", TEXT),
        ("behind_bytes", BIGINT),
        ("semisync", TEXT),
        ("super_read_only", TINY),
        ("source_server_id", BIGINT),
        ("last_io_error", TEXT),
        ("last_sql_error", TEXT),
        ("last_error", TEXT),
        ("last_change", TEXT),
    ]);
    for b in shared.backend_views() {
        let r = b.replication.clone().unwrap_or_default();
        let semisync = match (r.semisync_master, r.semisync_replica) {
            (Some((true, clients)), _) => Some(format!("ON ({clients} replicas)")),
            (Some((false, _)), _) => Some("OFF (asynchronous)".to_string()),
            (None, Some(on)) => Some(if on { "ON" } else { "OFF" }.to_string()),
            (None, None) => None,
        };
        let binlog = if b.is_writer {
            r.binlog_end.as_ref().map(|p| format!("{}:{}", p.file, p.pos)).or(b.binlog.clone())
        } else {
            b.binlog.clone()
        };
        table.rows.push(vec![
            Cell::text(&b.addr),
            Cell::text(if b.is_writer { "master" } else { "replica" }),
            r.server_id.map_or(Cell::Null, |id| Cell::Int(id.into())),
            Cell::opt_text(r.mode),
            Cell::opt_text(r.io_state.as_deref()),
            Cell::opt_text(r.sql_state.as_deref()),
            b.lag.map_or(Cell::Null, |lag| Cell::Float((lag * 1000.0).round() / 1000.0)),
            Cell::opt_text(b.gtid.as_deref()),
            Cell::opt_text(binlog.as_deref()),
            b.binlog_behind.map_or(Cell::Null, |n| Cell::Int(n as i64)),
            Cell::opt_text(semisync.as_deref()),
            Cell::opt_flag(r.super_read_only),
            r.source_server_id.map_or(Cell::Null, |id| Cell::Int(id.into())),
            Cell::opt_text(r.last_io_error.as_deref()),
            Cell::opt_text(r.last_sql_error.as_deref()),
            Cell::opt_text(b.last_error.as_deref()),
            Cell::opt_text(b.last_change.map(rfc3339)),
        ]);
    }
    table
}

/// `SHOW POOLS`.
fn show_pools(shared: &Shared) -> Table {
    let mut table = Table::new(&[("backend", TEXT), ("in_use", BIGINT), ("idle", BIGINT)]);
    for b in shared.backend_views() {
        table.rows.push(vec![Cell::text(&b.addr), Cell::count(b.in_use), Cell::count(b.idle)]);
    }
    table
}

/// `SHOW CLIENTS`.
fn show_clients(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("id", BIGINT),
        ("user", TEXT),
        ("peer", TEXT),
        ("started", TEXT),
        ("master_thread", BIGINT),
        ("replica", TEXT),
        ("replica_thread", BIGINT),
    ]);
    for (id, session) in shared.registry.list() {
        let [master, replica] = &session.backends;
        table.rows.push(vec![
            Cell::Int(id.into()),
            Cell::text(&session.user),
            Cell::text(&session.peer),
            Cell::text(rfc3339(session.started)),
            master.as_ref().map_or(Cell::Null, |(_, thread)| Cell::Int((*thread).into())),
            Cell::opt_text(replica.as_ref().map(|(addr, _)| addr)),
            replica.as_ref().map_or(Cell::Null, |(_, thread)| Cell::Int((*thread).into())),
        ]);
    }
    table
}

/// `SHOW CONFIG`.
fn show_config(config: &Config) -> Table {
    let mut table = Table::new(&[("key", TEXT), ("value", TEXT)]);
    table.rows = config_rows(config).into_iter().map(|(k, v)| vec![Cell::Text(k), Cell::opt_text(v)]).collect();
    table
}

/// A `SHOW CONFIG` row with a value.
fn kv(key: impl Into<String>, value: impl std::fmt::Display) -> (String, Option<String>) {
    (key.into(), Some(value.to_string()))
}

/// The running config flattened into (key, value) pairs; NULL for a section that is off. No passwords.
fn config_rows(c: &Config) -> Vec<(String, Option<String>)> {
    let mut rows = vec![("source".to_string(), c.source.as_ref().map(|p| p.display().to_string()))];
    rows.push(kv("listen", c.listen));
    for (i, u) in c.users.iter().enumerate() {
        rows.extend([kv(format!("users[{i}].user"), &u.name), kv(format!("users[{i}].password"), MASK)]);
    }
    rows.push(kv("master.address", &c.master.address));
    for (i, r) in c.replicas.iter().enumerate() {
        rows.extend([kv(format!("replicas[{i}].address"), &r.address), kv(format!("replicas[{i}].weight"), r.weight)]);
    }
    match &c.health {
        Some(h) => rows.extend(health_rows(h)),
        None => rows.push(("health".into(), None)),
    }
    rows.push(("metrics.listen".into(), c.metrics.as_ref().map(|m| m.listen.to_string())));
    match &c.admin {
        Some(a) => rows.extend([kv("admin.listen", a.listen), kv("admin.user", &a.user), kv("admin.password", MASK)]),
        None => rows.push(("admin.listen".into(), None)),
    }
    rows.extend([
        kv("pool.max_idle", c.pool.max_idle),
        kv("pool.max_idle_total", c.pool.max_idle_total),
        kv("pool.idle_timeout", fmt_duration(c.pool.idle_timeout)),
        kv("pool.max_lifetime", fmt_duration(c.pool.max_lifetime)),
        kv("pool.max_backend_connections", c.pool.max_backend_connections),
        kv("max_client_connections", c.max_client_connections),
        kv("max_client_connections_per_peer", c.max_client_connections_per_peer),
        kv("query_timeout", c.query_timeout.map_or_else(|| "off".to_string(), fmt_duration)),
        kv("connect_timeout", fmt_duration(c.connect_timeout)),
        kv("backend_timeout", fmt_duration(c.backend_timeout)),
        kv("max_allowed_packet", c.max_allowed_packet.map_or_else(|| "auto (the master's)".to_string(), fmt_size)),
        kv("shutdown_grace", fmt_duration(c.shutdown_grace)),
        kv("workers", c.workers),
    ]);
    rows
}

/// The `health.*` rows of `SHOW CONFIG`.
fn health_rows(h: &Health) -> Vec<(String, Option<String>)> {
    let (lag_source, table) = match &h.lag_source {
        LagSource::Replication => ("replication", None),
        LagSource::Heartbeat { table } => ("heartbeat", Some(table)),
    };
    let when_no_replica = match h.when_no_replica {
        WhenNoReplica::Master => "master",
        WhenNoReplica::Error => "error",
    };
    let mut rows = vec![
        kv("health.user", &h.user),
        kv("health.password", MASK),
        kv("health.interval", fmt_duration(h.interval)),
        kv("health.timeout", fmt_duration(h.timeout)),
        kv("health.max_replica_lag", fmt_duration(h.max_replica_lag)),
        kv("health.rise", h.rise),
        kv("health.fall", h.fall),
        kv("health.lag_source", lag_source),
    ];
    if let Some(table) = table {
        rows.push(kv("health.heartbeat_table", table));
    }
    rows.extend([kv("health.when_no_replica", when_no_replica), kv("health.detect_master", h.detect_master)]);
    rows
}

/// `RELOAD`.
fn reload(shared: &Arc<Shared>) -> Result<Reply, Failure> {
    match crate::reload::reload_from_file(shared) {
        Ok(report) => Ok(Reply::Done(report.to_string())),
        Err(e) => Err(Failure::failed(e.to_string())),
    }
}

/// `SET BACKEND … OFFLINE|ONLINE`.
fn set_backend(shared: &Shared, addr: &str, offline: bool) -> Result<Reply, Failure> {
    if crate::health::set_offline(shared, addr, offline) {
        tracing::info!(
            backend = addr,
            offline,
            "replica set {} by the admin",
            if offline { "offline" } else { "online" }
        );
        return Ok(Reply::Done(if offline {
            format!("{addr} is offline: it gets no new reads; its sessions move at their next read")
        } else {
            format!("{addr} is online: it gets reads again while it passes the health checks")
        }));
    }
    let topology = shared.topology.load();
    if &*topology.master == addr {
        return Err(Failure::failed(format!("{addr} is the master; only replicas can be set offline")));
    }
    let replicas: Vec<&str> = topology.replicas.iter().map(|r| &*r.addr).collect();
    Err(Failure::failed(format!("{addr} is not a configured replica (replicas: {})", replicas.join(", "))))
}

/// `SELECT @@var, …` / `SELECT 1`.
fn select(items: &[SelectItem]) -> Result<Table, Failure> {
    let mut cells = Vec::with_capacity(items.len());
    for item in items {
        cells.push(match &item.value {
            SelectValue::Integer(n) => Cell::Int(*n),
            SelectValue::Variable(name) => variable(name).ok_or_else(|| {
                Failure::new(ErrorKind::ER_UNKNOWN_SYSTEM_VARIABLE, format!("Unknown system variable '{name}'"))
            })?,
        });
    }
    let spec: Vec<(&str, ColumnType)> = items
        .iter()
        .zip(&cells)
        .map(|(item, cell)| (item.label.as_str(), if matches!(cell, Cell::Int(_)) { BIGINT } else { TEXT }))
        .collect();
    let mut table = Table::new(&spec);
    table.rows.push(cells);
    Ok(table)
}

/// The system variables clients read on connect.
fn variable(name: &str) -> Option<Cell> {
    Some(match name {
        "version_comment" => Cell::text(VERSION_COMMENT),
        "version" => Cell::text(VERSION),
        "max_allowed_packet" => Cell::Int(MAX_PACKET),
        "wait_timeout" | "interactive_timeout" => Cell::Int(28800),
        "socket" => Cell::Null,
        _ => return None,
    })
}

/// A duration as the config file writes it: `250ms`, `2s`, `1500us`.
fn fmt_duration(d: Duration) -> String {
    match (d.subsec_nanos(), d.subsec_micros() * 1000 == d.subsec_nanos()) {
        (0, _) => format!("{}s", d.as_secs()),
        (n, _) if n % 1_000_000 == 0 => format!("{}ms", d.as_millis()),
        (_, true) => format!("{}us", d.as_micros()),
        _ => format!("{d:?}"),
    }
}

/// A size as the config file writes it: `64M`, `1G`, `1536K`, `1000`.
fn fmt_size(n: usize) -> String {
    match n {
        n if n > 0 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n > 0 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n > 0 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

/// `t` in RFC 3339 (UTC, milliseconds), e.g. `2024-05-01T12:00:00.250Z`.
fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", since.subsec_millis())
}

/// The Gregorian date of a day number (days since 1970-01-01), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rows_mask_passwords() {
        let text = "listen: 127.0.0.1:6033\nusers: [{user: app, password: apppw}]\n\
                    master: {address: 'm:1'}\nreplicas: [{address: 'r1:1', weight: 2}]\n\
                    health: {user: monitor, password: monitorpw, lag_source: heartbeat}\n\
                    admin: {listen: 127.0.0.1:6034, user: admin, password: adminpw}\n";
        let config = Config::parse(text, "t").unwrap();
        let rows = config_rows(&config);
        let all = format!("{rows:?}");
        for secret in ["apppw", "monitorpw", "adminpw"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        let get = |k: &str| rows.iter().find(|(key, _)| key == k).and_then(|(_, v)| v.clone());
        assert_eq!(get("users[0].password").as_deref(), Some(MASK));
        assert_eq!(get("replicas[0].weight").as_deref(), Some("2"));
        assert_eq!(get("health.interval").as_deref(), Some("250ms"));
        assert_eq!(get("health.heartbeat_table").as_deref(), Some("rwsplit.heartbeat"));
        assert_eq!(get("max_allowed_packet").as_deref(), Some("auto (the master's)"));
        assert_eq!(get("metrics.listen"), None);
    }

    #[test]
    fn formats_times_durations_and_sizes() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_250)), "2000-02-29T00:00:00.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20.000Z");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "1500us");
        assert_eq!((fmt_size(64 << 20), fmt_size(1 << 30), fmt_size(1000)), ("64M".into(), "1G".into(), "1000".into()));
    }
}
