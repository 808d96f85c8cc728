//! Session tracking: what the servers report about session state in their OK packets, and what the
//! client sees of it.
//!
//! Backend connections run with every tracker on (see `backend.rs`), so the proxy learns each changed
//! system variable, the schema, that some state changed, and the transaction state. The client asked for
//! less: its own trackers, the server's defaults unless it set others, and possibly no session tracking at
//! all (`CLIENT_SESSION_TRACK` not negotiated). [`ClientTracking`] is that view; every OK packet forwarded
//! to the client is rewritten to what the server would have sent it (entries it does not track removed,
//! the `SERVER_SESSION_STATE_CHANGED` flag cleared when none is left), and every EOF packet loses that flag
//! when the client does not track. A client's `SET session_track_…` changes its view (the proxy then turns
//! its own trackers on again on that connection), so `SELECT @@session_track_system_variables` through
//! rwsplit shows the proxy's setting, not the client's.

use std::collections::HashSet;

use rwsplit_wire::packet::{state_type, StateChange};
use rwsplit_wire::StatusFlags;

use crate::backend::ServerDefaults;

/// System variables whose reported changes are not session state to replay: read-only results of the
/// previous statement, values for the next statement only, and the trackers (which the proxy owns).
const NOT_REPLAYED: &[&str] = &[
    "last_gtid",
    "insert_id",
    "last_insert_id",
    "identity",
    "rand_seed1",
    "rand_seed2",
    "gtid_seq_no",
    "warning_count",
    "error_count",
    "in_transaction",
];

/// The trackers' own variables.
const TRACKERS: &[&str] = &[
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
    "session_track_transaction_info",
    "session_track_gtids",
];

/// Whether a reported system variable is session state to replay on the session's other connections.
pub fn is_replayable(name: &str) -> bool {
    !NOT_REPLAYED.contains(&name) && !is_tracker(name)
}

/// Whether a system variable is one of the session trackers.
pub fn is_tracker(name: &str) -> bool {
    TRACKERS.contains(&name)
}

/// Which system variables the client tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Vars {
    /// `*`: all.
    All,
    /// These (lower-case).
    Some(HashSet<String>),
}

/// What the client would get from a server directly: its session-tracking view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTracking {
    /// The client negotiated `CLIENT_SESSION_TRACK`: without it, OK packets carry no session state at all.
    session_track: bool,
    /// `session_track_system_variables`.
    vars: Vars,
    /// `session_track_schema`.
    schema: bool,
    /// `session_track_state_change`.
    state_change: bool,
    /// `session_track_transaction_info`: 0 OFF, 1 STATE, 2 CHARACTERISTICS.
    transaction_info: u8,
    /// MySQL's `session_track_gtids` is not OFF.
    gtids: bool,
}

impl ClientTracking {
    /// The view of a client that negotiated `CLIENT_SESSION_TRACK` (`session_track`) or not, on a server with
    /// these defaults.
    pub fn new(session_track: bool, defaults: &ServerDefaults) -> ClientTracking {
        let mut t = ClientTracking {
            session_track,
            vars: Vars::Some(HashSet::new()),
            schema: defaults.track_schema,
            state_change: defaults.track_state_change,
            transaction_info: 0,
            gtids: false,
        };
        t.set("session_track_system_variables", defaults.track_system_variables.as_bytes());
        t.set("session_track_transaction_info", defaults.track_transaction_info.as_bytes());
        t
    }

    /// Whether the client sees session state at all.
    pub fn enabled(&self) -> bool {
        self.session_track
    }

    /// Whether the client tracks something a plain result-set statement changes (the transaction state, or
    /// state changes in general): only then does a server flag `SERVER_SESSION_STATE_CHANGED` in the EOF
    /// packets of its results.
    pub fn flags_result_changes(&self) -> bool {
        self.transaction_info >= 1 || self.state_change
    }

