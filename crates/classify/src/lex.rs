//! The one MySQL lexer: splits raw statement bytes into spans (code words, numbers, strings, quoted
//! identifiers, comments, executable-comment markers, punctuation), following the server's rules.
//!
//! Everything in rwsplit that looks at SQL text goes through this lexer: the classifier's pre-scan, the
//! shape cache, the proxy's rewrites (`CONNECTION_ID()`, `@@socket`), KILL recognition, and the admin
//! port. So the rules live in one place:
//! - `# …` and `-- …` run to the end of the line (`\n` only, as in the server); `--` starts a comment only
//!   when followed by whitespace, a control character (including DEL) or the end of the text;
//! - `/* … */` ends at the first `*/` (no nesting); `/*!…` and MariaDB's `/*M!…` are executable comments:
//!   their body is code, and the matching `*/` is a span of its own; one versioned (5 or 6 digits) above
//!   the server's version ([`Dialect::server_version`]), or MySQL-only on MariaDB (`/*!50700`–`/*!99999`),
//!   is skipped like a comment (with one inner `/* … */` allowed, as the server reads it);
//! - `'…'` and `"…"` are strings (`"…"` is a quoted identifier under `ANSI_QUOTES`), `` `…` `` a quoted
//!   identifier; a doubled quote stands for itself; in strings a backslash escapes the next byte unless
//!   `NO_BACKSLASH_ESCAPES` is on;
//! - in the multi-byte client character sets whose second byte can be `\`, `'` or `` ` `` (big5, gbk,
//!   sjis/cp932, gb18030), a lead byte and the byte after it are one character, never an escape or quote;
//! - a run of identifier bytes that starts with a digit is a number only if it is one (`12`, `1.5e3`,
//!   `0x1F`, `0b101`); otherwise (`1tmp`, `2fa_codes`) it is a word, as the server reads it.
//!
//! The lexer never fails: an unterminated string, identifier or comment is a span flagged `unterminated`
//! that runs to the end of the text.

/// Session and server settings that change how the server reads statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dialect {
    /// `NO_BACKSLASH_ESCAPES` is in the session's sql_mode: a backslash in a string is an ordinary byte.
    pub no_backslash_escapes: bool,
    /// `ANSI_QUOTES` is in the session's sql_mode: `"…"` quotes an identifier, not a string.
    pub ansi_quotes: bool,
    /// The client's character set, when it is one whose multi-byte characters can contain `\`, `'` or `` ` ``.
    pub multibyte: Option<Multibyte>,
    /// The server's version as a number (`10.11.6` is 101106): a versioned comment (`/*!50500 …*/`,
    /// `/*M!100500 …*/`) is code only up to this version.
    pub server_version: u32,
    /// The server is MariaDB: it runs `/*M!…*/` comments and skips MySQL-only versions (50700–99999).
    pub mariadb: bool,
}

/// The server [`Dialect::default`] assumes: MariaDB 10.11.
pub const DEFAULT_SERVER_VERSION: u32 = 101100;

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            no_backslash_escapes: false,
            ansi_quotes: false,
            multibyte: None,
            server_version: DEFAULT_SERVER_VERSION,
            mariadb: true,
        }
    }
}

impl Dialect {
    /// The default dialect for a server that announced `version` in its greeting (`10.11.6-MariaDB-log`,
    /// `5.5.5-10.11.6-MariaDB`, `8.0.36`). An unreadable version keeps the defaults.
    pub fn for_server(version: &str) -> Dialect {
        let mariadb = version.contains("MariaDB");
        let v = version.strip_prefix("5.5.5-").unwrap_or(version);
        let mut parts = v.split(|c: char| !c.is_ascii_digit()).take(3).map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten(), parts.next().flatten()) {
            // Bounded so the number cannot overflow, whatever a (hostile) server announces (found by fuzzing).
            (Some(major), Some(minor), Some(patch)) if major < 1000 && minor < 100 && patch < 100 => {
                Dialect { server_version: major * 10_000 + minor * 100 + patch, mariadb, ..Dialect::default() }
            }
            _ => Dialect::default(),
        }
    }

    /// Whether the server runs the body of a comment versioned `version`, in `/*M!` form if `maria`.
    fn runs_version(&self, version: u32, maria: bool) -> bool {
        version <= self.server_version && (!self.mariadb || maria || !(50700..=99999).contains(&version))
    }
}

