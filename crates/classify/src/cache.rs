//! A per-thread cache of verdicts by statement shape.
//!
//! A verdict depends on a statement's tokens, never on the values of its literals, so statements that
//! differ only in string and number literals share one verdict. The shape key is the text with each
//! literal replaced by `?`; comments (which carry routing hints and executable code) and identifiers are
//! kept verbatim, and the key is compared in full (no hash-only match can ever hand out a wrong verdict).
//! The scanner skips quoted text exactly like the classifier's tokenizer (backslash escapes, doubled
//! quotes), so no literal can hide code from the key.
//!
//! Each thread has its own bounded map (no lock on the query path); it is cleared when full, which keeps
//! memory bounded under a stream of distinct shapes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::{classify, Verdict};

/// Shapes kept per thread before the map is cleared.
const MAX_ENTRIES: usize = 4096;
/// Longer statements are classified directly and not cached.
const MAX_LEN: usize = 16 * 1024;

thread_local! {
    static CACHE: RefCell<HashMap<Box<str>, Arc<Verdict>>> = RefCell::new(HashMap::new());
}

/// Like [`classify`], but statements of an already-seen shape are answered from a per-thread cache.
pub fn classify_cached(sql: &str) -> Arc<Verdict> {
    if sql.len() > MAX_LEN {
        return Arc::new(classify(sql));
    }
    let Some(key) = shape(sql) else { return Arc::new(classify(sql)) };
    CACHE.with(|cache| {
        if let Some(v) = cache.borrow().get(key.as_str()) {
            return Arc::clone(v);
        }
        let verdict = Arc::new(classify(sql));
        let mut map = cache.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.into_boxed_str(), Arc::clone(&verdict));
        verdict
    })
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The statement's shape: literals replaced by `?`. `None` if the text is malformed (an unterminated quote
/// or comment): such text is classified directly.
pub fn shape(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut copied = 0; // b[copied..i] is pending verbatim output
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                out.push_str(&sql[copied..i]);
                i = skip_string(b, i, q)?;
                out.push('?');
                copied = i;
            }
            b'`' => i = skip_backtick(b, i)?,
            b'/' if b.get(i + 1) == Some(&b'*') => i = find(b, i + 2, b"*/")? + 2,
            b'#' => i = find(b, i, b"\n").map_or(b.len(), |e| e + 1),
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                i = find(b, i, b"\n").map_or(b.len(), |e| e + 1)
            }
            c if c.is_ascii_digit() && (i == 0 || !is_ident_byte(b[i - 1])) => {
                out.push_str(&sql[copied..i]);
                while i < b.len() && (is_ident_byte(b[i]) || b[i] == b'.') {
                    i += 1;
                }
                out.push('?');
                copied = i;
            }
            c if is_ident_byte(c) => {
                // Skip a whole identifier so digits inside it (t1, x2y) stay verbatim.
                while i < b.len() && is_ident_byte(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// Index just past the string starting at `start` (quote `q`): `\` escapes the next byte and a doubled
/// quote is a literal quote.
fn skip_string(b: &[u8], start: usize, q: u8) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q && b.get(i + 1) == Some(&q) => i += 2,
            c if c == q => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_backtick(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'`' {
            if b.get(i + 1) == Some(&b'`') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let cases = [
            ("SELECT * FROM t1 WHERE id = 42", "SELECT * FROM t1 WHERE id = ?"),
            ("SELECT 'a''b', \"c\\\"d\", 1.5e3, 0x1F FROM x2", "SELECT ?, ?, ?, ? FROM x2"),
            ("SELECT `we'ird` FROM t WHERE a = 'x'", "SELECT `we'ird` FROM t WHERE a = ?"),
            ("/* rwsplit:master 1 */ SELECT 2", "/* rwsplit:master 1 */ SELECT ?"),
            ("SELECT 1 -- rwsplit:replica 'x'\n", "SELECT ? -- rwsplit:replica 'x'\n"),
            ("/*!40101 SET @a = 1 */", "/*!40101 SET @a = 1 */"),
            ("SELECT @v1, 'for update'", "SELECT @v1, ?"),
        ];
        for (sql, want) in cases {
            assert_eq!(shape(sql).as_deref(), Some(want), "{sql}");
        }
        assert_eq!(shape("SELECT 'open"), None);
        assert_eq!(shape("SELECT /* open"), None);
    }

    #[test]
    fn literals_hiding_keywords_cannot_share_a_shape_with_code() {
        // If a scanner mis-ended a string, these two could collide; they must not.
        let a = shape("SELECT 'x\\' FOR UPDATE -- '").unwrap();
        let b = shape("SELECT 'x' FOR UPDATE -- '").unwrap();
        assert_ne!(a, b);
        assert_eq!(*classify_cached("SELECT 'x\\' FOR UPDATE -- '"), classify("SELECT 'x\\' FOR UPDATE -- '"));
    }
}
