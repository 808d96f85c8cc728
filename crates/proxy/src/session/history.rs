//! The session-state history: the commands that bring a new or lagging backend connection to the session's
//! state (SET of session and user variables, SET NAMES, USE, COM_INIT_DB, COM_SET_OPTION), replayed in order.
//!
//! Each entry has a sequence number; a connection remembers the last one it has applied, and catching up
//! means replaying the entries after it. Each entry also says what it assigns (its keys: variable names,
//! the schema) and whether its replay depends on what came before it (it reads a variable, or gives a user
//! variable a string, whose collation is the connection's). That lets the history keep only the last value
//! of a variable: a new entry that depends on nothing replaces every earlier entry whose keys it covers,
//! unless a later entry depends on that earlier one. Pools that re-send `SET NAMES`, `SET autocommit` or
//! `SET SESSION TRANSACTION …` on every checkout therefore keep a history of a handful of entries, not one per
//! checkout.
//!
//! System variables changed in ways the text does not show (a prepared `SET time_zone = ?`, a stored
//! procedure's `SET sql_mode`, `SET sql_mode = CONCAT(@@sql_mode, …)`) are recorded from the value the
//! server reports through session tracking, as a synthesized `SET SESSION name = value`.

use bytes::Bytes;
use rwsplit_wire::packet::com;

/// Most entries kept; past this the session's reads stay on the master (nothing more can be replayed).
pub const MAX_ENTRIES: usize = 256;

/// One command of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number (increasing; connections compare against it).
    pub seq: u64,
    /// The command to send (a complete command payload: COM_QUERY, COM_INIT_DB or COM_SET_OPTION).
    pub payload: Bytes,
    /// What it assigns, lower-case (see `Effects::assigns`).
    pub keys: Vec<String>,
    /// Its result depends on the entries before it.
    pub order_dependent: bool,
}

/// The history of one session.
#[derive(Debug, Default)]
pub struct History {
    /// Entries in sequence order.
    entries: Vec<Entry>,
    /// The last sequence number handed out.
    last_seq: u64,
}

impl History {
    /// Whether the history is full ([`MAX_ENTRIES`]).
    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_ENTRIES
    }

    /// The last sequence number recorded: a connection that ran the latest command is up to date with this.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Records a command; returns its sequence number. Earlier entries it makes redundant are dropped.
    pub fn push(&mut self, payload: Bytes, keys: Vec<String>, order_dependent: bool) -> u64 {
        if !order_dependent && !keys.is_empty() {
            self.drop_covered(&keys);
        }
        self.last_seq += 1;
        self.entries.push(Entry { seq: self.last_seq, payload, keys, order_dependent });
        self.last_seq
    }

    /// Records `SET SESSION name = value` for a system variable whose new value the server reported.
    pub fn push_sysvar(&mut self, name: &str, value: &[u8]) -> u64 {
        let mut p = Vec::with_capacity(24 + name.len() + 2 * value.len());
        p.push(com::QUERY);
        p.extend_from_slice(b"SET SESSION ");
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(b" = ");
        push_value(&mut p, value);
        self.push(p.into(), vec![name.to_string()], false)
    }

    /// Records a change of the current database (`COM_INIT_DB`), as the server reported it.
    pub fn push_schema(&mut self, schema: &[u8]) -> u64 {
        let mut p = Vec::with_capacity(1 + schema.len());
        p.push(com::INIT_DB);
        p.extend_from_slice(schema);
        self.push(p.into(), vec![rwsplit_classify::SCHEMA_KEY.to_string()], false)
    }

    /// Drops every entry whose keys `keys` cover and that no later entry depends on.
    fn drop_covered(&mut self, keys: &[String]) {
        // An entry with an order-dependent entry after it must stay: that later one may read what it set.
        let last_dependent = self.entries.iter().rposition(|e| e.order_dependent);
        let mut i = 0;
        self.entries.retain(|e| {
            let keep_for_later = last_dependent.is_some_and(|d| i < d);
            i += 1;
            keep_for_later || e.keys.is_empty() || !e.keys.iter().all(|k| keys.contains(k))
        });
    }

    /// The entries a connection that applied everything up to `applied` has not seen, in order.
    pub fn after(&self, applied: u64) -> impl Iterator<Item = &Entry> {
        let start = self.entries.partition_point(|e| e.seq <= applied);
        self.entries[start..].iter()
    }

    /// Keeps only the current database (COM_RESET_CONNECTION resets everything else, as the server does).
    pub fn keep_only_schema(&mut self) {
        let schema = self.entries.iter().rev().find(|e| e.keys.iter().any(|k| k == rwsplit_classify::SCHEMA_KEY));
        let schema = schema.cloned();
        self.entries.clear();
        self.entries.extend(schema);
    }
}

