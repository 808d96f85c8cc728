//! What the session does when a backend fails under a command: a pure function of what happened, with
//! the whole contract in one table (see the test).
//!
//! The contract (also in the README, *Failures*):
//! - part of the response already reached the client: the session closes (a result cannot be completed
//!   honestly);
//! - the lost connection held state that lived only there (a transaction, locks, temporary tables, user
//!   variables that cannot be replayed, prepared statements, a cursor, long data): the client gets an error for
//!   this command, then its connection closes, as a direct connection would; nothing after it runs;
//! - the command never reached the server (the connection was found closed before sending, or could not be
//!   opened): on a replica it goes elsewhere; on the master, a reconnect that works runs it, otherwise the
//!   client gets error 1053 (`code::UNAVAILABLE`) and the session goes on (writes recover by themselves);
//! - the command reached the server and the connection died before any answer: a plain autocommit read is
//!   retried once elsewhere; anything else may have run, so the client gets an error and the connection
//!   closes, as with a direct connection.

use super::legs::Side;

/// How far a command got when its backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The command was not sent: the connection could not be opened or was found closed before sending.
    NotSent,
    /// The command was sent; nothing of the response reached the client.
    Sent,
    /// Part of the response reached the client.
    Forwarded,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Which backend failed.
    pub side: Side,
    /// How far the command got.
    pub phase: Phase,
    /// The command is a plain autocommit read outside any transaction (it may run anywhere, any number of
    /// times).
    pub plain_read: bool,
    /// This command was already retried once.
    pub retried: bool,
    /// The failed connection held state only it had (see `Held`).
    pub lost_state: bool,
}

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Run the command again (a read elsewhere, or anything on a fresh connection when it was not sent).
    Retry,
    /// Send the client an error for this command; the session goes on.
    ErrorContinue,
    /// Send the client an error for this command, then close its connection.
    ErrorClose,
    /// Close the client's connection at once (part of a response is out).
    Close,
}

/// The policy for a failure.
pub fn on_failure(f: Failure) -> Policy {
    match f.phase {
        Phase::Forwarded => Policy::Close,
        _ if f.lost_state => Policy::ErrorClose,
        Phase::NotSent if !f.retried => Policy::Retry,
        Phase::NotSent if f.side == Side::Replica && f.plain_read => Policy::Retry,
        Phase::NotSent => Policy::ErrorContinue,
        Phase::Sent if f.plain_read && !f.retried => Policy::Retry,
        Phase::Sent => Policy::ErrorClose,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_table() {
        use Phase::*;
        use Policy::*;
        use Side::*;
        // (side, phase, plain read, retried, lost state) → policy
        #[rustfmt::skip]
        let table = [
            // Part of a response is out: nothing else is honest.
            (Replica, Forwarded, true,  false, false, Close),
            (Master,  Forwarded, false, false, true,  Close),
            // State only that connection had is gone: error, then close, like a direct connection.
            (Master,  Sent,      false, false, true,  ErrorClose),
            (Master,  NotSent,   false, false, true,  ErrorClose),
            (Master,  Sent,      true,  false, true,  ErrorClose),
            (Replica, Sent,      false, false, true,  ErrorClose), // a READ ONLY transaction on the replica
            (Replica, NotSent,   true,  false, true,  ErrorClose),
            // Never sent, nothing lost: a fresh connection (or another replica) runs it.
            (Master,  NotSent,   false, false, false, Retry),
            (Replica, NotSent,   true,  false, false, Retry),
            (Replica, NotSent,   true,  true,  false, Retry),     // the next candidate, or the master
            (Master,  NotSent,   false, true,  false, ErrorContinue), // the master is down: 1053, go on
            // Sent, nothing lost: only a plain read may run twice.
            (Replica, Sent,      true,  false, false, Retry),
            (Master,  Sent,      true,  false, false, Retry),
            (Replica, Sent,      true,  true,  false, ErrorClose),
            (Master,  Sent,      false, false, false, ErrorClose), // a write may have committed
            (Replica, Sent,      false, false, false, ErrorClose),
        ];
        for (side, phase, plain_read, retried, lost_state, want) in table {
            let f = Failure { side, phase, plain_read, retried, lost_state };
            assert_eq!(on_failure(f), want, "{f:?}");
        }
    }
}
