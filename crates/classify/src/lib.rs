//! Pure SQL statement classifier for rwsplit: decides whether a statement may run on a replica, and what
//! it does to the session's state.
//!
//! `classify(sql)` never does I/O and never panics; anything it cannot prove to be a plain read is
//! routed to the master.
//!
//! Module map:
//! - `lib.rs` (this file): the public API ([`classify`], [`classify_with`], [`Verdict`], [`Effects`], [`Kind`],
//!   [`Reason`], [`Hint`]) and the multi-statement merge.
//! - [`lex`]: the one MySQL lexer over raw bytes (comments, strings, identifiers, numbers, executable
//!   comments, `NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES`, multi-byte client character sets). Public: the proxy
//!   uses it for its rewrites and the admin port.
//! - `scan.rs`: pre-scan: routing hints from comments, and the text handed to the tokenizer.
//! - `tok.rs`: sqlparser tokenizer (MySQL dialect), statement splitting on `;`, token helpers.
//! - `stmt.rs`: first-keyword dispatch: writes, DDL, transactions, locks, admin, `USE`, prepared statements.
//! - `set.rs`: the `SET` statement family (token scan, no parse).
//! - `rules.rs`: token rules: locking reads, `INTO`, side-effect functions, variables, stored code.
//! - `query.rs`: `SELECT`/`WITH`/`VALUES`/`TABLE`, `SHOW`, `DESCRIBE`/`EXPLAIN`, and the sqlparser parse.
//! - `tables.rs`: names of the tables a read reads, from its tokens.
//! - `builtins.rs`: every built-in function name (a call of anything else may run stored code).
//! - `kill.rs`: the `KILL` statement, parsed.
//! - `cache.rs`: [`classify_cached`], a per-thread cache of verdicts by statement shape (literals masked).
#![forbid(unsafe_code)]

mod builtins;
mod cache;
mod kill;
pub mod lex;
mod query;
mod rules;
mod scan;
mod set;
mod stmt;
mod tables;
mod tok;

pub use cache::{classify_cached, shape, shares_verdict};
pub use kill::{parse_kill, Kill, KillTarget};
pub use lex::Dialect;
pub use scan::{hints, Hints};

/// Classifies one COM_QUERY text (possibly several `;`-separated statements) under the default dialect.
pub fn classify(sql: &str) -> Verdict {
    classify_with(sql.as_bytes(), Dialect::default())
}

/// Classifies one COM_QUERY text, as raw bytes in the client's character set, under the session's dialect.
pub fn classify_with(sql: &[u8], dialect: Dialect) -> Verdict {
    let pre = scan::prescan(sql, dialect);
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
    /// Lower-cased, unqualified names of the tables the statement names: those a Read reads (for the
    /// temporary-table check), those an ALTER/RENAME/DROP names. May be empty otherwise.
    pub tables: Vec<String>,
    /// The statement reads a user variable (`@name`, not `@@sysvar`).
    pub reads_user_vars: bool,
    /// What the statement does to the session's state when it succeeds.
    pub effects: Effects,
    /// Number of statements in the text (multi-statement COM_QUERY), at least 1.
    pub statements: usize,
}

