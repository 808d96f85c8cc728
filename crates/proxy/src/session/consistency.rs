//! Read consistency: what a read sent to a replica must see, learned from what the master reports.
//!
//! The master reports the position of each write in its OK packet, through the session tracking every
//! backend connection has on (MariaDB: the `last_gtid` variable; MySQL: `session_track_gtids = OWN_GTID`),
//! so learning it costs nothing extra. The session keeps the position covering all its writes
//! ([`Session::written`]), the process the one covering every write it acknowledged (`ServerInfo::acked`).
//!
//! A read's [`Need`] follows the account's `consistency` (`session`: its own writes; `global`: every
//! acknowledged write; `eventual`: nothing) and the statement's hints: `rwsplit:consistent` asks for
//! `global`, `rwsplit:min_gtid=<position>` adds a position (a token from `SELECT @@last_gtid` on any
//! connection of any rwsplit), `rwsplit:max_lag=<duration>` asks instead for any replica whose lag is
//! known to be under the bound. A hint that cannot be read sends the read to the master.
//!
//! The read then goes to a replica known to have applied the position (the health checker's last probe of
//! it, or an earlier wait on that connection), else to one that waits for it in the same round trip, for
//! at most `consistency_timeout` (see `forward.rs`), else to the master.
//!
//! Without GTIDs (a MySQL master with `gtid_mode` off, or `health.positions: binlog`) the master reports
//! no position for a write. The session then notes when the master acknowledged its last write; the first
//! health probe of the master that *started* after that reads a binary log position covering the write
//! (`SHOW MASTER STATUS`), and replicas are compared with it by how far they executed the master's log
//! (`Exec_Master_Log_Pos`; waits use `MASTER_POS_WAIT`). Until that probe, reads after a write go to the
//! master: the cost is up to about one probe interval of master reads after each write, and no extra
//! statement on the write path (the application's account needs no replication privilege).

use std::sync::Arc;
use std::time::Duration;

use rwsplit_classify::{Dialect, Hints};

use super::Session;
use crate::config::{Consistency, LagSource};
use crate::position::Position;
use crate::session::forward::Outcome;

/// What a read must see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Need {
    /// The position the replica must have applied (None: anything it has). Shared with the session (most
    /// reads need exactly the session's writes: no copy).
    pub position: Option<Arc<Position>>,
    /// The replica's lag must be known to be at most this (a `rwsplit:max_lag` hint).
    pub max_lag: Option<Duration>,
    /// No replica may serve it: a hint could not be read.
    pub master: bool,
}

/// What attaching a replica for a command must know about it.
#[derive(Debug, Clone, Default)]
pub struct ReadNeed {
    /// What the read must see.
    pub need: Need,
    /// Only the replica leg has what the command needs (it is not a plain read).
    pub needs_replica_state: bool,
    /// It may not wait on a replica (a READ ONLY transaction starts only where the position is known).
    pub no_wait: bool,
    /// It belongs to the connection the previous command used (SHOW WARNINGS, a cursor fetch, a
    /// statement reset): no replica is chosen, and nothing is waited for.
    pub stay: bool,
}

impl Need {
    /// Whether any replica serves the read as it is.
    pub fn is_none(&self) -> bool {
        self.position.as_deref().is_none_or(Position::is_empty) && self.max_lag.is_none() && !self.master
    }
}

/// Adds `p` to a shared position (copying it only if it is shared).
fn add_position(mine: &mut Option<Arc<Position>>, p: &Position) {
    match mine {
        Some(m) => Arc::make_mut(m).merge(p),
        None => *mine = Some(Arc::new(p.clone())),
    }
}

/// The hints of a statement, read only when its text names one (a case-insensitive `rwsplit:`).
pub fn hints_of(sql: &[u8], dialect: Dialect) -> Hints {
    const PREFIX: &[u8] = b"rwsplit:";
    if sql.windows(PREFIX.len()).any(|w| w.eq_ignore_ascii_case(PREFIX)) {
        rwsplit_classify::hints(sql, dialect)
    } else {
        Hints::default()
    }
}

/// The upper bound of a replica's lag as the checker measured it: Seconds_Behind_Master counts whole
/// seconds (0 means under a second); the heartbeat already over-estimates.
pub fn lag_upper_bound(lag: Option<f64>, source: &LagSource) -> Option<Duration> {
    let lag = lag?;
    let extra = match source {
        LagSource::Replication => 1.0,
        LagSource::Heartbeat { .. } => 0.0,
    };
    Duration::try_from_secs_f64(lag + extra).ok()
}

