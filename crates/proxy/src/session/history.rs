//! The session-state history: the commands that bring a new or lagging backend connection to the session's
//! state (SET of session and user variables, SET NAMES, USE, COM_INIT_DB, COM_SET_OPTION), replayed in order.
//!
//! Each entry has a sequence number; a connection remembers the last one it has applied, and catching up
//! means replaying the entries after it. Each entry also says what it assigns (its keys: variable names,
//! the schema) and what its replay reads (variables; the connection's collation when it gives a user
//! variable a string). That lets the history keep only the last value of a variable: an entry whose keys
//! are all assigned again later is dropped, unless an entry in between (or the one assigning them again)
//! reads one of them. Pools that re-send `SET NAMES`, `SET autocommit` or `SET SESSION TRANSACTION …` on every checkout,
//! and applications that set `@user = '…'` per request, therefore keep a history of a handful of entries,
//! not one per checkout. Only a chain of entries that each read the last (`SET @n = @n + 1`) grows until
//! [`MAX_ENTRIES`].
//!
//! System variables changed in ways the text does not show (a prepared `SET time_zone = ?`, a stored
//! procedure's `SET sql_mode`, `SET sql_mode = CONCAT(@@sql_mode, …)`) are recorded from the value the
//! server reports through session tracking, as a synthesized `SET SESSION name = value`.

use bytes::Bytes;
use rwsplit_wire::packet::com;

/// Most entries kept; past this the session's reads stay on the master (nothing more can be replayed).
pub const MAX_ENTRIES: usize = 256;

/// Most bytes of commands kept (so 256 `SET @blob = '<16 MiB>'` cannot hold 4 GiB); past this, as past
/// [`MAX_ENTRIES`], the session's reads stay on the master.
pub const MAX_BYTES: usize = 1024 * 1024;

/// In an entry's reads: it may read anything (a command whose text the proxy did not analyse).
pub const READS_ANYTHING: &str = "*";

/// System variables that may be NULL: the server reports NULL as an empty value, and `''` is not a valid
/// value of theirs, so an empty report is replayed as NULL.
const NULLABLE_SYSVARS: &[&str] = &["character_set_results", "default_tmp_storage_engine", "enforce_storage_engine"];

/// One command of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number (increasing; connections compare against it).
    pub seq: u64,
    /// The command to send (a complete command payload: COM_QUERY, COM_INIT_DB or COM_SET_OPTION).
    pub payload: Bytes,
    /// What it assigns, lower-case (see `Effects::assigns`).
    pub keys: Vec<String>,
    /// What its replay reads, named like the keys (see `Effects::reads`; [`READS_ANYTHING`]).
    pub reads: Vec<String>,
    /// The proxy wrote it from the server's report (the client never sent this text).
    pub synthesized: bool,
}

/// The history of one session.
#[derive(Debug, Default)]
pub struct History {
    /// Entries in sequence order.
    entries: Vec<Entry>,
    /// The last sequence number handed out.
    last_seq: u64,
    /// Bytes of the entries' payloads.
    bytes: usize,
}

