//! Replication positions (GTID lists and sets from servers and `min_gtid` hints): parse without panic, print→parse is the identity, merge covers both.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rwsplit::position::{Flavor, Position};

fuzz_target!(|data: &[u8]| {
    // Two positions, split at the first NUL.
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\0').unwrap_or((&text, ""));
    let parsed: Vec<Position> = [a, b]
        .iter()
        .flat_map(|t| [Position::parse(Flavor::MariaDb, t), Position::parse(Flavor::MySql, t), Position::parse_any(t)])
        .flatten()
        .collect();
    for p in &parsed {
        let printed = p.to_string();
        let again = match p {
            Position::MariaDb(_) => Position::parse_mariadb(&printed),
            Position::MySql(_) => Position::parse_mysql(&printed),
            Position::Binlog(_) => continue,
        };
        assert_eq!(again.as_ref(), Some(p), "printed as {printed:?}");
        assert!(p.covers(p));
        let _ = p.wait_query(Duration::from_millis(1500));
        let _ = p.wait_reached(Some(a.as_bytes()));
    }
    for x in &parsed {
        for y in &parsed {
            let mut m = x.clone();
            m.merge(y);
            assert!(m.covers(y), "{m} does not cover {y}");
            if std::mem::discriminant(x) == std::mem::discriminant(y) {
                assert!(m.covers(x), "{m} does not cover {x}");
            }
        }
    }
});
