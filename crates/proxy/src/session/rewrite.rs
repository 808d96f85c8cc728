//! The two rewrites of statement text rwsplit makes, so a client sees what a direct connection shows it:
//!
//! - `CONNECTION_ID()` becomes `CAST(<id> AS UNSIGNED)`, the connection id rwsplit announced in the
//!   handshake (and that KILL takes), with the same column type, length and flags the function has. As a
//!   whole select-list item it keeps its column name (`… AS `CONNECTION_ID()``). The backends' own thread ids
//!   differ per backend and per pooled connection, so they are never what the client should see.
//! - `@@socket` (and `@@global.socket`, `@@session.socket`) becomes `''`: rwsplit listens on TCP only, and a
//!   backend's socket path would make drivers that prefer sockets on localhost (mysql_async does by default)
//!   reconnect straight to that backend, bypassing the proxy. An empty string, not NULL, so drivers that
//!   scan it into a string (go-sql-driver) keep working.
//!
//! Both are found with the classifier's lexer, so text in strings, quoted identifiers and comments is never
//! touched. The text is scanned only when it contains the names at all. Two kinds of text are left alone:
//! - `CREATE …` and `ALTER …` statements (views, triggers, routines, events, column defaults): their
//!   bodies run later, on whichever connection fires them, where a constant would be wrong;
//! - text that compares `CONNECTION_ID()` with the servers' own thread ids (`IS_USED_LOCK()`, the
//!   process list, `INNODB_TRX`, `METADATA_LOCK_INFO`, `performance_schema`): there it keeps the backend
//!   connection's id, so that the comparison holds (such statements run on the master, see the
//!   classifier's side-effect functions).

use rwsplit_classify::lex::{Dialect, Lexer, Span, SpanKind};

/// Words that make a text leave `CONNECTION_ID()` alone: it is compared with the servers' thread ids.
const THREAD_ID_WORDS: &[&str] = &[
    "IS_USED_LOCK",
    "PROCESSLIST",
    "PROCESSLIST_ID",
    "THREAD_ID",
    "PS_CURRENT_THREAD_ID",
    "PERFORMANCE_SCHEMA",
    "TRX_MYSQL_THREAD_ID",
    "METADATA_LOCK_INFO",
];

/// The rewritten statement, if `sql` calls `CONNECTION_ID()` or reads `@@socket`.
pub fn rewrite(sql: &[u8], dialect: Dialect, connection_id: u32) -> Option<Vec<u8>> {
    if !contains_ci(sql, b"connection_id") && !contains_ci(sql, b"socket") {
        return None;
    }
    let spans: Vec<Span> = Lexer::new(sql, dialect).filter(|s| s.kind != SpanKind::Space).collect();
    let code: Vec<&Span> = spans.iter().filter(|s| s.is_code()).collect();
    let starts_ddl = code.iter().enumerate().any(|(k, s)| {
        let at_start = k == 0 || code[k - 1].is_punct(sql, b';');
        at_start && (s.is_word(sql, "CREATE") || s.is_word(sql, "ALTER"))
    });
    if starts_ddl {
        return None;
    }
    let keep_connection_id = code.iter().any(|s| THREAD_ID_WORDS.iter().any(|w| s.is_word(sql, w)));
    let mut out = Vec::with_capacity(sql.len() + 32);
    let mut copied = 0;
    let mut changed = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < spans.len() {
        let s = spans[i];
        if s.is_punct(sql, b'(') {
            depth += 1;
        } else if s.is_punct(sql, b')') {
            depth = depth.saturating_sub(1);
        }
        let replacement = if let Some(len) = connection_id_call(sql, &spans, i).filter(|_| !keep_connection_id) {
            Some((len, format!("CAST({connection_id} AS UNSIGNED)")))
        } else {
            socket_var(sql, &spans, i).map(|len| (len, "''".to_string()))
        };
        let Some((len, text)) = replacement else {
            i += 1;
            continue;
        };
        let end = spans[i + len - 1].end;
        out.extend_from_slice(&sql[copied..s.start]);
        out.extend_from_slice(text.as_bytes());
        if depth == 0 && is_select_item(sql, &spans, i, i + len) {
            let name = String::from_utf8_lossy(&sql[s.start..end]).replace('`', "``");
            out.extend_from_slice(format!(" AS `{name}`").as_bytes());
        }
        copied = end;
        changed = true;
        i += len;
    }
    if !changed {
        return None;
    }
    out.extend_from_slice(&sql[copied..]);
    Some(out)
}

/// Length in spans of a `CONNECTION_ID ( )` call at `i`.
fn connection_id_call(sql: &[u8], spans: &[Span], i: usize) -> Option<usize> {
    let qualified = i > 0 && spans[i - 1].is_punct(sql, b'.');
    let call = spans[i].is_word(sql, "CONNECTION_ID")
        && spans.get(i + 1).is_some_and(|s| s.is_punct(sql, b'('))
        && spans.get(i + 2).is_some_and(|s| s.is_punct(sql, b')'));
    (call && !qualified).then_some(3)
}

