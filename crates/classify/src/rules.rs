//! Token rules for queries (`SELECT`, `WITH`, `VALUES`, `TABLE`, `SHOW`, the query under `EXPLAIN`).
//!
//! They run over every token, at any depth (subquery, UNION arm, CTE), because sqlparser's `Query.locks`
//! only sees the top level and several of these forms don't parse at all. Any rule that fires sends the
//! statement to the master; the first one (in text order) gives the reason:
//! - `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE` → LockingRead;
//! - `INTO` (leading or trailing, `@v`, `OUTFILE`, `DUMPFILE`) → SelectInto;
//! - a call of a [`MASTER_ONLY_FUNCTIONS`] or [`CONNECTION_FUNCTIONS`] entry, `NEXT|PREVIOUS VALUE FOR`, `s.nextval`,
//!   `SQL_CALC_FOUND_ROWS`, a session-result variable (`@@identity`, `@@last_insert_id`, `@@insert_id`,
//!   `@@last_gtid`), `@v := …` → SideEffectFunction;
//! - a qualified function call (`db.f()`, always stored code) → StoredFunction (unqualified calls of
//!   non-built-ins are found on the parsed query, where a call cannot be confused with a keyword);
//! - `INSERT`/`UPDATE`/`DELETE`/`REPLACE` as statements (`WITH … UPDATE`) → Write.
//!
//! `@@warning_count` / `@@error_count`, `FOUND_ROWS()` and `ROW_COUNT()` (results of the connection's previous
//! statement) make the query a Previous one if nothing else fired.

use sqlparser::tokenizer::Token;

use crate::tok::{is_call, is_kw, kw_in, kw_seq, name_in, sys_var, upper, user_var_len};
use crate::Reason;

/// Functions with side effects, or whose state belongs to the master's connection or server (see
/// [`Effects::master_only`](crate::Effects::master_only)).
const MASTER_ONLY_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_USED_LOCK",
    "IS_FREE_LOCK",
    "LAST_INSERT_ID",
    "NEXTVAL",
    "LASTVAL",
    "SETVAL",
    "LOAD_FILE",
];

/// Functions whose result differs per backend connection (when the proxy did not answer it itself).
const CONNECTION_FUNCTIONS: &[&str] = &["CONNECTION_ID"];

/// System variables holding results of the connection's earlier writes, which happened on the master.
const SIDE_EFFECT_SYSVARS: &[&str] = &["identity", "last_insert_id", "insert_id", "last_gtid"];

/// System variables holding the diagnostics of the previous statement.
const PREVIOUS_SYSVARS: &[&str] = &["warning_count", "error_count"];

/// Functions whose result belongs to the previous statement of the connection, wherever it ran.
const PREVIOUS_FUNCTIONS: &[&str] = &["FOUND_ROWS", "ROW_COUNT"];

/// What the token rules found in one statement.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The first rule that sends the statement to the master, if any.
    pub master: Option<Reason>,
    /// The statement reads `@@warning_count` / `@@error_count`, `FOUND_ROWS()` or `ROW_COUNT()`.
    pub previous: bool,
    /// The statement reads a user variable.
    pub reads_user_vars: bool,
    /// The statement assigns a user variable (`:=` or `INTO @v`).
    pub writes_user_vars: bool,
    /// The statement calls `GET_LOCK()`.
    pub named_locks: bool,
    /// The statement calls a function whose state belongs to the master (see `Effects::master_only`).
    pub master_only: bool,
    /// The statement calls a function qualified by a schema (`db.f()`): stored code.
    pub stored_code: bool,
}

impl Scan {
    /// Records a master rule; the first one wins.
    fn fire(&mut self, reason: Reason) {
        self.master.get_or_insert(reason);
    }
}

/// Runs the token rules over one statement.
pub(crate) fn scan(toks: &[Token]) -> Scan {
    let mut s = Scan::default();
    let mut i = 0;
    while i < toks.len() {
        if let Some(len) = user_var_len(toks, i) {
            if is_assignment(toks, i + len) {
                s.writes_user_vars = true;
                s.fire(Reason::SideEffectFunction);
            } else {
                s.reads_user_vars = true;
            }
            i += len;
            continue;
        }
        if let Some(var) = sys_var(toks, i) {
            if SIDE_EFFECT_SYSVARS.iter().any(|n| var.is(n)) {
                s.fire(Reason::SideEffectFunction);
                s.master_only = true;
            }
            s.previous |= PREVIOUS_SYSVARS.iter().any(|n| var.is(n));
            i += var.len;
            continue;
        }
        if is_kw(toks.get(i), "INTO") {
            s.fire(Reason::SelectInto);
            i = skip_into_targets(toks, i + 1, &mut s);
            continue;
        }
        if let Some(reason) = rule_at(toks, i) {
            s.stored_code |= reason == Reason::StoredFunction;
            s.master_only |= reason == Reason::SideEffectFunction && is_sequence_access(toks, i);
            s.fire(reason);
        }
        if is_call(toks, i) {
            s.named_locks |= name_in(toks.get(i), &["GET_LOCK"]);
            s.master_only |= name_in(toks.get(i), MASTER_ONLY_FUNCTIONS);
            s.previous |= name_in(toks.get(i), PREVIOUS_FUNCTIONS);
        }
        i += 1;
    }
    s
}

