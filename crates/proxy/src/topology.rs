//! The backends as sessions see them: the master, and the replicas with their weights, the requests each
//! has outstanding from all sessions, and which are skipped for a while because a connection attempt
//! just failed.
//!
//! Replicas are chosen per read (see `session/choose.rs`): by fewest outstanding requests relative to
//! weight, then by each session's smooth weighted round-robin, so one long-lived connection spreads its
//! reads too. A session keeps its connections to the replicas it used, so switching costs nothing after
//! the first read on each.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;

/// How long a replica that refused a connection is skipped before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One replica's routing state.
#[derive(Debug)]
pub struct ReplicaState {
    /// `host:port`.
    pub addr: Arc<str>,
    /// Relative share of reads.
    pub weight: u32,
    /// Requests running on it now, from all sessions.
    inflight: AtomicUsize,
    /// Milliseconds since the topology's epoch until which the replica is skipped (0 = usable).
    down_until_ms: AtomicU64,
}

impl ReplicaState {
    /// Requests running on it now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}

/// Counts one request on a replica while it lives.
#[derive(Debug)]
pub struct InFlight {
    topology: Arc<Topology>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(r) = self.topology.replicas.get(self.index) {
            r.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The backends, built from one config snapshot.
#[derive(Debug)]
pub struct Topology {
    /// Master `host:port`.
    pub master: Arc<str>,
    /// Replicas in config order.
    pub replicas: Vec<ReplicaState>,
    /// Reference point for `down_until_ms`.
    epoch: Instant,
}

impl Topology {
    /// Builds the topology of a config.
    pub fn new(config: &Config) -> Topology {
        let replicas = config
            .replicas
            .iter()
            .map(|r| ReplicaState {
                addr: r.address.as_str().into(),
                weight: r.weight,
                inflight: AtomicUsize::new(0),
                down_until_ms: AtomicU64::new(0),
            })
            .collect();
        Topology { master: config.master.address.as_str().into(), replicas, epoch: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether replica `i` may be tried now (not skipped after a failed connection).
    pub fn usable(&self, i: usize) -> bool {
        self.replicas.get(i).is_some_and(|r| r.down_until_ms.load(Ordering::Relaxed) <= self.now_ms())
    }

    /// The index of the replica at `addr`.
    pub fn replica_index(&self, addr: &str) -> Option<usize> {
        self.replicas.iter().position(|r| &*r.addr == addr)
    }

    /// Whether `addr` is one of the configured replicas.
    pub fn has_replica(&self, addr: &str) -> bool {
        self.replica_index(addr).is_some()
    }

    /// [`Topology::mark_down`] by address (no-op for an address not in this topology).
    pub fn mark_down_addr(&self, addr: &str) {
        if let Some(i) = self.replica_index(addr) {
            self.mark_down(i);
        }
    }

    /// Marks a replica as unusable for [`RETRY_AFTER`] after a failed connection.
    pub fn mark_down(&self, i: usize) {
        if let Some(r) = self.replicas.get(i) {
            r.down_until_ms.store(self.now_ms() + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Counts a request on the replica at `addr` until the returned guard drops (`None` for an address not
    /// in this topology).
    pub fn start_request(self: &Arc<Self>, addr: &str) -> Option<InFlight> {
        let index = self.replica_index(addr)?;
        self.replicas[index].inflight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight { topology: Arc::clone(self), index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_while_they_run() {
        let text = "listen: 127.0.0.1:1\nusers: [{user: a, password: b}]\nmaster: {address: 'm:1'}\n\
                    replicas: [{address: 'r1:1'}, {address: 'r2:1', weight: 3}]\n";
        let t = Arc::new(Topology::new(&Config::parse(text, "t").unwrap()));
        assert_eq!((t.replicas[1].weight, t.replica_index("r2:1")), (3, Some(1)));
        let a = t.start_request("r2:1");
        let b = t.start_request("r2:1");
        assert!(t.start_request("elsewhere:1").is_none());
        assert_eq!(t.replicas[1].inflight(), 2);
        drop((a, b));
        assert_eq!(t.replicas[1].inflight(), 0);
        t.mark_down(1);
        assert!(t.usable(0) && !t.usable(1) && !t.usable(7));
    }
}
