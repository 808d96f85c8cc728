//! Admin commands: the parser from query text to [`Command`] (no execution here).

/// An admin command, as parsed from the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW BACKENDS`.
    ShowBackends,
    /// `SHOW REPLICATION`.
    ShowReplication,
    /// `SHOW POOLS`.
    ShowPools,
    /// `SHOW CLIENTS`.
    ShowClients,
    /// `SHOW CONFIG`.
    ShowConfig,
    /// `RELOAD`.
    Reload,
    /// `SET BACKEND 'addr' OFFLINE|ONLINE`.
    SetBackend {
        /// The replica's `host:port`, as configured.
        addr: String,
        /// OFFLINE (true) or ONLINE (false).
        offline: bool,
    },
    /// `SELECT @@var, …` or `SELECT 1`.
    Select(Vec<SelectItem>),
}

/// One item of a `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    /// The item as written: the column name.
    pub label: String,
    /// What it asks for.
    pub value: SelectValue,
}

/// What a `SELECT` item asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectValue {
    /// A system variable, lowercased, without `session.`/`global.`.
    Variable(String),
    /// An integer literal.
    Integer(i64),
}

/// Parses one admin command. The error says what was not understood.
pub fn parse(sql: &str) -> Result<Command, String> {
    let text = strip_comments(sql)?;
    let text = text.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if text.contains(';') {
        return Err("one command at a time".into());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    match upper.as_slice() {
        ["SHOW", "BACKENDS"] => Ok(Command::ShowBackends),
        ["SHOW", "REPLICATION"] => Ok(Command::ShowReplication),
        ["SHOW", "POOLS"] => Ok(Command::ShowPools),
        ["SHOW", "CLIENTS"] => Ok(Command::ShowClients),
        ["SHOW", "CONFIG"] => Ok(Command::ShowConfig),
        ["RELOAD"] | ["RELOAD", "CONFIG"] => Ok(Command::Reload),
        ["SET", "BACKEND", _, state @ ("OFFLINE" | "ONLINE")] => {
            Ok(Command::SetBackend { addr: unquote(words[2])?, offline: *state == "OFFLINE" })
        }
        ["SELECT", ..] => parse_select(&text["SELECT".len()..]),
        [] => Err("empty query".into()),
        _ => Err(format!("unknown command '{}'", text.chars().take(80).collect::<String>())),
    }
}

/// Removes comments (each becomes a space), by the same lexer rules as the data path. An unterminated
/// comment or quote is an error.
fn strip_comments(sql: &str) -> Result<String, String> {
    use rwsplit_classify::lex::{Dialect, Lexer, SpanKind};
    let text = sql.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    for span in Lexer::new(text, Dialect::default()) {
        if span.unterminated {
            return Err(
                if span.kind == SpanKind::Comment { "unterminated /* comment" } else { "unterminated quote" }.into()
            );
        }
        match span.kind {
            SpanKind::Comment => out.push(b' '),
            _ => out.extend_from_slice(span.bytes(text)),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A backend address token: `'host:port'`, `"host:port"`, `` `host:port` `` or bare.
fn unquote(token: &str) -> Result<String, String> {
    let quoted = token.len() >= 2 && token.starts_with(['\'', '"', '`']) && token.ends_with(&token[..1]);
    let inner = if quoted { &token[1..token.len() - 1] } else { token };
    if inner.is_empty() || inner.contains(['\'', '"', '`']) {
        return Err(format!("bad backend address {token}; write it as 'host:port'"));
    }
    Ok(inner.to_string())
}

/// The items of a `SELECT` (after the keyword), with an optional trailing `LIMIT n`.
fn parse_select(rest: &str) -> Result<Command, String> {
    let mut items = rest.trim();
    let upper = items.to_ascii_uppercase();
    if let Some(at) = upper.rfind("LIMIT") {
        let count = items[at + "LIMIT".len()..].trim();
        if at > 0 && items[..at].ends_with(char::is_whitespace) && count.parse::<u64>().is_ok() {
            items = items[..at].trim_end();
        }
    }
    if items.is_empty() {
        return Err("SELECT needs @@variables or a number".into());
    }
    items.split(',').map(|item| select_item(item.trim())).collect::<Result<_, _>>().map(Command::Select)
}

/// One `SELECT` item: `@@[session.|global.]name` or an integer.
fn select_item(item: &str) -> Result<SelectItem, String> {
    let label = item.to_string();
    if let Some(var) = item.strip_prefix("@@") {
        let var = var.to_ascii_lowercase();
        let name = ["session.", "global.", "local."].iter().find_map(|p| var.strip_prefix(p)).unwrap_or(&var);
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Ok(SelectItem { label, value: SelectValue::Variable(name.to_string()) });
        }
    } else if let Ok(n) = item.parse::<i64>() {
        return Ok(SelectItem { label, value: SelectValue::Integer(n) });
    }
    Err(format!("only SELECT @@variable or SELECT <number> is supported, not '{item}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addr: &str, offline: bool) -> Command {
        Command::SetBackend { addr: addr.into(), offline }
    }

    fn var(label: &str, name: &str) -> SelectItem {
        SelectItem { label: label.into(), value: SelectValue::Variable(name.into()) }
    }

    #[test]
    fn parses_commands() {
        let table: &[(&str, Command)] = &[
            ("SHOW BACKENDS", Command::ShowBackends),
            ("show replication", Command::ShowReplication),
            ("  show   backends ;  ", Command::ShowBackends),
            ("/* from a script */ Show Pools;;", Command::ShowPools),
            ("SHOW CLIENTS /* trailing */", Command::ShowClients),
            ("show config -- all of it\n", Command::ShowConfig),
            ("# note\nreload", Command::Reload),
            ("RELOAD CONFIG;", Command::Reload),
            ("SET BACKEND '127.0.0.1:3307' OFFLINE", set("127.0.0.1:3307", true)),
            ("set backend \"db2:3306\" online;", set("db2:3306", false)),
            ("SET BACKEND `db2:3306` ONLINE", set("db2:3306", false)),
            ("set backend db2:3306 offline", set("db2:3306", true)),
            ("SELECT @@version_comment LIMIT 1", Command::Select(vec![var("@@version_comment", "version_comment")])),
            (
                "select @@max_allowed_packet,@@SESSION.wait_timeout",
                Command::Select(vec![
                    var("@@max_allowed_packet", "max_allowed_packet"),
                    var("@@SESSION.wait_timeout", "wait_timeout"),
                ]),
            ),
            ("SELECT 1", Command::Select(vec![SelectItem { label: "1".into(), value: SelectValue::Integer(1) }])),
        ];
        for (sql, want) in table {
            assert_eq!(parse(sql).as_ref(), Ok(want), "{sql}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for sql in [
            "",
            ";",
            "SHOW BACKEND",
            "SHOW BACKENDS EXTRA",
            "SHOW DATABASES",
            "SELECT * FROM t",
            "SELECT @@",
            "SELECT @@a-b",
            "SELECT",
            "SHOW POOLS; SHOW CLIENTS",
            "SET BACKEND 'a:1 OFFLINE",
            "SET BACKEND '' OFFLINE",
            "SET BACKEND 'a:1' DOWN",
            "SET BACKEND OFFLINE",
            "/* unterminated SHOW BACKENDS",
            "'SHOW BACKENDS'",
            "DROP TABLE x",
        ] {
            assert!(parse(sql).is_err(), "{sql:?} should not parse: {:?}", parse(sql));
        }
    }

    #[test]
    fn comments_inside_quotes_are_kept() {
        assert_eq!(strip_comments("SET BACKEND '/*x*/' OFFLINE").unwrap(), "SET BACKEND '/*x*/' OFFLINE");
        assert_eq!(strip_comments("a--b").unwrap(), "a--b", "-- needs whitespace after it");
        assert_eq!(strip_comments("a /*x*/b").unwrap(), "a  b");
    }
}
