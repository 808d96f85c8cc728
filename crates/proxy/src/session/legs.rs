//! The session's backend legs: at most one connection to the master and one to a replica (the one the last
//! read used), and what each holds that no other connection of the session has and that cannot be rebuilt
//! by replaying the history. Connections to the other replicas the session read from are kept idle as
//! spares (they hold nothing), so a read can move to another replica without a new connection.
//!
//! Losing a leg ([`Legs::lose`]) says what was lost. A leg that held nothing can be replaced by a new
//! connection (the history replays the session's SETs on it); a leg that held an open transaction, table or
//! named locks, temporary tables, text-protocol prepared statements, user variables that could not be
//! replayed, an open cursor or pending long data cannot: the session must fail the way a direct connection
//! would (an error, then the connection closes), never go on as if nothing happened.
//!
//! Leg lifecycle:
//! ```text
//! empty --attach (pool or connect, replay history)--> open --release (healthy, nothing held)--> empty
//! open --lose (died, or closed by the server)--> empty, returning what it held
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use crate::backend::BackendConn;

/// Which backend of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The master.
    Master,
    /// The session's replica.
    Replica,
}

impl Side {
    /// `master` / `replica`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Master => "master",
            Side::Replica => "replica",
        }
    }
}

/// What one backend connection holds that only it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// A transaction is open here (`SERVER_STATUS_IN_TRANS`).
    pub trx: bool,
    /// The open transaction is READ ONLY (`SERVER_STATUS_IN_TRANS_READONLY`).
    pub trx_read_only: bool,
    /// LOCK TABLES is in force (as the server's transaction-state tracking reports it).
    pub table_locks: bool,
    /// `FLUSH TABLES … WITH READ LOCK` / `… FOR EXPORT` is in force: from the statement text (the server
    /// does not report these locks), until UNLOCK TABLES.
    pub flush_locks: bool,
    /// `SET TRANSACTION …` or a next-statement variable (`insert_id`, `rand_seed1`, …) waits for the next
    /// statement here.
    pub next_statement: bool,
    /// `GET_LOCK()` ran here: named locks may be held.
    pub named_locks: bool,
    /// Temporary tables created here (lower-case names).
    pub temp_tables: HashSet<String>,
    /// Stored code may have created temporary tables whose names are unknown: every read that names a table
    /// must stay here.
    pub temp_unknown: bool,
    /// User variables were set here in a way the history cannot replay (`SELECT … INTO @v`, `@v :=`, OUT
    /// parameters, stored code, prepared SET).
    pub user_vars: bool,
    /// Text-protocol prepared statements (`PREPARE name FROM …`), by lower-case name.
    pub prepared: HashSet<String>,
    /// `HANDLER … OPEN` handlers open here (opened minus closed).
    pub handlers: u32,
    /// A binary-protocol cursor is open (COM_STMT_FETCH reads it).
    pub cursor: bool,
    /// COM_STMT_SEND_LONG_DATA was sent and the statement not executed yet.
    pub long_data: bool,
}

impl Held {
    /// Whether losing the connection would lose nothing.
    pub fn is_empty(&self) -> bool {
        *self == Held::default()
    }

    /// Whether table locks taken here are in force (every statement must come here).
    pub fn locks_tables(&self) -> bool {
        self.table_locks || self.flush_locks
    }

    /// Whether state lives here that only a statement naming it needs (temporary tables, user variables):
    /// reads that need it must come here.
    pub fn has_session_objects(&self) -> bool {
        !self.temp_tables.is_empty() || self.temp_unknown || self.user_vars
    }

    /// What is held, in words, for the error a client gets when it is lost.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.trx {
            parts.push("an open transaction".into());
        }
        if self.locks_tables() {
            parts.push("table locks".into());
        }
        if self.next_statement {
            parts.push("settings for the next transaction or statement".into());
        }
        if self.named_locks {
            parts.push("named locks (GET_LOCK)".into());
        }
        if !self.temp_tables.is_empty() || self.temp_unknown {
            parts.push("temporary tables".into());
        }
        if self.user_vars {
            parts.push("user variables".into());
        }
        if !self.prepared.is_empty() {
            parts.push("prepared statements".into());
        }
        if self.handlers > 0 {
            parts.push("open HANDLERs".into());
        }
        if self.cursor {
            parts.push("an open cursor".into());
        }
        if self.long_data {
            parts.push("statement long data".into());
        }
        parts.join(", ")
    }
}

/// One backend leg.
#[derive(Debug, Default)]
pub struct Leg {
    /// The connection, while open.
    pub conn: Option<BackendConn>,
    /// What it holds.
    pub held: Held,
}

/// The backend threads a session uses, as the registry shows them: (address, thread id), master then replica.
pub type Threads = [Option<(Arc<str>, u32)>; 2];

/// What a lost leg took with it.
#[derive(Debug, Clone)]
pub struct Lost {
    /// Which backend it was.
    pub addr: Arc<str>,
    /// What it held (empty: nothing was lost, a new connection can take its place).
    pub held: Held,
}

/// The session's two legs, its spare replica connections, and the backend threads last published to the
/// registry.
#[derive(Debug, Default)]
pub struct Legs {
    /// The master leg.
    master: Leg,
    /// The replica leg.
    replica: Leg,
    /// Idle connections to other replicas, holding nothing (at most one per replica).
    spares: Vec<BackendConn>,
    /// Whether the legs changed since the registry last saw them.
    changed: bool,
}

