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
//!
//! Bounds (`pool:` in the config): `max_idle` idle connections per login and `max_idle_total` in all (the
//! oldest idle one makes room); an idle connection unused for `idle_timeout`, or any connection older than
//! `max_lifetime`, is closed (checked when connections are taken or put back, and every second across
//! the whole pool). `max_backend_connections` caps the open connections (in use and idle) to each
//! backend: a session that needs one more first closes an idle one of another login to that backend, else
//! waits up to `connect_timeout` for one to be released, then gets error 1040 naming the backend, instead
//! of running the server into its own `max_connections`. A connection released while sessions of the same
//! login wait for that backend is handed to one of them (kept idle and the waiter woken), not closed.
//!
//! With a cap, sessions also give back legs that hold nothing between commands (see
//! `Session::multiplex`): idle clients then hold no backend connection, and the idle limit per login is at
//! least the cap, so connections taken and given back per statement are reused rather than reopened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::backend::{BackendConn, Credentials, LoginKey};
use crate::config::Pool as Limits;

/// How often, at most, the whole pool is swept for expired idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Idle backend connections of one event loop (`workers`: a connection stays on the loop whose reactor it
/// is registered with), and the per-backend connection caps, which every loop's pool shares.
#[derive(Debug, Default)]
pub struct Pool {
    /// A plain mutex: held only to push, pop or sweep, never across an await.
    state: Mutex<State>,
    /// `max_backend_connections` per backend, for the whole process (see [`Pool::sharing_caps`]).
    caps: Arc<Mutex<HashMap<Arc<str>, Cap>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Idle, reset connections by login, each with when it became idle (oldest first).
    idle: HashMap<LoginKey, Vec<(BackendConn, Instant)>>,
    /// Idle connections in all.
    idle_total: usize,
    /// When the pool was last swept.
    swept: Option<Instant>,
    /// Sessions of this loop waiting under a cap, by login: woken when a connection of theirs becomes idle.
    waiters: HashMap<LoginKey, (Arc<Notify>, usize)>,
}

/// Per backend with `max_backend_connections`: the open-connection permits, the cap they were made for, and
/// how many sessions wait for one (a connection released meanwhile is closed for them, not pooled, unless a
/// session of its own login and loop waits).
#[derive(Debug)]
struct Cap {
    permits: Arc<Semaphore>,
    size: usize,
    waiting: usize,
}

impl State {
    /// Closes idle connections past `idle_timeout` or `max_lifetime` (all of them at most once a second).
    fn sweep(&mut self, limits: &Limits, now: Instant) {
        if self.swept.is_some_and(|at| now.duration_since(at) < SWEEP_EVERY) {
            return;
        }
        self.swept = Some(now);
        let fresh = |(conn, since): &(BackendConn, Instant)| {
            now.duration_since(*since) < limits.idle_timeout && now.duration_since(conn.created) < limits.max_lifetime
        };
        for conns in self.idle.values_mut() {
            conns.retain(fresh);
        }
        self.idle.retain(|_, conns| !conns.is_empty());
        self.idle_total = self.idle.values().map(Vec::len).sum();
    }

    /// Closes the connection that has been idle longest (for `addr` only, if given); false if none is.
    fn close_oldest(&mut self, addr: Option<&str>) -> bool {
        let oldest = self
            .idle
            .iter()
            .filter(|(k, conns)| addr.is_none_or(|a| &*k.addr == a) && !conns.is_empty())
            .min_by_key(|(_, conns)| conns[0].1)
            .map(|(k, _)| k.clone());
        let Some(key) = oldest else { return false };
        if let Some(conns) = self.idle.get_mut(&key) {
            conns.remove(0);
            if conns.is_empty() {
                self.idle.remove(&key);
            }
        }
        self.idle_total = self.idle_total.saturating_sub(1);
        true
    }
}

/// What a session waiting under `max_backend_connections` got.
#[derive(Debug)]
pub enum Got {
    /// A place to open a new connection (None: the backend has no cap).
    Permit(Option<OwnedSemaphorePermit>),
    /// An idle connection of its login, released by another session while it waited.
    Conn(Box<BackendConn>),
}

/// Why no connection could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    /// The backend.
    pub addr: Arc<str>,
    /// Its cap.
    pub cap: usize,
    /// How long the session waited.
    pub waited: Duration,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backend {} has max_backend_connections ({}) connections open; none was released within {:?}",
            self.addr, self.cap, self.waited
        )
    }
}

