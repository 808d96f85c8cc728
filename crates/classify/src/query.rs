//! Queries, `SHOW`, `DESCRIBE`/`EXPLAIN`, and the sqlparser parse.
//!
//! A query is a Read only when the token rules (`rules.rs`) found nothing, sqlparser parsed it into a
//! plain query (no `INSERT`/`UPDATE`/`DELETE` body), and every function it calls is a built-in (a call of
//! anything else is a stored function, which may write, take locks or set variables). `SHOW` and
//! `DESCRIBE t` are decided from tokens: sqlparser does not know all their forms.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use sqlparser::ast::{visit_expressions, Expr, ObjectNamePart, Query, SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::rules::{self, Scan};
use crate::tok::{is_kw, kw_in, qualified_name, starts_query, upper};
use crate::{tables, Kind, Reason, Verdict};

/// Most operator tokens in a statement we hand to sqlparser. Long operator chains (`a+a+…`, `x OR x OR …`,
/// `… UNION …`) build deep left-nested ASTs whose recursive drop can overflow a small thread stack;
/// longer statements go to the master as parse errors instead.
const MAX_OPERATORS: usize = 2000;

/// `SELECT` / `WITH` / `VALUES` / `TABLE` / `(`. `spaced_call`: the text calls a whitespace-sensitive
/// built-in name with a space before its `(` (which the server then takes for a stored function).
pub(crate) fn classify_query(toks: &[Token], spaced_call: bool) -> Verdict {
    let scan = rules::scan(toks);
    let mut v = match (scan.master, parse(toks)) {
        (Some(reason), _) => Verdict::master(reason),
        (None, Parsed::Failed) => Verdict::master(Reason::ParseError),
        (None, Parsed::Other) => Verdict::master(Reason::Write),
        (None, Parsed::Query) if spaced_call => {
            let mut v = Verdict::master(Reason::StoredFunction);
            v.effects.stored_code = true;
            v
        }
        (None, Parsed::StoredCall) => {
            let mut v = Verdict::master(Reason::StoredFunction);
            v.effects.stored_code = true;
            v
        }
        (None, Parsed::Query) => {
            let mut v = if scan.previous {
                Verdict::new(Kind::Previous, Reason::Previous)
            } else {
                Verdict::new(Kind::Read, Reason::Read)
            };
            v.tables = tables::collect(toks);
            v
        }
    };
    with_vars(&mut v, &scan);
    v
}

/// Copies what a scan found about variables, locks and stored code into a verdict.
pub(crate) fn with_vars(v: &mut Verdict, scan: &Scan) {
    v.reads_user_vars |= scan.reads_user_vars;
    v.effects.writes_user_vars |= scan.writes_user_vars;
    v.effects.named_locks |= scan.named_locks;
    v.effects.master_only |= scan.master_only;
    v.effects.stored_code |= scan.stored_code;
}

/// `SHOW …`: Previous for diagnostics, Admin for replication/process/grant forms, otherwise Read.
pub(crate) fn classify_show(toks: &[Token]) -> Verdict {
    let scan = rules::scan(toks);
    let mut v = match scan.master {
        Some(reason) => Verdict::master(reason),
        None => show_kind(toks),
    };
    with_vars(&mut v, &scan);
    v
}

/// The verdict of a `SHOW` that no token rule sent to the master.
fn show_kind(toks: &[Token]) -> Verdict {
    let mut i = 1;
    while kw_in(toks.get(i), &["FULL", "EXTENDED", "GLOBAL", "SESSION", "LOCAL"]) {
        i += 1;
    }
    let previous = || Verdict::new(Kind::Previous, Reason::Previous);
    let Some(what) = upper(toks.get(i)) else {
        return Verdict::master(Reason::ParseError);
    };
    match what.as_str() {
        "WARNINGS" | "ERRORS" | "PROFILE" | "PROFILES" => previous(),
        "COUNT" => {
            let star = toks.get(i + 1..i + 4) == Some(&[Token::LParen, Token::Mul, Token::RParen][..]);
            if star && kw_in(toks.get(i + 4), &["WARNINGS", "ERRORS"]) {
                previous()
            } else {
                Verdict::master(Reason::ParseError)
            }
        }
        "MASTER" | "BINLOG" | "BINARY" | "SLAVE" | "REPLICA" | "REPLICAS" | "PROCESSLIST" | "ENGINE" | "GRANTS"
        | "RELAYLOG" | "EXPLAIN" | "ANALYZE" => Verdict::master(Reason::Admin),
        "ALL" if kw_in(toks.get(i + 1), &["SLAVES", "REPLICAS"]) => Verdict::master(Reason::Admin),
        _ => {
            let mut v = Verdict::new(Kind::Read, Reason::Read);
            v.tables = show_table(toks, i).into_iter().collect();
            v
        }
    }
}

/// The table named by `SHOW COLUMNS|FIELDS|INDEX|INDEXES|KEYS FROM t` or `SHOW CREATE TABLE|VIEW t`.
fn show_table(toks: &[Token], i: usize) -> Option<String> {
    let about_table = kw_in(toks.get(i), &["COLUMNS", "FIELDS", "INDEX", "INDEXES", "KEYS"])
        && kw_in(toks.get(i + 1), &["FROM", "IN"]);
    let create = is_kw(toks.get(i), "CREATE") && kw_in(toks.get(i + 1), &["TABLE", "VIEW"]);
    if about_table || create {
        qualified_name(toks, i + 2).map(|(name, _)| name)
    } else {
        None
    }
}

