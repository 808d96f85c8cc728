//! What a finished command changes in the session's state. The server is the source of truth: its final
//! status flags (transaction, READ ONLY transaction, autocommit, sql_mode quoting rules) and its session
//! tracking (changed variables, the schema, LOCK TABLES) come first; the statement text adds what the
//! server does not report (temporary tables by name, user variables, named locks, prepared statements,
//! stored code that may have done any of these).

use bytes::Bytes;
use rwsplit_classify::{Kind, Verdict, ROLE_KEY, SCHEMA_KEY};
use rwsplit_wire::packet::com;
use rwsplit_wire::StatusFlags;

use super::forward::Outcome;
use super::history::READS_ANYTHING;
use super::legs::Side;
use super::track;
use super::Session;
use crate::error::SessionError;

/// MariaDB's `SERVER_STATUS_ANSI_QUOTES`: `ANSI_QUOTES` is in the session's sql_mode.
const ANSI_QUOTES: u16 = 0x8000;

/// The history key of COM_SET_OPTION (the session's multi-statements setting).
const SET_OPTION_KEY: &str = "(set_option)";

impl Session {
    /// Before applying a response that ended in an error: when the statement was a multi-statement or ran
    /// stored code, the error hid the final status (the statements before it may have opened or ended a
    /// transaction), so the server is asked with COM_PING, whose OK carries the current status and leaves
    /// the diagnostics area (SHOW WARNINGS) alone. A connection that fails then took state the proxy cannot
    /// know with it: the session ends (the client got its error; it finds the connection closed next).
    pub(super) async fn settle_status(&mut self, outcome: &mut Outcome, verdict: &Verdict) -> Result<(), SessionError> {
        if !outcome.error || (verdict.statements == 1 && !verdict.effects.stored_code) {
            return Ok(());
        }
        let Some(conn) = self.legs.conn_mut(outcome.side) else { return Ok(()) };
        match conn.status().await {
            Ok(status) => {
                outcome.report.status = Some(status);
                Ok(())
            }
            Err(error) => {
                let addr = conn.key.addr.to_string();
                let lost = self.lose(outcome.side);
                tracing::warn!(backend = %addr, %error, lost = lost.describe(), "backend failed after an error");
                Err(SessionError::Backend { addr, source: error })
            }
        }
    }

    /// Applies a finished command. `verdict`: the statement's classification (None for protocol commands);
    /// `text`: the command's payload when it is a session-state command to replay on other connections.
    pub(super) fn apply(&mut self, outcome: &Outcome, verdict: Option<&Verdict>, text: Option<&Bytes>) {
        let side = outcome.side;
        let report = &outcome.report;
        self.state.observe(side, report.status, outcome.error || outcome.warned);
        if side == Side::Master {
            self.learn_writes(outcome, verdict);
        }
        if let Some(status) = report.status {
            let held = self.legs.held_mut(side);
            held.trx = status.contains(StatusFlags::SERVER_STATUS_IN_TRANS);
            held.trx_read_only = status.contains(StatusFlags::SERVER_STATUS_IN_TRANS_READONLY);
            self.dialect.no_backslash_escapes = status.contains(StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES);
            self.dialect.ansi_quotes = status.bits() & ANSI_QUOTES != 0;
        }
        let tracked = self.legs.conn(side).is_some_and(|c| c.tracking);
        if let Some(locks) = report.table_locks() {
            self.legs.held_mut(side).table_locks = locks;
        }
        let recorded = match (text, outcome.error) {
            (Some(payload), false) => self.record(payload, verdict, side, tracked),
            _ => Vec::new(),
        };
        let scoped = verdict.map(|v| v.effects.statement_scoped.as_slice()).unwrap_or_default();
        for (name, value) in &report.vars {
            if name == "character_set_client" {
                // How the session's text is read: multi-byte characters whose second byte may be `\`.
                let charset = String::from_utf8_lossy(value);
                self.dialect.multibyte = rwsplit_classify::lex::Multibyte::from_charset_name(&charset);
            }
            if track::is_tracker(name) {
                // The client changed its trackers; `learn_client_trackers` reads what it set.
                if let Some(conn) = self.legs.conn_mut(side) {
                    conn.tracking_stale = true;
                }
            } else if track::is_replayable(name) && !scoped.contains(name) && !recorded.contains(name) {
                self.history.push_sysvar(name, value);
            }
        }
        if let Some(schema) = report.schema.as_ref().filter(|_| !recorded.iter().any(|k| k == SCHEMA_KEY)) {
            if schema.is_empty() {
                // No current database (it was dropped): a new connection cannot be brought to that.
                self.state.pinned = true;
            } else {
                self.history.push_schema(schema);
            }
        }
        if let Some(v) = verdict {
            if !outcome.error {
                self.apply_effects(side, v, tracked, report.state_changed, !recorded.is_empty());
            } else if v.statements > 1 || v.effects.stored_code {
                self.apply_partial_effects(side, v);
            }
            let e = &v.effects;
            let charset_or_role =
                e.assigns.iter().any(|k| k == ROLE_KEY || k == "collation_connection" || k == "character_set_client");
            if v.statements > 1 && e.session_change && charset_or_role {
                // SET NAMES … COLLATE or SET ROLE inside a multi-statement: the server does not report all of
                // it, and it is not recorded as text.
                self.state.pinned = true;
            }
            // A setting for the next statement or transaction is used up by this one (kept when it failed, or
            // when this was a SET, which starts no transaction: it may not be).
            let held = self.legs.held_mut(side);
            let kept = outcome.error || v.kind == Kind::SessionSet;
            held.next_statement = v.effects.next_statement || (kept && held.next_statement);
        }
        if self.history.is_full() {
            self.state.pinned = true;
        }
        let last = self.history.last_seq();
        if let Some(conn) = self.legs.conn_mut(side) {
            conn.applied = last;
        }
    }

