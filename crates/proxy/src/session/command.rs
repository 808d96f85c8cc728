//! The text-protocol commands: COM_QUERY (classify, route, forward, apply), the session-state commands
//! (SET, USE, COM_INIT_DB, COM_SET_OPTION), COM_PING, COM_FIELD_LIST, COM_STATISTICS and
//! COM_RESET_CONNECTION.

use bytes::Bytes;
use rwsplit_classify::{classify_cached, Kind, Reason, Verdict};
use rwsplit_wire::packet::com;
use rwsplit_wire::walk::Expect;

use bytes::BytesMut;

use rwsplit_wire::packet::OkPacket;

use super::forward::{client_ok, Command, Outcome, RunOptions};
use super::legs::Side;
use super::route::{self, Decision, Route, RouteReason};
use super::Session;
use crate::error::SessionError;

/// Whether a statement may change the client's session trackers.
pub(super) fn changes_trackers(v: &Verdict) -> bool {
    v.effects.assigns.iter().any(|k| super::track::is_tracker(k))
}

impl Session {
    /// COM_QUERY: rewrite what the client must see as from a direct connection, classify, route, forward,
    /// then apply what the statement and the server's report change.
    pub(super) async fn com_query(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let payload = match super::rewrite::rewrite(&payload[1..], self.dialect, self.id) {
            Some(text) => {
                let mut p = Vec::with_capacity(1 + text.len());
                p.push(com::QUERY);
                p.extend_from_slice(&text);
                Bytes::from(p)
            }
            None => payload,
        };
        let verdict = classify_cached(&payload[1..], self.dialect);
        tracing::debug!(?verdict, "query");
        if verdict.reason == Reason::Kill {
            return self.kill(&payload[1..], verdict.statements).await;
        }
        if verdict.kind == Kind::SessionSet {
            return self.session_command(payload, Some(&verdict), Expect::ResultSets).await;
        }
        if self.is_noop_end(&verdict) {
            // COMMIT/ROLLBACK with no transaction open and no master connection: a no-op the server would
            // answer with OK; opening a master connection for it would only cost one.
            return Ok(self.send_ok().await?);
        }
        let Some(route) = self.decide(&verdict).await? else { return Ok(()) };
        let run = RunOptions {
            expect: Expect::ResultSets,
            local_infile: verdict.effects.local_infile,
            hold_final_ok: changes_trackers(&verdict),
        };
        let Some(mut outcome) = self.run_command(route, run, Command::Plain(payload.clone())).await? else {
            return Ok(());
        };
        self.settle_status(&mut outcome, &verdict).await?;
        self.apply(&outcome, Some(&verdict), None);
        self.after_trackers(&outcome, &verdict).await
    }

    /// Where a statement runs now (see `route.rs`), after ending a READ ONLY replica transaction that it
    /// commits implicitly. `None` when it was answered already: a write inside a READ ONLY transaction gets
    /// the server's own error.
    pub(super) async fn decide(&mut self, verdict: &Verdict) -> Result<Option<Route>, SessionError> {
        match route::route(&self.state, &self.legs, verdict) {
            Decision::Run(route) => Ok(Some(route)),
            Decision::EndReplicaTransaction => {
                self.end_replica_transaction().await?;
                match route::route(&self.state, &self.legs, verdict) {
                    Decision::Run(route) => Ok(Some(route)),
                    _ => Ok(Some(Route::to(Side::Master, RouteReason::Classified(verdict.reason)))),
                }
            }
            Decision::ReadOnlyTransactionWrite => {
                let msg = "Cannot execute statement in a READ ONLY transaction";
                self.send_err(1792, b"25006", msg).await?;
                Ok(None)
            }
        }
    }

    /// Whether a COMMIT/ROLLBACK would do nothing on the server: no transaction open, no master connection
    /// (so nothing that could hold one), and it neither chains a new transaction nor releases the
    /// connection, nor could `completion_type` make it do either.
    fn is_noop_end(&self, verdict: &Verdict) -> bool {
        let e = &verdict.effects;
        verdict.kind == Kind::End
            && verdict.statements == 1
            && !e.chain
            && !e.releases_connection
            && self.no_transaction_anywhere()
            && self.legs.conn(Side::Master).is_none()
            && !self.history.assigns("completion_type")
    }

    /// After a command that may have changed the client's trackers: learns them, then sends the held-back
    /// final OK as the client now sees it. If learning failed, the session ends once the OK is sent.
    pub(super) async fn after_trackers(&mut self, outcome: &Outcome, verdict: &Verdict) -> Result<(), SessionError> {
        let learned = match outcome.error {
            false => self.learn_client_trackers(outcome.side, verdict).await,
            true => Ok(()),
        };
        if let Some(ok) = &outcome.held_ok {
            let backend_tracks = self.legs.conn(outcome.side).is_none_or(|c| c.tracking);
            let mut out = BytesMut::new();
            let parsed = OkPacket::parse(ok, backend_tracks);
            if !parsed.is_some_and(|p| client_ok(&p, ok, &self.tracking, &mut out)) {
                out.clear();
                out.extend_from_slice(ok);
            }
            self.client_seq = self.client.send(self.client_seq, &out).await.map_err(crate::error::ClientError::from)?;
        }
        learned
    }