impl Pool {
    /// Another loop's pool, under the same caps as this one.
    pub fn sharing_caps(&self) -> Pool {
        Pool { state: Mutex::default(), caps: Arc::clone(&self.caps) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_caps(&self) -> MutexGuard<'_, HashMap<Arc<str>, Cap>> {
        self.caps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an idle connection for `key`, skipping ones the server has closed meanwhile and expired ones.
    pub fn take(&self, key: &LoginKey, limits: &Limits) -> Option<BackendConn> {
        let now = Instant::now();
        let mut state = self.lock();
        state.sweep(limits, now);
        let conns = state.idle.get_mut(key)?;
        let mut found = None;
        while let Some((mut conn, since)) = conns.pop() {
            let expired = now.duration_since(since) >= limits.idle_timeout
                || now.duration_since(conn.created) >= limits.max_lifetime;
            if !expired && !conn.wire.is_stale() {
                found = Some(conn);
                break;
            }
        }
        state.idle_total = state.idle.values().map(Vec::len).sum();
        found
    }

    /// A way to a connection for `key` under `max_backend_connections`: a permit to open one more (None
    /// without a cap), or, after waiting, an idle connection of the same login another session released.
    /// Closes an idle connection of another login to the backend if that makes room; waits up to `wait`.
    pub async fn permit_or_conn(&self, key: &LoginKey, limits: &Limits, wait: Duration) -> Result<Got, Full> {
        let cap = limits.max_backend_connections;
        let addr = &key.addr;
        if cap == 0 {
            return Ok(Got::Permit(None));
        }
        let fresh = || Cap { permits: Arc::new(Semaphore::new(cap)), size: cap, waiting: 0 };
        let semaphore = {
            let mut caps = self.lock_caps();
            let entry = caps.entry(Arc::clone(addr)).or_insert_with(fresh);
            if entry.size != cap {
                // The cap changed on reload: connections open under the old one keep their old permits.
                *entry = fresh();
            }
            let semaphore = Arc::clone(&entry.permits);
            if let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() {
                return Ok(Got::Permit(Some(permit)));
            }
            entry.waiting += 1;
            semaphore
        };
        let notify = {
            let mut state = self.lock();
            let waiter = state.waiters.entry(key.clone()).or_insert_with(|| (Arc::new(Notify::new()), 0));
            waiter.1 += 1;
            let notify = Arc::clone(&waiter.0);
            state.close_oldest(Some(addr));
            notify
        };
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + wait;
        let got = loop {
            tokio::select! {
                permit = Arc::clone(&semaphore).acquire_owned() => break permit.ok().map(|p| Got::Permit(Some(p))),
                _ = notify.notified() => {
                    if let Some(conn) = self.take(key, limits) {
                        break Some(Got::Conn(Box::new(conn)));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        if let Some(entry) = self.lock_caps().get_mut(addr) {
            entry.waiting = entry.waiting.saturating_sub(1);
        }
        {
            let mut state = self.lock();
            if let Some(waiter) = state.waiters.get_mut(key) {
                waiter.1 = waiter.1.saturating_sub(1);
                if waiter.1 == 0 {
                    state.waiters.remove(key);
                }
            }
        }
        got.ok_or_else(|| Full { addr: Arc::clone(addr), cap, waited: started.elapsed() })
    }

    /// Hands a connection back: reset in the background (unless it has nothing to undo), then kept within
    /// the limits; closed if it is mid-response or past `max_lifetime`.
    pub fn release(self: &Arc<Self>, mut conn: BackendConn, creds: Credentials, limits: &Limits) {
        if conn.mid_response || limits.max_idle == 0 || conn.created.elapsed() >= limits.max_lifetime {
            return;
        }
        let limits = limits.clone();
        if conn.is_clean() {
            self.put(conn, &limits);
            return;
        }
        // Diagnostics of a last statement are dropped by the reset too.
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            match conn.reset(&creds).await {
                Ok(()) => pool.put(conn, &limits),
                Err(e) => {
                    tracing::debug!(backend = %conn.key.addr, error = %e, "reset failed; closing connection")
                }
            }
        });
    }

    fn put(&self, conn: BackendConn, limits: &Limits) {
        let now = Instant::now();
        let mut state = self.lock();
        state.sweep(limits, now);
        // A session of this login waits for a connection to this backend: this one is for it.
        if let Some((notify, _)) = state.waiters.get(&conn.key) {
            let notify = Arc::clone(notify);
            state.idle.entry(conn.key.clone()).or_default().push((conn, now));
            state.idle_total += 1;
            notify.notify_one();
            return;
        }
        // Under a cap, connections given back per statement are kept up to the cap (see the module doc).
        let max_idle = limits.max_idle.max(limits.max_backend_connections);
        if state.idle.get(&conn.key).is_some_and(|c| c.len() >= max_idle) {
            return;
        }
        // A session of another login (or loop) waits for a place on this backend: closing this connection
        // gives it one.
        if self.lock_caps().get(&conn.key.addr).is_some_and(|c| c.waiting > 0) {
            return;
        }
        if state.idle_total >= limits.max_idle_total && !state.close_oldest(None) {
            return;
        }
        state.idle.entry(conn.key.clone()).or_default().push((conn, now));
        state.idle_total += 1;
    }

    /// Closes expired idle connections now (a background task calls this every second, so an idle pool
    /// shrinks without traffic).
    pub fn sweep(&self, limits: &Limits) {
        let mut state = self.lock();
        state.swept = None;
        state.sweep(limits, Instant::now());
    }

    /// Number of idle connections to `addr` (for tests and admin views).
    pub fn idle_count(&self, addr: &str) -> usize {
        let state = self.lock();
        state.idle.iter().filter(|(k, _)| &*k.addr == addr).map(|(_, v)| v.len()).sum()
    }

    /// Closes every idle connection to a backend no longer in the configuration.
    pub fn drop_backend(&self, addr: &str) {
        let mut state = self.lock();
        state.idle.retain(|k, _| &*k.addr != addr);
        state.idle_total = state.idle.values().map(Vec::len).sum();
        drop(state);
        self.lock_caps().remove(addr);
    }
}
