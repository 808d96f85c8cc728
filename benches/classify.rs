//! Cost of `rwsplit_classify::classify` on typical statements.
//!
//! Two groups:
//! - `classify/repeated/*`: the same text every iteration (what an exact-text cache would hit).
//! - `classify/varying/*`: the same shape with different literals every iteration, cycling through 1024
//!   pre-built texts (what a statement-shape cache would hit and an exact-text cache would not).
//!
//! After criterion, an interleaved ratio pass (see `common/ratio.rs`) prints each statement's cost as a multiple
//! of a fixed reference (SipHash of 1 KiB, independent of rwsplit's code) and the varying ÷ repeated ratio.
//!
//! Run: `cargo bench --bench classify` (filter: `cargo bench --bench classify -- varying/join3`).

use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use rwsplit_classify::{classify, Kind};

#[path = "common/ratio.rs"]
mod ratio;

/// Number of distinct texts per shape in the `varying` group.
const VARIANTS: usize = 1024;

/// A small deterministic generator so every run classifies the same texts.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b'a' + self.below(26) as u8)).collect()
    }
}

fn point_select(g: &mut Gen) -> String {
    format!("SELECT c FROM sbtest1 WHERE id={}", 1 + g.below(100_000))
}

fn join3(g: &mut Gen) -> String {
    format!(
        "SELECT o.id, o.created_at, c.name, SUM(l.qty * l.price) AS total FROM orders o \
         JOIN customers c ON c.id = o.customer_id JOIN order_lines l ON l.order_id = o.id \
         WHERE o.created_at >= '2024-{:02}-{:02}' AND c.country = '{}' AND l.qty > {} \
         GROUP BY o.id, o.created_at, c.name ORDER BY total DESC LIMIT {}",
        1 + g.below(12),
        1 + g.below(28),
        g.word(2).to_uppercase(),
        g.below(10),
        10 + g.below(90)
    )
}

const INSERT_COLUMNS: &str = "id, k, c, pad, name, email, country, city, zip, phone, \
     created_at, updated_at, status, score, balance, flags, note, ref_id, lat, lon";

fn insert20_literals(g: &mut Gen) -> String {
    format!(
        "INSERT INTO customers ({INSERT_COLUMNS}) VALUES ({}, {}, '{}', '{}', '{}', '{}@example.com', '{}', '{}', \
         '{:05}', '+49{:09}', '2024-05-{:02} 10:{:02}:00', NOW(), {}, {}.{:02}, {}.{:02}, {}, NULL, {}, {}.{:06}, \
         {}.{:06})",
        g.below(1 << 31),
        g.below(100_000),
        g.word(40),
        g.word(20),
        g.word(12),
        g.word(8),
        g.word(2).to_uppercase(),
        g.word(9),
        g.below(100_000),
        g.below(1_000_000_000),
        1 + g.below(28),
        g.below(60),
        g.below(4),
        g.below(100),
        g.below(100),
        g.below(1_000_000),
        g.below(100),
        g.below(256),
        g.below(1 << 20),
        g.below(90),
        g.below(1_000_000),
        g.below(180),
        g.below(1_000_000),
    )
}

fn insert20_placeholders() -> String {
    format!("INSERT INTO customers ({INSERT_COLUMNS}) VALUES ({})", vec!["?"; 20].join(", "))
}

fn set_user_var(g: &mut Gen) -> String {
    format!("SET @a = {}", g.below(1_000_000))
}

