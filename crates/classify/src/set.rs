//! The `SET` statement family, decided from tokens (no parse).
//!
//! - `SET GLOBAL|PERSIST|PERSIST_ONLY …`, a `@@global.`/`@@persist.` target, `SET PASSWORD`,
//!   `SET DEFAULT ROLE` → Master Write.
//! - a variable that applies to the next statement only (`insert_id`, `rand_seed1`, …) → Master
//!   SessionState, not session state: it must run on the master and is never replayed.
//! - `SET TRANSACTION …` and unscoped `SET @@transaction_isolation = …` (next transaction only) → Master
//!   Transaction; `SET SESSION TRANSACTION …` → SessionSet.
//! - `SET STATEMENT … FOR stmt` (MariaDB) → Master, with the inner statement's reason when it is a master one.
//! - `SET NAMES`, `SET CHARACTER SET|CHARSET`, `SET ROLE` and variable-assignment lists whose right-hand
//!   sides are deterministic → SessionSet; a non-deterministic right-hand side (a subquery, `NEXT VALUE FOR`,
//!   `CURRENT_TIMESTAMP`, `@@global.x`, or a call of anything outside a list of known deterministic
//!   functions: `NOW()`, `RAND()`, a stored function, …), or a user variable given a system variable's value
//!   (`SET @h = @@hostname`: each server has its own) → Master SessionState: it cannot be replayed on
//!   other connections.
//!
//! Every SET also reports what it assigns ([`Effects::assigns`](crate::Effects::assigns)) and what its
//! right-hand sides read ([`Effects::reads`](crate::Effects::reads)), so the proxy can keep only the last
//! value of a variable without dropping one that a later SET read.

use sqlparser::tokenizer::Token;

use crate::scan::Calls;
use crate::tok::{is_call, is_kw, kw_in, kw_seq, name_in, sys_var, upper, user_var_len};
use crate::{stmt, Kind, Reason, Verdict};

/// Functions (and type names written like calls inside `CAST`) known to be deterministic. A SET whose
/// right-hand side calls anything else (`NOW()`, `RAND()`, `LAST_INSERT_ID()`, a stored function that may
/// write, …) can't be replayed on other connections.
const DETERMINISTIC_FUNCTIONS: &[&str] = &[
    "CONCAT",
    "CONCAT_WS",
    "REPLACE",
    "LOWER",
    "LCASE",
    "UPPER",
    "UCASE",
    "IF",
    "IFNULL",
    "NULLIF",
    "COALESCE",
    "CAST",
    "CONVERT",
    "TRIM",
    "LTRIM",
    "RTRIM",
    "SUBSTRING",
    "SUBSTR",
    "SUBSTRING_INDEX",
    "LEFT",
    "RIGHT",
    "LENGTH",
    "CHAR_LENGTH",
    "CHARACTER_LENGTH",
    "LOCATE",
    "INSTR",
    "POSITION",
    "FIND_IN_SET",
    "LPAD",
    "RPAD",
    "REPEAT",
    "REVERSE",
    "INSERT",
    "ELT",
    "FIELD",
    "ABS",
    "CEIL",
    "CEILING",
    "FLOOR",
    "ROUND",
    "TRUNCATE",
    "GREATEST",
    "LEAST",
    "MOD",
    "POW",
    "POWER",
    "SIGN",
    "HEX",
    "UNHEX",
    "CHAR",
    "ASCII",
    "ORD",
    "FORMAT",
    "QUOTE",
    "SPACE",
    "MD5",
    "SHA1",
    "SHA2",
    "CRC32",
    "TO_BASE64",
    "FROM_BASE64",
    "DATE_FORMAT",
    "STR_TO_DATE",
    "DATE_ADD",
    "DATE_SUB",
    "ADDDATE",
    "SUBDATE",
    "TIMESTAMPADD",
    "TIMESTAMPDIFF",
    "DATEDIFF",
    "FROM_UNIXTIME",
    "MAKEDATE",
    "MAKETIME",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "YEAR",
    "MONTH",
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "EXTRACT",
    "CONVERT_TZ",
    "SEC_TO_TIME",
    "TIME_TO_SEC",
    "JSON_OBJECT",
    "JSON_ARRAY",
    "JSON_EXTRACT",
    "JSON_UNQUOTE",
    "JSON_QUOTE",
    "JSON_SET",
    "JSON_VALUE",
    "INET_ATON",
    "INET_NTOA",
    "DECIMAL",
    "BINARY",
    "VARCHAR",
    "NCHAR",
    "DATETIME",
];

