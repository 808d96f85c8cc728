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

use crate::lex::{self, Dialect, Lexer, Multibyte, Span, SpanKind};
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
        if !names_from_shape(&verdict, &key) {
            // A name in the verdict came from a masked literal: another statement of this shape could
            // name something else, so this verdict is not shared (found by fuzzing).
            return verdict;
        }
        let mut map = cache.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.into_boxed_slice(), Arc::clone(&verdict));
        verdict
    })
}

/// The statement's shape under `dialect`: number literals replaced by a number mask and string literals by
/// a string mask (verdicts tell a string from a number: a user variable given a string depends on the
/// collation), each comment by its routing hint (`/*M*/`, `/*R*/`) or a space, everything else (words,
/// quoted identifiers, executable comments) kept verbatim, prefixed by the dialect (a byte of flags and the
/// server version). `None` if the text is malformed (an unterminated quote or comment): such text is
/// classified directly.
///
/// The masks are [`MASK`] followed by `#` (number) or `'` (string); a [`MASK`] byte of the text itself is
/// doubled, so no text can spell a mask (a `?` placeholder stays a `?`). A literal that is part of a name
/// is kept: one right after `@` (`@1`, `@'a'`, and `@-5`, which the classifier reads as a name), right after
/// a `.` (`t.1` is column `1`) or a word (`_utf8'x'`, `N'x'`), or touching a following `@` or word (`0@x`).
/// Found by fuzzing.
pub fn shape(sql: &[u8], dialect: Dialect) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(sql.len() + 5);
    out.push(dialect_byte(dialect));
    out.extend_from_slice(&dialect.server_version.to_le_bytes());
    let mut lexer = Lexer::new(sql, dialect);
    let spans: Vec<Span> = lexer.by_ref().collect();
    if spans.iter().any(|s| s.unterminated) || lexer.in_exec_comment() {
        return None;
    }
    for (i, span) in spans.iter().enumerate() {
        let literal = matches!(span.kind, SpanKind::Number | SpanKind::Str { .. });
        if literal && !part_of_name(sql, &spans, i) {
            out.push(MASK);
            out.push(if span.kind == SpanKind::Number { b'#' } else { b'\'' });
            continue;
        }
        match span.kind {
            // A comment counts only for its routing hint: tags (sqlcommenter trace ids) and consistency
            // hints (`rwsplit:min_gtid=…`) do not make new shapes.
            SpanKind::Comment => out.extend_from_slice(match crate::scan::route_hint(lex::comment_body(sql, span)) {
                Some(crate::Hint::Master) => b"/*M*/",
                Some(crate::Hint::Replica) => b"/*R*/",
                None => b" ",
            }),
            _ => {
                for &byte in span.bytes(sql) {
                    out.push(byte);
                    if byte == MASK {
                        out.push(MASK);
                    }
                }
            }
        }
    }
    Some(out)
}

/// Whether [`classify_cached`] would share this statement's verdict with the other statements of its shape:
/// it has a shape and every name in its verdict is spelled outside the shape's masks. Two statements of
/// one shape must have the same verdict when either of them is shared (fuzzed in fuzz/fuzz_targets/classify.rs).
pub fn shares_verdict(sql: &[u8], dialect: Dialect) -> bool {
    shape(sql, dialect).is_some_and(|key| names_from_shape(&classify_with(sql, dialect), &key))
}

/// Names the classifier writes itself rather than taking from the text.
const SYNTHESIZED: &[&str] =
    &["character_set_connection", "collation_connection", "tx_isolation", "tx_read_only", crate::SCHEMA_KEY, "*"];

