//! Routing: where each statement goes, from the classifier's verdict, the session's state and what each
//! backend leg holds.
//!
//! The classifier decides the first hop from the statement text; the servers decide the rest: after every
//! response the session takes transaction and autocommit state from the final status flags, and LOCK
//! TABLES, the schema and changed system variables from session tracking (see `track.rs`).
//!
//! Rules, in order:
//! 1. Inside a transaction: the backend that holds it. In a READ ONLY transaction on a replica, a statement
//!    that commits implicitly (DDL, BEGIN, LOCK TABLES, …) ends it there and is routed afresh, a write gets
//!    the server's own answer for a write in a READ ONLY transaction (1792), and a call whose state lives
//!    with the master (named locks, `LAST_INSERT_ID()`, sequences) runs on the master, outside the
//!    transaction, as those calls are not transactional. (A replica holds only READ ONLY transactions; if
//!    one ever held another kind, anything but a read would end it first.)
//! 2. `autocommit=0`, LOCK TABLES in force, or a `SET TRANSACTION …` / next-statement variable waiting on
//!    the master: the master.
//! 3. A hint (`/* rwsplit:master */`; `/* rwsplit:replica */` for plain reads only).
//! 4. The verdict: a read goes to a replica unless it needs state only one leg has (temporary tables, user
//!    variables set there, stored code that may have created tables) or the session is pinned; a READ ONLY
//!    transaction starts on a replica unless the master holds the session's temporary tables or variables;
//!    everything else goes to the master.

use rwsplit_classify::{Hint, Kind, Reason, Verdict};
use rwsplit_wire::StatusFlags;

use super::legs::{Legs, Side};

/// Why a statement went where it went: the `reason` label of `rwsplit_queries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// The classifier's reason (`read`, `write`, `ddl`, `locking_read`, …).
    Classified(Reason),
    /// Inside a transaction, or `autocommit=0`.
    Transaction,
    /// A READ ONLY transaction starts on a replica.
    ReadOnlyTransaction,
    /// LOCK TABLES is in force.
    LockTables,
    /// A routing hint.
    Hint,
    /// The statement reads a temporary table (or one stored code may have created).
    TempTable,
    /// The statement needs session state only one backend has, or the session is pinned to the master.
    SessionState,
    /// SHOW WARNINGS and friends: the backend of the previous statement.
    Previous,
    /// A read found no replica to serve it and went to the master.
    NoReplica,
    /// A read went to the master because no replica had applied (in time) the writes it must see.
    Consistency,
    /// COM_STMT_FETCH on an open cursor.
    Cursor,
    /// A command on a prepared statement (COM_STMT_RESET …).
    Statement,
    /// An execute after COM_STMT_SEND_LONG_DATA.
    LongData,
    /// Another protocol command (COM_PING, COM_STATISTICS, COM_FIELD_LIST …).
    Command,
}

impl RouteReason {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::Classified(r) => r.as_str(),
            RouteReason::Transaction => "transaction",
            RouteReason::ReadOnlyTransaction => "read_only_transaction",
            RouteReason::LockTables => "lock_tables",
            RouteReason::Hint => "hint",
            RouteReason::TempTable => "temp_table",
            RouteReason::SessionState => "session_state",
            RouteReason::Previous => "previous",
            RouteReason::NoReplica => "no_replica_available",
            RouteReason::Consistency => "consistency",
            RouteReason::Cursor => "cursor",
            RouteReason::Statement => "statement",
            RouteReason::LongData => "long_data",
            RouteReason::Command => "command",
        }
    }
}

/// Where a command runs, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Where.
    pub side: Side,
    /// Why.
    pub reason: RouteReason,
    /// A plain autocommit read outside any transaction: it leaves nothing on the connection and may be
    /// retried elsewhere.
    pub plain_read: bool,
}

impl Route {
    /// A route to `side` for `reason` (not a plain read).
    pub const fn to(side: Side, reason: RouteReason) -> Route {
        Route { side, reason, plain_read: false }
    }

    /// A plain read on a replica, for `reason`.
    pub const fn read(reason: RouteReason) -> Route {
        Route { side: Side::Replica, reason, plain_read: true }
    }
}

/// A routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run it there.
    Run(Route),
    /// First end the READ ONLY transaction on the replica (the statement commits implicitly, as it would on
    /// the server), then route the statement again.
    EndReplicaTransaction,
    /// Answer with the server's error for a write inside a READ ONLY transaction (1792), as the server would.
    ReadOnlyTransactionWrite,
}

