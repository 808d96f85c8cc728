//! The backends as sessions see them: the master, the replicas in a weighted round-robin schedule, and
//! which replicas are temporarily skipped because a connection attempt just failed.
//!
//! Sessions pick a replica when they first need one and keep it (sticky per session) until it fails or the
//! session resets: per-statement switching would mean replaying session state on every switch. Spreading
//! comes from many sessions (or pooled client connections) starting on different replicas.

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
    /// Milliseconds since the topology's epoch until which the replica is skipped (0 = usable).
    down_until_ms: AtomicU64,
}

/// The backends, built from one config snapshot.
#[derive(Debug)]
pub struct Topology {
    /// Master `host:port`.
    pub master: Arc<str>,
    /// Replicas in config order.
    pub replicas: Vec<ReplicaState>,
    /// Weighted schedule: replica indexes, each repeated `weight` times, interleaved.
    schedule: Vec<usize>,
    /// Next position in the schedule.
    cursor: AtomicUsize,
    /// Reference point for `down_until_ms`.
    epoch: Instant,
}

impl Topology {
    /// Builds the topology of a config.
    pub fn new(config: &Config) -> Topology {
        let replicas: Vec<ReplicaState> = config
            .replicas
            .iter()
            .map(|r| ReplicaState { addr: r.address.as_str().into(), down_until_ms: AtomicU64::new(0) })
            .collect();
        // Interleave by weight: round k takes every replica whose weight exceeds k.
        let max_weight = config.replicas.iter().map(|r| r.weight).max().unwrap_or(0);
        let schedule = (0..max_weight)
            .flat_map(|k| config.replicas.iter().enumerate().filter(move |(_, r)| r.weight > k).map(|(i, _)| i))
            .collect();
        Topology {
            master: config.master.address.as_str().into(),
            replicas,
            schedule,
            cursor: AtomicUsize::new(rand::random::<u8>() as usize),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Replica indexes to try for a new read, best first: the next in the weighted schedule, then the rest.
    /// Replicas marked down are left out.
    pub fn replica_candidates(&self) -> Vec<usize> {
        if self.schedule.is_empty() {
            return Vec::new();
        }
        let now = self.now_ms();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(self.replicas.len());
        for k in 0..self.schedule.len() {
            let i = self.schedule[(start + k) % self.schedule.len()];
            if !out.contains(&i) && self.replicas[i].down_until_ms.load(Ordering::Relaxed) <= now {
                out.push(i);
            }
        }
        out
    }

    /// Whether `addr` is one of the configured replicas.
    pub fn has_replica(&self, addr: &str) -> bool {
        self.replicas.iter().any(|r| &*r.addr == addr)
    }

    /// [`Topology::mark_down`] by address (no-op for an address not in this topology).
    pub fn mark_down_addr(&self, addr: &str) {
        if let Some(i) = self.replicas.iter().position(|r| &*r.addr == addr) {
            self.mark_down(i);
        }
    }

    /// Marks a replica as unusable for [`RETRY_AFTER`] after a failed connection.
    pub fn mark_down(&self, i: usize) {
        if let Some(r) = self.replicas.get(i) {
            r.down_until_ms.store(self.now_ms() + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_weights() {
        let text = "listen: 127.0.0.1:1\nusers: [{user: a, password: b}]\nmaster: {address: 'm:1'}\n\
                    replicas: [{address: 'r1:1'}, {address: 'r2:1', weight: 3}]\n";
        let t = Topology::new(&Config::parse(text, "t").unwrap());
        let firsts: Vec<usize> = (0..400).map(|_| t.replica_candidates()[0]).collect();
        let r2 = firsts.iter().filter(|i| **i == 1).count();
        assert_eq!(r2, 300, "replica 2 (weight 3) should get 3/4 of the picks");
        t.mark_down(1);
        assert_eq!(t.replica_candidates(), vec![0]);
    }
}
