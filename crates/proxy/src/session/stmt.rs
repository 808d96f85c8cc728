//! Prepared statements (binary protocol). The proxy hands out its own statement ids, classifies each
//! statement once at PREPARE, and prepares it lazily on whichever backend executes it, mapping ids per
//! backend connection.
//!
//! - PREPARE runs where the statement would be routed now; the prepare-OK goes to the client with the
//!   proxy's id.
//! - EXECUTE is routed like the statement's text (a read outside a transaction goes to the replica). If
//!   the client omits parameter types ("new params bound" = 0) and the chosen backend has not seen them,
//!   the proxy inserts the types from the last execute that sent them.
//! - SEND_LONG_DATA goes to the master, and the next EXECUTE of that statement follows it there.
//! - FETCH goes to the backend that opened the cursor; CLOSE to every backend that has the statement.

use bytes::{Bytes, BytesMut};
use rwsplit_classify::{classify_cached, Verdict};
use rwsplit_wire::packet::{self, com, ErrPacket, PrepareOk};
use rwsplit_wire::walk::Expect;

use super::forward::Command;
use super::route::{Decision, Side};
use super::Session;
use crate::error::SessionError;

/// A statement prepared by the client.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The client's COM_STMT_PREPARE packet, to prepare the statement on another backend.
    prepare: Bytes,
    /// Classification of its text, done once.
    verdict: std::sync::Arc<Verdict>,
    /// Number of `?` parameters.
    params: u16,
    /// Parameter types (2 bytes each) from the last execute that sent them.
    types: Option<Bytes>,
    /// SEND_LONG_DATA went to the master since the last execute.
    long_data: bool,
    /// Backend of the last execute (where an open cursor lives).
    last: Option<Side>,
}

const UNKNOWN_STMT: u16 = 1243;

fn stmt_id(payload: &[u8]) -> Option<u32> {
    packet::u32_at(payload, 1)
}

impl Session {
    async fn unknown_stmt(&mut self, what: &str) -> Result<(), SessionError> {
        let msg = format!("Unknown prepared statement handler given to {what}");
        Ok(self.send_err(UNKNOWN_STMT, b"HY000", &msg).await?)
    }

    pub(super) async fn com_stmt_prepare(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let verdict = classify_cached(&String::from_utf8_lossy(&payload[1..]));
        let decision = self.state.route(&verdict);
        let id = self.next_stmt_id;
        let command = Command::Prepare { payload: payload.clone(), id };
        let Some(outcome) = self.run_command(decision, Expect::Prepare, command).await? else {
            return Ok(());
        };
        if let Some(ok) = outcome.prepared {
            self.next_stmt_id = self.next_stmt_id.wrapping_add(1).max(1);
            if let Some(conn) = self.conn_mut(outcome.side) {
                conn.stmts.insert(id, ok.stmt_id);
            }
            let stmt = Stmt { prepare: payload, verdict, params: ok.params, types: None, long_data: false, last: None };
            self.stmts.insert(id, stmt);
        }
        Ok(())
    }

    pub(super) async fn com_stmt_execute(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(stmt) = stmt_id(&payload).and_then(|id| self.stmts.get(&id)) else {
            return self.unknown_stmt("mysqld_stmt_execute").await;
        };
        let decision = match stmt.long_data {
            true => Decision { side: Side::Master, reason: "long_data" },
            false => self.state.route(&stmt.verdict),
        };
        let id = stmt_id(&payload).unwrap_or_default();
        let Some(outcome) = self.run_command(decision, Expect::ResultSets, Command::Stmt { id, payload }).await? else {
            return Ok(());
        };
        let verdict = self.stmts.get_mut(&id).map(|s| {
            s.long_data = false;
            s.last = Some(outcome.side);
            s.verdict.clone()
        });
        if let (Some(v), false) = (verdict, outcome.error) {
            self.state.after_success(&v, b"");
        }
        Ok(())
    }

