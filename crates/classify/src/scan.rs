//! Pre-scan of the raw statement text, before tokenizing.
//!
//! sqlparser drops comments, so routing hints are found here. The pre-scan also decides what is a comment
//! (MySQL rules: `/* … */`, `# …` and `-- ` followed by whitespace or a control character) and replaces each
//! comment with one space, and unwraps executable comments (`/*!…*/`, `/*!40101 …*/`, MariaDB's
//! `/*M!100101 …*/`) into code by removing the marker and its closing `*/`. The tokenizer then never sees
//! a comment, so the comment rules live in one place. Quoted strings and identifiers are skipped whole, so a
//! `/*` or `#` inside them is not a comment.

use crate::Hint;

/// The text to tokenize, plus what the pre-scan learned.
pub(crate) struct Prescan {
    /// The statement text with comments replaced by spaces and executable comments unwrapped.
    pub text: String,
    /// The first routing hint found in a comment.
    pub hint: Option<Hint>,
    /// A quote, comment or executable comment was left open: the text is malformed.
    pub unterminated: bool,
    /// Code follows a `;` (outside quotes and comments): the text may hold several statements.
    pub multi: bool,
}

/// Runs the pre-scan over `sql`.
pub(crate) fn prescan(sql: &str) -> Prescan {
    let b = sql.as_bytes();
    let mut out = Prescan { text: String::with_capacity(sql.len()), hint: None, unterminated: false, multi: false };
    let mut saw_semicolon = false;
    let mut code_start = 0; // start of the pending run of code not yet copied to `out.text`
    let mut in_exec = false; // inside an executable comment, waiting for its `*/`
    let mut i = 0;
    while i < b.len() {
        let next = b.get(i + 1).copied();
        let skip_to = match b[i] {
            b'\'' | b'"' | b'`' => {
                out.multi |= saw_semicolon;
                skip_quoted(b, i)
            }
            b'*' if in_exec && next == Some(b'/') => {
                in_exec = false;
                Some(i + 2)
            }
            b'/' if next == Some(b'*') => match exec_marker_len(&b[i..]) {
                Some(len) => {
                    in_exec = true;
                    Some(i + len)
                }
                None => block_comment(sql, i, &mut out.hint),
            },
            b'#' => Some(line_comment(sql, i, 1, &mut out.hint)),
            b'-' if next == Some(b'-') && !matches!(b.get(i + 2), Some(c) if *c > b' ') => {
                Some(line_comment(sql, i, 2, &mut out.hint))
            }
            c => {
                if c == b';' {
                    saw_semicolon = true;
                } else if !c.is_ascii_whitespace() {
                    out.multi |= saw_semicolon;
                }
                i += 1;
                continue;
            }
        };
        let Some(end) = skip_to else {
            out.unterminated = true;
            break;
        };
        if matches!(b[i], b'\'' | b'"' | b'`') {
            i = end; // a quoted run is code: keep it in the pending run
            continue;
        }
        out.text.push_str(sql.get(code_start..i).unwrap_or_default());
        out.text.push(' ');
        i = end;
        code_start = end;
    }
    if !out.unterminated {
        out.text.push_str(sql.get(code_start..).unwrap_or_default());
    }
    out.unterminated |= in_exec;
    out
}

/// Returns the index just past the quoted run starting at `start` (`'…'`, `"…"` or `` `…` ``), or None
/// when it is not closed. Quotes are escaped by doubling; in strings, also by a backslash.
fn skip_quoted(b: &[u8], start: usize) -> Option<usize> {
    let quote = b[start];
    let backslash_escapes = quote != b'`';
    let mut i = start + 1;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && backslash_escapes {
            i += 2;
        } else if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return Some(i + 1);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// If `b` starts with an executable-comment marker (`/*!` or `/*M!`, then optional version digits),
/// returns the marker's length.
fn exec_marker_len(b: &[u8]) -> Option<usize> {
    let after = if b.starts_with(b"/*!") {
        3
    } else if b.len() >= 4 && b[2].eq_ignore_ascii_case(&b'm') && b[3] == b'!' {
        4
    } else {
        return None;
    };
    let digits = b[after..].iter().take_while(|c| c.is_ascii_digit()).count();
    Some(after + digits)
}

/// Skips the `/* … */` comment starting at `start`, noting a routing hint in it. None when unterminated.
fn block_comment(sql: &str, start: usize, hint: &mut Option<Hint>) -> Option<usize> {
    let body_start = start + 2;
    let len = sql.get(body_start..)?.find("*/")?;
    note_hint(sql.get(body_start..body_start + len).unwrap_or_default(), hint);
    Some(body_start + len + 2)
}

/// Skips the single-line comment starting at `start` (prefix of `prefix_len` bytes) up to, not including,
/// the end of the line, noting a routing hint in it.
fn line_comment(sql: &str, start: usize, prefix_len: usize, hint: &mut Option<Hint>) -> usize {
    let body_start = start + prefix_len;
    let rest = sql.get(body_start..).unwrap_or_default();
    let len = rest.find(['\n', '\r']).unwrap_or(rest.len());
    note_hint(&rest[..len], hint);
    body_start + len
}

/// Records the routing hint in `comment`, unless one was already found. `rwsplit:master` wins a tie.
fn note_hint(comment: &str, hint: &mut Option<Hint>) {
    if hint.is_some() {
        return;
    }
    if contains_ignore_case(comment, "rwsplit:master") {
        *hint = Some(Hint::Master);
    } else if contains_ignore_case(comment, "rwsplit:replica") {
        *hint = Some(Hint::Replica);
    }
}

/// ASCII case-insensitive substring test.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str) -> String {
        prescan(sql).text
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
        assert!(prescan("/*!40101 SET a=1").unterminated);
    }

    #[test]
    fn hints() {
        assert_eq!(prescan("/* RWSPLIT:Replica */ SELECT 1").hint, Some(Hint::Replica));
        assert_eq!(prescan("SELECT 1 -- rwsplit:master").hint, Some(Hint::Master));
        assert_eq!(prescan("SELECT 'rwsplit:master'").hint, None);
        assert_eq!(prescan("/*! rwsplit:master */ SELECT 1").hint, None);
    }

    #[test]
    fn multi() {
        assert!(!prescan("SELECT 1; -- x\n /* y */ ").multi);
        assert!(!prescan("SELECT ';x'").multi);
        assert!(prescan("SELECT 1; SELECT 2").multi);
        assert!(prescan("SELECT 1;'x'").multi);
    }

    #[test]
    fn unterminated() {
        for sql in ["SELECT 'a", "SELECT \"a\\\"", "SELECT `a", "SELECT /* a", "'\\"] {
            assert!(prescan(sql).unterminated, "{sql}");
        }
    }
}
