//! A per-thread cache of verdicts by statement shape.
//!
//! A verdict depends on a statement's tokens, never on the values of its literals, so statements that
//! differ only in string and number literals share one verdict. The shape key is the text with each
//! literal replaced by `?`; comments (which carry routing hints and executable code) and identifiers are
//! kept verbatim, and the key is compared in full (no hash-only match can ever hand out a wrong verdict).
//! Literals are found by the same [`lex`](crate::lex) rules as everything else, under the session's dialect
//! (which is part of the key), so no literal can hide code from the key, and an identifier that starts with a
//! digit (`1tmp`) is an identifier, not a number.
//!
//! Each thread has its own bounded map (no lock on the query path); it is cleared when full, which keeps
//! memory bounded under a stream of distinct shapes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::lex::{self, Dialect, Lexer, Multibyte, SpanKind};
use crate::{classify_with, Verdict};

/// Shapes kept per thread before the map is cleared.
const MAX_ENTRIES: usize = 4096;
/// Longer statements are classified directly and not cached.
const MAX_LEN: usize = 16 * 1024;

thread_local! {
    static CACHE: RefCell<HashMap<Box<[u8]>, Arc<Verdict>>> = RefCell::new(HashMap::new());
}

/// Like [`classify_with`], but statements of an already-seen shape (under the same dialect) are answered from
/// a per-thread cache.
pub fn classify_cached(sql: &[u8], dialect: Dialect) -> Arc<Verdict> {
    if sql.len() > MAX_LEN || first_word_is(sql, dialect, "PREPARE") || first_word_is(sql, dialect, "EXECUTE") {
        // The verdict of PREPARE … FROM and EXECUTE IMMEDIATE depends on the text of their literal (a KILL
        // inside is refused).
        return Arc::new(classify_with(sql, dialect));
    }
    let Some(key) = shape(sql, dialect) else { return Arc::new(classify_with(sql, dialect)) };
    CACHE.with(|cache| {
        if let Some(v) = cache.borrow().get(key.as_slice()) {
            return Arc::clone(v);
        }
        let verdict = Arc::new(classify_with(sql, dialect));
        let mut map = cache.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.into_boxed_slice(), Arc::clone(&verdict));
        verdict
    })
}

/// The statement's shape under `dialect`: number literals replaced by `?` and string literals by `'?'`
/// (verdicts tell a string from a number: a user variable given a string depends on the collation), each
/// comment by its routing hint (`/*M*/`, `/*R*/`) or a space, everything else (words, quoted identifiers,
/// executable comments, and a string right after `@`, which is a variable's name) kept verbatim, prefixed
/// by the dialect (a byte of flags and the server version). `None` if the text is
/// malformed (an unterminated quote or comment): such text is classified directly.
pub fn shape(sql: &[u8], dialect: Dialect) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(sql.len() + 5);
    out.push(dialect_byte(dialect));
    out.extend_from_slice(&dialect.server_version.to_le_bytes());
    let mut lexer = Lexer::new(sql, dialect);
    let mut after_at = false;
    for span in lexer.by_ref() {
        if span.unterminated {
            return None;
        }
        match span.kind {
            SpanKind::Number => out.push(b'?'),
            SpanKind::Str { .. } if !after_at => out.extend_from_slice(b"'?'"),
            // A comment counts only for its routing hint: tags (sqlcommenter trace ids) and consistency
            // hints (`rwsplit:min_gtid=…`) do not make new shapes.
            SpanKind::Comment => out.extend_from_slice(match crate::scan::route_hint(lex::comment_body(sql, &span)) {
                Some(crate::Hint::Master) => b"/*M*/",
                Some(crate::Hint::Replica) => b"/*R*/",
                None => b" ",
            }),
            _ => out.extend_from_slice(span.bytes(sql)),
        }
        after_at = span.kind == SpanKind::Punct && span.bytes(sql) == b"@";
    }
    (!lexer.in_exec_comment()).then_some(out)
}

/// Whether the first word of the code is `word`.
fn first_word_is(sql: &[u8], dialect: Dialect, word: &str) -> bool {
    crate::lex::code(sql, dialect).next().is_some_and(|s| s.is_word(sql, word))
}

/// One byte that tells dialects apart in cache keys.
fn dialect_byte(d: Dialect) -> u8 {
    let mb = match d.multibyte {
        None => 0,
        Some(Multibyte::Big5) => 1,
        Some(Multibyte::Gbk) => 2,
        Some(Multibyte::Sjis) => 3,
        Some(Multibyte::Gb18030) => 4,
    };
    u8::from(d.no_backslash_escapes) | u8::from(d.ansi_quotes) << 1 | mb << 2 | u8::from(d.mariadb) << 5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(sql: &str) -> Option<String> {
        shape(sql.as_bytes(), Dialect::default()).map(|k| String::from_utf8_lossy(&k[5..]).into_owned())
    }

    #[test]
    fn shapes() {
        let cases = [
            ("SELECT * FROM t1 WHERE id = 42", "SELECT * FROM t1 WHERE id = ?"),
            ("SELECT 'a''b', \"c\\\"d\", 1.5e3, 0x1F FROM x2", "SELECT '?', '?', ?, ? FROM x2"),
            ("SELECT `we'ird` FROM t WHERE a = 'x'", "SELECT `we'ird` FROM t WHERE a = '?'"),
            ("/* rwsplit:master 1 */ SELECT 2", "/*M*/ SELECT ?"),
            ("SELECT 1 -- rwsplit:replica 'x'\n", "SELECT ? /*R*/\n"),
            ("/*traceparent='00-4bf92f'*/ SELECT 2", "  SELECT ?"),
            ("/* rwsplit:min_gtid=0-1-77 */ SELECT 2", "  SELECT ?"),
            ("/*!40101 SET @a = 1 */", "/*!40101 SET @a = ? */"),
            ("SELECT @v1, 'for update'", "SELECT @v1, '?'"),
            ("SET @'a' = 'x'", "SET @'a' = '?'"),
            ("SELECT * FROM 1tmp", "SELECT * FROM 1tmp"),
        ];
        for (sql, want) in cases {
            assert_eq!(sh(sql).as_deref(), Some(want), "{sql}");
        }
        assert_eq!(sh("SELECT 'open"), None);
        assert_eq!(sh("SELECT /* open"), None);
        assert_ne!(sh("SELECT * FROM 1tmp"), sh("SELECT * FROM 2other"), "identifiers starting with digits");
    }

    #[test]
    fn literals_hiding_keywords_cannot_share_a_shape_with_code() {
        // If a scanner mis-ended a string, these two could collide; they must not.
        let d = Dialect::default();
        let a = shape(b"SELECT 'x\\' FOR UPDATE -- '", d).unwrap();
        let b = shape(b"SELECT 'x' FOR UPDATE -- '", d).unwrap();
        assert_ne!(a, b);
        let sql = b"SELECT 'x\\' FOR UPDATE -- '";
        assert_eq!(*classify_cached(sql, d), classify_with(sql, d));
        // The same bytes read with and without backslash escapes are different statements.
        let nbe = Dialect { no_backslash_escapes: true, ..d };
        let sql = b"SELECT 'a\\' FOR UPDATE";
        assert_ne!(shape(sql, d), shape(sql, nbe));
        assert_eq!(classify_cached(sql, nbe).reason, crate::Reason::LockingRead);
    }
}
