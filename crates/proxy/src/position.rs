//! Replication positions: what a write produced on the master, what a replica has applied, and whether
//! the one covers the other. Servers write positions in three forms:
//! - MariaDB GTID lists, `D-S-N[,D-S-N…]` (domain, server id, sequence number): sequence numbers grow per
//!   domain, so a replica has applied a write when, for the write's domain, its sequence number is at
//!   least the write's (the server id does not matter; MariaDB's `MASTER_GTID_WAIT` compares the same way).
//!   MariaDB keeps GTIDs even when a replica replicates by binary log file and position, so this form also
//!   serves those replicas.
//! - MySQL GTID sets, `uuid:1-5:7[,uuid:tag:1-3…]`: a replica has applied a write when its
//!   `gtid_executed` contains every transaction of the write's set.
//! - Binary log coordinates (`mysql-bin.000012`, offset), for servers without GTIDs: ordered by the file's
//!   number, then the offset.
//!
//! Each form knows the statement that makes a replica wait for it (bounded by a timeout) and how to read
//! that statement's answer.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A replication position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A MariaDB GTID list: domain id → (server id, sequence number).
    MariaDb(BTreeMap<u32, (u32, u64)>),
    /// A MySQL GTID set: source uuid (with `:tag` when tagged), lower-case → sorted, disjoint, inclusive
    /// transaction number intervals.
    MySql(BTreeMap<String, Vec<(u64, u64)>>),
    /// Binary log coordinates.
    Binlog(BinlogPos),
}

/// A binary log file and an offset in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogPos {
    /// The file name (`mariadb-bin.000012`).
    pub file: String,
    /// The offset.
    pub pos: u64,
}

impl BinlogPos {
    /// Whether a server at this position has executed up to `want`.
    pub fn covers(&self, want: &BinlogPos) -> bool {
        self.key() >= want.key()
    }

    /// The file's sequence number (its numeric extension) and the offset, for ordering.
    fn key(&self) -> (u64, u64) {
        let number = self.file.rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (number, self.pos)
    }
}

/// Which form of position a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB GTID lists.
    MariaDb,
    /// MySQL GTID sets.
    MySql,
}