/// Time keywords that are also valid without parentheses (`SET @t = CURRENT_TIMESTAMP`).
const BARE_TIME_WORDS: &[&str] = &[
    "CURRENT_TIMESTAMP",
    "CURRENT_TIME",
    "CURRENT_DATE",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "UTC_TIMESTAMP",
    "UTC_TIME",
    "UTC_DATE",
];

/// Session variables that apply to the next statement only: set on the master, right before the statement.
const NEXT_STATEMENT_VARS: &[&str] =
    &["insert_id", "last_insert_id", "identity", "rand_seed1", "rand_seed2", "gtid_seq_no"];

/// The variables `SET NAMES` and `SET CHARACTER SET` change.
const CHARSET_VARS: &[&str] =
    &["character_set_client", "character_set_connection", "character_set_results", "collation_connection"];

/// Transaction variables whose unscoped `@@name` form applies to the next transaction only.
const NEXT_TRANSACTION_VARS: &[&str] =
    &["transaction_isolation", "transaction_read_only", "tx_isolation", "tx_read_only"];

/// Classifies a statement starting with `SET`.
pub(crate) fn classify_set(toks: &[Token], calls: Calls) -> Verdict {
    let rest = toks.get(1..).unwrap_or_default();
    let session_set = || Verdict::new(Kind::SessionSet, Reason::SessionState).session();
    if rest.is_empty() {
        return Verdict::master(Reason::ParseError);
    }
    match upper(rest.first()).as_deref() {
        Some("PASSWORD") => Verdict::master(Reason::Write),
        Some("DEFAULT") if is_kw(rest.get(1), "ROLE") => Verdict::master(Reason::Write),
        Some("ROLE") => {
            let mut v = session_set();
            v.effects.assigns.push(crate::ROLE_KEY.to_string());
            v
        }
        Some("TRANSACTION") => {
            let mut v = Verdict::master(Reason::Transaction);
            v.effects.next_statement = true;
            v
        }
        Some("GLOBAL" | "PERSIST" | "PERSIST_ONLY") => Verdict::master(Reason::Write),
        Some("SESSION" | "LOCAL") if is_kw(rest.get(1), "TRANSACTION") => {
            let mut v = session_set();
            let has = |kw: &str| rest.iter().any(|t| is_kw(Some(t), kw));
            if has("ISOLATION") {
                v.effects.assigns.push("tx_isolation".into());
            }
            if has("ONLY") || has("WRITE") {
                v.effects.assigns.push("tx_read_only".into());
            }
            v
        }
        Some("STATEMENT") => set_statement(rest, calls),
        _ => assignments(rest),
    }
}

/// `SET STATEMENT var = value [, …] FOR stmt` (MariaDB): always Master.
fn set_statement(rest: &[Token], calls: Calls) -> Verdict {
    let mut depth = 0usize;
    for (i, t) in rest.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ if depth == 0 && is_kw(Some(t), "FOR") => {
                let mut v = set_statement_inner(&rest[i + 1..], calls);
                // The variables change for this one statement; the server reports them as changed anyway.
                v.effects.statement_scoped = split_items(&rest[1..i])
                    .into_iter()
                    .filter_map(|item| {
                        // A variable is a name (words and dots); a literal in it (`SET STATEMENT 'r' = 1 …`,
                        // refused by the server) names nothing, and would make the verdict depend on a
                        // literal the cache's shape masks (found by fuzzing).
                        let end = item.iter().position(|t| matches!(t, Token::Eq | Token::Assignment))?;
                        let name = &item[..end];
                        let named = matches!(name.first(), Some(Token::Word(_)))
                            && name.iter().all(|t| matches!(t, Token::Word(_) | Token::Period | Token::Whitespace(_)));
                        named.then(|| target_name(name))
                    })
                    .collect();
                return v;
            }
            _ => {}
        }
    }
    Verdict::master(Reason::ParseError)
}

