//! Config loader: any text as proxy.yaml parses or fails with located problems, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsplit::config::{self, Config};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, "fuzz.yaml") {
        Ok(c) => {
            for u in &c.users {
                assert!(c.user(&u.name).is_some());
                let _ = c.consistency_of(&u.name);
            }
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without a problem");
            let _ = e.to_string();
        }
    }
    // The value parsers on their own, on any one line.
    for line in text.lines().take(8) {
        let _ = config::parse_duration(line);
        let _ = config::parse_size(line);
    }
});
