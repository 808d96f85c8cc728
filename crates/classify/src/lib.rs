//! Pure SQL statement classifier for rwsplit: decides whether a statement may run on a replica.
//!
//! `classify(sql)` never does I/O and never panics; anything it cannot prove to be a plain read is
//! routed to the master.
//!
//! Module map:
//! - `lib.rs` (this file): the public API ([`classify`], [`Verdict`], [`Kind`], [`Reason`], [`Hint`]) and
//!   the multi-statement merge.
//! - `scan.rs`: pre-scan of the raw text: routing hints in comments, comment removal, executable
//!   comments (`/*! … */`, `/*!40101 … */`, `/*M!100101 … */`) unwrapped into code.
//! - `lex.rs`: sqlparser tokenizer (MySQL dialect), statement splitting on `;`, token helpers.
//! - `stmt.rs`: first-keyword dispatch: writes, DDL, transactions, locks, admin, `USE`, prepared statements.
//! - `set.rs`: the `SET` statement family (token scan, no parse).
//! - `rules.rs`: token rules for queries: locking reads, `INTO`, side-effect functions, variables.
//! - `query.rs`: `SELECT`/`WITH`/`VALUES`/`TABLE`, `SHOW`, `DESCRIBE`/`EXPLAIN`, and the sqlparser parse.
//! - `tables.rs`: names of the tables a read reads, from its tokens.
//! - `cache.rs`: [`classify_cached`], a per-thread cache of verdicts by statement shape (literals masked).
#![forbid(unsafe_code)]

mod cache;
mod lex;
mod query;
mod rules;
mod scan;
mod set;
mod stmt;
mod tables;

pub use cache::{classify_cached, shape};

/// Classifies one COM_QUERY text (possibly several `;`-separated statements).
pub fn classify(sql: &str) -> Verdict {
    let pre = scan::prescan(sql);
    let mut verdict = classify_text(&pre);
    verdict.hint = pre.hint;
    verdict
}

/// The classifier's decision for one COM_QUERY text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Where the statement may run.
    pub kind: Kind,
    /// Why; used for metrics and logs.
    pub reason: Reason,
    /// Routing hint found in a comment, if any.
    pub hint: Option<Hint>,
    /// Lower-cased, unqualified names of the tables a Read statement reads (for the proxy's
    /// temporary-table check). May be empty for non-reads.
    pub tables: Vec<String>,
    /// The statement reads a user variable (`@name`, not `@@sysvar`).
    pub reads_user_vars: bool,
    /// The statement assigns a user variable (SET @v = ..., SELECT @v := ..., SELECT ... INTO @v).
    pub writes_user_vars: bool,
    /// The statement changes session state in a way other than data (SET of session/user vars, SET NAMES,
    /// USE, CREATE TEMPORARY TABLE, PREPARE/DEALLOCATE, LOCK/UNLOCK TABLES, ...). For a single replayable
    /// statement `kind` is SessionSet; for a multi-statement containing one, kind is Master and this is true.
    pub session_change: bool,
    /// `CREATE TEMPORARY TABLE name` creates this (lower-cased, unqualified).
    pub creates_temp_table: Option<String>,
    /// Number of statements in the text (multi-statement COM_QUERY), at least 1.
    pub statements: usize,
}

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Provably a plain read: may run on a replica.
    Read,
    /// Must run on the master: writes, DDL, locking reads, side effects, anything not proven a read.
    Master,
    /// Changes session state only and is safe to replay on every backend connection of the session:
    /// SET SESSION/LOCAL/@@session. vars, plain `SET var = ...`, SET NAMES, SET CHARACTER SET, SET autocommit,
    /// `SET @user = <deterministic expression>`, SET SESSION TRANSACTION ..., SET ROLE, USE db.
    SessionSet,
    /// BEGIN / `START TRANSACTION [READ WRITE | WITH CONSISTENT SNAPSHOT ...]` / XA START|BEGIN.
    Begin {
        /// True only for START TRANSACTION READ ONLY (any order of the characteristics).
        read_only: bool,
    },
    /// COMMIT / ROLLBACK (not `ROLLBACK TO SAVEPOINT`), with optional `WORK` / `AND [NO] CHAIN` / `[NO] RELEASE`,
    /// XA COMMIT / XA ROLLBACK.
    End,
    /// Must run on the backend that ran the previous statement: SHOW WARNINGS, SHOW ERRORS,
    /// SHOW COUNT(*) WARNINGS|ERRORS, SELECT @@warning_count / @@error_count, SHOW PROFILE(S).
    Previous,
}

