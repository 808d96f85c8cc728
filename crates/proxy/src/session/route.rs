//! Routing: where each statement goes, and the session state that decides it.
//!
//! The classifier decides the first hop from the statement text; the servers' status flags decide the rest.
//! After every response the session takes `SERVER_STATUS_IN_TRANS` and `SERVER_STATUS_AUTOCOMMIT` from the
//! final OK/EOF packet of the backend that answered, so transactions opened or closed in ways the text does
//! not show (a stored procedure, `autocommit=0` then any statement, implicit commits by DDL) are tracked.
//!
//! Rules, in order:
//! 1. Inside a transaction: the backend that holds it (master, or the replica of a READ ONLY transaction).
//! 2. `autocommit=0` or LOCK TABLES in force: the master.
//! 3. A hint comment (`/* rwsplit:master */`, `/* rwsplit:replica */`): as told, outside transactions.
//! 4. The classifier's verdict: reads to the replica unless they touch the session's temporary tables, read
//!    user variables the replicas do not have, or the session is pinned; everything else to the master.

use std::collections::HashSet;

use bytes::Bytes;
#[cfg(test)]
use rwsplit_classify::classify;
use rwsplit_classify::{classify_cached, Hint, Kind, Reason, Verdict};
use rwsplit_wire::walk::Expect;
use rwsplit_wire::StatusFlags;

use super::{Session, MAX_HISTORY};
use crate::error::SessionError;

/// Which backend of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The master.
    Master,
    /// The session's replica.
    Replica,
}

/// Routing state of a session.
#[derive(Debug, Clone)]
pub struct State {
    /// Autocommit as last reported by a backend.
    pub autocommit: bool,
    /// The backend holding the open transaction, if any (from SERVER_STATUS_IN_TRANS).
    pub trx: Option<Side>,
    /// LOCK TABLES (or FLUSH TABLES WITH READ LOCK) is in force on the master.
    pub locked_tables: bool,
    /// Reads must stay on the master for the rest of the session: session state changed in a way that
    /// cannot be replayed on replicas (a multi-statement with SET/USE, text PREPARE, history overflow).
    pub pinned: bool,
    /// User variables were assigned on the master only (`SELECT @v := …`, `SELECT … INTO @v`, a
    /// non-deterministic SET): reads that use user variables stay on the master.
    pub vars_diverged: bool,
    /// Temporary tables the session created (lower-case names); reads touching them go to the master.
    pub temp_tables: HashSet<String>,
    /// The backend that ran the previous statement (for SHOW WARNINGS and friends).
    pub last: Option<Side>,
}

impl Default for State {
    fn default() -> Self {
        State {
            autocommit: true,
            trx: None,
            locked_tables: false,
            pinned: false,
            vars_diverged: false,
            temp_tables: HashSet::new(),
            last: None,
        }
    }
}

/// A routing decision and why it was taken (the reason becomes a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Where to.
    pub side: Side,
    /// Why.
    pub reason: &'static str,
}

const fn to(side: Side, reason: &'static str) -> Decision {
    Decision { side, reason }
}

impl State {
    /// Where a statement with this verdict goes now. Session-state commands are decided elsewhere.
    pub fn route(&self, v: &Verdict) -> Decision {
        if let Some(side) = self.trx {
            return to(side, "transaction");
        }
        if !self.autocommit {
            return to(Side::Master, "transaction");
        }
        if self.locked_tables {
            return to(Side::Master, "lock_tables");
        }
        match v.hint {
            Some(Hint::Master) => return to(Side::Master, "hint"),
            Some(Hint::Replica) if matches!(v.kind, Kind::Read | Kind::Master) => return to(Side::Replica, "hint"),
            _ => {}
        }
        match v.kind {
            Kind::Read => self.route_read(&v.tables, v.reads_user_vars),
            Kind::Begin { read_only: true } if !self.pinned => to(Side::Replica, "read_only_transaction"),
            Kind::Begin { .. } | Kind::End => to(Side::Master, "transaction"),
            Kind::Previous => to(self.last.unwrap_or(Side::Master), "previous"),
            Kind::Master | Kind::SessionSet => to(Side::Master, v.reason.as_str()),
        }
    }

    /// Where a read goes, given the tables it reads.
    pub fn route_read(&self, tables: &[String], reads_user_vars: bool) -> Decision {
        if self.pinned {
            to(Side::Master, "session_state")
        } else if tables.iter().any(|t| self.temp_tables.contains(t)) {
            to(Side::Master, "temp_table")
        } else if reads_user_vars && self.vars_diverged {
            to(Side::Master, "session_state")
        } else {
            to(Side::Replica, "read")
        }
    }

