//! Test and benchmark host package; see tests/ and benches/.