/// Client character sets with multi-byte characters whose trailing byte may be an ASCII quote or backslash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Multibyte {
    /// big5: lead bytes 0xA1–0xF9.
    Big5,
    /// gbk: lead bytes 0x81–0xFE.
    Gbk,
    /// sjis and cp932: lead bytes 0x81–0x9F and 0xE0–0xFC (0xA1–0xDF are single-byte katakana).
    Sjis,
    /// gb18030: lead bytes 0x81–0xFE (4-byte characters are two lead/trail pairs).
    Gb18030,
}

impl Multibyte {
    /// The character set of a MySQL/MariaDB character-set name (`character_set_client`), if it is one of these.
    pub fn from_charset_name(name: &str) -> Option<Multibyte> {
        match name.to_ascii_lowercase().as_str() {
            "big5" => Some(Multibyte::Big5),
            "gbk" => Some(Multibyte::Gbk),
            "sjis" | "cp932" => Some(Multibyte::Sjis),
            "gb18030" => Some(Multibyte::Gb18030),
            _ => None,
        }
    }

    /// The character set of a collation id (as sent in a handshake or COM_CHANGE_USER), if it is one of these.
    pub fn from_collation_id(id: u16) -> Option<Multibyte> {
        match id {
            1 | 84 | 1025 | 1108 => Some(Multibyte::Big5),
            28 | 87 | 1052 | 1111 => Some(Multibyte::Gbk),
            13 | 88 | 95 | 96 | 1037 | 1112 | 1119 | 1120 => Some(Multibyte::Sjis),
            248..=250 => Some(Multibyte::Gb18030),
            _ => None,
        }
    }

    fn is_lead(self, b: u8) -> bool {
        match self {
            Multibyte::Big5 => (0xA1..=0xF9).contains(&b),
            Multibyte::Gbk | Multibyte::Gb18030 => (0x81..=0xFE).contains(&b),
            Multibyte::Sjis => (0x81..=0x9F).contains(&b) || (0xE0..=0xFC).contains(&b),
        }
    }
}

/// What a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Whitespace.
    Space,
    /// A `#`, `-- ` or `/* … */` comment (not executable).
    Comment,
    /// The opening marker of an executable comment (`/*!`, `/*!40101`, `/*M!100101`).
    ExecOpen,
    /// The `*/` closing an executable comment.
    ExecClose,
    /// A string literal, quotes included; `quote` is `'` or `"`.
    Str {
        /// The quote byte.
        quote: u8,
    },
    /// A quoted identifier, quotes included (backticks, or double quotes under `ANSI_QUOTES`).
    QuotedIdent,
    /// An unquoted word: keyword or identifier (may start with a digit, like `1tmp`).
    Word,
    /// A number literal (`12`, `1.5`, `.5`, `1e-3`, `0x1F`, `0b101`).
    Number,
    /// Any other single byte: punctuation or an operator character (`;`, `(`, `@`, `=`, …).
    Punct,
}

/// One span of statement text: `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// What it is.
    pub kind: SpanKind,
    /// Byte offset of its first byte.
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
    /// A string, quoted identifier or comment that is not closed before the end of the text.
    pub unterminated: bool,
}

impl Span {
    /// The span's bytes in `text`.
    pub fn bytes<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.start..self.end]
    }

    /// Whether this span is code (not whitespace, a comment or an executable-comment marker).
    pub fn is_code(&self) -> bool {
        !matches!(self.kind, SpanKind::Space | SpanKind::Comment | SpanKind::ExecOpen | SpanKind::ExecClose)
    }

    /// Whether this span is the unquoted word `kw` (ASCII case-insensitive).
    pub fn is_word(&self, text: &[u8], kw: &str) -> bool {
        self.kind == SpanKind::Word && self.bytes(text).eq_ignore_ascii_case(kw.as_bytes())
    }

    /// Whether this span is the punctuation byte `c`.
    pub fn is_punct(&self, text: &[u8], c: u8) -> bool {
        self.kind == SpanKind::Punct && text.get(self.start) == Some(&c)
    }
}