/// Appends a value the server reported for a system variable as an SQL literal: a number as is, other text
/// quoted (as a hex literal when it holds a quote, backslash or non-ASCII byte, so its reading does not
/// depend on the session's sql_mode or character set).
fn push_value(p: &mut Vec<u8>, value: &[u8]) {
    let numeric = value.iter().any(u8::is_ascii_digit)
        && value.iter().all(|b| b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && value.iter().filter(|b| **b == b'.').count() <= 1
        && value.iter().skip(1).all(|b| *b != b'-');
    if numeric {
        p.extend_from_slice(value);
    } else if value.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        && !value.contains(&b'\'')
        && !value.contains(&b'\\')
    {
        p.push(b'\'');
        p.extend_from_slice(value);
        p.push(b'\'');
    } else {
        p.extend_from_slice(b"X'");
        for b in value {
            p.extend_from_slice(format!("{b:02X}").as_bytes());
        }
        p.push(b'\'');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    fn texts(h: &History) -> Vec<String> {
        h.after(0).map(|e| String::from_utf8_lossy(&e.payload[1..]).into_owned()).collect()
    }

    #[test]
    fn repeated_sets_keep_the_last_value() {
        let mut h = History::default();
        for _ in 0..300 {
            h.push(
                Bytes::from_static(b"\x03SET NAMES utf8mb4"),
                keys(&["character_set_client", "collation_connection"]),
                false,
            );
            h.push(Bytes::from_static(b"\x03SET autocommit = 1"), keys(&["autocommit"]), false);
            h.push(Bytes::from_static(b"\x03SET @rownum = 0"), keys(&["@rownum"]), false);
        }
        assert_eq!(texts(&h), ["SET NAMES utf8mb4", "SET autocommit = 1", "SET @rownum = 0"]);
        assert!(!h.is_full());
        assert_eq!(h.last_seq(), 900);
    }

    #[test]
    fn entries_something_later_depends_on_stay() {
        let mut h = History::default();
        h.push(Bytes::from_static(b"\x03SET @a = 1"), keys(&["@a"]), false);
        h.push(Bytes::from_static(b"\x03SET @b = @a + 1"), keys(&["@b"]), true);
        h.push(Bytes::from_static(b"\x03SET @a = 5"), keys(&["@a"]), false);
        assert_eq!(texts(&h), ["SET @a = 1", "SET @b = @a + 1", "SET @a = 5"]);
        // An order-dependent entry never replaces anything.
        h.push(Bytes::from_static(b"\x03SET @a = @a + 1"), keys(&["@a"]), true);
        assert_eq!(h.after(0).count(), 4);
        // A multi-variable entry is replaced only by one that covers all its variables.
        let mut h = History::default();
        h.push(Bytes::from_static(b"\x03SET a = 1, b = 2"), keys(&["a", "b"]), false);
        h.push(Bytes::from_static(b"\x03SET a = 3"), keys(&["a"]), false);
        assert_eq!(h.after(0).count(), 2);
        h.push(Bytes::from_static(b"\x03SET b = 3, a = 4"), keys(&["b", "a"]), false);
        assert_eq!(texts(&h), ["SET b = 3, a = 4"]);
        // Entries without keys (COM_SET_OPTION, SET ROLE …) are never dropped.
        h.push(Bytes::from_static(b"\x1b\x00\x00"), vec![], false);
        h.push(Bytes::from_static(b"\x03SET b = 1, a = 1"), keys(&["b", "a"]), false);
        assert_eq!(h.after(0).count(), 2);
    }

    #[test]
    fn catching_up_replays_only_what_a_connection_missed() {
        let mut h = History::default();
        let first = h.push(Bytes::from_static(b"\x03SET @a = 1"), keys(&["@a"]), false);
        h.push(Bytes::from_static(b"\x03SET @b = 1"), keys(&["@b"]), false);
        assert_eq!(h.after(first).count(), 1);
        // @a replaced: a connection that applied the old @a gets the new one.
        h.push(Bytes::from_static(b"\x03SET @a = 2"), keys(&["@a"]), false);
        let missed: Vec<u64> = h.after(first).map(|e| e.seq).collect();
        assert_eq!(missed, [2, 3]);
        assert_eq!(h.after(h.last_seq()).count(), 0);
    }

    #[test]
    fn reported_values_become_replayable_sets() {
        let mut h = History::default();
        h.push_sysvar("time_zone", b"+05:00");
        h.push_sysvar("wait_timeout", b"100");
        h.push_sysvar("max_statement_time", b"10.000000");
        h.push_sysvar("sql_mode", b"it's\\odd");
        h.push_sysvar("time_zone", b"+00:00");
        h.push_schema(b"shop");
        assert_eq!(
            texts(&h),
            [
                "SET SESSION wait_timeout = 100".to_string(),
                "SET SESSION max_statement_time = 10.000000".to_string(),
                "SET SESSION sql_mode = X'697427735C6F6464'".to_string(),
                "SET SESSION time_zone = '+00:00'".to_string(),
                "shop".to_string(),
            ]
        );
        h.push(Bytes::from_static(b"\x03SET @a = 1"), keys(&["@a"]), false);
        h.keep_only_schema();
        assert_eq!(texts(&h), ["shop"]);
    }
}
