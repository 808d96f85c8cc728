//! The backend connection pool: idle connections per [`LoginKey`], reset before reuse.
//!
//! A session releases its backend connections when it ends (or a replica stops qualifying, or the writer
//! moves). A connection that only ran plain autocommit reads (no session-state command, no prepared
//! statement, no transaction, no write, no user variable, and no function that is not a built-in, so no
//! stored function could have left locks or variables behind) has nothing to undo and goes straight back.
//! Any other is reset in the background with COM_CHANGE_USER (same login: transactions rolled back,
//! temporary tables, variables, locks and prepared statements dropped, database and character set
//! restored, session tracking turned on again) and only then becomes idle, so taking one is instant.
//! Connections abandoned mid-response, or that fail the reset, are closed instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::{BackendConn, Credentials, LoginKey};

/// Idle backend connections, shared by all sessions.
#[derive(Debug, Default)]
pub struct Pool {
    /// Idle, reset connections by login. A plain mutex: held only to push or pop, never across an await.
    idle: Mutex<HashMap<LoginKey, Vec<BackendConn>>>,
}

impl Pool {
    /// Takes an idle connection for `key`, skipping ones the server has closed meanwhile.
    pub fn take(&self, key: &LoginKey) -> Option<BackendConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(key)?;
        while let Some(mut conn) = conns.pop() {
            if !conn.wire.is_stale() {
                return Some(conn);
            }
        }
        None
    }

    /// Hands a connection back: reset in the background, then kept if fewer than `max_idle` are idle.
    pub fn release(self: &Arc<Self>, mut conn: BackendConn, creds: Credentials, max_idle: usize) {
        if conn.mid_response || max_idle == 0 {
            return;
        }
        if !conn.touched && conn.applied == 0 && conn.stmts.is_empty() && !conn.tracking_stale {
            self.put(conn, max_idle);
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            match conn.reset(&creds).await {
                Ok(()) => pool.put(conn, max_idle),
                Err(e) => {
                    tracing::debug!(backend = %conn.key.addr, error = %e, "reset failed; closing connection")
                }
            }
        });
    }

    fn put(&self, conn: BackendConn, max_idle: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(conn.key.clone()).or_default();
        if conns.len() < max_idle {
            conns.push(conn);
        }
    }

    /// Number of idle connections to `addr` (for tests and admin views).
    pub fn idle_count(&self, addr: &str) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter().filter(|(k, _)| &*k.addr == addr).map(|(_, v)| v.len()).sum()
    }

    /// Closes every idle connection to a backend no longer in the configuration.
    pub fn drop_backend(&self, addr: &str) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|k, _| &*k.addr != addr);
    }
}
