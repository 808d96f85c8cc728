//! KILL through the proxy. Clients kill by the connection id rwsplit announced, which is also what
//! `CONNECTION_ID()` returns through rwsplit (the `mariadb` client sends `KILL QUERY <id>` on Ctrl-C,
//! watchdogs and drivers take the id from `SELECT CONNECTION_ID()`). That id means nothing to the backends:
//! sent as is, it would kill whatever unrelated thread has that id on the master. rwsplit translates it to
//! the target session's backend threads and runs the KILL on each backend with the requesting client's
//! credentials, so the servers still decide whether the requester may kill them.
//!
//! KILL is recognised by its tokens (leading comments, executable comments), not by a byte prefix. Inside a
//! multi-statement, in a prepared statement or with a form that names something other than a connection
//! id (`KILL QUERY ID`, `KILL USER`, an expression) it is refused with an error, never passed on.
//! Backend thread ids, as `SHOW PROCESSLIST` shows them, are not rwsplit connection ids (those start at
//! 2^30) and get "Unknown thread id".

use rwsplit_classify::{parse_kill, KillTarget};
use rwsplit_wire::walk::Expect;

use super::Session;
use crate::backend::{BackendConn, Connected};
use crate::error::SessionError;

impl Session {
    /// Runs a KILL statement for a connection id rwsplit announced.
    pub(super) async fn kill(&mut self, sql: &[u8], statements: usize) -> Result<(), SessionError> {
        const FORMS: &str =
            "rwsplit supports KILL [HARD|SOFT] [CONNECTION|QUERY] <connection id>, as a statement of its own";
        let kill = match parse_kill(sql, self.dialect) {
            Some(Ok(kill)) if statements == 1 => kill,
            _ => return Ok(self.send_err(1235, b"42000", FORMS).await?),
        };
        let (id, query_only) = match kill.target {
            KillTarget::Connection(id) => (id, false),
            KillTarget::Query(id) => (id, true),
        };
        let unknown = || format!("Unknown thread id: {id}");
        let Ok(id32) = u32::try_from(id) else {
            return Ok(self.send_err(1094, b"HY000", &unknown()).await?);
        };
        if id32 == self.id {
            // Killing itself, as a server answers it: the statement is interrupted, or the connection goes.
            if query_only {
                return Ok(self.send_err(1317, b"70100", "Query execution was interrupted").await?);
            }
            self.close_after = true;
            return Ok(self.send_err(1927, b"70100", "Connection was killed").await?);
        }
        let Some(target) = self.shared.registry.get(id32) else {
            return Ok(self.send_err(1094, b"HY000", &unknown()).await?);
        };
        let what = if query_only { "QUERY" } else { "CONNECTION" };
        let strength = kill.strength.map(|s| format!("{s} ")).unwrap_or_default();
        let config = self.shared.config.load_full();
        let mut killed_any = false;
        for (addr, thread) in target.backends.iter().flatten() {
            let creds = self.login.credentials(addr, &config);
            let stmt = format!("\x03KILL {strength}{what} {thread}");
            let result = match BackendConn::connect(&creds, config.connect_timeout).await {
                Ok(Connected { mut conn, .. }) => conn.run(stmt.as_bytes(), Expect::ResultSets).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(Ok(_)) => killed_any = true,
                // 1094: the thread is gone meanwhile; nothing left to kill there (and no proof of the right to).
                Ok(Err(err)) if err.code == 1094 => {}
                Ok(Err(err)) => return Ok(self.send_err(err.code, &err.state, &err.message).await?),
                Err(e) => {
                    let msg = format!("rwsplit: cannot reach backend {addr} to run KILL: {e}");
                    let (code, state) = crate::error::code::UNAVAILABLE;
                    return Ok(self.send_err(code, state, &msg).await?);
                }
            }
        }
        if !query_only {
            // Closing the proxy session needs the same right as killing its threads: proven by a backend
            // accepting the KILL, or by owning the session.
            if !killed_any && target.user != self.login.user {
                return Ok(self.send_err(1095, b"HY000", &format!("You are not owner of thread {id}")).await?);
            }
            target.cancel.cancel();
        }
        Ok(self.send_ok().await?)
    }
}