/// `DESCRIBE` / `DESC` / `EXPLAIN`: the verdict of what is explained; `EXPLAIN ANALYZE` runs it → Master.
pub(crate) fn classify_explain(toks: &[Token], spaced_call: bool) -> Verdict {
    let mut i = 1;
    let mut analyze = false;
    loop {
        match upper(toks.get(i)).as_deref() {
            Some("EXTENDED" | "PARTITIONS") => i += 1,
            Some("ANALYZE") => {
                analyze = true;
                i += 1;
            }
            Some("FORMAT") if toks.get(i + 1) == Some(&Token::Eq) => i += 3,
            // EXPLAIN FOR CONNECTION n: a connection id of the master.
            Some("FOR") => return Verdict::master(Reason::Admin),
            _ => break,
        }
    }
    let rest = toks.get(i..).unwrap_or_default();
    let mut v = if starts_query(rest.first()) {
        classify_query(rest, spaced_call)
    } else if kw_in(rest.first(), &["INSERT", "UPDATE", "DELETE", "REPLACE"]) {
        Verdict::master(Reason::Write)
    } else {
        describe_table(rest)
    };
    if analyze && v.kind != Kind::Master {
        v.kind = Kind::Master;
        v.reason = Reason::Admin;
    }
    v
}

/// `DESCRIBE t [column | 'pattern']`: a Read of `t`.
fn describe_table(rest: &[Token]) -> Verdict {
    let Some((name, len)) = qualified_name(rest, 0) else {
        return Verdict::master(Reason::ParseError);
    };
    let valid_tail = matches!(
        rest.get(len..).unwrap_or_default(),
        [] | [Token::Word(_) | Token::SingleQuotedString(_) | Token::DoubleQuotedString(_)]
    );
    if !valid_tail {
        return Verdict::master(Reason::ParseError);
    }
    let mut v = Verdict::new(Kind::Read, Reason::Read);
    v.tables.push(name);
    v
}

/// What sqlparser made of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// A plain query (SELECT / set operation / VALUES / TABLE) calling only built-in functions.
    Query,
    /// A plain query that calls a function that is not a built-in: stored code.
    StoredCall,
    /// Some other statement, or a query with a data-changing body.
    Other,
    /// Not parsed (syntax error, too long an operator chain, or a panic inside sqlparser).
    Failed,
}

/// True when sqlparser parses the tokens as exactly one statement.
pub(crate) fn parses(toks: &[Token]) -> bool {
    parse(toks) != Parsed::Failed
}

/// Parses one statement from its tokens with the MySQL dialect.
fn parse(toks: &[Token]) -> Parsed {
    if operator_count(toks) > MAX_OPERATORS {
        return Parsed::Failed;
    }
    let dialect = MySqlDialect {};
    let run = || {
        let mut parser = Parser::new(&dialect).with_tokens(toks.to_vec());
        let statement = parser.parse_statement().ok()?;
        if parser.peek_token_ref().token != Token::EOF {
            return None;
        }
        Some(match &statement {
            Statement::Query(q) if is_plain_query(q) && calls_stored_function(&statement) => Parsed::StoredCall,
            Statement::Query(q) if is_plain_query(q) => Parsed::Query,
            _ => Parsed::Other,
        })
    };
    catch_unwind(AssertUnwindSafe(run)).ok().flatten().unwrap_or(Parsed::Failed)
}

/// True when the statement calls a function that is not a built-in (qualified calls are stored by definition).
fn calls_stored_function(statement: &Statement) -> bool {
    let found = visit_expressions(statement, |e| match e {
        Expr::Function(f) => {
            // A quoted name is never a built-in (`` `user`() `` calls a stored function named user).
            let builtin = match f.name.0.as_slice() {
                [ObjectNamePart::Identifier(name)] => {
                    name.quote_style.is_none() && crate::builtins::is_builtin(&name.value)
                }
                _ => false,
            };
            if builtin {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

/// True when a query's body only reads (no `INSERT`/`UPDATE`/`DELETE`/`MERGE` inside a set expression).
fn is_plain_query(q: &Query) -> bool {
    is_plain_set_expr(&q.body)
}

/// See [`is_plain_query`]. Recursion depth is bounded by [`MAX_OPERATORS`] and sqlparser's recursion limit.
fn is_plain_set_expr(e: &SetExpr) -> bool {
    match e {
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => true,
        SetExpr::Query(q) => is_plain_query(q),
        SetExpr::SetOperation { left, right, .. } => is_plain_set_expr(left) && is_plain_set_expr(right),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => false,
    }
}

/// Counts the tokens that can chain into a left-deep expression or set-operation tree.
fn operator_count(toks: &[Token]) -> usize {
    const WORD_OPERATORS: &[&str] = &[
        "AND",
        "OR",
        "XOR",
        "NOT",
        "DIV",
        "MOD",
        "LIKE",
        "REGEXP",
        "RLIKE",
        "IS",
        "IN",
        "BETWEEN",
        "COLLATE",
        "ESCAPE",
        "SOUNDS",
        "BINARY",
        "MEMBER",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "INTERVAL",
    ];
    toks.iter()
        .filter(|t| match t {
            Token::Word(_) => kw_in(Some(t), WORD_OPERATORS),
            Token::Comma | Token::LParen | Token::RParen | Token::Period | Token::Number(..) => false,
            Token::Placeholder(_) => false,
            _ => !is_literal(t),
        })
        .count()
}

/// True for string-like literal tokens.
fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_update_body_is_not_a_plain_query() {
        let toks = crate::tok::tokenize("WITH c AS (SELECT 1) UPDATE t SET a = 1").unwrap_or_default();
        assert_eq!(parse(&toks), Parsed::Other);
    }
}
