//! Prepared statements (binary protocol). The proxy hands out its own statement ids, classifies each
//! statement once at PREPARE, and prepares it lazily on whichever backend executes it, mapping ids per
//! backend connection.
//!
//! - PREPARE runs where the statement would be routed now; the prepare-OK goes to the client with the
//!   proxy's id. `CONNECTION_ID()` in the text is rewritten as in COM_QUERY. KILL cannot be prepared
//!   through rwsplit (error 1295): its connection id must be translated, and a prepared one would not be.
//! - EXECUTE is routed like the statement's text (a read outside a transaction goes to the replica), and its
//!   effects are applied like a query's: a `SET time_zone = ?` is replayed from the value the server
//!   reports, a `SET @v = ?` keeps reads of `@v` where it ran. If the client omits parameter types ("new
//!   params bound" = 0) and the chosen backend has not seen them, the proxy inserts the types from the last
//!   execute that sent them.
//! - SEND_LONG_DATA has no response: it goes to the master, and nothing is ever written to the client for
//!   it; a failure is remembered and returned as the next EXECUTE's error, as a server would.
//! - FETCH goes to the backend holding the statement's cursor; RESET to every backend that has the statement
//!   (the proxy answers it itself when none has it yet); CLOSE to every backend that has it.

use bytes::{Bytes, BytesMut};
use rwsplit_classify::{classify_cached, Reason, Verdict};
use rwsplit_wire::packet::{self, com, ErrPacket, PrepareOk};
use rwsplit_wire::walk::Expect;
use rwsplit_wire::StatusFlags;

use super::attach::{err, unavailable, Attach};
use super::consistency::ReadNeed;
use super::forward::{Command, RunOptions};
use super::legs::Side;
use super::route::{self, Decision, Route, RouteReason};
use super::Session;
use crate::error::{BackendError, SessionError};

/// A statement prepared by the client.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The COM_STMT_PREPARE packet (text rewritten), to prepare the statement on another backend.
    pub(super) prepare: Bytes,
    /// Classification of its text, done once.
    verdict: std::sync::Arc<Verdict>,
    /// Number of `?` parameters.
    params: u16,
    /// Parameter types (2 bytes each) from the last execute that sent them.
    types: Option<Bytes>,
    /// SEND_LONG_DATA went to the master since the last execute.
    pub long_data: bool,
    /// A SEND_LONG_DATA failed: the next execute answers with this.
    long_data_error: Option<ErrPacket>,
    /// Backend of the last execute.
    last: Option<Side>,
    /// Backend holding this statement's open cursor.
    cursor: Option<Side>,
}

const UNKNOWN_STMT: u16 = 1243;

/// Most prepared statements one session may hold: MariaDB's default `max_prepared_stmt_count` (a limit for
/// the whole server, so a direct connection cannot hold more either). Past it PREPARE gets error 1461, as
/// from the server, and the proxy keeps no more prepare packets for that session.
pub const MAX_STATEMENTS: usize = 16_382;

fn stmt_id(payload: &[u8]) -> Option<u32> {
    packet::u32_at(payload, 1)
}

/// Why a statement's packet for a backend could not be made.
enum PayloadError {
    /// The server refused (e.g. the lazy prepare failed), or the packet was malformed: this error.
    Refused(ErrPacket),
    /// The backend failed.
    Backend(BackendError),
}

impl Session {
    async fn unknown_stmt(&mut self, what: &str) -> Result<(), SessionError> {
        let msg = format!("Unknown prepared statement handler given to {what}");
        Ok(self.send_err(UNKNOWN_STMT, b"HY000", &msg).await?)
    }

    pub(super) async fn com_stmt_prepare(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let payload = match super::rewrite::rewrite(&payload[1..], self.dialect, self.id) {
            Some(text) => Bytes::from([&[com::STMT_PREPARE][..], &text].concat()),
            None => payload,
        };
        let verdict = classify_cached(&payload[1..], self.dialect);
        if self.stmts.len() >= MAX_STATEMENTS {
            let msg = format!(
                "Can't create more than max_prepared_stmt_count statements (current value: {MAX_STATEMENTS}) \
                 (rwsplit: per session)"
            );
            return Ok(self.send_err(1461, b"42000", &msg).await?);
        }
        if verdict.reason == Reason::Kill {
            let msg = "This command is not supported in the prepared statement protocol yet (rwsplit translates \
                       KILL's connection id only in a plain query)";
            return Ok(self.send_err(1295, b"HY000", msg).await?);
        }
        let route = match route::route(&self.state, &self.legs, &verdict) {
            Decision::Run(route) => route,
            // Prepared where the transaction is; executing a write there gets the server's own error.
            Decision::EndReplicaTransaction | Decision::ReadOnlyTransactionWrite => {
                Route::to(Side::Replica, RouteReason::Transaction)
            }
        };
        let id = self.next_stmt_id;
        let command = Command::Prepare { payload: payload.clone(), id };
        let Some(outcome) = self.run_command(route, RunOptions::new(Expect::Prepare), command).await? else {
            return Ok(());
        };
        if let Some(ok) = outcome.prepared {
            self.next_stmt_id = self.next_stmt_id.wrapping_add(1).max(1);
            if let Some(conn) = self.legs.conn_mut(outcome.side) {
                conn.stmts.insert(id, ok.stmt_id);
            }
            let stmt = Stmt {
                prepare: payload,
                verdict,
                params: ok.params,
                types: None,
                long_data: false,
                long_data_error: None,
                last: None,
                cursor: None,
            };
            self.stmts.insert(id, stmt);
        }
        Ok(())
    }