impl Position {
    /// Parses a MariaDB GTID list (`0-1-15`, `0-1-15,1-2-7`); an empty list is an empty position.
    pub fn parse_mariadb(text: &str) -> Option<Position> {
        let mut map = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut parts = item.splitn(3, '-');
            let domain = parts.next()?.parse().ok()?;
            let server = parts.next()?.parse().ok()?;
            let seq: u64 = parts.next()?.parse().ok()?;
            let entry = map.entry(domain).or_insert((server, seq));
            if seq > entry.1 {
                *entry = (server, seq);
            }
        }
        Some(Position::MariaDb(map))
    }

    /// Parses a MySQL GTID set (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7`, tags as `uuid:tag:1-3`,
    /// several sets separated by commas, whitespace and newlines ignored); an empty text is an empty set.
    pub fn parse_mysql(text: &str) -> Option<Position> {
        let mut map: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for item in text.split(',').map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let mut parts = item.split(':').map(str::trim);
            let uuid = parts.next().filter(|u| is_uuid(u))?.to_ascii_lowercase();
            let mut key = uuid.clone();
            let mut any = false;
            for part in parts {
                if part.starts_with(|c: char| c.is_ascii_digit()) {
                    let (a, b) = match part.split_once('-') {
                        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                        None => {
                            let n = part.parse().ok()?;
                            (n, n)
                        }
                    };
                    if a == 0 || b < a {
                        return None;
                    }
                    map.entry(key.clone()).or_default().push((a, b));
                    any = true;
                } else if !part.is_empty() && part.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    key = format!("{uuid}:{}", part.to_ascii_lowercase());
                } else {
                    return None;
                }
            }
            if !any {
                return None;
            }
        }
        for intervals in map.values_mut() {
            normalize(intervals);
        }
        Some(Position::MySql(map))
    }

    /// Parses a position in `flavor`'s GTID form.
    pub fn parse(flavor: Flavor, text: &str) -> Option<Position> {
        match flavor {
            Flavor::MariaDb => Position::parse_mariadb(text),
            Flavor::MySql => Position::parse_mysql(text),
        }
    }

    /// Parses a position given by a client (a `rwsplit:min_gtid=` hint): a MySQL set if it has a `:`,
    /// otherwise a MariaDB list.
    pub fn parse_any(text: &str) -> Option<Position> {
        if text.contains(':') {
            Position::parse_mysql(text)
        } else {
            Position::parse_mariadb(text)
        }
    }

    /// Whether the position holds nothing (no write to wait for).
    pub fn is_empty(&self) -> bool {
        match self {
            Position::MariaDb(m) => m.is_empty(),
            Position::MySql(m) => m.is_empty(),
            Position::Binlog(_) => false,
        }
    }

    /// Whether a server at this position has applied everything `required` holds. Positions of different
    /// forms never cover each other.
    pub fn covers(&self, required: &Position) -> bool {
        match (self, required) {
            (Position::MariaDb(have), Position::MariaDb(want)) => {
                want.iter().all(|(domain, (_, seq))| have.get(domain).is_some_and(|(_, s)| s >= seq))
            }
            (Position::MySql(have), Position::MySql(want)) => want.iter().all(|(key, wanted)| {
                let had = have.get(key).map(Vec::as_slice).unwrap_or_default();
                wanted.iter().all(|&(a, b)| had.iter().any(|&(x, y)| x <= a && b <= y))
            }),
            (Position::Binlog(have), Position::Binlog(want)) => have.covers(want),
            _ => required.is_empty(),
        }
    }

    /// Adds `other` to this position (the union: what is covered by either). A position of another form
    /// replaces this one.
    pub fn merge(&mut self, other: &Position) {
        match (&mut *self, other) {
            (Position::MariaDb(mine), Position::MariaDb(theirs)) => {
                for (domain, &(server, seq)) in theirs {
                    let entry = mine.entry(*domain).or_insert((server, seq));
                    if seq > entry.1 {
                        *entry = (server, seq);
                    }
                }
            }
            (Position::MySql(mine), Position::MySql(theirs)) => {
                for (key, intervals) in theirs {
                    let entry = mine.entry(key.clone()).or_default();
                    entry.extend_from_slice(intervals);
                    normalize(entry);
                }
            }
            (Position::Binlog(mine), Position::Binlog(theirs)) => {
                if theirs.key() > mine.key() {
                    *mine = theirs.clone();
                }
            }
            (me, other) => *me = other.clone(),
        }
    }

    /// The statement that makes a replica wait (at most `timeout`) until it has applied this position; its
    /// one-value result is read by [`Position::wait_reached`].
    pub fn wait_query(&self, timeout: Duration) -> String {
        let secs = timeout.as_secs_f64();
        match self {
            Position::MariaDb(_) => format!("SELECT MASTER_GTID_WAIT('{self}', {secs:.3})"),
            Position::MySql(_) => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{self}', {secs:.3})"),
            Position::Binlog(p) => format!("SELECT MASTER_POS_WAIT('{}', {}, {secs:.3})", p.file, p.pos),
        }
    }

    /// Whether the answer of [`Position::wait_query`] (its value, as text) says the position was reached:
    /// `0` for MariaDB and MySQL GTID waits, a count of events (≥ 0) for `MASTER_POS_WAIT`; a timeout (-1
    /// or 1), NULL or anything else is not.
    pub fn wait_reached(&self, value: Option<&[u8]>) -> bool {
        let Some(n) = value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.trim().parse::<i64>().ok()) else {
            return false;
        };
        match self {
            Position::MariaDb(_) | Position::MySql(_) => n == 0,
            Position::Binlog(_) => n >= 0,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::MariaDb(map) => {
                let items: Vec<String> = map.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect();
                f.write_str(&items.join(","))
            }
            Position::MySql(map) => {
                // Untagged intervals come first under their uuid, then each tag's.
                let mut out: Vec<String> = Vec::new();
                for (key, intervals) in map {
                    let ranges: Vec<String> = intervals
                        .iter()
                        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
                        .collect();
                    out.push(format!("{key}:{}", ranges.join(":")));
                }
                f.write_str(&out.join(","))
            }
            Position::Binlog(p) => write!(f, "{}:{}", p.file, p.pos),
        }
    }
}

/// Sorts and merges overlapping or adjacent intervals.
fn normalize(intervals: &mut Vec<(u64, u64)>) {
    intervals.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(a, b) in intervals.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *intervals = out;
}