/// Length in spans of `@@socket`, `@@global.socket` or `@@session.socket` at `i` (the lexer reads `@`, `@`,
/// then the words).
fn socket_var(sql: &[u8], spans: &[Span], i: usize) -> Option<usize> {
    let at = |k: usize| spans.get(k).is_some_and(|s| s.is_punct(sql, b'@'));
    if !(at(i) && at(i + 1)) || (i > 0 && at(i - 1)) {
        return None;
    }
    let word = |k: usize, w: &str| spans.get(k).is_some_and(|s| s.is_word(sql, w));
    if word(i + 2, "socket") {
        return Some(3);
    }
    let scoped = (word(i + 2, "global") || word(i + 2, "session"))
        && spans.get(i + 3).is_some_and(|s| s.is_punct(sql, b'.'))
        && word(i + 4, "socket");
    scoped.then_some(5)
}

/// Whether spans `start..end` are a whole item of a top-level select list with no alias: after `SELECT` (or
/// a `,`) and before a `,`, `FROM`, the end, or another clause.
fn is_select_item(sql: &[u8], spans: &[Span], start: usize, end: usize) -> bool {
    let code = |k: usize| spans.get(k).filter(|s| s.is_code());
    let prev = (0..start).rev().find_map(code);
    let next = (end..spans.len()).find_map(code);
    let prev_ok = prev.is_some_and(|p| p.is_word(sql, "SELECT") || p.is_punct(sql, b','));
    let next_ok = match next {
        None => true,
        Some(n) => {
            n.is_punct(sql, b',')
                || n.is_punct(sql, b';')
                || ["FROM", "INTO", "WHERE", "UNION", "LIMIT", "ORDER", "GROUP", "HAVING", "FOR", "LOCK", "WINDOW"]
                    .iter()
                    .any(|w| n.is_word(sql, w))
        }
    };
    prev_ok && next_ok
}

/// ASCII case-insensitive substring test.
fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> Option<String> {
        rewrite(sql.as_bytes(), Dialect::default(), 1073741825).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn connection_id_is_the_proxy_id() {
        assert_eq!(
            rw("SELECT CONNECTION_ID()").as_deref(),
            Some("SELECT CAST(1073741825 AS UNSIGNED) AS `CONNECTION_ID()`")
        );
        assert_eq!(
            rw("select connection_id( ), 1").as_deref(),
            Some("select CAST(1073741825 AS UNSIGNED) AS `connection_id( )`, 1")
        );
        assert_eq!(rw("SELECT CONNECTION_ID() AS id").as_deref(), Some("SELECT CAST(1073741825 AS UNSIGNED) AS id"));
        assert_eq!(
            rw("SELECT * FROM t WHERE owner = CONNECTION_ID()").as_deref(),
            Some("SELECT * FROM t WHERE owner = CAST(1073741825 AS UNSIGNED)")
        );
        assert_eq!(
            rw("SELECT CONCAT('id', CONNECTION_ID())").as_deref(),
            Some("SELECT CONCAT('id', CAST(1073741825 AS UNSIGNED))")
        );
        assert_eq!(rw("SELECT 'CONNECTION_ID()', `connection_id`"), None);
        assert_eq!(rw("SELECT 1 /* CONNECTION_ID() */"), None);
        assert_eq!(rw("SELECT db.connection_id()"), None, "a stored function of that name is not the built-in");
        assert_eq!(rw("SELECT 1"), None);
    }

    #[test]
    fn stored_bodies_and_thread_id_comparisons_keep_the_function() {
        assert_eq!(rw("CREATE VIEW who AS SELECT CONNECTION_ID()"), None);
        assert_eq!(rw("create trigger tr before insert on t for each row set new.c = connection_id()"), None);
        assert_eq!(rw("/* x */ ALTER TABLE t ALTER c SET DEFAULT (CONNECTION_ID())"), None);
        assert_eq!(rw("SELECT 1; CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT @@socket"), None);
        assert_eq!(rw("SELECT IS_USED_LOCK('k') = CONNECTION_ID()"), None);
        assert_eq!(rw("SELECT * FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"), None);
        assert_eq!(
            rw("SELECT @@socket FROM information_schema.processlist").as_deref(),
            Some("SELECT '' AS `@@socket` FROM information_schema.processlist")
        );
        // Only at a statement's start: a column named create is not DDL.
        assert!(rw("SELECT `create`, CONNECTION_ID() FROM t").is_some());
    }

    #[test]
    fn socket_is_an_empty_string() {
        assert_eq!(
            rw("SELECT @@max_allowed_packet,@@wait_timeout,@@socket").as_deref(),
            Some("SELECT @@max_allowed_packet,@@wait_timeout,'' AS `@@socket`")
        );
        assert_eq!(rw(" select @@SOCKET ;").as_deref(), Some(" select '' AS `@@SOCKET` ;"));
        assert_eq!(rw("SELECT @@global.socket").as_deref(), Some("SELECT '' AS `@@global.socket`"));
        assert_eq!(
            rw("SELECT @@socket, CONNECTION_ID()").as_deref(),
            Some("SELECT '' AS `@@socket`, CAST(1073741825 AS UNSIGNED) AS `CONNECTION_ID()`")
        );
        assert_eq!(rw("SELECT @socket, 'socket'"), None);
        assert_eq!(rw("SELECT socket FROM t"), None);
    }
}
