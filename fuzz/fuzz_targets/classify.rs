//! Classifier: any bytes as SQL, in any dialect: no panic, the lexer tiles the text, and the shape cache never changes a verdict
//! (two statements of one shape have the same verdict whenever the cache would share either's).
#![no_main]

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use libfuzzer_sys::fuzz_target;
use rwsplit_classify::lex::{self, Dialect, Lexer, Multibyte};
use rwsplit_classify::{classify, classify_cached, classify_with, hints, parse_kill, shape, shares_verdict, Verdict};

/// Server versions the selector picks from: MariaDB 10.11 and 10.5, MySQL 8.0 and 5.7.
const VERSIONS: [(u32, bool); 4] = [(101100, true), (100500, true), (80036, false), (50744, false)];
/// Statements longer than this are not cached (the cache's own bound, `MAX_LEN`).
const CACHE_MAX_LEN: usize = 16 * 1024;

/// The first statement seen of each shape (bounded), to check a later one of the same shape against, across
/// inputs as the per-thread cache does; a mismatch names both statements, so it can be reproduced.
static SEEN: OnceLock<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // Selector byte: sql_mode flags, client character set, server; then the text. A NUL splits it into two
    // statements, which are checked against each other when they have the same shape.
    let Some((&selector, text)) = data.split_first() else { return };
    let d = dialect(selector);
    let (a, b) = match text.iter().position(|&c| c == 0) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let va = check(a, d);
    if let Some(b) = b {
        let vb = check(b, d);
        let shared = shares_verdict(a, d) || shares_verdict(b, d);
        if cacheable(a, d) && cacheable(b, d) && shared && shape(a, d) == shape(b, d) {
            assert_eq!(va, vb, "same shape, different verdicts:\n{}\n{}", show(a), show(b));
        }
    }
});

/// All the entry points on one text; returns its verdict.
fn check(sql: &[u8], d: Dialect) -> Verdict {
    let verdict = classify_with(sql, d);
    assert!(verdict.statements >= 1);
    let cached = classify_cached(sql, d);
    if *cached != verdict {
        let earlier = shape(sql, d).and_then(|k| seen().get(&k).cloned()).unwrap_or_default();
        panic!(
            "cached verdict differs from a direct one:\n{}\nearlier statement of its shape:\n{}",
            show(sql),
            show(&earlier)
        );
    }
    assert_eq!(*classify_cached(sql, d), verdict, "second cached lookup");
    if d == Dialect::default() {
        if let Ok(s) = std::str::from_utf8(sql) {
            assert_eq!(classify(s), verdict);
        }
    }
    if let Some(key) = shape(sql, d).filter(|_| cacheable(sql, d)) {
        let mut map = seen();
        match map.get(&key) {
            Some(earlier) if earlier != sql && (shares_verdict(earlier, d) || shares_verdict(sql, d)) => {
                let other = classify_with(earlier, d);
                assert_eq!(other, verdict, "same shape, different verdicts:\n{}\n{}", show(earlier), show(sql));
            }
            Some(_) => {}
            None => {
                if map.len() >= 4096 {
                    map.clear();
                }
                map.insert(key, sql.to_vec());
            }
        }
    }
    check_text(sql, d);
    verdict
}

/// The entry points that do not classify, and the lexer's tiling.
fn check_text(sql: &[u8], d: Dialect) {
    let _ = hints(sql, d);
    let _ = parse_kill(sql, d);
    // The lexer's spans tile the text: contiguous, non-empty, to the end.
    let mut at = 0;
    for span in Lexer::new(sql, d) {
        assert_eq!(span.start, at, "gap or overlap between spans");
        assert!(span.end > span.start && span.end <= sql.len(), "span {span:?} of a {}-byte text", sql.len());
        if span.kind == lex::SpanKind::Comment {
            let _ = lex::comment_body(sql, &span);
        }
        at = span.end;
    }
    assert_eq!(at, sql.len(), "the spans stop before the end of the text");
    assert!(lex::strip_comments(sql, d).len() <= sql.len());
}

/// Whether the cache keys this text by shape (it classifies PREPARE … FROM and EXECUTE directly).
fn cacheable(sql: &[u8], d: Dialect) -> bool {
    let first = lex::code(sql, d).next();
    sql.len() <= CACHE_MAX_LEN && !first.is_some_and(|s| s.is_word(sql, "PREPARE") || s.is_word(sql, "EXECUTE"))
}

fn dialect(selector: u8) -> Dialect {
    let multibyte = match (selector >> 2) & 7 {
        1 => Some(Multibyte::Big5),
        2 => Some(Multibyte::Gbk),
        3 => Some(Multibyte::Sjis),
        4 => Some(Multibyte::Gb18030),
        _ => None,
    };
    let (server_version, mariadb) = VERSIONS[usize::from(selector >> 6)];
    let mariadb = mariadb != (selector & 0x20 != 0);
    Dialect {
        no_backslash_escapes: selector & 1 != 0,
        ansi_quotes: selector & 2 != 0,
        multibyte,
        server_version,
        mariadb,
    }
}

fn seen() -> MutexGuard<'static, HashMap<Vec<u8>, Vec<u8>>> {
    SEEN.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

fn show(sql: &[u8]) -> String {
    let hex: String = sql.iter().map(|b| format!("{b:02x}")).collect();
    format!("  {:?}\n  hex {hex}", String::from_utf8_lossy(sql))
}