impl Session {
    /// What a read of `sql` (the statement's text, if it has one) must see.
    pub(super) fn read_need(&self, sql: Option<&[u8]>) -> Need {
        let config = self.shared.config.load();
        let hints = sql.map(|s| hints_of(s, self.dialect)).unwrap_or_default();
        let mut need = Need::default();
        let mode = if hints.consistent { Consistency::Global } else { config.consistency_of(&self.login.user) };
        if let Some(bound) = hints.max_lag.as_deref() {
            match crate::config::parse_duration(bound) {
                Some(d) => need.max_lag = Some(d),
                None => need.master = true,
            }
        } else {
            need.position = match mode {
                Consistency::Eventual => None,
                Consistency::Session => self.written.clone(),
                Consistency::Global => self.shared.servers.acked().map(Arc::new),
            };
            // Writes acknowledged without a position (binary log positions), not resolved yet.
            let unresolved = match mode {
                Consistency::Eventual => None,
                Consistency::Session => self.unresolved_at,
                Consistency::Global => self.shared.servers.acked_at(),
            };
            if let Some(at) = unresolved {
                match self.master_binlog_after(at) {
                    Some(p) => add_position(&mut need.position, &p),
                    // No position covering those writes is known yet: only the master has them for sure.
                    None => need.master = true,
                }
            }
        }
        if let Some(token) = hints.min_gtid.as_deref() {
            match Position::parse_any(token) {
                Some(p) => add_position(&mut need.position, &p),
                None => need.master = true,
            }
        }
        need
    }

    /// The master's binary log position as read by a health probe that started after `at`, if one has.
    fn master_binlog_after(&self, at: std::time::Instant) -> Option<Position> {
        let health = self.shared.health.load();
        let topology = self.shared.topology.load();
        let writer = health.writer(&topology.master).ok()?;
        let master = health.servers.get(writer)?;
        let pos = master.binlog.clone().filter(|_| master.probe_started.is_some_and(|s| s > at))?;
        Some(Position::Binlog(pos))
    }

    /// Learns what a master response tells about the session's writes: the position the master reports for
    /// them, or (with binary log positions) when a statement that may have written was acknowledged.
    pub(super) fn learn_writes(&mut self, outcome: &Outcome, verdict: Option<&rwsplit_classify::Verdict>) {
        if !self.shared.health.load().binlog_positions {
            return self.learn_written(outcome);
        }
        let may_write = verdict.is_some_and(|v| {
            !matches!(
                v.kind,
                rwsplit_classify::Kind::Read
                    | rwsplit_classify::Kind::SessionSet
                    | rwsplit_classify::Kind::Begin { .. }
            )
        });
        if may_write && !outcome.error {
            let now = std::time::Instant::now();
            self.unresolved_at = Some(now);
            self.shared.servers.learn_write_at(now);
        }
    }

    /// Turns the session's last write without a position into one, once a probe of the master that started
    /// after it read the master's binary log position (before a read needs it).
    pub(super) fn resolve_writes(&mut self) {
        let Some(at) = self.unresolved_at else { return };
        if let Some(p) = self.master_binlog_after(at) {
            self.note_written(p);
            self.unresolved_at = None;
        }
    }

    /// Adds a position to what the session's reads must see.
    fn note_written(&mut self, position: Position) {
        add_position(&mut self.written, &position);
    }

    /// Learns the position of the writes a master response reports.
    fn learn_written(&mut self, outcome: &Outcome) {
        let flavor = match self.legs.conn(super::Side::Master) {
            Some(c) => c.flavor,
            None => return,
        };
        let report = &outcome.report;
        let reported = match flavor {
            crate::position::Flavor::MariaDb => {
                report.vars.iter().rev().find(|(n, _)| n == "last_gtid").map(|(_, v)| v.as_slice())
            }
            crate::position::Flavor::MySql => report.gtids.as_deref(),
        };
        let Some(position) = reported
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| Position::parse(flavor, v))
            .filter(|p| !p.is_empty())
        else {
            return;
        };
        self.shared.servers.learn_write(&position);
        self.note_written(position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_bounds_follow_the_lag_source() {
        let replication = LagSource::Replication;
        let heartbeat = LagSource::Heartbeat { table: "a.b".into() };
        assert_eq!(lag_upper_bound(Some(0.0), &replication), Some(Duration::from_secs(1)));
        assert_eq!(lag_upper_bound(Some(0.05), &heartbeat), Some(Duration::from_millis(50)));
        assert_eq!(lag_upper_bound(None, &heartbeat), None);
    }

    #[test]
    fn hints_are_read_only_when_named() {
        let d = Dialect::default();
        assert_eq!(hints_of(b"SELECT 1", d), Hints::default());
        assert!(hints_of(b"/* RWSPLIT:consistent */ SELECT 1", d).consistent);
        assert_eq!(hints_of(b"SELECT 'rwsplit:consistent'", d), Hints::default());
    }
}