    pub(super) async fn com_stmt_fetch(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload).filter(|id| self.stmts.contains_key(id)) else {
            return self.unknown_stmt("mysqld_stmt_fetch").await;
        };
        let side = self.stmts.get(&id).and_then(|s| s.last).unwrap_or(Side::Master);
        let decision = Decision { side, reason: "cursor" };
        self.run_command(decision, Expect::Rows, Command::Stmt { id, payload }).await.map(|_| ())
    }

    pub(super) async fn com_stmt_reset(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload).filter(|id| self.stmts.contains_key(id)) else {
            return self.unknown_stmt("mysqld_stmt_reset").await;
        };
        let side = self.stmts.get(&id).and_then(|s| s.last).unwrap_or(Side::Master);
        if let Some(s) = self.stmts.get_mut(&id) {
            s.long_data = false;
        }
        let decision = Decision { side, reason: "statement" };
        self.run_command(decision, Expect::Single, Command::Stmt { id, payload }).await.map(|_| ())
    }

    /// COM_STMT_SEND_LONG_DATA has no response; errors surface at the next execute, as with a server.
    pub(super) async fn com_stmt_send_long_data(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload).filter(|id| self.stmts.contains_key(id)) else {
            return Ok(());
        };
        if self.attach(Side::Master).await?.is_none() {
            return Ok(());
        }
        if let Some(p) = self.stmt_payload(Side::Master, id, &payload).await? {
            if let Some(conn) = self.master.as_mut() {
                if let Err(e) = conn.send_no_response(&p).await {
                    tracing::warn!(error = %e, "master failed while receiving long data");
                    self.master = None;
                }
            }
        }
        if let Some(s) = self.stmts.get_mut(&id) {
            s.long_data = true;
        }
        Ok(())
    }

    /// COM_STMT_CLOSE has no response: close the statement on every backend that has it.
    pub(super) async fn com_stmt_close(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(id) = stmt_id(&payload) else {
            return Ok(());
        };
        self.stmts.remove(&id);
        for side in [Side::Master, Side::Replica] {
            let Some(conn) = self.conn_mut(side) else {
                continue;
            };
            if let Some(backend_id) = conn.stmts.remove(&id) {
                conn.types_sent.remove(&id);
                let mut p = vec![com::STMT_CLOSE];
                p.extend_from_slice(&backend_id.to_le_bytes());
                if conn.send_no_response(&p).await.is_err() {
                    self.drop_conn(side);
                }
            }
        }
        Ok(())
    }

    /// The packet for statement `id` on the connection of `side`: prepares the statement there if needed,
    /// maps the id, and adds parameter types the connection has not seen. `None` when the client was sent
    /// an error instead.
    pub(super) async fn stmt_payload(
        &mut self,
        side: Side,
        id: u32,
        payload: &Bytes,
    ) -> Result<Option<Bytes>, SessionError> {
        let Some(stmt) = self.stmts.get(&id).cloned() else {
            self.unknown_stmt("mysqld_stmt_execute").await?;
            return Ok(None);
        };
        let Some(conn) = self.conn_mut(side) else {
            return Ok(None);
        };
        let backend_id = match conn.stmts.get(&id) {
            Some(b) => *b,
            None => match conn.run(&stmt.prepare, Expect::Prepare).await {
                Ok(Ok(first)) => {
                    let Some(ok) = PrepareOk::parse(first.payload()) else {
                        self.send_err(2027, b"HY000", "rwsplit: malformed prepare response from backend").await?;
                        return Ok(None);
                    };
                    conn.stmts.insert(id, ok.stmt_id);
                    ok.stmt_id
                }
                Ok(Err(err)) => {
                    self.send_err(err.code, &err.state, &err.message).await?;
                    return Ok(None);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "backend failed while preparing a statement");
                    self.drop_conn(side);
                    self.send_err(2013, b"HY000", &format!("rwsplit: lost connection to backend: {e}")).await?;
                    return Ok(None);
                }
            },
        };
        let mut p = BytesMut::from(&payload[..]);
        if p.len() < 5 {
            return Ok(Some(p.freeze()));
        }
        p[1..5].copy_from_slice(&backend_id.to_le_bytes());
        if payload.first() != Some(&com::STMT_EXECUTE) || stmt.params == 0 {
            return Ok(Some(p.freeze()));
        }
        let had_types = conn.types_sent.contains(&id);
        match with_param_types(&p, stmt.params, stmt.types.as_ref(), had_types) {
            Ok((out, types)) => {
                if let Some(types) = types {
                    conn.types_sent.insert(id);
                    if let Some(s) = self.stmts.get_mut(&id) {
                        s.types = Some(types);
                    }
                }
                Ok(Some(out))
            }
            Err(err) => {
                self.send_err(err.code, &err.state, &err.message).await?;
                Ok(None)
            }
        }
    }
}

/// For an execute packet: returns the packet to send (with parameter types inserted if the client omitted
/// them and the backend has not seen them) and the types it carries, if any.
fn with_param_types(
    p: &[u8],
    params: u16,
    known: Option<&Bytes>,
    backend_has_types: bool,
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
    match (backend_has_types, known) {
        (false, Some(types)) => {
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
    fn param_types_are_inserted_only_when_missing() {
        // stmt id 7, flags 0, iterations 1, null bitmap (1 byte for 2 params), bound=1, types, values
        let with = [0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        let (out, types) = with_param_types(&with, 2, None, false).unwrap();
        assert_eq!(&out[..], &with[..]);
        assert_eq!(types.as_deref(), Some(&[3, 0, 8, 0][..]));
        let without = [0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 9, 0, 0, 0];
        let known = Bytes::from_static(&[3, 0]);
        let (out, _) = with_param_types(&without, 1, Some(&known), false).unwrap();
        assert_eq!(&out[..], &[0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 9, 0, 0, 0]);
        let (out, _) = with_param_types(&without, 1, Some(&known), true).unwrap();
        assert_eq!(&out[..], &without[..]);
        assert!(with_param_types(&without[..10], 1, None, false).is_err());
    }
}