/// True when the tokens at `i` are the assignment operator `:=`.
fn is_assignment(toks: &[Token], i: usize) -> bool {
    match toks.get(i) {
        Some(Token::Assignment) => true,
        Some(Token::Colon) => toks.get(i + 1) == Some(&Token::Eq),
        _ => false,
    }
}

/// Skips the `@a, @b` list after `INTO`, marking user variables as written; returns the next index.
fn skip_into_targets(toks: &[Token], mut i: usize, s: &mut Scan) -> usize {
    while let Some(len) = user_var_len(toks, i) {
        s.writes_user_vars = true;
        i += len;
        if toks.get(i) != Some(&Token::Comma) {
            break;
        }
        i += 1;
    }
    i
}

/// True when the token before `i` is the keyword `FOR` (`FOR UPDATE` is not an UPDATE statement).
fn follows_for(toks: &[Token], i: usize) -> bool {
    i > 0 && is_kw(toks.get(i - 1), "FOR")
}

/// Whether the tokens at `i` access a sequence: `NEXT|PREVIOUS VALUE FOR s`, `s.nextval`.
fn is_sequence_access(toks: &[Token], i: usize) -> bool {
    match upper(toks.get(i)).as_deref() {
        Some("NEXT" | "PREVIOUS") => kw_seq(toks, i + 1, &["VALUE", "FOR"]),
        Some("NEXTVAL" | "CURRVAL" | "LASTVAL") => i > 0 && toks.get(i - 1) == Some(&Token::Period),
        _ => false,
    }
}

/// The master rule firing at token `i` (other than variables and `INTO`), if any.
fn rule_at(toks: &[Token], i: usize) -> Option<Reason> {
    let t = toks.get(i);
    if let Some(w) = upper(t) {
        match w.as_str() {
            "FOR" if kw_in(toks.get(i + 1), &["UPDATE", "SHARE"]) => return Some(Reason::LockingRead),
            "LOCK" if kw_seq(toks, i + 1, &["IN", "SHARE", "MODE"]) => return Some(Reason::LockingRead),
            "SQL_CALC_FOUND_ROWS" => return Some(Reason::SideEffectFunction),
            "NEXT" | "PREVIOUS" if kw_seq(toks, i + 1, &["VALUE", "FOR"]) => return Some(Reason::SideEffectFunction),
            // MariaDB's Oracle-mode sequence access: `s.nextval`, `s.currval`.
            "NEXTVAL" | "CURRVAL" | "LASTVAL" if i > 0 && toks.get(i - 1) == Some(&Token::Period) => {
                return Some(Reason::SideEffectFunction)
            }
            "INSERT" | "UPDATE" | "DELETE" | "REPLACE" if !is_call(toks, i) && !follows_for(toks, i) => {
                return Some(Reason::Write)
            }
            _ => {}
        }
    }
    if is_call(toks, i) && !names_a_table(toks, i) {
        if i > 0 && toks.get(i - 1) == Some(&Token::Period) {
            return Some(Reason::StoredFunction);
        }
        if name_in(t, MASTER_ONLY_FUNCTIONS) || name_in(t, CONNECTION_FUNCTIONS) {
            return Some(Reason::SideEffectFunction);
        }
    }
    None
}

/// Whether the (possibly qualified) name ending at `i`, followed by `(`, is a table or alias with a column
/// list rather than a function: `INTO db.t (a, b)`, `AS d (x)`, `WITH c (n)`, `TABLE t (…)`.
fn names_a_table(toks: &[Token], i: usize) -> bool {
    let mut start = i;
    while start >= 2 && toks.get(start - 1) == Some(&Token::Period) && crate::tok::ident(toks.get(start - 2)).is_some()
    {
        start -= 2;
    }
    start > 0 && kw_in(toks.get(start - 1), &["INTO", "INSERT", "REPLACE", "AS", "WITH", "TABLE", "UPDATE", "JOIN"])
}