/// What a statement does to session state beyond data, as far as its text tells. The proxy combines this with
/// what the server reports (status flags, session tracking).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Assigns a user variable: `SET @v`, `SELECT @v := …`, `… INTO @v`, `@v :=` in a write or `DO`, or a
    /// user variable passed to `CALL` (a possible OUT parameter).
    pub writes_user_vars: bool,
    /// Changes session state other than data (SET of session/user variables, SET NAMES, USE, temporary
    /// tables, PREPARE/DEALLOCATE, LOCK/UNLOCK TABLES, HANDLER …). For a single replayable statement the
    /// kind is SessionSet; for a multi-statement containing one, kind is Master and this is true.
    pub session_change: bool,
    /// For `SET`: what it assigns, lower-case: system variables by name (`time_zone`), user variables with
    /// their `@` (`@v`); `SET NAMES`/`CHARACTER SET` list the character-set variables they set, `SET ROLE`
    /// assigns `role`, `SET SESSION TRANSACTION` `tx_isolation`/`tx_read_only`.
    pub assigns: Vec<String>,
    /// For `SET`: what the right-hand sides read, named like [`Effects::assigns`]: variables (`@v`,
    /// `sql_mode`), and `character_set_connection`/`collation_connection` when a user variable is given a
    /// string (it keeps the connection's collation of that moment). Replaying the statement gives the same
    /// result only after the statements that set these.
    pub reads: Vec<String>,
    /// `SET TRANSACTION …` or a next-statement variable (`SET insert_id = …`, `rand_seed1`, …): it applies
    /// to the next statement or transaction of that connection only, so that statement must run there.
    pub next_statement: bool,
    /// Calls a function whose state belongs to the master's connection or server: named locks
    /// (`GET_LOCK`, `IS_USED_LOCK`, …), `LAST_INSERT_ID()`, sequences, `LOAD_FILE()`, or reads `@@identity`,
    /// `@@last_insert_id`, `@@last_gtid`. Such a call goes to the master even inside a READ ONLY transaction
    /// held by a replica.
    pub master_only: bool,
    /// `COMMIT AND CHAIN` / `ROLLBACK AND CHAIN`: a new transaction starts right away.
    pub chain: bool,
    /// `CREATE TEMPORARY TABLE` creates these (lower-cased, unqualified).
    pub temp_tables_created: Vec<String>,
    /// `DROP [TEMPORARY] TABLE` drops these (a temporary table of that name, if any, goes first).
    pub tables_dropped: Vec<String>,
    /// Runs stored code whose effects the text does not show: `CALL`, `EXECUTE`, or a call of a function that
    /// is not a built-in. It may set user variables, create temporary tables or take locks.
    pub stored_code: bool,
    /// Calls `GET_LOCK()`: the session may hold named locks on that connection.
    pub named_locks: bool,
    /// `LOCK TABLES`/`FLUSH TABLES … WITH READ LOCK` (true) or `UNLOCK TABLES` (false).
    pub table_locks: Option<bool>,
    /// `FLUSH TABLES … WITH READ LOCK` / `FLUSH TABLES … FOR EXPORT`: locks that the server's session tracking
    /// does not report (only UNLOCK TABLES releases them).
    pub flush_locks: bool,
    /// `PREPARE name FROM …` (text protocol): the statement names it prepares (lower-case).
    pub prepares: Vec<String>,
    /// `DEALLOCATE PREPARE name` / `DROP PREPARE name`.
    pub deallocates: Vec<String>,
    /// `HANDLER t OPEN` (Some(true)) / `HANDLER t CLOSE` (Some(false)): a handler stays open on the connection.
    pub handler: Option<bool>,
    /// The statement implicitly commits an open transaction (DDL other than temporary tables, BEGIN, LOCK and
    /// UNLOCK TABLES, GRANT, FLUSH, …).
    pub implicit_commit: bool,
    /// INSERT/UPDATE/DELETE/REPLACE/LOAD DATA: changes table data (refused inside a READ ONLY transaction).
    pub dml: bool,
    /// `LOAD DATA LOCAL`/`LOAD XML LOCAL`: the server will ask the client for a file.
    pub local_infile: bool,
    /// `COMMIT RELEASE` / `ROLLBACK RELEASE`: the server closes the connection afterwards.
    pub releases_connection: bool,
    /// `SET STATEMENT var = … FOR …`: variables changed for that one statement only (the server's session
    /// tracking still reports them as changed; they must not be taken as the session's new values).
    pub statement_scoped: Vec<String>,
}

/// The name [`Effects::assigns`] gives to the current database (`USE db`).
pub const SCHEMA_KEY: &str = "(schema)";
/// The name [`Effects::assigns`] gives to the current role (`SET ROLE`).
pub const ROLE_KEY: &str = "(role)";