/// An iterator over the spans of a statement text.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    /// The whole text.
    text: &'a [u8],
    /// Where the next span starts.
    pos: usize,
    /// How the session reads text.
    dialect: Dialect,
    /// Inside an executable comment: the next `*/` closes it.
    in_exec: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer over `text`.
    pub fn new(text: &'a [u8], dialect: Dialect) -> Lexer<'a> {
        Lexer { text, pos: 0, dialect, in_exec: false }
    }

    /// Whether the text ended inside an executable comment (its `*/` is missing).
    pub fn in_exec_comment(&self) -> bool {
        self.in_exec
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.text.get(i).copied()
    }

    /// The length of the multi-byte character starting at `i` (2), or 1.
    fn char_len(&self, i: usize) -> usize {
        match (self.dialect.multibyte, self.at(i)) {
            (Some(mb), Some(b)) if mb.is_lead(b) && i + 1 < self.text.len() => 2,
            _ => 1,
        }
    }

    /// End of a quoted run starting at `start` with `quote`; `escapes` says whether backslashes escape.
    fn quoted(&self, start: usize, quote: u8, escapes: bool) -> (usize, bool) {
        let mut i = start + 1;
        while let Some(b) = self.at(i) {
            if b == quote {
                if self.at(i + 1) == Some(quote) {
                    i += 2;
                    continue;
                }
                return (i + 1, false);
            }
            if b == b'\\' && escapes {
                i += 2;
                continue;
            }
            i += self.char_len(i);
        }
        (self.text.len(), true)
    }

    /// End of a line comment starting at `start`: just before the next `\n` (or the end of the text).
    fn line_end(&self, start: usize) -> usize {
        self.text[start..].iter().position(|&b| b == b'\n').map_or(self.text.len(), |p| start + p)
    }

    /// An executable-comment opener at `i` (`/*!`, or MariaDB's `/*M!`), if there is one: the length of its
    /// marker and whether the server runs its body. As in the server: a version is exactly 5 or 6 digits
    /// (fewer digits are not a version but code); a body versioned above the server (or, on MariaDB, a
    /// MySQL-only version 50700–99999 in `/*!` form) is skipped like a comment.
    fn exec_marker(&self, i: usize) -> Option<(usize, bool)> {
        let b = &self.text[i..];
        let (after, maria) = if b.starts_with(b"/*!") {
            (3, false)
        } else if self.dialect.mariadb
            && b.len() >= 4
            && b.starts_with(b"/*")
            && b[2].eq_ignore_ascii_case(&b'm')
            && b[3] == b'!'
        {
            (4, true)
        } else {
            return None;
        };
        let digits = b[after..].iter().take(6).take_while(|c| c.is_ascii_digit()).count();
        if digits < 5 {
            return Some((after, true));
        }
        let version = b[after..after + digits].iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
        Some((after + digits, self.dialect.runs_version(version, maria)))
    }

    /// End of a comment whose body starts at `body`: after the first `*/`, or, when `nested` (the body of a
    /// skipped versioned comment), after the `*/` that follows one inner `/* … */`, as the server reads it.
    fn comment_end(&self, body: usize, nested: bool) -> (usize, bool) {
        let mut i = body;
        while i + 1 < self.text.len() {
            match &self.text[i..i + 2] {
                b"*/" => return (i + 2, false),
                b"/*" if nested => {
                    let (end, open) = self.comment_end(i + 2, false);
                    if open {
                        return (end, true);
                    }
                    i = end;
                }
                _ => i += 1,
            }
        }
        (self.text.len(), true)
    }

    /// End of a run of identifier bytes from `i`.
    fn ident_end(&self, mut i: usize) -> usize {
        while let Some(b) = self.at(i) {
            if !is_ident_byte(b) {
                break;
            }
            i += self.char_len(i);
        }
        i.min(self.text.len())
    }

    /// A word or number starting at `start` (which is an identifier byte or a `.` before a digit).
    fn word_or_number(&self, start: usize) -> (SpanKind, usize) {
        let b = self.text;
        if b[start] == b'.' {
            return (SpanKind::Number, number_end(b, start));
        }
        let end = self.ident_end(start);
        if !b[start].is_ascii_digit() {
            return (SpanKind::Word, end);
        }
        let run = &b[start..end];
        let hex = run.len() > 2 && (run.starts_with(b"0x")) && run[2..].iter().all(u8::is_ascii_hexdigit);
        let bin = run.len() > 2 && run.starts_with(b"0b") && run[2..].iter().all(|c| matches!(c, b'0' | b'1'));
        if hex || bin {
            return (SpanKind::Number, end);
        }
        let num_end = number_end(b, start);
        if num_end >= end {
            (SpanKind::Number, num_end)
        } else {
            // Digits followed by letters that are not an exponent: an identifier (`1tmp`).
            (SpanKind::Word, end)
        }
    }
}

