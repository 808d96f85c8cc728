//! The `KILL` statement, parsed from raw bytes with the one lexer (leading comments, executable comments
//! and a trailing `;` are allowed, as the server allows them).
//!
//! Supported: `KILL [HARD | SOFT] [CONNECTION | QUERY] <id>`, the id a literal integer. The other forms
//! (`KILL QUERY ID <query id>`, `KILL USER <name>`, an expression as the id) name server-side things a proxy
//! cannot map, and are reported as unsupported.

use crate::lex::{self, Dialect, SpanKind};

/// A parsed `KILL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// `HARD` or `SOFT`, as written (MariaDB), if any.
    pub strength: Option<&'static str>,
    /// What to kill.
    pub target: KillTarget,
}

/// What a `KILL` stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTarget {
    /// `KILL [CONNECTION] id`: the connection.
    Connection(u64),
    /// `KILL QUERY id`: the statement the connection is running.
    Query(u64),
}

/// Parses `sql` as a KILL statement: `None` when it is not one, `Some(Err(()))` for a form that names
/// something other than a connection id.
pub fn parse_kill(sql: &[u8], dialect: Dialect) -> Option<Result<Kill, ()>> {
    let words: Vec<&[u8]> = lex::code(sql, dialect).map(|s| s.bytes(sql)).collect();
    let kinds: Vec<SpanKind> = lex::code(sql, dialect).map(|s| s.kind).collect();
    let is = |i: usize, kw: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()));
    if !is(0, "KILL") {
        return None;
    }
    let mut i = 1;
    let strength = if is(i, "HARD") {
        Some("HARD")
    } else if is(i, "SOFT") {
        Some("SOFT")
    } else {
        None
    };
    i += usize::from(strength.is_some());
    let query = is(i, "QUERY");
    i += usize::from(query || is(i, "CONNECTION"));
    let id = match (kinds.get(i), words.get(i)) {
        (Some(SpanKind::Number), Some(w)) => std::str::from_utf8(w).ok().and_then(|w| w.parse::<u64>().ok()),
        _ => None,
    };
    let rest_ok = words[(i + 1).min(words.len())..].iter().all(|w| *w == b";");
    match id {
        Some(id) if rest_ok => {
            let target = if query { KillTarget::Query(id) } else { KillTarget::Connection(id) };
            Some(Ok(Kill { strength, target }))
        }
        _ => Some(Err(())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_forms() {
        let k = |s: &str| parse_kill(s.as_bytes(), Dialect::default());
        let ok = |strength, target| Some(Ok(Kill { strength, target }));
        assert_eq!(k("KILL 12"), ok(None, KillTarget::Connection(12)));
        assert_eq!(k("kill query 7;"), ok(None, KillTarget::Query(7)));
        assert_eq!(k("/* app */ KILL QUERY 7"), ok(None, KillTarget::Query(7)));
        assert_eq!(k("KILL HARD CONNECTION 3"), ok(Some("HARD"), KillTarget::Connection(3)));
        assert_eq!(k("KILL SOFT QUERY 3 -- x"), ok(Some("SOFT"), KillTarget::Query(3)));
        assert_eq!(k("/*!50000 KILL */ 5"), ok(None, KillTarget::Connection(5)));
        assert_eq!(k("KILL QUERY ID 3"), Some(Err(())));
        assert_eq!(k("KILL USER app"), Some(Err(())));
        assert_eq!(k("KILL 3 4"), Some(Err(())));
        assert_eq!(k("KILL CONNECTION_ID()"), Some(Err(())));
        assert_eq!(k("SELECT 'KILL 1'"), None);
        assert_eq!(k("KILLER 1"), None);
    }
}
