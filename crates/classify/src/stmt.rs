//! First-keyword dispatch for one statement.
//!
//! Writes, DDL, transaction control, locks, admin commands, `USE` and text-protocol prepared statements
//! are decided here from their first keywords alone (several of them don't parse with sqlparser).
//! Queries, `SHOW` and `EXPLAIN` go to `query.rs`, `SET` to `set.rs`. An unknown first keyword goes to the
//! master: as a Write when sqlparser parses it, as a ParseError otherwise.

use sqlparser::tokenizer::Token;

use crate::scan::Calls;
use crate::tok::{ident, is_kw, kw_in, kw_seq, qualified_name, upper, user_var_len};
use crate::{query, rules, set, Kind, Reason, Verdict};

/// Classifies one statement (non-empty or empty token slice, without its `;`), told what the text calls
/// (found by the pre-scan, for the whole text).
pub(crate) fn classify_statement(toks: &[Token], calls: Calls) -> Verdict {
    if toks.first() == Some(&Token::LParen) {
        return query::classify_query(toks, calls.spaced);
    }
    let Some(first) = upper(toks.first()) else {
        return Verdict::master(Reason::ParseError);
    };
    match first.as_str() {
        "SELECT" | "WITH" | "VALUES" | "TABLE" => query::classify_query(toks, calls.spaced),
        "SHOW" => query::classify_show(toks),
        "DESCRIBE" | "DESC" | "EXPLAIN" => query::classify_explain(toks, calls.spaced),
        "SET" => set::classify_set(toks, calls),
        "USE" => classify_use(toks),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" => dml(toks, calls),
        "LOAD" => {
            let mut v = dml(toks, calls);
            // LOAD DATA [LOW_PRIORITY | CONCURRENT] LOCAL INFILE …
            v.effects.local_infile = toks.iter().take(4).any(|t| is_kw(Some(t), "LOCAL"));
            v
        }
        "CALL" => classify_call(toks, calls),
        "DO" => written_by(toks, calls, Verdict::master(Reason::Write)),
        "GRANT" | "REVOKE" => Verdict::master(Reason::Write).commits(),
        "HANDLER" => classify_handler(toks),
        "ANALYZE" => classify_analyze(toks, calls),
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "RENAME" | "OPTIMIZE" | "REPAIR" => classify_ddl(toks),
        "PREPARE" => classify_prepare(toks),
        "EXECUTE" => {
            let mut v = written_by(toks, calls, Verdict::master(Reason::SessionState));
            v.effects.stored_code = true;
            // `EXECUTE IMMEDIATE 'KILL …'`: refused like any KILL the proxy cannot translate.
            if is_kw(toks.get(1), "IMMEDIATE") && literal_is_kill(toks.get(2)) {
                v.reason = Reason::Kill;
            }
            v
        }
        "DEALLOCATE" => {
            let mut v = Verdict::master(Reason::SessionState).session();
            v.effects.deallocates.extend(prepared_name(toks, 2));
            v
        }
        "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "XA" => {
            classify_transaction(&first, toks)
        }
        "LOCK" => {
            let mut v = Verdict::master(Reason::LockTables).session().commits();
            v.effects.table_locks = Some(true);
            v
        }
        "UNLOCK" => {
            let mut v = Verdict::master(Reason::LockTables).session();
            v.effects.table_locks = Some(false);
            v
        }
        "FLUSH" => classify_flush(toks),
        "GET" if kw_in(toks.get(1), &["DIAGNOSTICS", "CURRENT", "STACKED"]) => {
            Verdict::new(Kind::Previous, Reason::Previous)
        }
        "KILL" => Verdict::master(Reason::Kill),
        "RESET" | "CACHE" => Verdict::master(Reason::Admin).commits(),
        "PURGE" | "INSTALL" | "UNINSTALL" | "CHANGE" | "STOP" | "CHECK" | "CHECKSUM" | "SHUTDOWN" | "RESTART"
        | "BINLOG" | "CLONE" | "IMPORT" | "BACKUP" | "HELP" | "SIGNAL" | "RESIGNAL" => Verdict::master(Reason::Admin),
        _ => classify_unknown(toks),
    }
}

