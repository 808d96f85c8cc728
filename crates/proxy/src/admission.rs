//! Admission of client connections before they log in: a cap on open client connections, in all and per
//! peer address, and a growing delay for a peer whose logins keep failing (online password guessing), since
//! rwsplit checks passwords itself and the backends' own lockouts never see those attempts.
//!
//! - Over a cap, the client gets error 1040 ("Too many connections", as a server at `max_connections`
//!   answers) as its first packet, and the connection closes; nothing is read from it.
//! - After the n-th failed login in a row from one address, the error is sent after
//!   `min(100 ms × 2^(n-1), 5 s)`. A successful login from that address, or ten minutes without a failure,
//!   clears the count. At most [`MAX_TRACKED_PEERS`] addresses are remembered (the oldest are forgotten
//!   first), so a flood of addresses cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The first failed login's delay; it doubles with each further failure in a row.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A peer's failures are forgotten after this long without one.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses with failures remembered at most.
pub const MAX_TRACKED_PEERS: usize = 65_536;

/// Open client connections and recent login failures, by peer address.
#[derive(Debug, Default)]
pub struct Admission {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Open client connections.
    open: usize,
    /// Open client connections by peer address.
    by_peer: HashMap<IpAddr, usize>,
    /// Failed logins in a row by peer address, and when the last one was.
    failures: HashMap<IpAddr, (u32, Instant)>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `max_client_connections` connections are open.
    Total(usize),
    /// `max_client_connections_per_peer` connections from this address are open.
    Peer(IpAddr, usize),
}

impl Refusal {
    /// The error message the client gets (with code 1040).
    pub fn message(&self) -> String {
        match self {
            Refusal::Total(n) => format!("Too many connections (rwsplit: max_client_connections = {n})"),
            Refusal::Peer(ip, n) => {
                format!("Too many connections from {ip} (rwsplit: max_client_connections_per_peer = {n})")
            }
        }
    }

    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Total(_) => "max_client_connections",
            Refusal::Peer(..) => "max_client_connections_per_peer",
        }
    }
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    peer: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.open = state.open.saturating_sub(1);
        if let Some(n) = state.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                state.by_peer.remove(&self.peer);
            }
        }
    }
}

impl Admission {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `peer` unless a cap is reached (`per_peer` 0: no per-address cap).
    pub fn admit(self: &Arc<Self>, peer: IpAddr, total: usize, per_peer: usize) -> Result<Ticket, Refusal> {
        let mut state = self.lock();
        if state.open >= total {
            return Err(Refusal::Total(total));
        }
        let from_peer = state.by_peer.get(&peer).copied().unwrap_or(0);
        if per_peer > 0 && from_peer >= per_peer {
            return Err(Refusal::Peer(peer, per_peer));
        }
        state.open += 1;
        state.by_peer.insert(peer, from_peer + 1);
        Ok(Ticket { admission: Arc::clone(self), peer })
    }

    /// Records a failed login from `peer`; returns how long to wait before answering it.
    pub fn login_failed(&self, peer: IpAddr) -> Duration {
        let now = Instant::now();
        let mut state = self.lock();
        if state.failures.len() >= MAX_TRACKED_PEERS && !state.failures.contains_key(&peer) {
            state.failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if state.failures.len() >= MAX_TRACKED_PEERS {
                if let Some(oldest) = state.failures.iter().min_by_key(|(_, (_, last))| *last).map(|(ip, _)| *ip) {
                    state.failures.remove(&oldest);
                }
            }
        }
        let entry = state.failures.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay_after(entry.0)
    }

    /// Records a successful login from `peer`: its failures are forgotten.
    pub fn login_ok(&self, peer: IpAddr) {
        self.lock().failures.remove(&peer);
    }

    /// Open client connections.
    pub fn open(&self) -> usize {
        self.lock().open
    }
}

/// The delay before answering the `n`-th failed login in a row.
fn delay_after(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(16);
    (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn caps_in_all_and_per_peer_and_tickets_free_their_place() {
        let admission = Arc::new(Admission::default());
        let a1 = admission.admit(A, 3, 2).expect("first");
        let _a2 = admission.admit(A, 3, 2).expect("second from A");
        assert_eq!(admission.admit(A, 3, 2).unwrap_err(), Refusal::Peer(A, 2));
        let _b1 = admission.admit(B, 3, 2).expect("B has its own count");
        assert_eq!(admission.admit(B, 3, 2).unwrap_err(), Refusal::Total(3));
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _a3 = admission.admit(A, 3, 2).expect("a freed place is reused");
        assert!(admission.admit(A, 10, 0).is_ok(), "per_peer 0 means no per-address cap");
    }

    #[test]
    fn failed_logins_back_off_exponentially_until_a_success() {
        let admission = Admission::default();
        let delays: Vec<Duration> = (0..8).map(|_| admission.login_failed(A)).collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(admission.login_failed(B), FIRST_DELAY, "another address is not slowed down");
        admission.login_ok(A);
        assert_eq!(admission.login_failed(A), FIRST_DELAY);
    }
}
