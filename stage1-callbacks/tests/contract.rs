//! Stage 1's `run` keeps the contract of every stage (`shared::testkit::contract`):
//! every response verified, requests overlapping on one thread, and a clear error for a
//! server that is not there, answers garbage or never answers.
//!
//! Run them: `cargo test -p stage1-callbacks`.

shared::contract_tests!(stage1_callbacks::run);