/// Why a statement got its [`Kind`]; a small closed set, usable as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Plain read.
    Read,
    /// INSERT/UPDATE/DELETE/REPLACE/LOAD DATA/CALL/DO/HANDLER/SET GLOBAL/GRANT/...
    Write,
    /// CREATE/ALTER/DROP/TRUNCATE/RENAME/... (incl. CREATE TEMPORARY TABLE).
    Ddl,
    /// BEGIN/COMMIT/ROLLBACK/SAVEPOINT/XA/SET TRANSACTION (next-transaction only).
    Transaction,
    /// FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE, at any depth.
    LockingRead,
    /// SELECT ... INTO @v / OUTFILE / DUMPFILE, leading or trailing.
    SelectInto,
    /// A side-effect or session-result function, or a user variable assignment with `:=`.
    SideEffectFunction,
    /// SET/USE/... (SessionSet kind), or a SET that can't be replayed (kind Master).
    SessionState,
    /// LOCK TABLES / UNLOCK TABLES / FLUSH TABLES WITH READ LOCK.
    LockTables,
    /// sqlparser could not parse it (and no cheaper rule decided).
    ParseError,
    /// Multi-statement text where not every statement is a Read.
    MultiStatement,
    /// SHOW MASTER/BINLOG/SLAVE/PROCESSLIST/ENGINE..., KILL, FLUSH, PURGE, ...
    Admin,
    /// Kind::Previous.
    Previous,
    /// Empty or comment-only text.
    Empty,
}

impl Reason {
    /// The snake_case name, e.g. `locking_read`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Read => "read",
            Reason::Write => "write",
            Reason::Ddl => "ddl",
            Reason::Transaction => "transaction",
            Reason::LockingRead => "locking_read",
            Reason::SelectInto => "select_into",
            Reason::SideEffectFunction => "side_effect_function",
            Reason::SessionState => "session_state",
            Reason::LockTables => "lock_tables",
            Reason::ParseError => "parse_error",
            Reason::MultiStatement => "multi_statement",
            Reason::Admin => "admin",
            Reason::Previous => "previous",
            Reason::Empty => "empty",
        }
    }
}

/// A routing hint written by the client in a comment (`rwsplit:master` / `rwsplit:replica`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    /// `rwsplit:master`: the client asks for the master.
    Master,
    /// `rwsplit:replica`: the client asks for a replica.
    Replica,
}

impl Hint {
    /// The snake_case name (`master`, `replica`), for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Hint::Master => "master",
            Hint::Replica => "replica",
        }
    }
}

impl Verdict {
    /// A one-statement verdict with no flags set.
    pub(crate) fn new(kind: Kind, reason: Reason) -> Self {
        Verdict {
            kind,
            reason,
            hint: None,
            tables: Vec::new(),
            reads_user_vars: false,
            writes_user_vars: false,
            session_change: false,
            creates_temp_table: None,
            statements: 1,
        }
    }

    /// A one-statement verdict sending the statement to the master.
    pub(crate) fn master(reason: Reason) -> Self {
        Verdict::new(Kind::Master, reason)
    }

    /// The same verdict, marked as changing session state.
    pub(crate) fn session(mut self) -> Self {
        self.session_change = true;
        self
    }
}

/// Classifies pre-scanned text: tokenizes, splits on `;` and merges per-statement verdicts.
fn classify_text(pre: &scan::Prescan) -> Verdict {
    if pre.unterminated {
        return Verdict::master(Reason::ParseError);
    }
    if !pre.multi && is_plain_write(&pre.text) {
        return Verdict::master(Reason::Write);
    }
    let Some(tokens) = lex::tokenize(&pre.text) else {
        return Verdict::master(Reason::ParseError);
    };
    let statements = lex::split_statements(&tokens);
    match statements.as_slice() {
        [] => Verdict::master(Reason::Empty),
        [one] => stmt::classify_statement(one),
        many => merge(many.iter().map(|s| stmt::classify_statement(s)).collect()),
    }
}

/// Short cut for the most common writes: a single statement whose first word is INSERT, UPDATE, DELETE,
/// REPLACE, LOAD, CALL or DO is a Write whatever follows (saves tokenizing it).
fn is_plain_write(text: &str) -> bool {
    const WRITES: &[&str] = &["INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD", "CALL", "DO"];
    let text = text.trim_start();
    let len = text
        .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '$' | '@') || !c.is_ascii()))
        .unwrap_or(text.len());
    let first = &text[..len];
    WRITES.iter().any(|w| first.eq_ignore_ascii_case(w))
}

/// Merges the verdicts of a multi-statement text: Read only if every statement is a Read.
fn merge(verdicts: Vec<Verdict>) -> Verdict {
    let mut out = Verdict::new(Kind::Read, Reason::Read);
    out.statements = verdicts.len();
    let mut first_non_read = None;
    let mut seen = std::collections::HashSet::new();
    for v in verdicts {
        if v.kind != Kind::Read && first_non_read.is_none() {
            first_non_read = Some(v.reason);
        }
        out.reads_user_vars |= v.reads_user_vars;
        out.writes_user_vars |= v.writes_user_vars;
        out.session_change |= v.session_change;
        if out.creates_temp_table.is_none() {
            out.creates_temp_table = v.creates_temp_table;
        }
        for t in v.tables {
            if seen.insert(t.clone()) {
                out.tables.push(t);
            }
        }
    }
    if let Some(reason) = first_non_read {
        out.kind = Kind::Master;
        out.reason = match reason {
            Reason::Read | Reason::Previous | Reason::SessionState => Reason::MultiStatement,
            other => other,
        };
    }
    out
}