/// INSERT/UPDATE/DELETE/REPLACE/LOAD: a write of table data, plus what its expressions do.
fn dml(toks: &[Token], calls: Calls) -> Verdict {
    let mut v = written_by(toks, calls, Verdict::master(Reason::Write));
    v.effects.dml = true;
    v
}

/// `v` with the variable, lock and stored-code effects the token rules and the pre-scan find.
fn written_by(toks: &[Token], calls: Calls, mut v: Verdict) -> Verdict {
    let scan = rules::scan(toks);
    query::with_vars(&mut v, &scan);
    v.effects.stored_code |= calls.unknown;
    v
}

/// `CALL p(args)`: stored code; a user variable among the arguments may be an OUT parameter.
fn classify_call(toks: &[Token], calls: Calls) -> Verdict {
    let mut v = written_by(toks, calls, Verdict::master(Reason::Write));
    v.effects.stored_code = true;
    if (0..toks.len()).any(|i| user_var_len(toks, i).is_some()) {
        v.effects.writes_user_vars = true;
        v.reads_user_vars = true;
    }
    v
}

/// `HANDLER t OPEN | READ … | CLOSE`: an open handler lives on the connection.
fn classify_handler(toks: &[Token]) -> Verdict {
    let mut v = Verdict::master(Reason::Write);
    let (_, len) = qualified_name(toks, 1).unwrap_or_default();
    v.effects.handler = match upper(toks.get(1 + len)).as_deref() {
        Some("OPEN") => Some(true),
        Some("CLOSE") => Some(false),
        _ => None,
    };
    v
}

/// `PREPARE name FROM 'text' | @var`: a statement kept on the connection. A literal text is classified too: a
/// KILL inside it is refused like any other KILL the proxy cannot translate.
fn classify_prepare(toks: &[Token]) -> Verdict {
    let mut v = Verdict::master(Reason::SessionState).session();
    v.effects.prepares.extend(prepared_name(toks, 1));
    if literal_is_kill(toks.get(3)) {
        v.reason = Reason::Kill;
    }
    v
}

/// Whether a token is a string literal whose text is a KILL statement.
fn literal_is_kill(t: Option<&Token>) -> bool {
    matches!(t, Some(Token::SingleQuotedString(text) | Token::DoubleQuotedString(text))
        if crate::classify(text).reason == Reason::Kill)
}

/// The lower-cased statement name at `i` (`PREPARE s`, `DEALLOCATE PREPARE s`, `DROP PREPARE s`).
fn prepared_name(toks: &[Token], i: usize) -> Option<String> {
    ident(toks.get(i)).map(str::to_ascii_lowercase)
}

/// `USE db`: a replayable session change.
fn classify_use(toks: &[Token]) -> Verdict {
    if toks.len() == 2 && ident(toks.get(1)).is_some() {
        let mut v = Verdict::new(Kind::SessionSet, Reason::SessionState).session();
        v.effects.assigns.push(crate::SCHEMA_KEY.to_string());
        v
    } else {
        Verdict::master(Reason::ParseError)
    }
}

/// CREATE/ALTER/DROP/...: DDL (an implicit commit); temporary tables are session state and commit nothing;
/// `DROP PREPARE` is DEALLOCATE. The tables an ALTER, RENAME or DROP names are listed (a temporary table
/// may be among them).
fn classify_ddl(toks: &[Token]) -> Verdict {
    if is_kw(toks.first(), "DROP") && is_kw(toks.get(1), "PREPARE") {
        let mut v = Verdict::master(Reason::SessionState).session();
        v.effects.deallocates.extend(prepared_name(toks, 2));
        return v;
    }
    let mut v = Verdict::master(Reason::Ddl);
    let mut i = 1;
    if kw_seq(toks, i, &["OR", "REPLACE"]) {
        i += 2;
    }
    let temporary = is_kw(toks.get(i), "TEMPORARY");
    if temporary {
        i += 1;
    }
    let table = is_kw(toks.get(i), "TABLE") || is_kw(toks.get(i), "TABLES");
    let first = upper(toks.first()).unwrap_or_default();
    if table && matches!(first.as_str(), "ALTER" | "RENAME" | "DROP" | "TRUNCATE") {
        v.tables = table_names(toks, i + 1);
    }
    if first == "DROP" && table {
        v.effects.tables_dropped = v.tables.clone();
    }
    if !(temporary && table) {
        return v.commits();
    }
    v.effects.session_change = true;
    if first == "CREATE" {
        i += 1;
        if kw_seq(toks, i, &["IF", "NOT", "EXISTS"]) {
            i += 3;
        }
        v.effects.temp_tables_created.extend(qualified_name(toks, i).map(|(name, _)| name));
    }
    v
}

