//! Admin interface commands: any text parses to a command or an error message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rwsplit::admin::{self, Command};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    match admin::parse(sql) {
        Ok(Command::Select(items)) => assert!(!items.is_empty(), "a SELECT of nothing"),
        Ok(_) => {}
        Err(message) => assert!(!message.is_empty(), "an error without a message"),
    }
});
