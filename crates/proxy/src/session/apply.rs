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
use super::legs::Side;
use super::track;
use super::Session;

/// MariaDB's `SERVER_STATUS_ANSI_QUOTES`: `ANSI_QUOTES` is in the session's sql_mode.
const ANSI_QUOTES: u16 = 0x8000;

/// The history key of COM_SET_OPTION (the session's multi-statements setting).
const SET_OPTION_KEY: &str = "(set_option)";

impl Session {
    /// Applies a finished command. `verdict`: the statement's classification (None for protocol commands);
    /// `text`: the command's payload when it is a session-state command to replay on other connections.
    pub(super) fn apply(&mut self, outcome: &Outcome, verdict: Option<&Verdict>, text: Option<&Bytes>) {
        let side = outcome.side;
        let report = &outcome.report;
        self.state.observe(side, report.status);
        if let Some(status) = report.status {
            let held = self.legs.held_mut(side);
            held.trx = status.contains(StatusFlags::SERVER_STATUS_IN_TRANS);
            held.trx_read_only = status.contains(StatusFlags::SERVER_STATUS_IN_TRANS_READONLY);
            self.dialect.no_backslash_escapes = status.contains(StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES);
            self.dialect.ansi_quotes = status.bits() & ANSI_QUOTES != 0;
        } else if outcome.error && verdict.is_some_and(|v| v.statements > 1 || v.effects.stored_code) {
            // An error hid the status of a multi-statement or stored code that may have opened a transaction:
            // assume one is open until the next status says (routing stays with this connection).
            self.legs.held_mut(side).trx = true;
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
        if let (Some(v), false) = (verdict, outcome.error) {
            self.apply_effects(side, v, tracked, report.state_changed, !recorded.is_empty());
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
    /// variable): reads what the client set on that connection into its view, and turns the proxy's own
    /// trackers on again there. Only the responses after it follow the new view (the statement's own OK was
    /// already forwarded; a server would apply a new tracker to it already).
    pub(super) async fn learn_client_trackers(&mut self, side: Side, verdict: &Verdict) {
        if !verdict.effects.assigns.iter().any(|k| track::is_tracker(k)) {
            return;
        }
        let Some(conn) = self.legs.conn_mut(side) else { return };
        match conn.take_client_trackers().await {
            Ok(values) => {
                // Only what the statement assigned is the client's: the others still hold the proxy's values.
                for (name, value) in values.iter().filter(|(n, _)| verdict.effects.assigns.iter().any(|k| k == n)) {
                    self.tracking.set(name, value.as_bytes());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the client's session trackers");
                self.lose(side);
            }
        }
    }

    /// Records a successful session-state command in the history; returns the keys its entry covers (empty
    /// when it was not recorded as text: the server's report, or the leg's state, stands for it).
    fn record(&mut self, payload: &Bytes, verdict: Option<&Verdict>, side: Side, tracked: bool) -> Vec<String> {
        let (keys, order_dependent) = match (payload.first(), verdict) {
            (Some(&com::INIT_DB), _) => (vec![SCHEMA_KEY.to_string()], false),
            (Some(&com::SET_OPTION), _) => (vec![SET_OPTION_KEY.to_string()], false),
            (_, Some(v)) => (v.effects.assigns.clone(), v.effects.order_dependent),
            (_, None) => (Vec::new(), true),
        };
        let user_vars = keys.iter().any(|k| k.starts_with('@'));
        if keys.iter().any(|k| track::is_tracker(k)) {
            // The client changed its trackers: its view follows the server's report, and the text is not
            // replayed (the proxy owns the trackers on every connection).
            if user_vars {
                self.legs.held_mut(side).user_vars = true;
            }
            return Vec::new();
        }
        let only_sysvars = !user_vars && keys.iter().all(|k| !k.starts_with('(') && k != ROLE_KEY);
        if order_dependent && only_sysvars && tracked {
            // `SET sql_mode = CONCAT(@@sql_mode, …)`: the reported values replay exactly and depend on nothing.
            return Vec::new();
        }
        if self.history.is_full() {
            self.state.pinned = true;
            return Vec::new();
        }
        self.history.push(payload.clone(), keys.clone(), order_dependent);
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
        let charset_or_role =
            e.assigns.iter().any(|k| k == ROLE_KEY || k == "collation_connection" || k == "character_set_client");
        if v.statements > 1 && e.session_change && charset_or_role {
            // SET NAMES … COLLATE or SET ROLE inside a multi-statement: the server does not report all of it.
            self.state.pinned = true;
        }
        if e.releases_connection {
            // COMMIT RELEASE: the server closes the connection after answering; so does the session.
            self.close_after = true;
        }
    }
}
