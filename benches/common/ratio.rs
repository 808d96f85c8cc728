//! The ratio pass shared by the criterion benchmarks: runs a few cases *interleaved* (round-robin, many short
//! rounds) and prints each case's median cost as a ratio to a reference case measured in the same rounds.
//!
//! Criterion measures one benchmark after another, so on a shared, noisy machine two of its figures can come
//! from different load conditions. Here every round times every case back to back, so a burst of noise hits
//! them all alike and the ratios stay comparable between runs and commits; absolute times are not printed.

use std::time::{Duration, Instant};

/// One workload: `run(n)` performs it `n` times.
pub struct Case<'a> {
    /// Printed label.
    pub name: String,
    /// Runs the workload `n` times (use `std::hint::black_box` inside).
    pub run: Box<dyn FnMut(u64) + 'a>,
}

impl<'a> Case<'a> {
    /// A case named `name` running `run`.
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) + 'a) -> Case<'a> {
        Case { name: name.into(), run: Box::new(run) }
    }
}

/// Whether to run the ratio pass: only under `cargo bench` (which passes `--bench`; `cargo test --benches`
/// runs the criterion benchmarks once as a smoke test and must stay quick), unless `RWSPLIT_BENCH_RATIOS=0`.
pub fn enabled() -> bool {
    std::env::args().any(|a| a == "--bench") && std::env::var("RWSPLIT_BENCH_RATIOS").map_or(true, |v| v != "0")
}

/// Rounds in the pass; each times every case once. `RWSPLIT_BENCH_ROUNDS` overrides.
fn rounds() -> usize {
    std::env::var("RWSPLIT_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(41)
}

/// Target duration of one timed batch.
const BATCH: Duration = Duration::from_millis(2);

/// Iterations per batch so that one batch of `case` takes about [`BATCH`].
fn calibrate(case: &mut Case<'_>) -> u64 {
    let mut n = 1u64;
    loop {
        let start = Instant::now();
        (case.run)(n);
        let took = start.elapsed();
        if took >= BATCH / 4 || n >= 1 << 30 {
            let per = took.as_secs_f64() / n as f64;
            return ((BATCH.as_secs_f64() / per.max(1e-12)) as u64).clamp(1, 1 << 32);
        }
        n *= 4;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median seconds per iteration of each case of one pass, looked up by case name.
pub struct Timings {
    names: Vec<String>,
    secs: Vec<f64>,
}

impl Timings {
    /// The median of the case named `name` (panics on a name that was not measured: a bug in the bench).
    pub fn of(&self, name: &str) -> f64 {
        let i = self.names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no case named {name:?}"));
        self.secs[i]
    }
}

/// Times all cases interleaved; returns each one's median seconds per iteration.
pub fn measure(cases: &mut [Case<'_>]) -> Timings {
    let iters: Vec<u64> = cases.iter_mut().map(calibrate).collect();
    let rounds = rounds();
    let mut samples = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..rounds {
        // Rotate the order so no case always runs right after the same neighbour.
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let start = Instant::now();
            (cases[i].run)(iters[i]);
            samples[i].push(start.elapsed().as_secs_f64() / iters[i] as f64);
        }
    }
    Timings {
        names: cases.iter().map(|c| c.name.clone()).collect(),
        secs: samples.iter_mut().map(|s| median(s)).collect(),
    }
}

/// Prints a heading line in the same style for every ratio table.
pub fn heading(title: &str) {
    println!();
    println!("== {title} ({} interleaved rounds, medians; ratios only, no absolute times) ==", rounds());
}
