//! Pre-scan of the raw statement bytes, before tokenizing: everything the token rules cannot see.
//!
//! sqlparser drops comments, so routing hints are found here: a comment whose first word is a hint
//! (`rwsplit:master`, `rwsplit:replica`, …; see [`Hints`]), so a hint cannot be smuggled in through text an
//! application copies into a comment, such as sqlcommenter's `/*route='rwsplit:replica'*/`. The pre-scan then builds
//! the text handed to sqlparser's tokenizer from the [`lex`](crate::lex) spans, so that tokenizer never has
//! to apply a rule the session might read differently:
//! - comments become one space; executable-comment markers (`/*!40101`, `*/`) become spaces, their body
//!   stays as code;
//! - a string literal containing a backslash or a non-ASCII byte becomes `'x'` (its value never decides a
//!   route, and sqlparser always treats `\` as an escape, which is wrong under `NO_BACKSLASH_ESCAPES` or
//!   for a multi-byte character whose second byte is `\`);
//! - under `ANSI_QUOTES` a `"name"` becomes `` `name` ``, the identifier it is.

use crate::lex::{self, Dialect, Lexer, SpanKind};
use crate::Hint;

/// The text to tokenize, plus what the pre-scan learned.
#[derive(Debug)]
pub(crate) struct Prescan {
    /// The statement text rebuilt for the tokenizer (see the module doc).
    pub text: String,
    /// The first routing hint found in a comment.
    pub hint: Option<Hint>,
    /// A quote, comment or executable comment was left open: the text is malformed.
    pub unterminated: bool,
    /// Code follows a `;` (outside quotes and comments): the text may hold several statements.
    pub multi: bool,
    /// The code contains `@` (a user or system variable): shortcuts that skip the token scan are off.
    pub has_at: bool,
    /// What the text calls (see [`Calls`]).
    pub calls: Calls,
}

/// Function calls in the text that may run stored code, found on the lexer's spans (one place, for the
/// write shortcut and the full classification alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Calls {
    /// A name the server reads as a built-in only when `(` follows it at once (`NOW`, `COUNT`, …; see
    /// `builtins::WHITESPACE_SENSITIVE`) is followed by whitespace or a comment, then `(`: the server calls a
    /// stored function of that name instead.
    pub spaced: bool,
    /// A call of something that may be stored code: a qualified name (`db.f(`), a quoted name (`` `f`( ``),
    /// or a name that is neither a built-in nor a keyword that takes parentheses. Table and alias column
    /// lists (`INTO t (a, b)`, `AS d (x)`) are not calls.
    pub unknown: bool,
    /// A call of `GET_LOCK`.
    pub get_lock: bool,
}

/// Words that are followed by `(` without being a function call.
const KEYWORDS_BEFORE_PAREN: &[&str] = &[
    "AGAINST",
    "ALL",
    "AND",
    "ANY",
    "AS",
    "BETWEEN",
    "BINARY",
    "BY",
    "CASE",
    "DISTINCT",
    "DIV",
    "ELSE",
    "ESCAPE",
    "EXCEPT",
    "EXISTS",
    "FROM",
    "HAVING",
    "IN",
    "INDEX",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LATERAL",
    "LIKE",
    "LIMIT",
    "NOT",
    "ON",
    "OR",
    "OVER",
    "PARTITION",
    "REGEXP",
    "RETURNING",
    "RLIKE",
    "ROW",
    "SELECT",
    "SET",
    "SOME",
    "TABLE",
    "THEN",
    "UNION",
    "UPDATE",
    "USING",
    "VALUE",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
    "XOR",
];

/// Keywords after which a name with `(` is a table or alias with a column list.
const BEFORE_COLUMN_LIST: &[&str] = &["INTO", "INSERT", "REPLACE", "AS", "WITH", "TABLE", "UPDATE", "JOIN"];

