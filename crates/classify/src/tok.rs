//! Tokens: sqlparser's tokenizer with the MySQL dialect, statement splitting, and small token helpers.
//!
//! Strings, quoted identifiers and comments are tokens of their own, so a keyword is only ever an
//! unquoted [`Token::Word`]; every rule matches keywords through [`word`] / [`is_kw`].

use std::panic::{catch_unwind, AssertUnwindSafe};

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Tokenizes `text` (already pre-scanned, so comment-free) and drops whitespace. None on a tokenizer
/// error (or, defensively, a panic inside sqlparser).
pub(crate) fn tokenize(text: &str) -> Option<Vec<Token>> {
    let dialect = MySqlDialect {};
    let tokens = catch_unwind(AssertUnwindSafe(|| Tokenizer::new(&dialect, text).tokenize())).ok()?.ok()?;
    Some(tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect())
}

/// Splits tokens into statements on `;`. Trailing empty statements (a final `;`) are dropped; an empty
/// statement elsewhere is kept (and later classified as a parse error). A text of only `;` gives none.
pub(crate) fn split_statements(tokens: &[Token]) -> Vec<&[Token]> {
    let mut out: Vec<&[Token]> = tokens.split(|t| *t == Token::SemiColon).collect();
    while out.last().is_some_and(|s| s.is_empty()) {
        out.pop();
    }
    out
}

/// The value of an unquoted word (a keyword or a bare identifier).
pub(crate) fn word(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(&w.value),
        _ => None,
    }
}

/// The value of a word, quoted or not (an identifier).
pub(crate) fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Word(w)) => Some(&w.value),
        _ => None,
    }
}

/// True when `t` is the unquoted keyword `kw` (ASCII case-insensitive).
pub(crate) fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    word(t).is_some_and(|w| w.eq_ignore_ascii_case(kw))
}

/// True when the tokens from `i` on are the unquoted keywords `seq`.
pub(crate) fn kw_seq(toks: &[Token], i: usize, seq: &[&str]) -> bool {
    seq.iter().enumerate().all(|(k, kw)| is_kw(toks.get(i + k), kw))
}

/// True when the unquoted word `t` is one of `list` (upper-case entries).
pub(crate) fn kw_in(t: Option<&Token>, list: &[&str]) -> bool {
    word(t).is_some_and(|w| list.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

/// True when the word `t`, quoted or not, is one of `list` (upper-case entries): for function names.
pub(crate) fn name_in(t: Option<&Token>, list: &[&str]) -> bool {
    ident(t).is_some_and(|w| list.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

/// The upper-cased value of an unquoted word, for `match`.
pub(crate) fn upper(t: Option<&Token>) -> Option<String> {
    word(t).map(str::to_ascii_uppercase)
}

/// True when the token at `i` is a name immediately followed by `(`: a function call.
pub(crate) fn is_call(toks: &[Token], i: usize) -> bool {
    ident(toks.get(i)).is_some() && toks.get(i + 1) == Some(&Token::LParen)
}

/// If a user variable (`@name`, `@'name'`, `` @`name` ``, not `@@…`) starts at `i`, returns its length
/// in tokens.
pub(crate) fn user_var_len(toks: &[Token], i: usize) -> Option<usize> {
    match toks.get(i)? {
        Token::Word(w) if w.quote_style.is_none() => {
            let rest = w.value.strip_prefix('@')?;
            (!rest.starts_with('@')).then_some(1)
        }
        Token::AtSign => match toks.get(i + 1)? {
            Token::SingleQuotedString(_) | Token::DoubleQuotedString(_) | Token::Word(_) => Some(2),
            _ => None,
        },
        _ => None,
    }
}

/// A reference to a system variable: `@@name` or `@@scope.name`.
pub(crate) struct SysVar<'a> {
    /// `global`, `session`, `local`, `persist`, `persist_only` (lower-case), if written.
    pub scope: Option<String>,
    /// The variable name as written.
    pub name: &'a str,
    /// Length in tokens.
    pub len: usize,
}

impl SysVar<'_> {
    /// True when the scope is GLOBAL, PERSIST or PERSIST_ONLY (not replayable, not per-session).
    pub(crate) fn is_global(&self) -> bool {
        matches!(self.scope.as_deref(), Some("global" | "persist" | "persist_only"))
    }

    /// True when the name is `name` (ASCII case-insensitive).
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// If a system variable starts at `i`, describes it.
pub(crate) fn sys_var(toks: &[Token], i: usize) -> Option<SysVar<'_>> {
    let first = word(toks.get(i))?.strip_prefix("@@")?;
    let scope = first.to_ascii_lowercase();
    let scoped = matches!(scope.as_str(), "global" | "session" | "local" | "persist" | "persist_only");
    if scoped && toks.get(i + 1) == Some(&Token::Period) {
        if let Some(name) = ident(toks.get(i + 2)) {
            return Some(SysVar { scope: Some(scope), name, len: 3 });
        }
    }
    Some(SysVar { scope: None, name: first, len: 1 })
}

/// If a possibly qualified name (`a`, `db.a`, `` `db`.`a` ``) starts at `i`, returns its last part,
/// lower-cased, and its length in tokens.
pub(crate) fn qualified_name(toks: &[Token], i: usize) -> Option<(String, usize)> {
    let mut last = ident(toks.get(i))?;
    let mut len = 1;
    while toks.get(i + len) == Some(&Token::Period) {
        match ident(toks.get(i + len + 1)) {
            Some(part) => {
                last = part;
                len += 2;
            }
            None => break,
        }
    }
    Some((last.to_ascii_lowercase(), len))
}

/// True when the token starts a query expression (`SELECT`, `WITH`, `VALUES`, `TABLE` or `(`).
pub(crate) fn starts_query(t: Option<&Token>) -> bool {
    t == Some(&Token::LParen) || kw_in(t, &["SELECT", "WITH", "VALUES", "TABLE"])
}