impl History {
    /// Whether the history is full ([`MAX_ENTRIES`], [`MAX_BYTES`]).
    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_ENTRIES || self.bytes >= MAX_BYTES
    }

    /// Whether an entry assigns `key`.
    pub fn assigns(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.keys.iter().any(|k| k == key))
    }

    /// The last sequence number recorded: a connection that ran the latest command is up to date with this.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Records a command the client sent; returns its sequence number. Earlier entries it makes redundant
    /// are dropped.
    pub fn push(&mut self, payload: Bytes, keys: Vec<String>, reads: Vec<String>) -> u64 {
        // A copy of its own: a slice would keep the whole read buffer it came in alive.
        let payload = Bytes::copy_from_slice(&payload);
        self.add(Entry { seq: 0, payload, keys, reads, synthesized: false })
    }

    fn add(&mut self, mut entry: Entry) -> u64 {
        self.last_seq += 1;
        entry.seq = self.last_seq;
        self.entries.push(entry);
        self.compact();
        self.bytes = self.entries.iter().map(|e| e.payload.len()).sum();
        self.last_seq
    }

    /// Records `SET SESSION name = value` for a system variable whose new value the server reported.
    pub fn push_sysvar(&mut self, name: &str, value: &[u8]) -> u64 {
        let mut p = Vec::with_capacity(24 + name.len() + 2 * value.len());
        p.push(com::QUERY);
        p.extend_from_slice(b"SET SESSION ");
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(b" = ");
        if value.is_empty() && NULLABLE_SYSVARS.contains(&name) {
            p.extend_from_slice(b"NULL");
        } else {
            push_value(&mut p, value);
        }
        self.add(Entry {
            seq: 0,
            payload: p.into(),
            keys: vec![name.to_string()],
            reads: Vec::new(),
            synthesized: true,
        })
    }

    /// Records a change of the current database (`COM_INIT_DB`), as the server reported it.
    pub fn push_schema(&mut self, schema: &[u8]) -> u64 {
        let mut p = Vec::with_capacity(1 + schema.len());
        p.push(com::INIT_DB);
        p.extend_from_slice(schema);
        let keys = vec![rwsplit_classify::SCHEMA_KEY.to_string()];
        self.add(Entry { seq: 0, payload: p.into(), keys, reads: Vec::new(), synthesized: true })
    }

    /// Drops every entry whose keys are all assigned again later with no entry in between reading them: its
    /// values can no longer matter. Walks from the newest entry back, keeping the keys that a later entry
    /// assigns and nothing after that one reads before it (an entry reads before it assigns).
    fn compact(&mut self) {
        let mut overwritten: Vec<&str> = Vec::new();
        let mut keep = vec![true; self.entries.len()];
        for (i, e) in self.entries.iter().enumerate().rev() {
            if !e.keys.is_empty() && e.keys.iter().all(|k| overwritten.contains(&k.as_str())) {
                keep[i] = false;
                continue;
            }
            overwritten.extend(e.keys.iter().map(String::as_str));
            if e.reads.iter().any(|r| r == READS_ANYTHING) {
                overwritten.clear();
            } else {
                overwritten.retain(|k| !e.reads.iter().any(|r| r == k));
            }
        }
        if keep.contains(&false) {
            let mut keep = keep.into_iter();
            self.entries.retain(|_| keep.next().unwrap_or(true));
        }
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
        self.bytes = self.entries.iter().map(|e| e.payload.len()).sum();
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

    const CHARSET: &[&str] = &["character_set_connection", "collation_connection"];

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
                keys(&["character_set_client", "character_set_connection", "collation_connection"]),
                vec![],
            );
            h.push(Bytes::from_static(b"\x03SET autocommit = 1"), keys(&["autocommit"]), vec![]);
            h.push(Bytes::from_static(b"\x03SET @rownum = 0"), keys(&["@rownum"]), vec![]);
            // A string for a user variable reads the connection's collation, not the variable itself.
            h.push(Bytes::from_static(b"\x03SET @user = 'alice'"), keys(&["@user"]), keys(CHARSET));
        }
        assert_eq!(texts(&h), ["SET NAMES utf8mb4", "SET autocommit = 1", "SET @rownum = 0", "SET @user = 'alice'"]);
        assert!(!h.is_full());
        assert_eq!(h.last_seq(), 1200);
    }

    #[test]
    fn entries_something_later_reads_stay() {
        let mut h = History::default();
        h.push(Bytes::from_static(b"\x03SET @a = 1"), keys(&["@a"]), vec![]);
        h.push(Bytes::from_static(b"\x03SET @b = @a + 1"), keys(&["@b"]), keys(&["@a"]));
        h.push(Bytes::from_static(b"\x03SET @a = 5"), keys(&["@a"]), vec![]);
        assert_eq!(texts(&h), ["SET @a = 1", "SET @b = @a + 1", "SET @a = 5"]);
        // An entry reading its own key keeps the one before it.
        h.push(Bytes::from_static(b"\x03SET @a = @a + 1"), keys(&["@a"]), keys(&["@a"]));
        assert_eq!(h.after(0).count(), 4);
        // Once what read them is replaced too, the old values go.
        h.push(Bytes::from_static(b"\x03SET @b = 0"), keys(&["@b"]), vec![]);
        h.push(Bytes::from_static(b"\x03SET @a = 0"), keys(&["@a"]), vec![]);
        assert_eq!(texts(&h), ["SET @b = 0", "SET @a = 0"]);
        // SET NAMES stays while a later string assignment read its collation.
        let mut h = History::default();
        let names = keys(&["character_set_client", "character_set_connection", "collation_connection"]);
        h.push(Bytes::from_static(b"\x03SET NAMES latin1"), names.clone(), vec![]);
        h.push(Bytes::from_static(b"\x03SET @u = 'x'"), keys(&["@u"]), keys(CHARSET));
        h.push(Bytes::from_static(b"\x03SET NAMES utf8mb4"), names.clone(), vec![]);
        assert_eq!(h.after(0).count(), 3);
        h.push(Bytes::from_static(b"\x03SET @u = 'y'"), keys(&["@u"]), keys(CHARSET));
        assert_eq!(texts(&h), ["SET NAMES utf8mb4", "SET @u = 'y'"]);
        // A command whose reads are unknown keeps everything before it.
        let mut h = History::default();
        h.push(Bytes::from_static(b"\x03SET a = 1"), keys(&["a"]), vec![]);
        h.push(Bytes::from_static(b"\x1b\x00\x00"), vec![], keys(&[READS_ANYTHING]));
        h.push(Bytes::from_static(b"\x03SET a = 2"), keys(&["a"]), vec![]);
        assert_eq!(h.after(0).count(), 3);
        // A multi-variable entry is replaced only by one that covers all its variables.
        let mut h = History::default();
        h.push(Bytes::from_static(b"\x03SET a = 1, b = 2"), keys(&["a", "b"]), vec![]);
        h.push(Bytes::from_static(b"\x03SET a = 3"), keys(&["a"]), vec![]);
        assert_eq!(h.after(0).count(), 2);
        h.push(Bytes::from_static(b"\x03SET b = 3, a = 4"), keys(&["b", "a"]), vec![]);
        assert_eq!(texts(&h), ["SET b = 3, a = 4"]);
        // Entries without keys (COM_SET_OPTION, SET ROLE …) are never dropped.
        h.push(Bytes::from_static(b"\x1b\x00\x00"), vec![], vec![]);
        h.push(Bytes::from_static(b"\x03SET b = 1, a = 1"), keys(&["b", "a"]), vec![]);
        assert_eq!(h.after(0).count(), 2);
    }

    #[test]
    fn catching_up_replays_only_what_a_connection_missed() {
        let mut h = History::default();
        let first = h.push(Bytes::from_static(b"\x03SET @a = 1"), keys(&["@a"]), vec![]);
        h.push(Bytes::from_static(b"\x03SET @b = 1"), keys(&["@b"]), vec![]);
        assert_eq!(h.after(first).count(), 1);
        // @a replaced: a connection that applied the old @a gets the new one.
        h.push(Bytes::from_static(b"\x03SET @a = 2"), keys(&["@a"]), vec![]);
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
        h.push_sysvar("character_set_results", b"");
        h.push_sysvar("default_regex_flags", b"");
        h.push_schema(b"shop");
        assert_eq!(
            texts(&h),
            [
                "SET SESSION wait_timeout = 100".to_string(),
                "SET SESSION max_statement_time = 10.000000".to_string(),
                "SET SESSION sql_mode = X'697427735C6F6464'".to_string(),
                "SET SESSION time_zone = '+00:00'".to_string(),
                "SET SESSION character_set_results = NULL".to_string(),
                "SET SESSION default_regex_flags = ''".to_string(),
                "shop".to_string(),
            ]
        );
        h.push(Bytes::from_static(b"\x03SET @a = 1"), keys(&["@a"]), vec![]);
        let synthesized: Vec<bool> = h.after(0).map(|e| e.synthesized).collect();
        assert_eq!(synthesized, [true, true, true, true, true, true, true, false]);
        h.keep_only_schema();
        assert_eq!(texts(&h), ["shop"]);
    }

    #[test]
    fn the_history_is_full_by_bytes_as_well_as_by_entries() {
        let mut h = History::default();
        let big = Bytes::from(vec![b'x'; MAX_BYTES / 4]);
        for i in 0..3 {
            h.push(big.clone(), keys(&[&format!("@v{i}")]), vec![]);
        }
        assert!(!h.is_full());
        h.push(big.clone(), keys(&["@v3"]), vec![]);
        assert!(h.is_full(), "four quarter-limit entries fill it");
        // Assigning the same variables again drops the older entries: it has room again.
        h.push(
            Bytes::from_static(b"\x03SET @v0 = 1, @v1 = 1, @v2 = 1, @v3 = 1"),
            keys(&["@v0", "@v1", "@v2", "@v3"]),
            vec![],
        );
        assert!(!h.is_full());
    }
}
