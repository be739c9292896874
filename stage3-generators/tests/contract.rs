//! Stage 3's `run` keeps the contract of every stage (`shared::testkit::contract`):
//! every response verified, requests overlapping on one thread, and a clear error for a
//! server that is not there, answers garbage or never answers.
//!
//! Run them: `cargo test -p stage3-generators`.
#![cfg(not(miri))]

use shared::testkit::contract;
use stage3_generators::run;

#[test]
fn ten_requests_overlap() {
    contract::ten_requests_overlap(run);
}

#[test]
fn a_thousand_requests_overlap() {
    contract::a_thousand_requests_overlap(run);
}

#[test]
fn refused_is_a_connect_error() {
    contract::refused_is_a_connect_error(run);
}

#[test]
fn garbage_fails_the_report() {
    contract::garbage_fails_the_report(run);
}

#[test]
fn silence_times_out() {
    contract::silence_times_out(run);
}