impl Effects {
    /// Whether replaying the statement depends on the statements before it (it reads something).
    pub fn order_dependent(&self) -> bool {
        !self.reads.is_empty()
    }
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
    /// COMMIT / ROLLBACK (not `ROLLBACK TO SAVEPOINT`, not XA), with optional `WORK` / `AND [NO] CHAIN` /
    /// `[NO] RELEASE`.
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
    /// SHOW MASTER/BINLOG/SLAVE/PROCESSLIST/ENGINE..., FLUSH, PURGE, ...
    Admin,
    /// Kind::Previous.
    Previous,
    /// Empty or comment-only text.
    Empty,
    /// A call of a function that is not a built-in (a stored function: it may write or take locks).
    StoredFunction,
    /// A `KILL` statement (the proxy translates connection ids).
    Kill,
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
            Reason::StoredFunction => "stored_function",
            Reason::Kill => "kill",
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
            effects: Effects::default(),
            statements: 1,
        }
    }

    /// A one-statement verdict sending the statement to the master.
    pub(crate) fn master(reason: Reason) -> Self {
        Verdict::new(Kind::Master, reason)
    }

    /// The same verdict, marked as changing session state.
    pub(crate) fn session(mut self) -> Self {
        self.effects.session_change = true;
        self
    }

    /// The same verdict, marked as implicitly committing.
    pub(crate) fn commits(mut self) -> Self {
        self.effects.implicit_commit = true;
        self
    }

    /// Whether the statement is a plain read (the verdict lets it run on a replica).
    pub fn is_read(&self) -> bool {
        self.kind == Kind::Read
    }
}

/// Classifies pre-scanned text: tokenizes, splits on `;` and merges per-statement verdicts.
fn classify_text(pre: &scan::Prescan) -> Verdict {
    if pre.unterminated {
        return Verdict::master(Reason::ParseError);
    }
    if !pre.multi && !pre.has_at && !pre.calls.unknown && !pre.calls.get_lock && is_plain_write(&pre.text) {
        let mut v = Verdict::master(Reason::Write);
        v.effects.dml = true;
        return v;
    }
    let Some(tokens) = tok::tokenize(&pre.text) else {
        return Verdict::master(Reason::ParseError);
    };
    let statements = tok::split_statements(&tokens);
    let calls = pre.calls;
    match statements.as_slice() {
        [] => Verdict::master(Reason::Empty),
        [one] => stmt::classify_statement(one, calls),
        many => merge(many.iter().map(|s| stmt::classify_statement(s, calls)).collect()),
    }
}

/// Short cut for the most common writes: a single statement whose first word is INSERT, UPDATE, DELETE or
/// REPLACE, with no `@` in its code (no user variable to assign) and no call of anything but built-ins
/// (other than GET_LOCK), is a plain write whatever follows (saves tokenizing it).
fn is_plain_write(text: &str) -> bool {
    const WRITES: &[&str] = &["INSERT", "UPDATE", "DELETE", "REPLACE"];
    let text = text.trim_start();
    let len =
        text.find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '$') || !c.is_ascii())).unwrap_or(text.len());
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
        out.effects.merge(v.effects);
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

impl Effects {
    /// Adds the effects of a later statement of the same text.
    fn merge(&mut self, other: Effects) {
        self.writes_user_vars |= other.writes_user_vars;
        self.session_change |= other.session_change;
        self.assigns.extend(other.assigns);
        self.reads.extend(other.reads);
        self.next_statement |= other.next_statement;
        self.master_only |= other.master_only;
        self.chain |= other.chain;
        self.temp_tables_created.extend(other.temp_tables_created);
        self.tables_dropped.extend(other.tables_dropped);
        self.stored_code |= other.stored_code;
        self.named_locks |= other.named_locks;
        self.table_locks = other.table_locks.or(self.table_locks);
        self.flush_locks |= other.flush_locks;
        self.prepares.extend(other.prepares);
        self.deallocates.extend(other.deallocates);
        self.handler = other.handler.or(self.handler);
        self.implicit_commit |= other.implicit_commit;
        self.dml |= other.dml;
        self.local_infile |= other.local_infile;
        self.releases_connection |= other.releases_connection;
        self.statement_scoped.extend(other.statement_scoped);
    }
}