/// Bytes that may appear in an unquoted identifier (any non-ASCII byte counts: UTF-8 letters).
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// End of a decimal number literal at `start`: digits, an optional fraction, an optional exponent.
fn number_end(b: &[u8], start: usize) -> usize {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign);
        }
    }
    i
}

impl Iterator for Lexer<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        let start = self.pos;
        let b = *self.text.get(start)?;
        let next = self.at(start + 1);
        let mut unterminated = false;
        let (kind, end) = match b {
            b'\'' => {
                let (end, open) = self.quoted(start, b, !self.dialect.no_backslash_escapes);
                unterminated = open;
                (SpanKind::Str { quote: b }, end)
            }
            b'"' if self.dialect.ansi_quotes => {
                let (end, open) = self.quoted(start, b, false);
                unterminated = open;
                (SpanKind::QuotedIdent, end)
            }
            b'"' => {
                let (end, open) = self.quoted(start, b, !self.dialect.no_backslash_escapes);
                unterminated = open;
                (SpanKind::Str { quote: b }, end)
            }
            b'`' => {
                let (end, open) = self.quoted(start, b, false);
                unterminated = open;
                (SpanKind::QuotedIdent, end)
            }
            b'*' if self.in_exec && next == Some(b'/') => {
                self.in_exec = false;
                (SpanKind::ExecClose, start + 2)
            }
            b'/' if next == Some(b'*') => {
                // Inside an executable comment, any `/*` opens a plain comment (the server does not nest
                // versioned comments).
                let marker = if self.in_exec { None } else { self.exec_marker(start) };
                let (kind, end, open) = match marker {
                    Some((len, true)) => {
                        self.in_exec = true;
                        (SpanKind::ExecOpen, start + len, false)
                    }
                    Some((len, false)) => {
                        let (end, open) = self.comment_end(start + len, true);
                        (SpanKind::Comment, end, open)
                    }
                    None => {
                        let (end, open) = self.comment_end(start + 2, false);
                        (SpanKind::Comment, end, open)
                    }
                };
                unterminated = open;
                (kind, end)
            }
            b'#' => (SpanKind::Comment, self.line_end(start)),
            b'-' if next == Some(b'-') && self.at(start + 2).is_none_or(|c| c <= b' ' || c == 0x7F) => {
                (SpanKind::Comment, self.line_end(start))
            }
            c if c.is_ascii_whitespace() => {
                let len = self.text[start..].iter().take_while(|c| c.is_ascii_whitespace()).count();
                (SpanKind::Space, start + len)
            }
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) && !self.follows_name(start) => self.word_or_number(start),
            c if is_ident_byte(c) => self.word_or_number(start),
            _ => (SpanKind::Punct, start + 1),
        };
        self.pos = end;
        Some(Span { kind, start, end, unterminated })
    }
}

impl Lexer<'_> {
    /// Whether the byte before `i` ends a name (`t.1col` is a qualified name, not `t` and `.1`).
    fn follows_name(&self, i: usize) -> bool {
        i.checked_sub(1).and_then(|p| self.at(p)).is_some_and(|b| is_ident_byte(b) || b == b'`' || b == b'"')
    }
}

/// The code spans of `text` (no whitespace, comments or executable-comment markers).
pub fn code(text: &[u8], dialect: Dialect) -> impl Iterator<Item = Span> + '_ {
    Lexer::new(text, dialect).filter(Span::is_code)
}