    pub(super) async fn com_stmt_execute(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some((id, stmt)) = stmt_id(&payload).and_then(|id| self.stmts.get_mut(&id).map(|s| (id, s))) else {
            return self.unknown_stmt("mysqld_stmt_execute").await;
        };
        if let Some(e) = stmt.long_data_error.take() {
            stmt.long_data = false;
            self.legs.held_mut(Side::Master).long_data = false;
            return Ok(self.send_err(e.code, &e.state, &e.message).await?);
        }
        let verdict = std::sync::Arc::clone(&stmt.verdict);
        let route = if stmt.long_data {
            Route::to(Side::Master, RouteReason::LongData)
        } else {
            let Some(route) = self.decide(&verdict).await? else { return Ok(()) };
            route
        };
        let command = Command::Stmt { id, payload };
        let run = RunOptions {
            hold_final_ok: super::command::changes_trackers(&verdict),
            ..RunOptions::new(Expect::ResultSets)
        };
        let Some(mut outcome) = self.run_command(route, run, command).await? else {
            return Ok(());
        };
        self.settle_status(&mut outcome, &verdict).await?;
        let cursor = !outcome.error
            && outcome.report.status.is_some_and(|s| s.contains(StatusFlags::SERVER_STATUS_CURSOR_EXISTS));
        if let Some(s) = self.stmts.get_mut(&id) {
            s.long_data = false;
            s.last = Some(outcome.side);
            s.cursor = cursor.then_some(outcome.side);
        }
        self.legs.held_mut(Side::Master).long_data = self.stmts.values().any(|s| s.long_data);
        self.note_cursors();
        self.apply(&outcome, Some(&verdict), None);
        self.after_trackers(&outcome, &verdict).await
    }

    /// Marks the legs holding open cursors.
    fn note_cursors(&mut self) {
        for side in [Side::Master, Side::Replica] {
            self.legs.held_mut(side).cursor = self.stmts.values().any(|s| s.cursor == Some(side));
        }
    }

