//! First-keyword dispatch for one statement.
//!
//! Writes, DDL, transaction control, locks, admin commands, `USE` and text-protocol prepared statements
//! are decided here from their first keywords alone (several of them don't parse with sqlparser).
//! Queries, `SHOW` and `EXPLAIN` go to `query.rs`, `SET` to `set.rs`. An unknown first keyword goes to the
//! master: as a Write when sqlparser parses it, as a ParseError otherwise.

use sqlparser::tokenizer::Token;

use crate::lex::{ident, is_kw, kw_in, kw_seq, qualified_name, upper};
use crate::{query, set, Kind, Reason, Verdict};

/// Classifies one statement (non-empty or empty token slice, without its `;`).
pub(crate) fn classify_statement(toks: &[Token]) -> Verdict {
    if toks.first() == Some(&Token::LParen) {
        return query::classify_query(toks);
    }
    let Some(first) = upper(toks.first()) else {
        return Verdict::master(Reason::ParseError);
    };
    match first.as_str() {
        "SELECT" | "WITH" | "VALUES" | "TABLE" => query::classify_query(toks),
        "SHOW" => query::classify_show(toks),
        "DESCRIBE" | "DESC" | "EXPLAIN" => query::classify_explain(toks),
        "SET" => set::classify_set(toks),
        "USE" => classify_use(toks),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" | "CALL" | "DO" | "GRANT" | "REVOKE" => {
            Verdict::master(Reason::Write)
        }
        "HANDLER" => Verdict::master(Reason::Write).session(),
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "RENAME" | "ANALYZE" | "OPTIMIZE" | "REPAIR" => classify_ddl(toks),
        "PREPARE" | "EXECUTE" | "DEALLOCATE" => Verdict::master(Reason::SessionState).session(),
        "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "XA" => {
            classify_transaction(&first, toks)
        }
        "LOCK" | "UNLOCK" => Verdict::master(Reason::LockTables).session(),
        "FLUSH" => classify_flush(toks),
        "GET" if kw_in(toks.get(1), &["DIAGNOSTICS", "CURRENT", "STACKED"]) => {
            Verdict::new(Kind::Previous, Reason::Previous)
        }
        "KILL" | "PURGE" | "RESET" | "INSTALL" | "UNINSTALL" | "CHANGE" | "STOP" | "CHECK" | "CHECKSUM" | "CACHE"
        | "SHUTDOWN" | "RESTART" | "BINLOG" | "CLONE" | "IMPORT" | "BACKUP" | "HELP" | "SIGNAL" | "RESIGNAL" => {
            Verdict::master(Reason::Admin)
        }
        _ => classify_unknown(toks),
    }
}

/// `USE db`: a replayable session change.
fn classify_use(toks: &[Token]) -> Verdict {
    if toks.len() == 2 && ident(toks.get(1)).is_some() {
        Verdict::new(Kind::SessionSet, Reason::SessionState).session()
    } else {
        Verdict::master(Reason::ParseError)
    }
}

/// CREATE/ALTER/DROP/...: DDL; temporary tables are also session state; `DROP PREPARE` is DEALLOCATE.
fn classify_ddl(toks: &[Token]) -> Verdict {
    if is_kw(toks.first(), "DROP") && is_kw(toks.get(1), "PREPARE") {
        return Verdict::master(Reason::SessionState).session();
    }
    let mut v = Verdict::master(Reason::Ddl);
    let mut i = 1;
    if kw_seq(toks, i, &["OR", "REPLACE"]) {
        i += 2;
    }
    if !(is_kw(toks.get(i), "TEMPORARY") && is_kw(toks.get(i + 1), "TABLE")) {
        return v;
    }
    v.session_change = true;
    if is_kw(toks.first(), "CREATE") {
        i += 2;
        if kw_seq(toks, i, &["IF", "NOT", "EXISTS"]) {
            i += 3;
        }
        v.creates_temp_table = qualified_name(toks, i).map(|(name, _)| name);
    }
    v
}

/// BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE SAVEPOINT, XA, START SLAVE/REPLICA.
fn classify_transaction(first: &str, toks: &[Token]) -> Verdict {
    let rest = toks.get(1..).unwrap_or_default();
    match first {
        // `BEGIN NOT ATOMIC …` (MariaDB) is a compound statement that can do anything.
        "BEGIN" if rest.is_empty() || (rest.len() == 1 && is_kw(rest.first(), "WORK")) => begin(false),
        "BEGIN" => Verdict::master(Reason::Write),
        "START" if is_kw(rest.first(), "TRANSACTION") => start_transaction(&rest[1..]),
        "START" => Verdict::master(Reason::Admin),
        "COMMIT" => end_if_valid(rest),
        "ROLLBACK" if rest.iter().any(|t| is_kw(Some(t), "TO")) => Verdict::master(Reason::Transaction),
        "ROLLBACK" => end_if_valid(rest),
        "XA" if kw_in(rest.first(), &["START", "BEGIN"]) => begin(false),
        "XA" if kw_in(rest.first(), &["COMMIT", "ROLLBACK"]) => Verdict::new(Kind::End, Reason::Transaction),
        _ => Verdict::master(Reason::Transaction),
    }
}

/// A Begin verdict.
fn begin(read_only: bool) -> Verdict {
    Verdict::new(Kind::Begin { read_only }, Reason::Transaction)
}

/// `START TRANSACTION` characteristics: READ ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT, comma-separated.
fn start_transaction(chars: &[Token]) -> Verdict {
    const ALLOWED: &[&str] = &["READ", "ONLY", "WRITE", "WITH", "CONSISTENT", "SNAPSHOT"];
    if !chars.iter().all(|t| *t == Token::Comma || kw_in(Some(t), ALLOWED)) {
        return Verdict::master(Reason::ParseError);
    }
    let has = |kw: &str| (0..chars.len()).any(|i| kw_seq(chars, i, &["READ", kw]));
    begin(has("ONLY") && !has("WRITE"))
}

/// COMMIT/ROLLBACK with only `WORK`, `AND [NO] CHAIN`, `[NO] RELEASE` after it: End.
fn end_if_valid(rest: &[Token]) -> Verdict {
    const ALLOWED: &[&str] = &["WORK", "AND", "NO", "CHAIN", "RELEASE"];
    if rest.iter().all(|t| kw_in(Some(t), ALLOWED)) {
        Verdict::new(Kind::End, Reason::Transaction)
    } else {
        Verdict::master(Reason::ParseError)
    }
}

/// FLUSH: `… WITH READ LOCK` / `… FOR EXPORT` take locks held by the session; the rest is admin.
fn classify_flush(toks: &[Token]) -> Verdict {
    let locks =
        (0..toks.len()).any(|i| kw_seq(toks, i, &["WITH", "READ", "LOCK"]) || kw_seq(toks, i, &["FOR", "EXPORT"]));
    if locks {
        Verdict::master(Reason::LockTables).session()
    } else {
        Verdict::master(Reason::Admin)
    }
}

/// An unrecognised first keyword: never a read.
fn classify_unknown(toks: &[Token]) -> Verdict {
    if query::parses(toks) {
        Verdict::master(Reason::Write)
    } else {
        Verdict::master(Reason::ParseError)
    }
}