impl Calls {
    /// Scans the code spans of `sql`.
    fn scan(sql: &[u8], code: &[crate::lex::Span]) -> Calls {
        let mut calls = Calls::default();
        for (i, span) in code.iter().enumerate() {
            if !(code.get(i + 1).is_some_and(|n| n.is_punct(sql, b'('))) {
                continue;
            }
            let name = span.bytes(sql);
            let word = span.kind == SpanKind::Word;
            if !(word || span.kind == SpanKind::QuotedIdent) {
                continue;
            }
            // Walk back over a qualified name (`db.f`, `` `db`.`t` ``) to what stands before it.
            let mut start = i;
            while start >= 2 && code[start - 1].is_punct(sql, b'.') && is_name(&code[start - 2]) {
                start -= 2;
            }
            let before = start.checked_sub(1).map(|k| &code[k]);
            if before.is_some_and(|b| BEFORE_COLUMN_LIST.iter().any(|kw| b.is_word(sql, kw))) {
                continue;
            }
            if word && name.eq_ignore_ascii_case(b"GET_LOCK") {
                calls.get_lock = true;
            }
            let builtin = word
                && start == i
                && std::str::from_utf8(name)
                    .is_ok_and(|n| crate::builtins::is_builtin(n) || upper_in(n, KEYWORDS_BEFORE_PAREN));
            calls.unknown |= !builtin;
            // Whitespace or a comment between the name and `(`: the spans are not adjacent.
            let spaced = code[i + 1].start > span.end;
            calls.spaced |= word && spaced && crate::builtins::is_whitespace_sensitive(name);
        }
        calls
    }
}

fn is_name(span: &crate::lex::Span) -> bool {
    matches!(span.kind, SpanKind::Word | SpanKind::QuotedIdent)
}

fn upper_in(name: &str, list: &[&str]) -> bool {
    list.iter().any(|k| name.eq_ignore_ascii_case(k))
}

/// Runs the pre-scan over `sql`.
pub(crate) fn prescan(sql: &[u8], dialect: Dialect) -> Prescan {
    let mut out = Prescan {
        text: String::with_capacity(sql.len()),
        hint: None,
        unterminated: false,
        multi: false,
        has_at: false,
        calls: Calls::default(),
    };
    let mut saw_semicolon = false;
    let mut code = Vec::new();
    let mut lexer = Lexer::new(sql, dialect);
    for span in lexer.by_ref() {
        if span.is_code() {
            code.push(span);
        }
        out.unterminated |= span.unterminated;
        let bytes = span.bytes(sql);
        match span.kind {
            SpanKind::Space => out.text.push_str(&String::from_utf8_lossy(bytes)),
            SpanKind::Comment => {
                if out.hint.is_none() {
                    out.hint = route_hint(lex::comment_body(sql, &span));
                }
                out.text.push(' ');
            }
            SpanKind::ExecOpen | SpanKind::ExecClose => out.text.push(' '),
            SpanKind::Str { quote } => {
                out.multi |= saw_semicolon;
                if bytes.iter().any(|&b| b == b'\\' || b >= 0x80) {
                    out.text.extend([char::from(quote), 'x', char::from(quote)]);
                } else {
                    out.text.push_str(&String::from_utf8_lossy(bytes));
                }
            }
            SpanKind::QuotedIdent if bytes.first() == Some(&b'"') => {
                out.multi |= saw_semicolon;
                let inner = &bytes[1..bytes.len().saturating_sub(1).max(1)];
                let name = String::from_utf8_lossy(inner).replace("\"\"", "\"").replace('`', "``");
                out.text.push('`');
                out.text.push_str(&name);
                out.text.push('`');
            }
            SpanKind::Punct if bytes == b";" => {
                saw_semicolon = true;
                out.text.push(';');
            }
            _ => {
                out.multi |= saw_semicolon;
                out.has_at |= bytes == b"@";
                out.text.push_str(&String::from_utf8_lossy(bytes));
            }
        }
    }
    out.unterminated |= lexer.in_exec_comment();
    out.calls = Calls::scan(sql, &code);
    out
}

/// What hint comments ask for: where a statement runs, and how fresh a read must be.
///
/// A hint comment is one whose first word starts with `rwsplit:` (an optimizer-hint style `/*+ … */`
/// counts too), so a hint cannot be smuggled in through text an application copies into a comment. Its
/// words of the form `rwsplit:name` or `rwsplit:name=value` are the hints; other words are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// `rwsplit:master` / `rwsplit:replica` (the first one found).
    pub route: Option<Hint>,
    /// `rwsplit:consistent`: the read sees every write acknowledged before it (from any session).
    pub consistent: bool,
    /// `rwsplit:max_lag=<duration>` (`100ms`, `2s`): any replica whose lag is known to be under it, as written.
    pub max_lag: Option<String>,
    /// `rwsplit:min_gtid=<position>` (a MariaDB GTID list or a MySQL GTID set), as written.
    pub min_gtid: Option<String>,
}