impl Legs {
    /// The leg on `side`.
    pub fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::Master => &self.master,
            Side::Replica => &self.replica,
        }
    }

    /// The leg on `side`, mutably.
    pub fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::Master => &mut self.master,
            Side::Replica => &mut self.replica,
        }
    }

    /// The open connection on `side`.
    pub fn conn(&self, side: Side) -> Option<&BackendConn> {
        self.leg(side).conn.as_ref()
    }

    /// The open connection on `side`, mutably.
    pub fn conn_mut(&mut self, side: Side) -> Option<&mut BackendConn> {
        self.leg_mut(side).conn.as_mut()
    }

    /// What the leg on `side` holds.
    pub fn held(&self, side: Side) -> &Held {
        &self.leg(side).held
    }

    /// What the leg on `side` holds, mutably.
    pub fn held_mut(&mut self, side: Side) -> &mut Held {
        &mut self.leg_mut(side).held
    }

    /// The side holding the open transaction, if any.
    pub fn trx_side(&self) -> Option<Side> {
        [Side::Master, Side::Replica].into_iter().find(|s| self.held(*s).trx)
    }

    /// Puts a freshly attached connection on `side` (the leg must be empty).
    pub fn put(&mut self, side: Side, conn: BackendConn) {
        let leg = self.leg_mut(side);
        debug_assert!(leg.conn.is_none(), "a leg is attached only when empty");
        leg.conn = Some(conn);
        self.changed = true;
    }

    /// Takes a healthy connection off `side` to give it back to the pool. Only a leg that holds nothing may
    /// be released; otherwise the connection stays (and `None` is returned).
    pub fn release(&mut self, side: Side) -> Option<BackendConn> {
        let leg = self.leg_mut(side);
        if !leg.held.is_empty() {
            return None;
        }
        let conn = leg.conn.take();
        self.changed |= conn.is_some();
        conn
    }

    /// Drops the connection on `side` after it failed or was closed by the server, and says what went with it.
    /// `None` when there was no connection.
    pub fn lose(&mut self, side: Side) -> Option<Lost> {
        let leg = self.leg_mut(side);
        let conn = leg.conn.take()?;
        let held = std::mem::take(&mut leg.held);
        self.changed = true;
        Some(Lost { addr: Arc::clone(&conn.key.addr), held })
    }

    /// Drops every connection (both legs and the spares) and everything they held (the session ends, or
    /// starts over).
    pub fn take_all(&mut self) -> Vec<BackendConn> {
        self.changed = true;
        self.master.held = Held::default();
        self.replica.held = Held::default();
        let mut all: Vec<BackendConn> = self.master.conn.take().into_iter().chain(self.replica.conn.take()).collect();
        all.append(&mut self.spares);
        all
    }

    /// Moves the replica leg's connection to the spares, if it holds nothing. Returns whether the replica
    /// leg is now empty.
    pub fn park_replica(&mut self) -> bool {
        if !self.replica.held.is_empty() {
            return self.replica.conn.is_none();
        }
        if let Some(conn) = self.replica.conn.take() {
            self.spares.push(conn);
            self.changed = true;
        }
        true
    }

    /// Moves the spare connection to `addr` onto the (empty) replica leg. Returns whether there was one.
    pub fn unpark_replica(&mut self, addr: &str) -> bool {
        let Some(i) = self.spares.iter().position(|c| &*c.key.addr == addr) else { return false };
        debug_assert!(self.replica.conn.is_none(), "a spare is unparked onto an empty leg");
        self.replica.conn = Some(self.spares.swap_remove(i));
        self.changed = true;
        true
    }

    /// The session's connection to the replica at `addr`: the replica leg's or a spare.
    pub fn replica_conn_to(&self, addr: &str) -> Option<&BackendConn> {
        self.replica.conn.iter().chain(&self.spares).find(|c| &*c.key.addr == addr)
    }

    /// Takes out the spares `keep` refuses (to replicas that left the topology or stopped serving reads).
    pub fn drain_spares(&mut self, mut keep: impl FnMut(&BackendConn) -> bool) -> Vec<BackendConn> {
        let (kept, gone): (Vec<BackendConn>, Vec<BackendConn>) = self.spares.drain(..).partition(|c| keep(c));
        self.spares = kept;
        gone
    }

    /// The backend threads to publish to the registry, if they changed since the last call.
    pub fn threads_if_changed(&mut self) -> Option<Threads> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let thread = |leg: &Leg| leg.conn.as_ref().map(|c| (Arc::clone(&c.key.addr), c.thread_id));
        Some([thread(&self.master), thread(&self.replica)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_describes_what_would_be_lost() {
        assert!(Held::default().is_empty());
        let h = Held { trx: true, temp_tables: ["t".to_string()].into(), ..Held::default() };
        assert!(!h.is_empty() && h.has_session_objects());
        assert_eq!(h.describe(), "an open transaction, temporary tables");
        let locks = Held { table_locks: true, named_locks: true, ..Held::default() };
        assert!(!locks.has_session_objects());
        assert_eq!(locks.describe(), "table locks, named locks (GET_LOCK)");
    }
}