/// Classifies the statement after `SET STATEMENT … FOR`, keeping its reason if it is a master one.
fn set_statement_inner(inner: &[Token], calls: Calls) -> Verdict {
    // Nested SET STATEMENT is not valid; don't recurse on it.
    let mut v = if is_kw(inner.first(), "SET") {
        Verdict::master(Reason::Write)
    } else {
        stmt::classify_statement(inner, calls)
    };
    if v.kind != Kind::Master {
        v.reason = Reason::Write;
    }
    v.kind = Kind::Master;
    v.effects.session_change = false;
    v
}

/// What the items of an assignment list add up to.
#[derive(Default)]
struct Items {
    /// An item targets a global/persisted variable.
    global: bool,
    /// An item sets a per-session (or user) value.
    session: bool,
    /// An item sets a next-transaction-only variable.
    next_transaction: bool,
    /// An item sets a next-statement-only variable.
    next_statement: bool,
    /// A right-hand side is not deterministic across backends.
    nondeterministic: bool,
    /// An item could not be understood.
    malformed: bool,
    /// A right-hand side reads a user variable.
    reads_user_vars: bool,
    /// An item assigns a user variable.
    writes_user_vars: bool,
    /// What the items assign (see `Effects::assigns`).
    assigns: Vec<String>,
    /// What the right-hand sides read (see `Effects::reads`).
    reads: Vec<String>,
}

/// `SET a = 1, @b = 'x', SESSION c = DEFAULT, @@session.d = 2, NAMES utf8mb4, …`.
fn assignments(list: &[Token]) -> Verdict {
    let mut items = Items::default();
    for item in split_items(list) {
        assignment(item, &mut items);
    }
    let mut v = if items.malformed {
        Verdict::master(Reason::ParseError)
    } else if items.global {
        Verdict::master(Reason::Write)
    } else if items.nondeterministic || items.next_statement || (items.next_transaction && items.session) {
        Verdict::master(Reason::SessionState)
    } else if items.next_transaction {
        Verdict::master(Reason::Transaction)
    } else {
        Verdict::new(Kind::SessionSet, Reason::SessionState)
    };
    v.effects.session_change = items.session;
    v.reads_user_vars = items.reads_user_vars;
    v.effects.writes_user_vars = items.writes_user_vars;
    v.effects.assigns = items.assigns;
    v.effects.reads = items.reads;
    v.effects.next_statement = items.next_statement || items.next_transaction;
    v
}

/// Splits an assignment list on commas outside parentheses.
fn split_items(list: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, t) in list.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// What an assignment item sets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A user variable (`@v`).
    User,
    /// A session variable (replayable).
    Session,
    /// A global or persisted variable.
    Global,
    /// A transaction characteristic for the next transaction only.
    NextTransaction,
}

/// Adds one assignment item to `items`.
fn assignment(item: &[Token], items: &mut Items) {
    if kw_in(item.first(), &["NAMES", "CHARSET"]) || kw_seq(item, 0, &["CHARACTER", "SET"]) {
        items.session = true;
        items.assigns.extend(CHARSET_VARS.iter().map(|v| v.to_string()));
        return;
    }
    let scope = upper(item.first())
        .filter(|w| matches!(w.as_str(), "SESSION" | "LOCAL" | "GLOBAL" | "PERSIST" | "PERSIST_ONLY"));
    let start = usize::from(scope.is_some());
    let Some((target, len)) = target(item, start, scope.as_deref()) else {
        items.malformed = true;
        return;
    };
    let i = start + len;
    let op_len = match (item.get(i), item.get(i + 1)) {
        (Some(Token::Eq | Token::Assignment), _) => 1,
        (Some(Token::Colon), Some(Token::Eq)) => 2,
        _ => 0,
    };
    let rhs = item.get(i + op_len..).unwrap_or_default();
    if op_len == 0 || rhs.is_empty() {
        items.malformed = true;
        return;
    }
    let name = target_name(&item[start..i]);
    match target {
        Target::User => {
            items.writes_user_vars = true;
            items.session = true;
            items.assigns.push(format!("@{name}"));
        }
        Target::Session if NEXT_STATEMENT_VARS.contains(&name.as_str()) => items.next_statement = true,
        Target::Session => {
            items.session = true;
            items.assigns.push(name);
        }
        Target::Global => items.global = true,
        Target::NextTransaction => items.next_transaction = true,
    }
    scan_rhs(rhs, target == Target::User, items);
}