/// Whether `s` looks like a uuid (36 characters, hex and dashes at the right places).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn maria(s: &str) -> Position {
        Position::parse_mariadb(s).unwrap()
    }

    fn mysql(s: &str) -> Position {
        Position::parse_mysql(s).unwrap()
    }

    #[test]
    fn mariadb_lists_compare_per_domain() {
        let replica = maria("0-1-15,1-2-7");
        assert!(replica.covers(&maria("0-1-15")));
        assert!(replica.covers(&maria("0-3-10")), "the server id does not matter");
        assert!(!replica.covers(&maria("0-1-16")));
        assert!(!replica.covers(&maria("2-1-1")), "a domain the replica has not seen");
        assert!(replica.covers(&maria("")), "nothing to wait for");
        assert_eq!(maria(" 1-2-7 , 0-1-15\n").to_string(), "0-1-15,1-2-7");
        let mut written = maria("0-1-3");
        written.merge(&maria("0-1-9,1-2-1"));
        written.merge(&maria("0-1-4"));
        assert_eq!(written.to_string(), "0-1-9,1-2-1");
        for bad in ["x", "0-1", "0-1-x", "-1-2-3"] {
            assert_eq!(Position::parse_mariadb(bad), None, "{bad}");
        }
    }

    #[test]
    fn mysql_sets_compare_by_containment() {
        let executed = mysql(&format!("{A}:1-100:102-110,\n{B}:1-5"));
        assert!(executed.covers(&mysql(&format!("{A}:50"))));
        assert!(executed.covers(&mysql(&format!("{A}:1-100,{B}:3-5"))));
        assert!(!executed.covers(&mysql(&format!("{A}:101"))), "a gap");
        assert!(!executed.covers(&mysql(&format!("{A}:100-102"))), "across the gap");
        assert!(!executed.covers(&mysql(&format!("{B}:6"))));
        // Upper-case uuids and tags (MySQL 8.3).
        let tagged = mysql(&format!("{}:1-3:blue:1-2", A.to_uppercase()));
        assert!(tagged.covers(&mysql(&format!("{A}:blue:2"))));
        assert!(!tagged.covers(&mysql(&format!("{A}:red:1"))));
        assert_eq!(tagged.to_string(), format!("{A}:1-3,{A}:blue:1-2"));
        let mut written = mysql(&format!("{A}:1-3"));
        written.merge(&mysql(&format!("{A}:4,{A}:6")));
        assert_eq!(written.to_string(), format!("{A}:1-4:6"));
        for bad in ["", "nope:1", A, &format!("{A}:0"), &format!("{A}:5-3"), &format!("{A}:1-x")] {
            assert!(Position::parse_mysql(bad).is_none_or(|p| p.is_empty() && bad.is_empty()), "{bad}");
        }
    }

    #[test]
    fn binlog_positions_order_by_file_number_then_offset() {
        let at = |f: &str, p| Position::Binlog(BinlogPos { file: f.into(), pos: p });
        assert!(at("mysql-bin.000010", 4).covers(&at("mysql-bin.000009", 9999)));
        assert!(at("mysql-bin.000010", 500).covers(&at("mysql-bin.000010", 500)));
        assert!(!at("mysql-bin.000010", 499).covers(&at("mysql-bin.000010", 500)));
        assert!(!maria("0-1-5").covers(&at("mysql-bin.000001", 1)), "forms never cover each other");
    }

    #[test]
    fn wait_statements_and_answers() {
        let p = maria("0-1-15");
        assert_eq!(p.wait_query(Duration::from_millis(1500)), "SELECT MASTER_GTID_WAIT('0-1-15', 1.500)");
        assert!(p.wait_reached(Some(b"0")));
        assert!(!p.wait_reached(Some(b"-1")) && !p.wait_reached(None));
        let s = mysql(&format!("{A}:7"));
        assert_eq!(s.wait_query(Duration::from_secs(1)), format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{A}:7', 1.000)"));
        assert!(s.wait_reached(Some(b"0")) && !s.wait_reached(Some(b"1")));
        let b = Position::Binlog(BinlogPos { file: "mysql-bin.000003".into(), pos: 120 });
        assert_eq!(b.wait_query(Duration::from_secs(2)), "SELECT MASTER_POS_WAIT('mysql-bin.000003', 120, 2.000)");
        assert!(b.wait_reached(Some(b"3")) && !b.wait_reached(Some(b"-1")));
        assert_eq!(Position::parse_any("0-1-2"), Some(maria("0-1-2")));
        assert_eq!(Position::parse_any(&format!("{A}:2")), Some(mysql(&format!("{A}:2"))));
    }
}
