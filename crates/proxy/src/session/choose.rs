//! Which replica serves a read: a pure choice among candidates the caller gathered (replicas that serve
//! reads now and may serve this one).
//!
//! In order: replicas known to have applied what the read must see come first (when a read must see
//! something, see `consistency.rs`); then fewest requests outstanding from all sessions per unit of
//! weight; then this session's smooth weighted round-robin, so even one connection alone spreads its reads
//! by weight. Exact ties in the round-robin follow a per-session rotation, so sessions do not all start on
//! the same replica.

use std::collections::HashMap;
use std::sync::Arc;

/// A replica that may serve the read.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its address.
    pub addr: Arc<str>,
    /// Its configured weight (≥ 1).
    pub weight: u32,
    /// Requests outstanding on it, from all sessions.
    pub inflight: usize,
    /// It is known to have applied what the read must see (true when the read needs nothing).
    pub caught_up: bool,
}

/// One session's round-robin state.
#[derive(Debug, Default)]
pub struct Rotation {
    /// Smooth weighted round-robin: each replica's current weight.
    current: HashMap<Arc<str>, i64>,
    /// Where this session's rotation starts among the replicas.
    offset: usize,
}

impl Rotation {
    /// A rotation starting at `offset` (e.g. the session id).
    pub fn new(offset: usize) -> Rotation {
        Rotation { current: HashMap::new(), offset }
    }

    /// Picks one of `candidates`; `None` when there are none.
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        let any_caught_up = candidates.iter().any(|c| c.caught_up);
        let pool: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].caught_up || !any_caught_up).collect();
        // Compare inflight / weight without division: a.inflight * b.weight vs b.inflight * a.weight.
        let load = |i: usize| (candidates[i].inflight as u128, u128::from(candidates[i].weight.max(1)));
        let least = pool.iter().copied().min_by(|&a, &b| {
            let ((ia, wa), (ib, wb)) = (load(a), load(b));
            (ia * wb).cmp(&(ib * wa))
        })?;
        let (il, wl) = load(least);
        let ties: Vec<usize> = pool
            .into_iter()
            .filter(|&i| {
                let (ii, wi) = load(i);
                ii * wl == il * wi
            })
            .collect();
        let total: i64 = ties.iter().map(|&i| i64::from(candidates[i].weight)).sum();
        for &i in &ties {
            *self.current.entry(Arc::clone(&candidates[i].addr)).or_insert(0) += i64::from(candidates[i].weight);
        }
        let n = candidates.len();
        let offset = self.offset;
        let chosen = ties.iter().copied().max_by_key(|&i| {
            let current = self.current.get(&candidates[i].addr).copied().unwrap_or(0);
            (current, std::cmp::Reverse((i + n - offset % n) % n))
        })?;
        if let Some(c) = self.current.get_mut(&candidates[chosen].addr) {
            *c -= total;
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(addr: &str, weight: u32, inflight: usize, caught_up: bool) -> Candidate {
        Candidate { addr: addr.into(), weight, inflight, caught_up }
    }

    fn picks(r: &mut Rotation, cands: &[Candidate], n: usize) -> Vec<usize> {
        (0..n).map(|_| r.pick(cands).unwrap()).collect()
    }

    #[test]
    fn one_session_alone_spreads_by_weight() {
        let cands = [cand("a", 1, 0, true), cand("b", 1, 0, true)];
        assert_eq!(picks(&mut Rotation::new(0), &cands, 4), [0, 1, 0, 1]);
        assert_eq!(picks(&mut Rotation::new(1), &cands, 4), [1, 0, 1, 0], "another session starts elsewhere");
        let weighted = [cand("a", 1, 0, true), cand("b", 3, 0, true)];
        let got = picks(&mut Rotation::new(0), &weighted, 400);
        assert_eq!(got.iter().filter(|&&i| i == 1).count(), 300);
    }

    #[test]
    fn outstanding_requests_then_what_the_read_must_see_decide_first() {
        let mut r = Rotation::new(0);
        // Fewest outstanding per unit of weight wins: b has 2 for weight 4, a has 1 for weight 1.
        assert_eq!(r.pick(&[cand("a", 1, 1, true), cand("b", 4, 2, true)]), Some(1));
        // A replica known to have what the read must see beats a less loaded one that may not.
        assert_eq!(r.pick(&[cand("a", 1, 0, false), cand("b", 1, 9, true)]), Some(1));
        // None known: the least loaded (the caller then makes it wait).
        assert_eq!(r.pick(&[cand("a", 1, 3, false), cand("b", 1, 1, false)]), Some(1));
        assert_eq!(r.pick(&[]), None);
    }
}
