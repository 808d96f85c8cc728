//! Which replica serves a read: a pure choice among candidates the caller gathered (replicas that serve
//! reads now and may serve this one).
//!
//! In order: replicas known to have applied what the read must see come first (when a read must see
//! something, see `consistency.rs`); then fewest requests outstanding from all sessions per unit of
//! weight; then this session's smooth weighted round-robin, so even one connection alone spreads its reads
//! by weight. Exact ties in the round-robin follow a per-session rotation, so sessions do not all start on
//! the same replica.
//!
//! A session stays on the replica of its last read for a run of up to [`RUN`] reads while that replica is
//! as good: it qualifies as well as the best, and it has at most one request more outstanding than it
//! would have at the least loaded replica's requests per unit of weight. Each round-robin step is then a
//! run rather than a single read: consecutive reads of a session see one replica's data more often (two
//! replicas apply the master's writes at different moments, so alternating between them can show a
//! session a row that its next read no longer finds), and a session uses fewer connections at a time. It
//! was also tried against the servers' extra CPU per query when reads are spread over two replicas (issue
//! 13): runs of 8 and of 1000 left it where it was (1.1–1.2× that of one replica; HAProxy spreading over
//! two shows 1.0–1.14× in the same runs), so that cost comes from spreading the load, not from switching.
//! A replica that was not a candidate at the last read (back from an outage, added by reload) ends the run
//! and is taken first, so reads return to it at once.

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

/// Reads a session sends in a row to the same replica while it stays as good as the best (see the module
/// doc): short enough that one connection alone spreads its reads over two replicas within 20 reads.
pub const RUN: u32 = 8;

/// One session's round-robin state.
#[derive(Debug, Default)]
pub struct Rotation {
    /// Smooth weighted round-robin: each replica's current weight.
    current: HashMap<Arc<str>, i64>,
    /// Where this session's rotation starts among the replicas.
    offset: usize,
    /// The replica of the last pick and how many picks in a row went to it.
    last: Option<(Arc<str>, u32)>,
    /// The candidates at the last pick.
    known: Vec<Arc<str>>,
}

impl Rotation {
    /// A rotation starting at `offset` (e.g. the session id).
    pub fn new(offset: usize) -> Rotation {
        Rotation { offset, ..Rotation::default() }
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
        let fresh: Vec<usize> = if self.known.is_empty() {
            Vec::new()
        } else {
            pool.iter().copied().filter(|&i| !self.known.contains(&candidates[i].addr)).collect()
        };
        // Remembered only when the set changes: on the common path this costs no allocation and no
        // reference-count traffic on the shared addresses.
        let same_set = self.known.len() == candidates.len() && candidates.iter().all(|c| self.known.contains(&c.addr));
        if !same_set {
            self.known.clear();
            self.known.extend(candidates.iter().map(|c| Arc::clone(&c.addr)));
        }
        // Stay on the last replica for its run while it is as good: in the pool, and at most one request
        // above its share at the least loaded replica's rate (ii / wi <= il / wl + 1 / wi).
        if let Some((addr, run)) = &mut self.last {
            let same = pool.iter().copied().find(|&i| candidates[i].addr == *addr);
            if let Some(i) = same.filter(|_| fresh.is_empty() && *run < RUN) {
                let (ii, wi) = load(i);
                if ii * wl <= il * wi + wl {
                    *run += 1;
                    return Some(i);
                }
            }
        }
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
        let newcomer = ties.iter().copied().find(|i| fresh.contains(i));
        let chosen = newcomer.or_else(|| {
            ties.iter().copied().max_by_key(|&i| {
                let current = self.current.get(&candidates[i].addr).copied().unwrap_or(0);
                (current, std::cmp::Reverse((i + n - offset % n) % n))
            })
        })?;
        if let Some(c) = self.current.get_mut(&candidates[chosen].addr) {
            *c -= total;
        }
        self.last = Some((Arc::clone(&candidates[chosen].addr), 1));
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

    /// The replica of each run of picks, e.g. [0, 0, 1, 1, 1] → [0, 1].
    fn runs(picks: &[usize]) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for &p in picks {
            match out.last_mut() {
                Some((at, len)) if *at == p => *len += 1,
                _ => out.push((p, 1)),
            }
        }
        out
    }

    #[test]
    fn one_session_alone_spreads_by_weight_in_runs() {
        let cands = [cand("a", 1, 0, true), cand("b", 1, 0, true)];
        let r = RUN as usize;
        assert_eq!(runs(&picks(&mut Rotation::new(0), &cands, 4 * r)), [(0, r), (1, r), (0, r), (1, r)]);
        let other = runs(&picks(&mut Rotation::new(1), &cands, 2 * r));
        assert_eq!(other, [(1, r), (0, r)], "another session starts elsewhere");
        let weighted = [cand("a", 1, 0, true), cand("b", 3, 0, true)];
        let got = picks(&mut Rotation::new(0), &weighted, 400 * r);
        assert_eq!(got.iter().filter(|&&i| i == 1).count(), 300 * r);
    }

    #[test]
    fn a_run_ends_when_its_replica_is_no_longer_as_good() {
        let mut r = Rotation::new(0);
        assert_eq!(r.pick(&[cand("a", 1, 0, true), cand("b", 1, 0, true)]), Some(0));
        // One more outstanding than the least loaded is still as good; two more is not.
        assert_eq!(r.pick(&[cand("a", 1, 4, true), cand("b", 1, 3, true)]), Some(0));
        assert_eq!(r.pick(&[cand("a", 1, 5, true), cand("b", 1, 3, true)]), Some(1));
        // By weight: at a's rate (1 per unit) b (weight 4) would have 4 outstanding; 5 is one more, 6 two.
        let mut w = Rotation::new(1);
        assert_eq!(w.pick(&[cand("a", 1, 0, true), cand("b", 4, 0, true)]), Some(1));
        assert_eq!(w.pick(&[cand("a", 1, 1, true), cand("b", 4, 5, true)]), Some(1));
        assert_eq!(w.pick(&[cand("a", 1, 1, true), cand("b", 4, 6, true)]), Some(0));
        // A replica that may not have what the read must see loses to one known to have it.
        let mut c = Rotation::new(0);
        assert_eq!(c.pick(&[cand("a", 1, 0, true), cand("b", 1, 0, true)]), Some(0));
        assert_eq!(c.pick(&[cand("a", 1, 0, false), cand("b", 1, 0, true)]), Some(1));
    }

    #[test]
    fn a_returning_replica_is_taken_at_once() {
        let mut r = Rotation::new(0);
        let both = [cand("a", 1, 0, true), cand("b", 1, 0, true)];
        assert_eq!(r.pick(&both), Some(0));
        for _ in 0..3 {
            assert_eq!(r.pick(&[cand("a", 1, 0, true)]), Some(0), "b is out");
        }
        assert_eq!(r.pick(&both), Some(1), "b is back: the run on a ends");
        assert_eq!(r.pick(&both), Some(1), "and a run on b begins");
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