/// The lower-case name of an assignment target: a user variable without its `@`, a system variable without
/// `@@` and scope (`@@session.time_zone` → `time_zone`), a structured name whole (`default.key_buffer_size`).
fn target_name(toks: &[Token]) -> String {
    let parts: Vec<String> = toks
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.clone()),
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Some(s.clone()),
            Token::Period => Some(".".into()),
            _ => None,
        })
        .collect();
    let text = parts.concat().to_ascii_lowercase();
    let text = text.trim_start_matches('@');
    for scope in ["session.", "local.", "global.", "persist.", "persist_only."] {
        if let Some(rest) = text.strip_prefix(scope) {
            return rest.to_string();
        }
    }
    text.to_string()
}

/// The assignment target at `i` (after an optional scope keyword) and its length in tokens.
fn target(item: &[Token], i: usize, scope: Option<&str>) -> Option<(Target, usize)> {
    let global_scope = matches!(scope, Some("GLOBAL" | "PERSIST" | "PERSIST_ONLY"));
    if let Some(len) = user_var_len(item, i) {
        return (scope.is_none()).then_some((Target::User, len));
    }
    if let Some(var) = sys_var(item, i) {
        let target = if var.is_global() || global_scope {
            Target::Global
        } else if var.scope.is_none() && scope.is_none() && NEXT_TRANSACTION_VARS.iter().any(|n| var.is(n)) {
            Target::NextTransaction
        } else {
            Target::Session
        };
        return Some((target, var.len));
    }
    if !matches!(item.get(i), Some(Token::Word(_))) {
        return None;
    }
    // A plain name, possibly structured (`default.key_buffer_size`).
    let mut len = 1;
    while item.get(i + len) == Some(&Token::Period) && matches!(item.get(i + len + 1), Some(Token::Word(_))) {
        len += 2;
    }
    let target = if global_scope { Target::Global } else { Target::Session };
    Some((target, len))
}

/// Scans a right-hand side for variable use and non-determinism. `for_user_var`: the target is a user
/// variable, which keeps the value (and, for a string, the connection's collation) it is given.
fn scan_rhs(rhs: &[Token], for_user_var: bool, items: &mut Items) {
    let mut i = 0;
    while i < rhs.len() {
        if let Some(len) = user_var_len(rhs, i) {
            if matches!(rhs.get(i + len), Some(Token::Assignment)) {
                items.writes_user_vars = true;
            } else {
                items.reads_user_vars = true;
            }
            items.reads.push(format!("@{}", target_name(&rhs[i..i + len])));
            i += len;
            continue;
        }
        if let Some(var) = sys_var(rhs, i) {
            // A global value differs between servers; so does a session value that a user variable keeps
            // (`@@hostname`, `@@server_id` read through the session). A session variable assigned from
            // another is fine: the proxy replays the value the server reports.
            items.nondeterministic |= var.is_global() || for_user_var;
            items.reads.push(var.name.to_ascii_lowercase());
            i += var.len;
            continue;
        }
        if for_user_var && matches!(rhs.get(i), Some(Token::SingleQuotedString(_) | Token::DoubleQuotedString(_))) {
            // The string takes the connection's character set and collation at that moment.
            items.reads.extend(["character_set_connection", "collation_connection"].map(String::from));
        }
        items.nondeterministic |= is_nondeterministic_at(rhs, i);
        i += 1;
    }
}

/// True when the token at `i` makes a right-hand side non-deterministic.
fn is_nondeterministic_at(rhs: &[Token], i: usize) -> bool {
    let t = rhs.get(i);
    if is_kw(t, "SELECT") || kw_in(t, BARE_TIME_WORDS) {
        return true;
    }
    if kw_in(t, &["NEXT", "PREVIOUS"]) && kw_seq(rhs, i + 1, &["VALUE", "FOR"]) {
        return true;
    }
    if !is_call(rhs, i) {
        return false;
    }
    // A qualified call (`db.f()`) is a stored function: anything may happen.
    let qualified = i >= 1 && rhs.get(i - 1) == Some(&Token::Period);
    qualified || !name_in(t, DETERMINISTIC_FUNCTIONS)
}