    /// Takes transaction and autocommit state from the final status flags of a response from `side`.
    pub fn observe(&mut self, side: Side, status: Option<StatusFlags>) {
        self.last = Some(side);
        if let Some(status) = status {
            self.autocommit = status.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT);
            self.trx = status.contains(StatusFlags::SERVER_STATUS_IN_TRANS).then_some(side);
        }
    }

    /// Updates what the statement text tells about session state, after it succeeded.
    pub fn after_success(&mut self, v: &Verdict, sql: &[u8]) {
        if let Some(t) = &v.creates_temp_table {
            self.temp_tables.insert(t.clone());
        }
        if v.reason == Reason::LockTables {
            self.locked_tables = !super::starts_with_word(sql, "UNLOCK");
        }
        if v.kind == Kind::Master && v.writes_user_vars {
            self.vars_diverged = true;
        }
        let other_session_change = v.creates_temp_table.is_none() && v.reason != Reason::LockTables;
        if v.kind == Kind::Master && v.session_change && other_session_change && !v.writes_user_vars {
            self.pinned = true;
        }
        if v.kind == Kind::Master && v.statements > 1 && v.session_change {
            self.pinned = true;
        }
    }
}

impl Session {
    /// COM_QUERY: classify, route, forward.
    pub(super) async fn com_query(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let text = String::from_utf8_lossy(&payload[1..]);
        let (payload, sql) = match without_socket(&text) {
            Some(rewritten) => {
                let mut p = vec![rwsplit_wire::packet::com::QUERY];
                p.extend_from_slice(rewritten.as_bytes());
                (Bytes::from(p), std::borrow::Cow::Owned(rewritten))
            }
            None => (payload.clone(), text),
        };
        let verdict = classify_cached(&sql);
        tracing::debug!(?verdict, "query");
        if verdict.kind == Kind::SessionSet {
            return self.session_command(payload, Expect::ResultSets).await;
        }
        if verdict.reason == Reason::Admin && super::starts_with_word(&payload[1..], "KILL") {
            return self.kill(&sql).await;
        }
        let decision = self.state.route(&verdict);
        let outcome = self.run_routed(decision, payload.clone(), Expect::ResultSets).await?;
        if outcome.is_some_and(|o| !o.error) {
            self.state.after_success(&verdict, &payload[1..]);
        }
        Ok(())
    }

    /// A command that changes session state and is replayed on every backend of the session (SET, USE,
    /// COM_INIT_DB, COM_SET_OPTION). It runs on the backend the session is using (the transaction's, else the
    /// master if connected, else the replica if connected, else the master) and joins the history if it
    /// succeeds; the session's other connection catches up before its next statement.
    pub(super) async fn session_command(&mut self, payload: Bytes, expect: Expect) -> Result<(), SessionError> {
        let full = self.history.len() >= MAX_HISTORY;
        let side = match self.state.trx {
            Some(side) => side,
            None if full => Side::Master,
            None if self.master.is_none() && self.replica.is_some() => Side::Replica,
            None => Side::Master,
        };
        let decision = to(side, "session_state");
        let Some(outcome) = self.run_routed(decision, payload.clone(), expect).await? else {
            return Ok(());
        };
        if outcome.error {
            return Ok(());
        }
        if full {
            // Too much state to replay: the replica (if any) is out of date from here on.
            self.state.pinned = true;
            return Ok(());
        }
        self.history.push(payload);
        let n = self.history.len();
        if let Some(conn) = self.conn_mut(outcome.side) {
            conn.history_applied = n;
        }
        Ok(())
    }
}