impl Hints {
    /// Adds the hints of a later comment (the first value of each kind stays).
    fn merge(&mut self, other: Hints) {
        self.route = self.route.or(other.route);
        self.consistent |= other.consistent;
        self.max_lag = self.max_lag.take().or(other.max_lag);
        self.min_gtid = self.min_gtid.take().or(other.min_gtid);
    }
}

/// The hints of every hint comment in `sql`, read under `dialect`.
pub fn hints(sql: &[u8], dialect: Dialect) -> Hints {
    let mut out = Hints::default();
    for span in Lexer::new(sql, dialect).filter(|s| s.kind == SpanKind::Comment) {
        if let Some(h) = hints_of(lex::comment_body(sql, &span)) {
            out.merge(h);
        }
    }
    out
}

/// The hints one comment body carries, if it is a hint comment.
pub(crate) fn hints_of(body: &[u8]) -> Option<Hints> {
    const PREFIX: &[u8] = b"rwsplit:";
    let body = body.strip_prefix(b"+").unwrap_or(body);
    let mut words = body.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).peekable();
    if !words.peek()?.get(..PREFIX.len())?.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let mut h = Hints::default();
    for word in words {
        let Some(hint) =
            word.get(..PREFIX.len()).filter(|p| p.eq_ignore_ascii_case(PREFIX)).map(|_| &word[PREFIX.len()..])
        else {
            continue;
        };
        let (name, value) = match hint.iter().position(|&b| b == b'=') {
            Some(i) => (&hint[..i], Some(String::from_utf8_lossy(&hint[i + 1..]).into_owned())),
            None => (hint, None),
        };
        match (name.to_ascii_lowercase().as_slice(), value) {
            (b"master", None) => h.route = h.route.or(Some(Hint::Master)),
            (b"replica", None) => h.route = h.route.or(Some(Hint::Replica)),
            (b"consistent", None) => h.consistent = true,
            (b"max_lag", Some(v)) => h.max_lag = h.max_lag.or(Some(v)),
            (b"min_gtid", Some(v)) => h.min_gtid = h.min_gtid.or(Some(v)),
            _ => {}
        }
    }
    Some(h)
}

