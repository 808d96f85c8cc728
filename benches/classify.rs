//! Cost of statement classification on typical statements: `rwsplit_classify::classify` (the full
//! classifier) and `classify_cached` (the per-thread statement-shape cache in front of it, what the proxy
//! calls for COM_QUERY).
//!
//! Criterion groups, for `classify` and `classify_cached` alike:
//! - `…/repeated/*`: the same text every iteration (what an exact-text cache would hit).
//! - `…/varying/*`: the same shape with different literals every iteration, cycling through 1024 pre-built
//!   texts (what a statement-shape cache hits and an exact-text cache would not).
//! - `classify_cached/miss/point_select`: 8192 distinct shapes in turn (more than the cache keeps), so
//!   nearly every call misses: the cache's own overhead.
//!
//! After criterion, an interleaved ratio pass (see `common/ratio.rs`) prints each cost as a multiple of a
//! fixed reference (SipHash of 1 KiB, independent of rwsplit's code), and cached ÷ uncached.
//!
//! Run: `cargo bench --bench classify` (filter: `cargo bench --bench classify -- varying/join3`).

use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use rwsplit_classify::{classify, classify_cached, Dialect, Kind};

#[path = "common/ratio.rs"]
mod ratio;

/// Number of distinct texts per shape in the `varying` groups.
const VARIANTS: usize = 1024;
/// Number of distinct shapes in the cache-miss case (the cache keeps 4096 per thread).
const SHAPES: usize = 8192;

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
    assert_eq!(*classify_cached(sql.as_bytes(), Dialect::default()), v, "{name}: cached verdict differs for {sql}");
}

/// Point selects of 8192 distinct shapes (the table name varies).
fn distinct_shapes() -> Vec<String> {
    (0..SHAPES).map(|i| format!("SELECT c FROM sbtest{i} WHERE id={}", 1 + i * 7)).collect()
}

/// Runs one classifier on one text.
type Run = fn(&str);

/// The two classifiers under test, with a uniform signature.
const CLASSIFIERS: [(&str, Run); 2] = [
    ("classify", |sql| {
        black_box(classify(sql));
    }),
    ("classify_cached", |sql| {
        black_box(classify_cached(sql.as_bytes(), Dialect::default()));
    }),
];

type Stmts = [(&'static str, String, Option<Vec<String>>)];

fn bench(c: &mut Criterion, stmts: &Stmts) {
    for (prefix, run) in CLASSIFIERS {
        let mut group = c.benchmark_group(format!("{prefix}/repeated"));
        for (name, sql, _) in stmts {
            group.bench_with_input(BenchmarkId::from_parameter(name), sql.as_str(), |b, sql| {
                b.iter(|| run(black_box(sql)))
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("{prefix}/varying"));
        for (name, _, variants) in stmts {
            let Some(variants) = variants else { continue };
            group.bench_with_input(BenchmarkId::from_parameter(name), variants, |b, variants| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) % VARIANTS;
                    run(black_box(&variants[i]))
                })
            });
        }
        group.finish();
    }
    let shapes = distinct_shapes();
    let mut group = c.benchmark_group("classify_cached/miss");
    group.bench_function("point_select", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % SHAPES;
            black_box(classify_cached(black_box(shapes[i].as_bytes()), Dialect::default()))
        })
    });
    group.finish();
}

/// A ratio-pass case running `run` over `texts` in turn.
fn case<'a>(name: String, run: Run, texts: &'a [String]) -> ratio::Case<'a> {
    let mut i = 0usize;
    ratio::Case::new(name, move |n| {
        for _ in 0..n {
            i = (i + 1) % texts.len();
            run(black_box(&texts[i]));
        }
    })
}

/// Fixed reference work, unrelated to rwsplit: SipHash-1-3 (std's DefaultHasher) over 1 KiB.
fn reference(buf: &[u8; 1024]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    black_box(buf).hash(&mut h);
    h.finish()
}

fn ratios(stmts: &Stmts) {
    let buf = [0x5Au8; 1024];
    let fixed: Vec<Vec<String>> = stmts.iter().map(|(_, sql, _)| vec![sql.clone()]).collect();
    let shapes = distinct_shapes();
    let mut cases = vec![ratio::Case::new("reference", |n| {
        for _ in 0..n {
            black_box(reference(&buf));
        }
    })];
    for (prefix, run) in CLASSIFIERS {
        for ((name, _, variants), one) in stmts.iter().zip(&fixed) {
            cases.push(case(format!("{prefix}/{name}/repeated"), run, one));
            if let Some(variants) = variants {
                cases.push(case(format!("{prefix}/{name}/varying"), run, variants));
            }
        }
        cases.push(case(format!("{prefix}/distinct_shapes"), run, &shapes));
    }
    let t = ratio::measure(&mut cases);
    let rel = |name: String| t.of(&name) / t.of("reference");

    ratio::heading("classification cost ÷ reference (SipHash of 1 KiB)");
    println!(
        "{:<22} {:>9} {:>9} {:>16} {:>16} {:>15}",
        "statement", "repeated", "varying", "cached repeated", "cached varying", "cached÷uncached"
    );
    for (name, _, variants) in stmts {
        let rep = rel(format!("classify/{name}/repeated"));
        let cached_rep = rel(format!("classify_cached/{name}/repeated"));
        let (var, cached_var, gain) = match variants {
            Some(_) => {
                let var = rel(format!("classify/{name}/varying"));
                let cached_var = rel(format!("classify_cached/{name}/varying"));
                (format!("{var:.2}"), format!("{cached_var:.2}"), cached_var / var)
            }
            None => ("-".to_owned(), "-".to_owned(), cached_rep / rep),
        };
        println!("{name:<22} {rep:>9.2} {var:>9} {cached_rep:>16.2} {cached_var:>16} {gain:>15.2}");
    }
    println!(
        "{:<22} {:>9.2} {:>9} {:>16} {:>16.2} {:>15.2}",
        "8192 distinct shapes",
        rel("classify/distinct_shapes".into()),
        "-",
        "-",
        rel("classify_cached/distinct_shapes".into()),
        t.of("classify_cached/distinct_shapes") / t.of("classify/distinct_shapes")
    );
    println!("(cached÷uncached: of the varying texts where there are some, else of the repeated text; the last row");
    println!(" cycles through more shapes than the cache keeps, so it shows the cost of a miss)");
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