    /// After a statement that may have changed the client's trackers (it assigns a `session_track_…`
    /// variable): reads what the client set on that connection into its view, and the current values of the
    /// other system variables the statement assigned into the history (once tracking changed, the server
    /// may not have reported them), then turns the proxy's own trackers on again there. Only the responses
    /// after it follow the new view (a server would apply a new tracker to the statement's own OK already).
    /// A connection that fails here ends the session: what the client set there is unknown.
    pub(super) async fn learn_client_trackers(&mut self, side: Side, verdict: &Verdict) -> Result<(), SessionError> {
        let assigns = &verdict.effects.assigns;
        if !assigns.iter().any(|k| track::is_tracker(k)) {
            return Ok(());
        }
        let plain = |k: &str| k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let others: Vec<&str> = assigns
            .iter()
            .map(String::as_str)
            .filter(|k| !track::is_tracker(k) && track::is_replayable(k) && plain(k))
            .collect();
        if verdict.statements > 1 || assigns.iter().any(|k| !track::is_tracker(k) && !k.starts_with('@') && !plain(k)) {
            // Another statement of the text, or a change the server cannot be asked about (the schema, a
            // role, a structured variable), may have gone unreported.
            self.state.pinned = true;
        }
        let Some(conn) = self.legs.conn_mut(side) else { return Ok(()) };
        match conn.take_client_trackers(&others).await {
            Ok(values) => {
                for (name, value) in values {
                    if !track::is_tracker(&name) {
                        self.history.push_sysvar(&name, &value);
                    } else if assigns.contains(&name) {
                        // Only what the statement assigned is the client's: the others hold the proxy's values.
                        self.tracking.set(&name, &value);
                    }
                }
                let last = self.history.last_seq();
                if let Some(conn) = self.legs.conn_mut(side) {
                    conn.applied = last;
                }
                Ok(())
            }
            Err(error) => {
                let addr = conn.key.addr.to_string();
                let lost = self.lose(side);
                tracing::warn!(backend = %addr, %error, lost = lost.describe(), "cannot read the client's session trackers");
                Err(SessionError::Backend { addr, source: error })
            }
        }
    }