/// The routing hint of a comment body, if it is a hint comment with one.
pub(crate) fn route_hint(body: &[u8]) -> Option<Hint> {
    hints_of(body).and_then(|h| h.route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str) -> String {
        prescan(sql.as_bytes(), Dialect::default()).text
    }

    #[test]
    fn comments_become_spaces() {
        assert_eq!(text("SELECT /* x */ 1"), "SELECT   1");
        assert_eq!(text("SELECT 1 -- x\nFROM t"), "SELECT 1  \nFROM t");
        assert_eq!(text("SELECT 1 # x"), "SELECT 1  ");
        assert_eq!(text("SELECT 1--x"), "SELECT 1--x");
        assert_eq!(text("SELECT '/* no */' # x"), "SELECT '/* no */'  ");
    }

    #[test]
    fn executable_comments_are_code() {
        assert_eq!(text("/*!40101 SET a=1 */"), "  SET a=1  ");
        assert_eq!(text("SELECT /*!SQL_NO_CACHE*/ 1"), "SELECT  SQL_NO_CACHE  1");
        assert_eq!(text("/*M!100101 SET b=2 */;"), "  SET b=2  ;");
        assert!(prescan(b"/*!40101 SET a=1", Dialect::default()).unterminated);
    }

    #[test]
    fn strings_the_tokenizer_could_misread_are_neutralised() {
        assert_eq!(text(r"SELECT 'a\'b', 'plain', 'é'"), "SELECT 'x', 'plain', 'x'");
        let nbe = Dialect { no_backslash_escapes: true, ..Dialect::default() };
        assert_eq!(prescan(br"SELECT 'a\' FOR UPDATE", nbe).text, "SELECT 'x' FOR UPDATE");
        let ansi = Dialect { ansi_quotes: true, ..Dialect::default() };
        assert_eq!(prescan(b"SELECT * FROM \"T\"\"x\"", ansi).text, "SELECT * FROM `T\"x`");
    }

    #[test]
    fn hints_are_the_first_word_of_a_comment() {
        let hint = |s: &str| prescan(s.as_bytes(), Dialect::default()).hint;
        assert_eq!(hint("/* RWSPLIT:Replica */ SELECT 1"), Some(Hint::Replica));
        assert_eq!(hint("/*rwsplit:replica because reports*/ SELECT 1"), Some(Hint::Replica));
        assert_eq!(hint("SELECT 1 -- rwsplit:master"), Some(Hint::Master));
        assert_eq!(hint("SELECT 'rwsplit:master'"), None);
        assert_eq!(hint("/*! rwsplit:master */ SELECT 1"), None);
        assert_eq!(hint("/*route='rwsplit:replica'*/ SELECT 1"), None, "sqlcommenter values cannot inject hints");
        assert_eq!(hint("/* note rwsplit:master */ SELECT 1"), None);
        assert_eq!(hint("/* rwsplit:consistent rwsplit:replica */ SELECT 1"), Some(Hint::Replica));
    }

    #[test]
    fn consistency_hints() {
        let h = |s: &str| hints(s.as_bytes(), Dialect::default());
        assert_eq!(h("SELECT 1"), Hints::default());
        let all = h("/* rwsplit:consistent */ SELECT 1 /*+ RWSPLIT:max_lag=100ms rwsplit:min_gtid=0-1-5,1-2-3 */");
        assert!(all.consistent);
        assert_eq!((all.max_lag.as_deref(), all.min_gtid.as_deref()), (Some("100ms"), Some("0-1-5,1-2-3")));
        assert_eq!(all.route, None);
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";
        assert_eq!(h(&format!("-- rwsplit:min_gtid={uuid}\nSELECT 1")).min_gtid.as_deref(), Some(uuid));
        // Not hint comments: the first word decides; unknown hint names and valueless values are ignored.
        assert_eq!(h("/* see rwsplit:consistent */ SELECT 1"), Hints::default());
        assert_eq!(h("/* rwsplit:fast rwsplit:max_lag */ SELECT 1"), Hints::default());
        assert_eq!(h("SELECT '/* rwsplit:consistent */'"), Hints::default());
    }

    #[test]
    fn calls() {
        let c = |s: &str| prescan(s.as_bytes(), Dialect::default()).calls;
        let none = Calls::default();
        assert_eq!(c("INSERT INTO t (a, b) VALUES (1, CONCAT('x', 'y'))"), none);
        assert_eq!(c("INSERT INTO db.t (a) SELECT a FROM u WHERE b IN (1, 2)"), none);
        assert_eq!(c("WITH c (n) AS (SELECT 1) SELECT * FROM c"), none);
        assert!(c("INSERT INTO t VALUES (f(1))").unknown);
        assert!(c("INSERT INTO t VALUES (db.f(1))").unknown);
        assert!(c("SELECT `user`()").unknown);
        assert!(c("UPDATE t SET a = GET_LOCK('x', 1)").get_lock);
        assert!(c("SELECT now ()").spaced && c("SELECT count /* x */ (*) FROM t").spaced);
        assert!(!c("SELECT NOW(), user ()").spaced);
        assert_eq!(c("SELECT 'f(1)' -- g(2)"), none);
    }

    #[test]
    fn multi() {
        let multi = |s: &str| prescan(s.as_bytes(), Dialect::default()).multi;
        assert!(!multi("SELECT 1; -- x\n /* y */ "));
        assert!(!multi("SELECT ';x'"));
        assert!(multi("SELECT 1; SELECT 2"));
        assert!(multi("SELECT 1;'x'"));
    }

    #[test]
    fn unterminated() {
        for sql in ["SELECT 'a", "SELECT \"a\\\"", "SELECT `a", "SELECT /* a", "'\\"] {
            assert!(prescan(sql.as_bytes(), Dialect::default()).unterminated, "{sql}");
        }
    }
}