/// `text` with every comment replaced by one space (executable comments are kept whole, as code).
pub fn strip_comments(text: &[u8], dialect: Dialect) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for span in Lexer::new(text, dialect) {
        match span.kind {
            SpanKind::Comment => out.push(b' '),
            _ => out.extend_from_slice(span.bytes(text)),
        }
    }
    out
}

/// The body of a comment span (without `/*`, `*/`, `#` or `--`).
pub fn comment_body<'a>(text: &'a [u8], span: &Span) -> &'a [u8] {
    let b = span.bytes(text);
    let b = if b.starts_with(b"/*") {
        let inner = &b[2..];
        inner.strip_suffix(b"*/").unwrap_or(inner)
    } else if b.starts_with(b"--") {
        &b[2..]
    } else {
        b.strip_prefix(b"#").unwrap_or(b)
    };
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str, d: Dialect) -> Vec<(SpanKind, String)> {
        Lexer::new(text.as_bytes(), d)
            .filter(|s| s.kind != SpanKind::Space)
            .map(|s| (s.kind, String::from_utf8_lossy(s.bytes(text.as_bytes())).into_owned()))
            .collect()
    }

    fn words(text: &str) -> Vec<String> {
        kinds(text, Dialect::default()).into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn comments_follow_the_server_rules() {
        use SpanKind::*;
        let d = Dialect::default();
        assert_eq!(kinds("a -- x\nb", d), [(Word, "a".into()), (Comment, "-- x".into()), (Word, "b".into())]);
        assert_eq!(words("a--x"), ["a", "-", "-", "x"]);
        assert_eq!(kinds("a --\x7fx\nb", d)[1].0, Comment);
        assert_eq!(kinds("a --", d)[1], (Comment, "--".into()));
        // `#` and `--` end at \n only, not at \r.
        assert_eq!(kinds("a # x\r b\nc", d)[1], (Comment, "# x\r b".into()));
        assert_eq!(kinds("/* a */b", d), [(Comment, "/* a */".into()), (Word, "b".into())]);
        assert_eq!(
            kinds("/*!40101 SET a=1 */", d),
            [
                (ExecOpen, "/*!40101".into()),
                (Word, "SET".into()),
                (Word, "a".into()),
                (Punct, "=".into()),
                (Number, "1".into()),
                (ExecClose, "*/".into())
            ]
        );
        assert_eq!(kinds("/*M!100101 x */", d)[0], (ExecOpen, "/*M!100101".into()));
        assert_eq!(kinds("a */ b", d)[1], (Punct, "*".into()), "*/ outside an executable comment is code");
        let open = Lexer::new(b"/* x", d).next().unwrap();
        assert!(open.unterminated);
    }

    #[test]
    fn versioned_comments_run_only_up_to_the_server_version() {
        use SpanKind::*;
        let d = Dialect::for_server("5.5.5-10.11.6-MariaDB-0+deb12u1");
        assert_eq!((d.server_version, d.mariadb), (101106, true));
        assert_eq!(Dialect::for_server("8.0.36").server_version, 80036);
        assert!(!Dialect::for_server("8.0.36").mariadb);
        assert_eq!(Dialect::for_server("garbage"), Dialect::default());
        assert_eq!(Dialect::for_server("5888885.5.5"), Dialect::default(), "no overflow (found by fuzzing)");
        // Above the server: a comment, whatever it holds, up to its `*/` (one inner comment allowed).
        let above = "SELECT 1 /*M!999999 '*/; DELETE FROM b; SELECT '*/";
        assert_eq!(kinds(above, d)[2], (Comment, "/*M!999999 '*/".into()));
        assert_eq!(
            kinds("/*!101200 a /* b */ c */ d", d),
            [(Comment, "/*!101200 a /* b */ c */".into()), (Word, "d".into())]
        );
        // MariaDB skips MySQL-only versions in `/*!` form, not in `/*M!` form.
        assert_eq!(kinds("/*!80000 x */", d)[0].0, Comment);
        assert_eq!(kinds("/*M!80000 x */", d)[0].0, ExecOpen);
        assert_eq!(kinds("/*!50100 x */", d)[0], (ExecOpen, "/*!50100".into()));
        // A MySQL server runs MySQL versions and does not know `/*M!`.
        let mysql = Dialect::for_server("8.0.36");
        assert_eq!(kinds("/*!80000 x */", mysql)[0].0, ExecOpen);
        assert_eq!(kinds("/*M!100101 x */", mysql)[0].0, Comment);
        // Fewer than five digits are not a version: they are code.
        assert_eq!(kinds("/*!123 x */", d)[..2], [(ExecOpen, "/*!".into()), (Number, "123".into())]);
        // Inside an executable comment, `/*!` opens a plain comment.
        assert_eq!(kinds("/*! a /*!50100 b */ c */", d)[2], (Comment, "/*!50100 b */".into()));
    }

    #[test]
    fn strings_and_identifiers() {
        use SpanKind::*;
        let d = Dialect::default();
        let s = |q| Str { quote: q };
        assert_eq!(kinds(r"'a\'b' x", d), [(s(b'\''), r"'a\'b'".into()), (Word, "x".into())]);
        assert_eq!(kinds("'a''b' x", d)[0], (s(b'\''), "'a''b'".into()));
        assert_eq!(kinds("\"a\" x", d)[0], (s(b'"'), "\"a\"".into()));
        assert_eq!(kinds("`a``b` x", d)[0], (QuotedIdent, "`a``b`".into()));
        assert_eq!(kinds(r"`a\` x", d)[0], (QuotedIdent, r"`a\`".into()), "no backslash escapes in identifiers");
        let nbe = Dialect { no_backslash_escapes: true, ..d };
        assert_eq!(kinds(r"'a\' FOR UPDATE", nbe)[0], (s(b'\''), r"'a\'".into()));
        let ansi = Dialect { ansi_quotes: true, ..d };
        assert_eq!(kinds("\"t\" x", ansi)[0], (QuotedIdent, "\"t\"".into()));
        assert!(Lexer::new(b"'open", d).next().unwrap().unterminated);
    }

    #[test]
    fn multibyte_trail_bytes_are_not_escapes() {
        // 0x95 0x5C is one SJIS character; its second byte is a backslash in ASCII.
        let text = b"SELECT '\x95\x5C' FOR UPDATE";
        let plain: Vec<SpanKind> = code(text, Dialect::default()).map(|s| s.kind).collect();
        assert_eq!(plain.len(), 2, "read as latin1, the backslash escapes the quote: one open string");
        let sjis = Dialect { multibyte: Some(Multibyte::Sjis), ..Dialect::default() };
        let spans: Vec<Span> = code(text, sjis).collect();
        assert_eq!(spans.len(), 4);
        assert!(spans[2].is_word(text, "FOR") && spans[3].is_word(text, "UPDATE"));
        // 0xB1 is single-byte katakana in SJIS: the quote after it closes the string.
        let kana = b"'\xB1' x";
        assert_eq!(code(kana, sjis).count(), 2);
    }

    #[test]
    fn numbers_and_words_starting_with_digits() {
        use SpanKind::*;
        let d = Dialect::default();
        let k = |t: &str| kinds(t, d).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(k("12 1.5 .5 1e3 1.5E-3 0x1F 0b101"), vec![Number; 7]);
        assert_eq!(k("1tmp 2fa_codes 0xZZ 1e"), vec![Word; 4]);
        assert_eq!(words("t.1col"), ["t", ".", "1col"]);
        assert_eq!(k("a.5"), [Word, Punct, Number], "a.5 — the lexer keeps the number; names are rare");
        assert_eq!(words("x1 $y _z"), ["x1", "$y", "_z"]);
    }

    #[test]
    fn helpers() {
        let d = Dialect::default();
        assert_eq!(strip_comments(b"a /* x */ b -- y\n'/* z */'", d), b"a   b  \n'/* z */'");
        let text = b"/* rwsplit:master */ x";
        let c = Lexer::new(text, d).next().unwrap();
        assert_eq!(comment_body(text, &c), b" rwsplit:master ");
        assert_eq!(Multibyte::from_charset_name("CP932"), Some(Multibyte::Sjis));
        assert_eq!(Multibyte::from_collation_id(45), None);
    }
}