/// `ANALYZE [NO_WRITE_TO_BINLOG | LOCAL] TABLE …` maintains tables (and commits, like other DDL); MariaDB's
/// `ANALYZE [FORMAT = JSON] statement` runs the statement and reports how it ran: it goes where the
/// statement goes.
fn classify_analyze(toks: &[Token], calls: Calls) -> Verdict {
    let table_at = if kw_in(toks.get(1), &["NO_WRITE_TO_BINLOG", "LOCAL"]) { 2 } else { 1 };
    if kw_in(toks.get(table_at), &["TABLE", "TABLES"]) {
        return classify_ddl(toks);
    }
    let start = if is_kw(toks.get(1), "FORMAT") && toks.get(2) == Some(&Token::Eq) { 4 } else { 1 };
    match toks.get(start..) {
        Some(inner) if !inner.is_empty() && !is_kw(inner.first(), "ANALYZE") => classify_statement(inner, calls),
        _ => Verdict::master(Reason::ParseError),
    }
}

/// The (unqualified, lower-cased) names in a table list from `i`: `a, db.b`, `IF EXISTS a`, `a TO b, c TO d`.
fn table_names(toks: &[Token], mut i: usize) -> Vec<String> {
    let mut out = Vec::new();
    if kw_seq(toks, i, &["IF", "EXISTS"]) {
        i += 2;
    }
    while let Some((name, len)) = qualified_name(toks, i) {
        out.push(name);
        i += len;
        if is_kw(toks.get(i), "TO") {
            if let Some((to, len)) = qualified_name(toks, i + 1) {
                out.push(to);
                i += 1 + len;
            }
        }
        if toks.get(i) != Some(&Token::Comma) {
            break;
        }
        i += 1;
    }
    out
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
        // Not End: it may commit a prepared XA transaction of another (gone) connection, so it always runs.
        "XA" if kw_in(rest.first(), &["COMMIT", "ROLLBACK"]) => Verdict::master(Reason::Transaction),
        _ => Verdict::master(Reason::Transaction),
    }
}

/// A Begin verdict: it commits an open transaction and releases LOCK TABLES locks.
fn begin(read_only: bool) -> Verdict {
    let mut v = Verdict::new(Kind::Begin { read_only }, Reason::Transaction).commits();
    v.effects.table_locks = Some(false);
    v
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
        let mut v = Verdict::new(Kind::End, Reason::Transaction);
        let without_no = |kw: &str| {
            rest.iter().enumerate().any(|(i, t)| is_kw(Some(t), kw) && (i == 0 || !is_kw(rest.get(i - 1), "NO")))
        };
        // `… RELEASE` (not `NO RELEASE`): the server closes the connection after it.
        v.effects.releases_connection = without_no("RELEASE");
        // `AND CHAIN` (not `AND NO CHAIN`): a new transaction starts at once.
        v.effects.chain = without_no("CHAIN");
        v
    } else {
        Verdict::master(Reason::ParseError)
    }
}

/// FLUSH: `… WITH READ LOCK` / `… FOR EXPORT` take locks held by the session; the rest is admin.
fn classify_flush(toks: &[Token]) -> Verdict {
    let locks =
        (0..toks.len()).any(|i| kw_seq(toks, i, &["WITH", "READ", "LOCK"]) || kw_seq(toks, i, &["FOR", "EXPORT"]));
    if locks {
        let mut v = Verdict::master(Reason::LockTables).session().commits();
        v.effects.table_locks = Some(true);
        v.effects.flush_locks = true;
        v
    } else {
        Verdict::master(Reason::Admin).commits()
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
