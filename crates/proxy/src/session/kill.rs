//! KILL through the proxy. Clients pass the connection id rwsplit announced (the `mariadb` client sends
//! `KILL QUERY <id>` on Ctrl-C), which means nothing to the backends: sent as is, it would kill whatever
//! unrelated thread has that id on the master. rwsplit translates it to the target session's backend
//! threads and runs the KILL on each backend with the requesting client's credentials, so the servers
//! still decide whether the requester may kill them.
//!
//! Supported: `KILL [HARD | SOFT] [CONNECTION | QUERY] <id>`. Other forms (`KILL USER`, `KILL QUERY ID`)
//! get an error: their targets are backend-side names the proxy cannot map.

use super::Session;
use crate::backend::BackendConn;
use crate::error::SessionError;
use rwsplit_wire::walk::Expect;

/// A parsed KILL statement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kill {
    /// `HARD ` or `SOFT ` (with the trailing space) or empty.
    strength: &'static str,
    /// Only the running statement, not the connection.
    query_only: bool,
    /// The proxy connection id.
    id: u32,
}

fn parse_kill(sql: &str) -> Option<Kill> {
    let mut words = sql.split_whitespace().map(|w| w.trim_end_matches(';').to_ascii_uppercase());
    if words.next()? != "KILL" {
        return None;
    }
    let mut word = words.next()?;
    let strength = match word.as_str() {
        "HARD" => "HARD ",
        "SOFT" => "SOFT ",
        _ => "",
    };
    if !strength.is_empty() {
        word = words.next()?;
    }
    let query_only = match word.as_str() {
        "QUERY" => {
            word = words.next()?;
            true
        }
        "CONNECTION" => {
            word = words.next()?;
            false
        }
        _ => false,
    };
    let id = word.parse().ok()?;
    words.next().is_none().then_some(Kill { strength, query_only, id })
}

impl Session {
    /// Runs a KILL statement for a proxy connection id.
    pub(super) async fn kill(&mut self, sql: &str) -> Result<(), SessionError> {
        let Some(kill) = parse_kill(sql) else {
            let msg = "rwsplit supports KILL [HARD|SOFT] [CONNECTION|QUERY] <connection id> only";
            return Ok(self.send_err(1235, b"42000", msg).await?);
        };
        let Some(target) = self.shared.session(kill.id) else {
            return Ok(self.send_err(1094, b"HY000", &format!("Unknown thread id: {}", kill.id)).await?);
        };
        let what = if kill.query_only { "QUERY" } else { "CONNECTION" };
        let timeout = self.shared.config.load().connect_timeout;
        let mut killed_any = false;
        for (addr, thread) in target.backends.iter().flatten() {
            let creds = self.login.credentials(addr);
            let stmt = format!("\x03KILL {}{what} {thread}", kill.strength);
            let result = match BackendConn::connect(&creds, timeout).await {
                Ok((mut conn, _)) => conn.run(stmt.as_bytes(), Expect::ResultSets).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(Ok(_)) => killed_any = true,
                // 1094: the thread finished meanwhile; nothing left to kill there.
                Ok(Err(err)) if err.code == 1094 => killed_any = true,
                Ok(Err(err)) => return Ok(self.send_err(err.code, &err.state, &err.message).await?),
                Err(e) => {
                    let msg = format!("rwsplit: cannot reach backend {addr} to run KILL: {e}");
                    return Ok(self.send_err(2013, b"HY000", &msg).await?);
                }
            }
        }
        if !kill.query_only {
            // Closing the proxy session needs the same right as killing its threads: proven by a backend
            // accepting the KILL, or by owning the session.
            if !killed_any && target.user != self.login.user {
                let msg = format!("You are not owner of thread {}", kill.id);
                return Ok(self.send_err(1095, b"HY000", &msg).await?);
            }
            target.cancel.cancel();
        }
        Ok(self.send_ok().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_forms() {
        let k = |strength, query_only, id| Some(Kill { strength, query_only, id });
        assert_eq!(parse_kill("KILL 12"), k("", false, 12));
        assert_eq!(parse_kill("kill query 7;"), k("", true, 7));
        assert_eq!(parse_kill("KILL HARD CONNECTION 3"), k("HARD ", false, 3));
        assert_eq!(parse_kill("KILL SOFT QUERY 3"), k("SOFT ", true, 3));
        assert_eq!(parse_kill("KILL QUERY ID 3"), None);
        assert_eq!(parse_kill("KILL USER app"), None);
        assert_eq!(parse_kill("KILL 3 4"), None);
    }
}