    /// Whether no leg holds a transaction.
    fn no_transaction_anywhere(&self) -> bool {
        self.legs.trx_side().is_none() && self.state.autocommit
    }

    /// Ends the READ ONLY transaction on the replica (a statement that commits implicitly arrived, as the
    /// server would commit it), so the statement runs where it belongs.
    pub(super) async fn end_replica_transaction(&mut self) -> Result<(), SessionError> {
        let Some(conn) = self.legs.conn_mut(Side::Replica) else { return Ok(()) };
        match conn.run(b"\x03COMMIT", Expect::ResultSets).await {
            Ok(_) => {
                let held = self.legs.held_mut(Side::Replica);
                held.trx = false;
                held.trx_read_only = false;
                Ok(())
            }
            Err(e) => {
                let addr = conn.key.addr.to_string();
                let lost = self.lose(Side::Replica);
                self.lost_connection(&addr, &lost, e).await.map(|_| ())
            }
        }
    }

    /// A command that changes session state and is replayed on every backend of the session (SET, USE,
    /// COM_INIT_DB, COM_SET_OPTION). It runs on the master (or on the replica holding the session's READ
    /// ONLY transaction) and joins the history if it succeeds; the session's other connection catches up
    /// before its next statement.
    pub(super) async fn session_command(
        &mut self,
        payload: Bytes,
        verdict: Option<&Verdict>,
        expect: Expect,
    ) -> Result<(), SessionError> {
        // The master is the source of truth: a SET or USE it refuses is refused, whatever a replica would say.
        let side = self.legs.trx_side().unwrap_or(Side::Master);
        let route = Route::to(side, RouteReason::SessionState);
        let run = RunOptions { hold_final_ok: verdict.is_some_and(changes_trackers), ..RunOptions::new(expect) };
        let Some(outcome) = self.run_command(route, run, Command::Plain(payload.clone())).await? else {
            return Ok(());
        };
        self.apply(&outcome, verdict, Some(&payload));
        match verdict {
            Some(v) => self.after_trackers(&outcome, v).await,
            None => Ok(()),
        }
    }

    /// COM_PING: answered by the backend the session is using, or by the proxy itself when the session has
    /// no backend connection yet (the proxy is what the client is connected to).
    pub(super) async fn com_ping(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let side = [Side::Master, Side::Replica].into_iter().find(|s| self.legs.conn(*s).is_some());
        match side {
            Some(side) => {
                let outcome = self.run_routed(Route::to(side, RouteReason::Command), payload, Expect::Single).await?;
                if let Some(outcome) = outcome {
                    self.apply(&outcome, None, None);
                }
                Ok(())
            }
            None => Ok(self.send_ok().await?),
        }
    }

    /// COM_STATISTICS: the master's.
    pub(super) async fn com_statistics(&mut self, payload: Bytes) -> Result<(), SessionError> {
        self.run_routed(Route::to(Side::Master, RouteReason::Command), payload, Expect::AnyOne).await.map(|_| ())
    }

    /// COM_FIELD_LIST (deprecated, still used by some clients): a read of one table's columns.
    pub(super) async fn com_field_list(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let table = payload[1..].split(|b| *b == 0).next().unwrap_or_default();
        let table = String::from_utf8_lossy(table).to_lowercase();
        let route = if let Some(side) = self.legs.trx_side() {
            Route::to(side, RouteReason::Transaction)
        } else if !self.state.autocommit {
            Route::to(Side::Master, RouteReason::Transaction)
        } else if self.legs.held(Side::Master).locks_tables() {
            Route::to(Side::Master, RouteReason::LockTables)
        } else {
            let mut r = route::route_read(&self.state, &self.legs, &[table], false);
            r.plain_read = false;
            r
        };
        let outcome = self.run_routed(route, payload, Expect::FieldList).await?;
        if let Some(outcome) = outcome {
            self.apply(&outcome, None, None);
        }
        Ok(())
    }

    /// COM_RESET_CONNECTION: the session's backends go back to the pool (which resets them) and the session
    /// starts over as if just logged in, keeping its current database, as the server does.
    pub(super) async fn com_reset_connection(&mut self) -> Result<(), SessionError> {
        self.reset_state();
        self.start_view();
        self.history.keep_only_schema();
        Ok(self.send_ok().await?)
    }
}