    /// Takes a change of one of the trackers' variables (as the server reported its new value).
    pub fn set(&mut self, name: &str, value: &[u8]) {
        let text = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
        let on = text == "on" || text == "1";
        match name {
            "session_track_system_variables" => {
                self.vars = if text.split(',').any(|v| v.trim() == "*") {
                    Vars::All
                } else {
                    Vars::Some(text.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
                };
            }
            "session_track_schema" => self.schema = on,
            "session_track_state_change" => self.state_change = on,
            "session_track_gtids" => self.gtids = !text.is_empty() && text != "off" && text != "0",
            "session_track_transaction_info" => {
                self.transaction_info = match text.as_str() {
                    "state" | "1" => 1,
                    "characteristics" | "2" => 2,
                    _ => 0,
                }
            }
            _ => {}
        }
    }

    /// Whether the client would have been sent this entry.
    pub fn keeps(&self, change: &StateChange<'_>) -> bool {
        match change {
            StateChange::SystemVariable { name, .. } => match &self.vars {
                Vars::All => true,
                Vars::Some(set) => std::str::from_utf8(name).is_ok_and(|n| set.contains(&n.to_ascii_lowercase())),
            },
            StateChange::Schema(_) => self.schema,
            StateChange::StateChanged => self.state_change,
            StateChange::TransactionState(_) => self.transaction_info >= 1,
            StateChange::Gtids(_) => self.gtids,
            StateChange::Other(kind, _) => {
                *kind == state_type::TRANSACTION_CHARACTERISTICS && self.transaction_info >= 2
            }
        }
    }
}

/// What one response reported about session state, gathered while it is forwarded and applied once it is
/// complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// System variables that changed, lower-case names, with their new values, in order.
    pub vars: Vec<(String, Vec<u8>)>,
    /// The new current schema, if it changed (empty: none).
    pub schema: Option<Vec<u8>>,
    /// The server said session state changed (`session_track_state_change`).
    pub state_changed: bool,
    /// The transaction state string, if it changed.
    pub transaction_state: Option<Vec<u8>>,
    /// MySQL: the GTIDs of the transactions the statement committed (`session_track_gtids`).
    pub gtids: Option<Vec<u8>>,
    /// The last status flags seen in the response.
    pub status: Option<StatusFlags>,
}

impl Report {
    /// Records one session-state entry.
    pub fn add(&mut self, change: &StateChange<'_>) {
        match *change {
            StateChange::SystemVariable { name, value } => {
                self.vars.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value.to_vec()))
            }
            StateChange::Schema(s) => self.schema = Some(s.to_vec()),
            StateChange::StateChanged => self.state_changed = true,
            StateChange::TransactionState(s) => self.transaction_state = Some(s.to_vec()),
            StateChange::Gtids(g) => self.gtids = Some(g.to_vec()),
            StateChange::Other(..) => {}
        }
    }

    /// Whether LOCK TABLES is in force, per the transaction state (its 8th character is `L`).
    pub fn table_locks(&self) -> Option<bool> {
        self.transaction_state.as_ref().and_then(|s| s.get(7)).map(|c| *c == b'L')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_sees_what_it_tracks() {
        let defaults = ServerDefaults::default();
        let mut t = ClientTracking::new(true, &defaults);
        let tz = StateChange::SystemVariable { name: b"time_zone", value: b"+00:00" };
        let gtid = StateChange::SystemVariable { name: b"last_gtid", value: b"0-1-5" };
        let trx = StateChange::TransactionState(b"T_______");
        assert!(t.keeps(&tz) && !t.keeps(&gtid));
        assert!(t.keeps(&StateChange::Schema(b"db")));
        assert!(!t.keeps(&StateChange::StateChanged) && !t.keeps(&trx));
        t.set("session_track_system_variables", b"last_gtid");
        assert!(!t.keeps(&tz) && t.keeps(&gtid));
        t.set("session_track_system_variables", b"*");
        assert!(t.keeps(&tz) && t.keeps(&gtid));
        t.set("session_track_transaction_info", b"STATE");
        t.set("session_track_state_change", b"ON");
        assert!(t.keeps(&trx) && t.keeps(&StateChange::StateChanged));
        assert!(!t.keeps(&StateChange::Other(state_type::TRANSACTION_CHARACTERISTICS, b"")));
        assert!(!ClientTracking::new(false, &defaults).enabled());
    }

    #[test]
    fn reports_gather_changes() {
        let mut r = Report::default();
        r.add(&StateChange::SystemVariable { name: b"Time_Zone", value: b"+01:00" });
        r.add(&StateChange::TransactionState(b"_______L"));
        assert_eq!(r.vars, [("time_zone".to_string(), b"+01:00".to_vec())]);
        assert_eq!(r.table_locks(), Some(true));
        assert!(is_replayable("time_zone") && !is_replayable("last_gtid") && !is_replayable("session_track_schema"));
    }
}