    pub(super) async fn com_stmt_fetch(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload).filter(|id| self.stmts.contains_key(id)) else {
            return self.unknown_stmt("mysqld_stmt_fetch").await;
        };
        let stmt = self.stmts.get(&id);
        let side = stmt.and_then(|s| s.cursor.or(s.last)).unwrap_or(Side::Master);
        let route = Route::to(side, RouteReason::Cursor);
        let command = Command::Stmt { id, payload };
        let Some(outcome) = self.run_command(route, RunOptions::new(Expect::Rows), command).await? else {
            return Ok(());
        };
        let done = outcome.error
            || outcome.report.status.is_some_and(|s| s.contains(StatusFlags::SERVER_STATUS_LAST_ROW_SENT));
        if done {
            if let Some(s) = self.stmts.get_mut(&id) {
                s.cursor = None;
            }
            self.note_cursors();
        }
        self.apply(&outcome, None, None);
        Ok(())
    }

    /// COM_STMT_RESET: on every backend that has the statement (one of them answers the client; the proxy
    /// answers itself when none has it yet: there is nothing to reset).
    pub(super) async fn com_stmt_reset(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload).filter(|id| self.stmts.contains_key(id)) else {
            return self.unknown_stmt("mysqld_stmt_reset").await;
        };
        if let Some(s) = self.stmts.get_mut(&id) {
            s.long_data = false;
            s.long_data_error = None;
            s.cursor = None;
        }
        self.legs.held_mut(Side::Master).long_data = self.stmts.values().any(|s| s.long_data);
        self.note_cursors();
        let has = |s: &Self, side: Side| s.legs.conn(side).is_some_and(|c| c.stmts.contains_key(&id));
        let preferred = self.stmts.get(&id).and_then(|s| s.last).filter(|side| has(self, *side));
        let answering = preferred.or_else(|| [Side::Master, Side::Replica].into_iter().find(|side| has(self, *side)));
        let Some(answering) = answering else {
            return Ok(self.send_ok().await?);
        };
        let others: Vec<Side> =
            [Side::Master, Side::Replica].into_iter().filter(|s| *s != answering && has(self, *s)).collect();
        for other in others {
            let Ok(p) = mapped(&payload, id, other, self) else { continue };
            if let Some(conn) = self.legs.conn_mut(other) {
                if let Err(e) = conn.run(&p, Expect::Single).await {
                    tracing::debug!(error = %e, "backend failed while resetting a statement");
                    self.lose_quietly(other)?;
                }
            }
        }
        let route = Route::to(answering, RouteReason::Statement);
        self.run_command(route, RunOptions::new(Expect::Single), Command::Stmt { id, payload }).await.map(|_| ())
    }

    /// COM_STMT_SEND_LONG_DATA has no response: nothing is written to the client; a failure is returned by
    /// the next execute of the statement.
    pub(super) async fn com_stmt_send_long_data(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload).filter(|id| self.stmts.contains_key(id)) else {
            return Ok(());
        };
        let failure = match self.attach_side(Side::Master, &ReadNeed::default()).await {
            Attach::Ready(_) => match self.stmt_payload(Side::Master, id, &payload).await {
                Ok(p) => match self.legs.conn_mut(Side::Master) {
                    Some(conn) => match conn.send_no_response(&p).await {
                        Ok(()) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "master failed while receiving long data");
                            self.lose_quietly(Side::Master)?;
                            Some(unavailable(format!("rwsplit: the master failed while receiving long data: {e}")))
                        }
                    },
                    None => None,
                },
                Err(PayloadError::Refused(e)) => Some(e),
                Err(PayloadError::Backend(e)) => {
                    self.lose_quietly(Side::Master)?;
                    Some(unavailable(format!("rwsplit: the master failed while receiving long data: {e}")))
                }
            },
            Attach::Refused(e) => Some(e),
            Attach::Lost(lost) => {
                // No answer is expected: as with a direct connection, the client finds it closed.
                return Err(SessionError::Backend { addr: lost.addr.to_string(), source: lost.error });
            }
        };
        if let Some(s) = self.stmts.get_mut(&id) {
            s.long_data = true;
            if failure.is_some() {
                s.long_data_error = failure;
            }
        }
        self.legs.held_mut(Side::Master).long_data = true;
        Ok(())
    }

    /// Drops a failed connection where no answer is due: if it held state, the session ends.
    fn lose_quietly(&mut self, side: Side) -> Result<(), SessionError> {
        let addr = self.legs.conn(side).map(|c| c.key.addr.to_string()).unwrap_or_default();
        let held = self.lose(side);
        if held.is_empty() {
            Ok(())
        } else {
            Err(SessionError::Backend { addr, source: BackendError::Closed(None) })
        }
    }

    /// COM_STMT_CLOSE has no response: close the statement on every backend that has it.
    pub(super) async fn com_stmt_close(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload) else {
            return Ok(());
        };
        self.stmts.remove(&id);
        self.note_cursors();
        self.legs.held_mut(Side::Master).long_data = self.stmts.values().any(|s| s.long_data);
        for side in [Side::Master, Side::Replica] {
            let Some(conn) = self.legs.conn_mut(side) else {
                continue;
            };
            if let Some(backend_id) = conn.stmts.remove(&id) {
                conn.types_sent.remove(&id);
                let mut p = vec![com::STMT_CLOSE];
                p.extend_from_slice(&backend_id.to_le_bytes());
                if conn.send_no_response(&p).await.is_err() {
                    self.lose_quietly(side)?;
                }
            }
        }
        Ok(())
    }

    /// The payload to send for `command` on `side`: as is, or (for a statement command) mapped to the
    /// backend's statement id, preparing it there first. `None` when the client was sent an error;
    /// `Some(Err)` when the backend failed while the statement was prepared on it.
    pub(super) async fn payload_for(
        &mut self,
        side: Side,
        command: &Command,
    ) -> Result<Option<Result<(Bytes, Option<u32>), BackendError>>, SessionError> {
        match command {
            Command::Plain(p) => Ok(Some(Ok((p.clone(), None)))),
            Command::Prepare { payload, id } => Ok(Some(Ok((payload.clone(), Some(*id))))),
            Command::Stmt { id, payload } => match self.stmt_payload(side, *id, payload).await {
                Ok(p) => Ok(Some(Ok((p, None)))),
                Err(PayloadError::Refused(e)) => {
                    self.send_err(e.code, &e.state, &e.message).await?;
                    Ok(None)
                }
                Err(PayloadError::Backend(e)) => Ok(Some(Err(e))),
            },
        }
    }

    /// The packet for statement `id` on the connection of `side`: prepares the statement there if needed,
    /// maps the id, and adds parameter types the connection has not seen.
    async fn stmt_payload(&mut self, side: Side, id: u32, payload: &Bytes) -> Result<Bytes, PayloadError> {
        let unknown = || PayloadError::Refused(err(UNKNOWN_STMT, "Unknown prepared statement handler".into()));
        let stmt = self.stmts.get(&id).cloned().ok_or_else(unknown)?;
        let conn = self.legs.conn_mut(side).ok_or_else(unknown)?;
        let backend_id = match conn.stmts.get(&id) {
            Some(b) => *b,
            None => match conn.run(&stmt.prepare, Expect::Prepare).await {
                Ok(Ok(first)) => {
                    let ok = PrepareOk::parse(first.payload())
                        .ok_or(PayloadError::Backend(BackendError::Protocol("malformed prepare response")))?;
                    conn.stmts.insert(id, ok.stmt_id);
                    ok.stmt_id
                }
                Ok(Err(e)) => return Err(PayloadError::Refused(e)),
                Err(e) => return Err(PayloadError::Backend(e)),
            },
        };
        let mut p = BytesMut::from(&payload[..]);
        if p.len() < 5 {
            return Ok(p.freeze());
        }
        p[1..5].copy_from_slice(&backend_id.to_le_bytes());
        if payload.first() != Some(&com::STMT_EXECUTE) || stmt.params == 0 {
            return Ok(p.freeze());
        }
        let seen = conn.types_sent.get(&id);
        let (out, types) =
            with_param_types(&p, stmt.params, stmt.types.as_ref(), seen).map_err(PayloadError::Refused)?;
        if let Some(types) = types {
            conn.types_sent.insert(id, types.clone());
            if let Some(s) = self.stmts.get_mut(&id) {
                s.types = Some(types);
            }
        }
        Ok(out)
    }
}