/// For a query that only selects system variables (`SELECT @@a,@@b,@@socket`, as drivers send at connect),
/// the same query with `@@socket` replaced by `NULL AS `@@socket``; `None` for any other query.
///
/// rwsplit listens on TCP only, so "no socket" is the true answer for it. A backend's socket path would
/// make drivers that prefer sockets on localhost (mysql_async does by default) reconnect straight to that
/// backend and silently bypass the proxy and its routing.
fn without_socket(sql: &str) -> Option<String> {
    let body = sql.trim().trim_end_matches(';').trim_end();
    let (select, list) = body.split_at_checked(6)?;
    if !select.eq_ignore_ascii_case("SELECT") || !list.starts_with(char::is_whitespace) {
        return None;
    }
    if !list.trim_start().starts_with("@@") {
        // Not a list of variables (every application SELECT): skip the split below.
        return None;
    }
    let items: Vec<&str> = list.split(',').map(str::trim).collect();
    let is_var = |i: &str| {
        i.len() > 2 && i.starts_with("@@") && i[2..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    let is_socket =
        |i: &str| ["@@socket", "@@global.socket", "@@session.socket"].iter().any(|s| i.eq_ignore_ascii_case(s));
    if !items.iter().all(|i| is_var(i)) || !items.iter().any(|i| is_socket(i)) {
        return None;
    }
    let items: Vec<String> =
        items.iter().map(|i| if is_socket(i) { format!("NULL AS `{i}`") } else { i.to_string() }).collect();
    Some(format!("SELECT {}", items.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table() {
        let fresh = State::default();
        let in_master_trx = State { trx: Some(Side::Master), ..State::default() };
        let in_replica_trx = State { trx: Some(Side::Replica), ..State::default() };
        let no_autocommit = State { autocommit: false, ..State::default() };
        let locked = State { locked_tables: true, ..State::default() };
        let with_temp = State { temp_tables: ["tmp1".to_string()].into(), ..State::default() };
        let pinned = State { pinned: true, ..State::default() };
        let diverged = State { vars_diverged: true, ..State::default() };
        let cases: &[(&State, &str, Side, &str)] = &[
            (&fresh, "SELECT 1", Side::Replica, "read"),
            (&fresh, "INSERT INTO t VALUES (1)", Side::Master, "write"),
            (&fresh, "SELECT * FROM t FOR UPDATE", Side::Master, "locking_read"),
            (&fresh, "START TRANSACTION READ ONLY", Side::Replica, "read_only_transaction"),
            (&fresh, "BEGIN", Side::Master, "transaction"),
            (&fresh, "/* rwsplit:master */ SELECT 1", Side::Master, "hint"),
            (&fresh, "/* rwsplit:replica */ SELECT * FROM t FOR UPDATE", Side::Replica, "hint"),
            (&fresh, "SHOW WARNINGS", Side::Master, "previous"),
            (&in_master_trx, "SELECT 1", Side::Master, "transaction"),
            (&in_master_trx, "/* rwsplit:replica */ SELECT 1", Side::Master, "transaction"),
            (&in_replica_trx, "SELECT 1", Side::Replica, "transaction"),
            (&in_replica_trx, "COMMIT", Side::Replica, "transaction"),
            (&no_autocommit, "SELECT 1", Side::Master, "transaction"),
            (&locked, "SELECT * FROM t", Side::Master, "lock_tables"),
            (&with_temp, "SELECT * FROM tmp1", Side::Master, "temp_table"),
            (&with_temp, "SELECT * FROM other", Side::Replica, "read"),
            (&pinned, "SELECT 1", Side::Master, "session_state"),
            (&pinned, "START TRANSACTION READ ONLY", Side::Master, "transaction"),
            (&diverged, "SELECT @v", Side::Master, "session_state"),
            (&diverged, "SELECT 1", Side::Replica, "read"),
        ];
        for (state, sql, side, reason) in cases {
            let d = state.route(&classify(sql));
            assert_eq!((d.side, d.reason), (*side, *reason), "{sql}");
        }
    }

    #[test]
    fn socket_variable_is_answered_as_null() {
        let w = |s: &str| without_socket(s);
        assert_eq!(
            w("SELECT @@max_allowed_packet,@@wait_timeout,@@socket").as_deref(),
            Some("SELECT @@max_allowed_packet,@@wait_timeout,NULL AS `@@socket`")
        );
        assert_eq!(w(" select @@SOCKET ;").as_deref(), Some("SELECT NULL AS `@@SOCKET`"));
        assert_eq!(w("SELECT @@socket, 1"), None);
        assert_eq!(w("SELECT @@server_id"), None);
        assert_eq!(w("SELECT @@socket FROM t"), None);
        assert_eq!(w("SELECTED"), None);
    }

    #[test]
    fn status_flags_drive_transaction_state() {
        let mut s = State::default();
        s.observe(Side::Master, Some(StatusFlags::SERVER_STATUS_IN_TRANS));
        assert_eq!((s.trx, s.autocommit), (Some(Side::Master), false));
        s.observe(Side::Master, Some(StatusFlags::SERVER_STATUS_AUTOCOMMIT));
        assert_eq!((s.trx, s.autocommit), (None, true));
        s.observe(Side::Replica, None);
        assert_eq!((s.trx, s.last), (None, Some(Side::Replica)));
    }

    #[test]
    fn text_updates_lock_and_temp_state() {
        let mut s = State::default();
        s.after_success(&classify("LOCK TABLES t READ"), b"LOCK TABLES t READ");
        assert!(s.locked_tables);
        s.after_success(&classify("UNLOCK TABLES"), b"UNLOCK TABLES");
        assert!(!s.locked_tables);
        s.after_success(&classify("CREATE TEMPORARY TABLE Tmp (a int)"), b"");
        assert!(s.temp_tables.contains("tmp"));
        assert!(!s.pinned);
        s.after_success(&classify("SELECT @a := 1"), b"");
        assert!(s.vars_diverged && !s.pinned);
        s.after_success(&classify("SET @x = 1; SELECT 1"), b"");
        assert!(s.pinned);
    }
}