/// (name, one fixed text, the varying texts of the same shape if the statement has literals).
fn statements() -> Vec<(&'static str, String, Option<Vec<String>>)> {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut vary = |f: fn(&mut Gen) -> String| -> (String, Option<Vec<String>>) {
        let fixed = f(&mut g);
        (fixed, Some((0..VARIANTS).map(|_| f(&mut g)).collect()))
    };
    let (ps, ps_v) = vary(point_select);
    let (j, j_v) = vary(join3);
    let (ins, ins_v) = vary(insert20_literals);
    let (set, set_v) = vary(set_user_var);
    vec![
        ("point_select", ps, ps_v),
        ("join3", j, j_v),
        ("insert20_literals", ins, ins_v),
        ("insert20_placeholders", insert20_placeholders(), None),
        ("begin", "BEGIN".to_owned(), None),
        ("commit", "COMMIT".to_owned(), None),
        ("set_names", "SET NAMES utf8mb4".to_owned(), None),
        ("set_user_var", set, set_v),
    ]
}

/// Guards against benchmarking an error path: every text must get the verdict it would get in production.
fn check(name: &str, sql: &str) {
    let v = classify(sql);
    let ok = match name {
        "point_select" | "join3" => v.kind == Kind::Read,
        "insert20_literals" | "insert20_placeholders" => v.kind == Kind::Master,
        "begin" => v.kind == Kind::Begin { read_only: false },
        "commit" => v.kind == Kind::End,
        _ => v.kind == Kind::SessionSet,
    };
    assert!(ok, "{name}: unexpected verdict {v:?} for {sql}");
}

fn bench(c: &mut Criterion, stmts: &[(&'static str, String, Option<Vec<String>>)]) {
    let mut group = c.benchmark_group("classify/repeated");
    for (name, sql, _) in stmts {
        group.bench_with_input(BenchmarkId::from_parameter(name), sql.as_str(), |b, sql| {
            b.iter(|| classify(black_box(sql)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("classify/varying");
    for (name, _, variants) in stmts {
        let Some(variants) = variants else { continue };
        group.bench_with_input(BenchmarkId::from_parameter(name), variants, |b, variants| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % VARIANTS;
                classify(black_box(&variants[i]))
            })
        });
    }
    group.finish();
}

/// Fixed reference work, unrelated to rwsplit: SipHash-1-3 (std's DefaultHasher) over 1 KiB.
fn reference(buf: &[u8; 1024]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    black_box(buf).hash(&mut h);
    h.finish()
}

fn ratios(stmts: &[(&'static str, String, Option<Vec<String>>)]) {
    let buf = [0x5Au8; 1024];
    let mut cases = vec![ratio::Case::new("reference", |n| {
        for _ in 0..n {
            black_box(reference(&buf));
        }
    })];
    for (name, sql, variants) in stmts {
        cases.push(ratio::Case::new(format!("{name}/repeated"), move |n| {
            for _ in 0..n {
                black_box(classify(black_box(sql)));
            }
        }));
        if let Some(variants) = variants {
            let mut i = 0usize;
            cases.push(ratio::Case::new(format!("{name}/varying"), move |n| {
                for _ in 0..n {
                    i = (i + 1) % VARIANTS;
                    black_box(classify(black_box(&variants[i])));
                }
            }));
        }
    }
    let t = ratio::measure(&mut cases);
    let reference = t.of("reference");

    ratio::heading("classify cost ÷ reference (SipHash of 1 KiB)");
    println!("{:<24} {:>12} {:>12} {:>18}", "statement", "repeated", "varying", "varying÷repeated");
    for (name, _, variants) in stmts {
        let rep = t.of(&format!("{name}/repeated"));
        let (var, ratio) = match variants {
            Some(_) => {
                let var = t.of(&format!("{name}/varying"));
                (format!("{:.2}", var / reference), format!("{:.2}", var / rep))
            }
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!("{name:<24} {:>12.2} {var:>12} {ratio:>18}", rep / reference);
    }
}

fn main() {
    let stmts = statements();
    for (name, sql, variants) in &stmts {
        check(name, sql);
        for v in variants.iter().flatten() {
            check(name, v);
        }
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args();
    bench(&mut c, &stmts);
    c.final_summary();
    if ratio::enabled() {
        ratios(&stmts);
    }
}