/// Whether every name in `verdict` (tables, variables, prepared statements…) is spelled in the unmasked
/// part of `shape`: each of its dot-separated parts, without leading `@`, is a word there (case-insensitive).
/// Verdicts with a name built from a masked literal are then never shared between statements of one shape,
/// whatever way the lexer and the parser disagree on a token.
fn names_from_shape(verdict: &Verdict, shape: &[u8]) -> bool {
    let words: std::collections::HashSet<Vec<u8>> = shape
        .split(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$' || *b >= 0x80))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let e = &verdict.effects;
    let lists = [
        &verdict.tables,
        &e.assigns,
        &e.reads,
        &e.temp_tables_created,
        &e.tables_dropped,
        &e.prepares,
        &e.deallocates,
        &e.statement_scoped,
    ];
    lists.iter().flat_map(|l| l.iter()).all(|name| {
        SYNTHESIZED.contains(&name.as_str())
            || name
                .split('.')
                .map(|part| part.trim_start_matches('@'))
                .filter(|part| !part.is_empty())
                .all(|part| words.contains(&part.as_bytes().to_ascii_lowercase()))
    })
}

/// The byte that starts a mask in a shape (doubled where the text has it).
const MASK: u8 = 0;

/// Whether the literal `spans[i]` belongs to a name rather than standing as a value (see [`shape`]).
fn part_of_name(sql: &[u8], spans: &[Span], i: usize) -> bool {
    let touching = |a: &Span, b: &Span| a.end == b.start;
    let before = i.checked_sub(1).map(|j| &spans[j]);
    let after = spans.get(i + 1);
    let at = |s: &Span| s.is_punct(sql, b'@');
    if let Some(prev) = before.filter(|p| touching(p, &spans[i])) {
        // Touching a word: an introducer or prefix (`_utf8'x'`, `N'x'`) or part of a name (`S'dup'`).
        if at(prev) || prev.is_punct(sql, b'.') || prev.kind == SpanKind::Word {
            return true;
        }
        // `@-5`, `@+5`: a sign right after an `@`.
        let sign = prev.is_punct(sql, b'-') || prev.is_punct(sql, b'+');
        if sign && i >= 2 && at(&spans[i - 2]) && touching(&spans[i - 2], prev) {
            return true;
        }
    }
    after.is_some_and(|next| touching(&spans[i], next) && (at(next) || next.kind == SpanKind::Word))
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

    /// The shape as text, masks shown as `?` and `'?'`.
    fn sh(sql: &str) -> Option<String> {
        shape(sql.as_bytes(), Dialect::default()).map(|k| {
            let text = String::from_utf8_lossy(&k[5..]).into_owned();
            text.replace("\0#", "?").replace("\0'", "'?'")
        })
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
    fn literals_that_are_names_are_kept_and_no_text_spells_a_mask() {
        // Found by fuzzing: each pair shared a shape, so the second got the first's cached verdict.
        let pairs = [
            ("SET @x = @1", "SET @x = @2"),
            ("SET @x = @-5", "SET @x = @-4"),
            ("SELECT * FROM 0@x", "SELECT * FROM 1@x"),
            ("SELECT i.7", "SELECT i.?"),
            ("SELECT @1", "SELECT @?"),
            ("SELECT ?", "SELECT 1"),
            ("SELECT '\0#'", "SELECT 1"),
            ("SELECT N'dup4'", "SELECT N'dup5'"),
        ];
        let d = Dialect::default();
        for (a, b) in pairs {
            assert_ne!(shape(a.as_bytes(), d), shape(b.as_bytes(), d), "{a} / {b}");
            assert_eq!(*classify_cached(b.as_bytes(), d), classify_with(b.as_bytes(), d), "{b}");
        }
        // A name with a literal in it (not valid SQL) gets no verdict from the literal.
        let (a, b) = (&b"SET STATEMENT a 'x' = 1 FOR SELECT 1"[..], &b"SET STATEMENT a 'y' = 1 FOR SELECT 1"[..]);
        assert_eq!(shape(a, d), shape(b, d));
        assert_eq!(classify_with(a, d), classify_with(b, d));
        // Found by fuzzing: a number the classifier reads into a variable's name (`@(42`).
        let (a, b) = (&b"SET @v =SET0@v =@(42"[..], &b"SET @v =SET0@v =@(43"[..]);
        let _ = classify_cached(a, d);
        assert_eq!(*classify_cached(b, d), classify_with(b, d));
        // Ordinary statements are still shared.
        let (a, b) = (&b"SELECT * FROM db.T1 WHERE id = 1"[..], &b"SELECT * FROM db.T1 WHERE id = 2"[..]);
        assert!(Arc::ptr_eq(&classify_cached(a, d), &classify_cached(b, d)), "a cache hit");
        let (a, b) = (&b"SET @u = 'x', time_zone = '+00:00'"[..], &b"SET @u = 'y', time_zone = '+01:00'"[..]);
        assert!(Arc::ptr_eq(&classify_cached(a, d), &classify_cached(b, d)), "a cache hit");
        // Values still share a shape.
        assert_eq!(sh("SELECT a - 5, b.c = 1, x@y"), Some("SELECT a - ?, b.c = ?, x@y".into()));
        assert_eq!(sh("SELECT 1, 2"), sh("SELECT 3, 4"));
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