impl Decision {
    /// A decision to run on `side` for `reason` (not a plain read).
    pub const fn to(side: Side, reason: RouteReason) -> Decision {
        Decision::Run(Route::to(side, reason))
    }
}

/// Session-level routing state, from the servers' responses.
#[derive(Debug, Clone)]
pub struct State {
    /// Autocommit as last reported by a backend.
    pub autocommit: bool,
    /// Reads stay on the master for the rest of the session: its state could not be replayed (history
    /// full, a multi-statement with SET NAMES, the current database dropped).
    pub pinned: bool,
    /// The backend that ran the previous statement (for SHOW WARNINGS and friends).
    pub last: Option<Side>,
    /// The previous statement left warnings or an error in that backend's diagnostics area.
    pub diagnostics: bool,
}

impl Default for State {
    fn default() -> Self {
        State { autocommit: true, pinned: false, last: None, diagnostics: false }
    }
}

impl State {
    /// Takes autocommit from the final status flags of a response (transaction state goes to the leg), and
    /// whether the statement left diagnostics (warnings or an error).
    pub fn observe(&mut self, side: Side, status: Option<StatusFlags>, diagnostics: bool) {
        self.last = Some(side);
        self.diagnostics = diagnostics;
        if let Some(status) = status {
            self.autocommit = status.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT);
        }
    }
}

/// Where a statement with verdict `v` goes now. Session-state commands and KILL are decided elsewhere.
pub fn route(state: &State, legs: &Legs, v: &Verdict) -> Decision {
    if let Some(side) = legs.trx_side() {
        return in_transaction(legs, side, v);
    }
    if !state.autocommit {
        return Decision::to(Side::Master, RouteReason::Transaction);
    }
    if legs.held(Side::Master).locks_tables() {
        return Decision::to(Side::Master, RouteReason::LockTables);
    }
    if legs.held(Side::Master).next_statement {
        return Decision::to(Side::Master, RouteReason::SessionState);
    }
    match v.hint {
        Some(Hint::Master) => return Decision::to(Side::Master, RouteReason::Hint),
        Some(Hint::Replica) if v.is_read() => return Decision::Run(Route::read(RouteReason::Hint)),
        _ => {}
    }
    match v.kind {
        Kind::Read => Decision::Run(route_read(state, legs, &v.tables, v.reads_user_vars)),
        Kind::Begin { read_only: true } if !state.pinned && !legs.held(Side::Master).has_session_objects() => {
            Decision::to(Side::Replica, RouteReason::ReadOnlyTransaction)
        }
        Kind::Begin { .. } | Kind::End => Decision::to(Side::Master, RouteReason::Transaction),
        Kind::Previous => Decision::to(state.last.unwrap_or(Side::Master), RouteReason::Previous),
        Kind::Master | Kind::SessionSet => Decision::to(Side::Master, RouteReason::Classified(v.reason)),
    }
}

/// Inside a transaction held by `side`.
fn in_transaction(legs: &Legs, side: Side, v: &Verdict) -> Decision {
    if side == Side::Master {
        return Decision::to(side, RouteReason::Transaction);
    }
    let read_only = legs.held(Side::Replica).trx_read_only;
    if v.effects.implicit_commit || matches!(v.kind, Kind::Begin { .. }) {
        return Decision::EndReplicaTransaction;
    }
    if !read_only && !matches!(v.kind, Kind::Read | Kind::Previous | Kind::End) {
        // Not a READ ONLY transaction (it never should be on a replica): nothing but reads runs in it.
        return Decision::EndReplicaTransaction;
    }
    if v.effects.dml {
        return Decision::ReadOnlyTransactionWrite;
    }
    if v.effects.master_only {
        return Decision::to(Side::Master, RouteReason::Classified(v.reason));
    }
    Decision::to(side, RouteReason::Transaction)
}

