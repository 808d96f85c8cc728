//! The session registry: every live client session by the connection id rwsplit announced, with the
//! backend threads it uses. KILL looks sessions up here, the admin interface lists them, and the metrics
//! and admin views count backend connections in use from it.
//!
//! Connection ids are handed out from 2^30 up, a range MariaDB and MySQL thread ids do not reach in practice,
//! so an id from `SHOW PROCESSLIST` (a backend thread) is never mistaken for a session of this proxy: KILL of
//! such an id answers "Unknown thread id" instead of hitting an unrelated session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// The first connection id handed out.
pub const FIRST_CONNECTION_ID: u32 = 1 << 30;

/// What KILL and the admin interface need to know about a session.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// The account it is logged in as.
    pub user: String,
    /// The client's address.
    pub peer: String,
    /// When the session started.
    pub started: std::time::SystemTime,
    /// Backend threads it currently uses: (backend address, server thread id), master then replica.
    pub backends: [Option<(Arc<str>, u32)>; 2],
    /// Cancelling it closes the session (KILL CONNECTION).
    pub cancel: CancellationToken,
}

/// Live sessions. Locked when a session starts, ends or changes backend connections, never per query.
#[derive(Debug)]
pub struct Registry {
    /// Next connection id to hand out.
    next_id: AtomicU32,
    /// Sessions by connection id.
    sessions: Mutex<HashMap<u32, SessionEntry>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { next_id: AtomicU32::new(FIRST_CONNECTION_ID), sessions: Mutex::new(HashMap::new()) }
    }
}

impl Registry {
    /// A connection id for a new client (never 0, never below [`FIRST_CONNECTION_ID`]).
    pub fn next_connection_id(&self) -> u32 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id < FIRST_CONNECTION_ID {
            // Wrapped after 3 billion sessions: start the range over.
            self.next_id.store(FIRST_CONNECTION_ID + 1, Ordering::Relaxed);
            return FIRST_CONNECTION_ID;
        }
        id
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers or updates a session.
    pub fn publish(&self, id: u32, entry: SessionEntry) {
        self.lock().insert(id, entry);
    }

    /// Updates the backend threads of a registered session.
    pub fn publish_backends(&self, id: u32, backends: [Option<(Arc<str>, u32)>; 2]) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.backends = backends;
        }
    }

    /// Updates the account of a registered session (COM_CHANGE_USER).
    pub fn publish_user(&self, id: u32, user: &str) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.user = user.to_string();
        }
    }

    /// Forgets a session that ended.
    pub fn forget(&self, id: u32) {
        self.lock().remove(&id);
    }

    /// A session by connection id.
    pub fn get(&self, id: u32) -> Option<SessionEntry> {
        self.lock().get(&id).cloned()
    }

    /// Every live session, by connection id.
    pub fn list(&self) -> Vec<(u32, SessionEntry)> {
        let mut v: Vec<(u32, SessionEntry)> = self.lock().iter().map(|(k, e)| (*k, e.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Backend connections sessions hold to `addr` right now.
    pub fn in_use_count(&self, addr: &str) -> usize {
        self.lock().values().flat_map(|e| e.backends.iter().flatten()).filter(|(a, _)| &**a == addr).count()
    }

    /// Number of live client sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_high_and_wrap_back_into_the_range() {
        let r = Registry::default();
        assert_eq!(r.next_connection_id(), FIRST_CONNECTION_ID);
        assert_eq!(r.next_connection_id(), FIRST_CONNECTION_ID + 1);
        r.next_id.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(r.next_connection_id(), u32::MAX);
        assert_eq!(r.next_connection_id(), FIRST_CONNECTION_ID);
        assert_eq!(r.next_connection_id(), FIRST_CONNECTION_ID + 1);
    }
}