    /// Records a successful session-state command in the history; returns the keys its entry covers (empty
    /// when it was not recorded as text: the server's report, or the leg's state, stands for it).
    fn record(&mut self, payload: &Bytes, verdict: Option<&Verdict>, side: Side, tracked: bool) -> Vec<String> {
        let (keys, reads) = match (payload.first(), verdict) {
            (Some(&com::INIT_DB), _) => (vec![SCHEMA_KEY.to_string()], Vec::new()),
            (Some(&com::SET_OPTION), _) => (vec![SET_OPTION_KEY.to_string()], Vec::new()),
            (_, Some(v)) => (v.effects.assigns.clone(), v.effects.reads.clone()),
            (_, None) => (Vec::new(), vec![READS_ANYTHING.to_string()]),
        };
        let user_vars = keys.iter().any(|k| k.starts_with('@'));
        if keys.iter().any(|k| track::is_tracker(k)) {
            // The client changed its trackers: its view, and the other variables it set, are read back from
            // the server (`learn_client_trackers`); the text is not replayed (the proxy owns the trackers on
            // every connection).
            if user_vars {
                self.legs.held_mut(side).user_vars = true;
            }
            return Vec::new();
        }
        let only_sysvars = !user_vars && keys.iter().all(|k| !k.starts_with('(') && k != ROLE_KEY);
        if !reads.is_empty() && only_sysvars && tracked {
            // `SET sql_mode = CONCAT(@@sql_mode, …)`: the reported values replay exactly and depend on nothing.
            return Vec::new();
        }
        if self.history.is_full() {
            return Vec::new();
        }
        self.history.push(payload.clone(), keys.clone(), reads);
        keys
    }

    /// The statement's own effects, after it succeeded on `side`.
    fn apply_effects(&mut self, side: Side, v: &Verdict, tracked: bool, state_changed: bool, recorded: bool) {
        let e = &v.effects;
        for t in &e.tables_dropped {
            for s in [Side::Master, Side::Replica] {
                self.legs.held_mut(s).temp_tables.remove(t);
            }
        }
        let held = self.legs.held_mut(side);
        held.temp_tables.extend(e.temp_tables_created.iter().cloned());
        if v.reason == rwsplit_classify::Reason::Ddl && v.tables.iter().any(|t| held.temp_tables.contains(t)) {
            // ALTER/RENAME of a temporary table: its new name is not followed.
            held.temp_unknown = true;
        }
        if e.writes_user_vars && !(v.kind == Kind::SessionSet && recorded) {
            held.user_vars = true;
        }
        if e.stored_code {
            // It may have set variables or taken locks; it may have created temporary tables only if the
            // server says some session state changed (or cannot say).
            held.user_vars = true;
            held.named_locks = true;
            held.temp_unknown |= state_changed || !tracked;
        }
        held.named_locks |= e.named_locks;
        if let (false, Some(locks)) = (tracked, e.table_locks) {
            held.table_locks = locks;
        }
        if e.flush_locks {
            held.flush_locks = true;
        } else if e.table_locks == Some(false) && !matches!(v.kind, Kind::Begin { .. }) {
            // UNLOCK TABLES (BEGIN releases LOCK TABLES, not a global read lock).
            held.flush_locks = false;
        }
        for name in &e.prepares {
            held.prepared.insert(name.clone());
        }
        for name in &e.deallocates {
            held.prepared.remove(name);
        }
        match e.handler {
            Some(true) => held.handlers += 1,
            Some(false) => held.handlers = held.handlers.saturating_sub(1),
            None => {}
        }
        if e.releases_connection {
            // COMMIT RELEASE: the server closes the connection after answering; so does the session.
            self.close_after = true;
        }
    }

    /// After a multi-statement or stored code that ended in an error: the statements before the error ran.
    /// What they may have created is taken as held here (temporary tables, user variables, named locks,
    /// prepared statements, handlers, table locks), never what they may have dropped: holding too much only
    /// keeps more statements on this connection, holding too little loses state. SETs among them are not
    /// recorded as text; the server's report of the variables stands for them (user variables stay here).
    fn apply_partial_effects(&mut self, side: Side, v: &Verdict) {
        let e = &v.effects;
        let held = self.legs.held_mut(side);
        held.temp_tables.extend(e.temp_tables_created.iter().cloned());
        held.temp_unknown |= e.stored_code;
        held.user_vars |= e.writes_user_vars || e.stored_code;
        held.named_locks |= e.named_locks || e.stored_code;
        held.flush_locks |= e.flush_locks;
        held.table_locks |= e.table_locks == Some(true);
        held.prepared.extend(e.prepares.iter().cloned());
        if e.handler == Some(true) {
            held.handlers += 1;
        }
    }
}