/// Where a read of `tables` goes (outside transactions, LOCK TABLES and `autocommit=0`).
pub fn route_read(state: &State, legs: &Legs, tables: &[String], reads_user_vars: bool) -> Route {
    if state.pinned {
        return Route::to(Side::Master, RouteReason::SessionState);
    }
    for side in [Side::Master, Side::Replica] {
        let held = legs.held(side);
        if (!tables.is_empty() && held.temp_unknown) || tables.iter().any(|t| held.temp_tables.contains(t)) {
            return Route::to(side, RouteReason::TempTable);
        }
        if reads_user_vars && held.user_vars {
            return Route::to(side, RouteReason::SessionState);
        }
    }
    // A statement that uses no table leaves the diagnostics area as it was (MariaDB and MySQL reset it only
    // for statements that use a table): after warnings or an error, `SELECT 1` then SHOW WARNINGS show the
    // earlier ones, so a tableless read runs where they are, unless the state it reads is elsewhere (above).
    if tables.is_empty() && state.diagnostics {
        return match state.last {
            Some(Side::Replica) => Route::read(RouteReason::Previous),
            _ => Route::to(Side::Master, RouteReason::Previous),
        };
    }
    Route::read(RouteReason::Classified(Reason::Read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwsplit_classify::classify;

    fn legs(f: impl FnOnce(&mut Legs)) -> Legs {
        let mut l = Legs::default();
        f(&mut l);
        l
    }

    #[test]
    fn routing_table() {
        use RouteReason as R;
        let fresh = Legs::default();
        let master_trx = legs(|l| l.held_mut(Side::Master).trx = true);
        let replica_ro = legs(|l| {
            let h = l.held_mut(Side::Replica);
            h.trx = true;
            h.trx_read_only = true;
        });
        let replica_trx = legs(|l| l.held_mut(Side::Replica).trx = true);
        let next_statement = legs(|l| l.held_mut(Side::Master).next_statement = true);
        let flushed = legs(|l| l.held_mut(Side::Master).flush_locks = true);
        let locked = legs(|l| l.held_mut(Side::Master).table_locks = true);
        let temp = legs(|l| {
            l.held_mut(Side::Master).temp_tables.insert("tmp1".into());
        });
        let temp_unknown = legs(|l| l.held_mut(Side::Master).temp_unknown = true);
        let vars = legs(|l| l.held_mut(Side::Master).user_vars = true);
        let replica_vars = legs(|l| l.held_mut(Side::Replica).user_vars = true);
        let st = State::default();
        let no_autocommit = State { autocommit: false, ..State::default() };
        let pinned = State { pinned: true, ..State::default() };
        let warned_replica = State { last: Some(Side::Replica), diagnostics: true, ..State::default() };
        let warned_master = State { last: Some(Side::Master), diagnostics: true, ..State::default() };
        let clean_master = State { last: Some(Side::Master), ..State::default() };
        let read = |_side: Side| Decision::Run(Route::read(R::Classified(Reason::Read)));
        let to = Decision::to;
        #[rustfmt::skip]
        let cases: &[(&State, &Legs, &str, Decision)] = &[
            (&st, &fresh, "SELECT 1", read(Side::Replica)),
            (&st, &fresh, "INSERT INTO t VALUES (1)", to(Side::Master, R::Classified(Reason::Write))),
            (&st, &fresh, "SELECT * FROM t FOR UPDATE", to(Side::Master, R::Classified(Reason::LockingRead))),
            (&st, &fresh, "START TRANSACTION READ ONLY", to(Side::Replica, R::ReadOnlyTransaction)),
            (&st, &fresh, "BEGIN", to(Side::Master, R::Transaction)),
            (&st, &fresh, "/* rwsplit:master */ SELECT 1", to(Side::Master, R::Hint)),
            (&st, &fresh, "/* rwsplit:replica */ SELECT 1", Decision::Run(Route::read(R::Hint))),
            // A replica hint never moves what is not a plain read.
            (&st, &fresh, "/* rwsplit:replica */ SELECT * FROM t FOR UPDATE", to(Side::Master, R::Classified(Reason::LockingRead))),
            (&st, &fresh, "/* rwsplit:replica */ INSERT INTO t VALUES (1)", to(Side::Master, R::Classified(Reason::Write))),
            (&st, &fresh, "/* rwsplit:replica */ LOCK TABLES t READ", to(Side::Master, R::Classified(Reason::LockTables))),
            (&st, &fresh, "/* rwsplit:replica */ SELECT GET_LOCK('x', 1)", to(Side::Master, R::Classified(Reason::SideEffectFunction))),
            (&st, &fresh, "/* rwsplit:replica */ SELECT 1; DELETE FROM t", to(Side::Master, R::Classified(Reason::Write))),
            (&st, &fresh, "SHOW WARNINGS", to(Side::Master, R::Previous)),
            (&st, &fresh, "SELECT FOUND_ROWS()", to(Side::Master, R::Previous)),
            (&st, &master_trx, "SELECT 1", to(Side::Master, R::Transaction)),
            (&st, &master_trx, "/* rwsplit:replica */ SELECT 1", to(Side::Master, R::Transaction)),
            (&st, &replica_ro, "SELECT 1", to(Side::Replica, R::Transaction)),
            (&st, &replica_ro, "COMMIT", to(Side::Replica, R::Transaction)),
            (&st, &replica_ro, "INSERT INTO t VALUES (1)", Decision::ReadOnlyTransactionWrite),
            (&st, &replica_ro, "DELETE FROM t", Decision::ReadOnlyTransactionWrite),
            (&st, &replica_ro, "BEGIN", Decision::EndReplicaTransaction),
            (&st, &replica_ro, "START TRANSACTION READ ONLY", Decision::EndReplicaTransaction),
            (&st, &replica_ro, "CREATE TABLE t (a INT)", Decision::EndReplicaTransaction),
            (&st, &replica_ro, "SELECT GET_LOCK('x', 0)", to(Side::Master, R::Classified(Reason::SideEffectFunction))),
            (&st, &replica_ro, "SELECT LAST_INSERT_ID()", to(Side::Master, R::Classified(Reason::SideEffectFunction))),
            (&st, &replica_ro, "SELECT @a := 1", to(Side::Replica, R::Transaction)),
            (&st, &replica_trx, "SELECT 1", to(Side::Replica, R::Transaction)),
            (&st, &replica_trx, "COMMIT", to(Side::Replica, R::Transaction)),
            (&st, &replica_trx, "INSERT INTO t VALUES (1)", Decision::EndReplicaTransaction),
            (&st, &replica_trx, "SELECT GET_LOCK('x', 0)", Decision::EndReplicaTransaction),
            (&st, &next_statement, "SELECT 1", to(Side::Master, R::SessionState)),
            (&st, &next_statement, "START TRANSACTION READ ONLY", to(Side::Master, R::SessionState)),
            (&st, &flushed, "SELECT 1", to(Side::Master, R::LockTables)),
            (&no_autocommit, &fresh, "SELECT 1", to(Side::Master, R::Transaction)),
            (&st, &locked, "SELECT * FROM t", to(Side::Master, R::LockTables)),
            (&st, &temp, "SELECT * FROM tmp1", to(Side::Master, R::TempTable)),
            (&st, &temp, "SELECT * FROM other", read(Side::Replica)),
            (&st, &temp, "START TRANSACTION READ ONLY", to(Side::Master, R::Transaction)),
            (&st, &temp_unknown, "SELECT * FROM anything", to(Side::Master, R::TempTable)),
            (&st, &temp_unknown, "SELECT 1", read(Side::Replica)),
            (&pinned, &fresh, "SELECT 1", to(Side::Master, R::SessionState)),
            (&pinned, &fresh, "START TRANSACTION READ ONLY", to(Side::Master, R::Transaction)),
            (&st, &vars, "SELECT @v", to(Side::Master, R::SessionState)),
            (&st, &vars, "SELECT 1", read(Side::Replica)),
            (&st, &vars, "START TRANSACTION READ ONLY", to(Side::Master, R::Transaction)),
            (&st, &replica_vars, "SELECT @v", to(Side::Replica, R::SessionState)),
            // A tableless read keeps the previous statement's warnings: it runs where they are.
            (&warned_replica, &fresh, "SELECT 1", Decision::Run(Route::read(R::Previous))),
            (&warned_master, &fresh, "SELECT NOW()", to(Side::Master, R::Previous)),
            (&warned_master, &fresh, "SELECT * FROM t", read(Side::Replica)),
            (&clean_master, &fresh, "SELECT 1", read(Side::Replica)),
            // The state a read needs comes first: the master's user variables, a pinned session.
            (&warned_replica, &vars, "SELECT @v", to(Side::Master, R::SessionState)),
            (&State { pinned: true, ..warned_replica.clone() }, &fresh, "SELECT 1", to(Side::Master, R::SessionState)),
        ];
        for (state, legs, sql, want) in cases {
            let got = route(state, legs, &classify(sql));
            assert_eq!(got, *want, "{sql}");
        }
    }

    #[test]
    fn status_flags_drive_autocommit() {
        let mut s = State::default();
        s.observe(Side::Master, Some(StatusFlags::SERVER_STATUS_IN_TRANS), false);
        assert!(!s.autocommit);
        s.observe(Side::Master, Some(StatusFlags::SERVER_STATUS_AUTOCOMMIT), false);
        assert!(s.autocommit);
        s.observe(Side::Replica, None, false);
        assert_eq!((s.autocommit, s.last), (true, Some(Side::Replica)));
    }
}