/// `payload` (a statement command for proxy statement `id`) with the statement id of `side`'s backend.
fn mapped(payload: &[u8], id: u32, side: Side, session: &Session) -> Result<Vec<u8>, ()> {
    let backend_id = session.legs.conn(side).and_then(|c| c.stmts.get(&id)).ok_or(())?;
    let mut p = payload.to_vec();
    p.get_mut(1..5).ok_or(())?.copy_from_slice(&backend_id.to_le_bytes());
    Ok(p)
}

/// For an execute packet: returns the packet to send (with parameter types inserted if the client omitted
/// them and the backend last saw other types, or none) and the types it carries, if any. `seen`: the types
/// the backend last got for this statement. Public for the fuzz target.
pub fn with_param_types(
    p: &[u8],
    params: u16,
    known: Option<&Bytes>,
    seen: Option<&Bytes>,
) -> Result<(Bytes, Option<Bytes>), ErrPacket> {
    let bad =
        || ErrPacket { code: 1210, state: *b"HY000", message: "Incorrect arguments to mysqld_stmt_execute".into() };
    let flag_pos = 10 + usize::from(params).div_ceil(8);
    let bound = *p.get(flag_pos).ok_or_else(bad)?;
    let types_len = 2 * usize::from(params);
    if bound == 1 {
        let types = p.get(flag_pos + 1..flag_pos + 1 + types_len).ok_or_else(bad)?;
        return Ok((Bytes::copy_from_slice(p), Some(Bytes::copy_from_slice(types))));
    }
    match known {
        Some(types) if seen != Some(types) => {
            let mut out = BytesMut::with_capacity(p.len() + 1 + types.len());
            out.extend_from_slice(&p[..flag_pos]);
            out.extend_from_slice(&[1]);
            out.extend_from_slice(types);
            out.extend_from_slice(&p[flag_pos + 1..]);
            Ok((out.freeze(), Some(types.clone())))
        }
        _ => Ok((Bytes::copy_from_slice(p), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_types_are_inserted_when_the_backend_saw_others() {
        // stmt id 7, flags 0, iterations 1, null bitmap (1 byte for 2 params), bound=1, types, values
        let with = [0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        let (out, types) = with_param_types(&with, 2, None, None).unwrap();
        assert_eq!(&out[..], &with[..]);
        assert_eq!(types.as_deref(), Some(&[3, 0, 8, 0][..]));
        let without = [0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 9, 0, 0, 0];
        let long = Bytes::from_static(&[3, 0]);
        let (out, _) = with_param_types(&without, 1, Some(&long), None).unwrap();
        assert_eq!(&out[..], &[0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 9, 0, 0, 0]);
        let (out, types) = with_param_types(&without, 1, Some(&long), Some(&long)).unwrap();
        assert_eq!((&out[..], types), (&without[..], None));
        // The backend last saw a tiny int: the client's latest types (a long) go with this execute.
        let tiny = Bytes::from_static(&[1, 0]);
        let (out, _) = with_param_types(&without, 1, Some(&long), Some(&tiny)).unwrap();
        assert_eq!(out[11..14], [1, 3, 0]);
        assert!(with_param_types(&without[..10], 1, None, None).is_err());
    }
}
