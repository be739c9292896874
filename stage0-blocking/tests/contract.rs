//! Stage 0 keeps the contract of every stage (`shared::testkit::contract`) in both
//! modes: every response verified, and a clear error for a server that is not there,
//! answers garbage or never answers. Only thread-per-request mode overlaps its requests.
//!
//! Run them: `cargo test -p stage0-blocking`.

use shared::testkit::contract;
use stage0_blocking::{run_sequential, run_threads};

#[test]
fn threads_ten_requests_overlap() {
    contract::ten_requests_overlap(run_threads);
}

#[test]
fn threads_a_thousand_requests_overlap() {
    contract::a_thousand_requests_overlap(run_threads);
}

#[test]
fn threads_refused_is_a_connect_error() {
    contract::refused_is_a_connect_error(run_threads);
}

#[test]
fn threads_garbage_fails_the_report() {
    contract::garbage_fails_the_report(run_threads);
}

#[test]
fn threads_silence_times_out() {
    contract::silence_times_out(run_threads);
}

#[test]
fn sequential_refused_is_a_connect_error() {
    contract::refused_is_a_connect_error(run_sequential);
}

#[test]
fn sequential_garbage_fails_the_report() {
    contract::garbage_fails_the_report(run_sequential);
}

#[test]
fn sequential_silence_times_out() {
    contract::silence_times_out(run_sequential);
}

#[test]
fn threads_a_dripping_answer_times_out() {
    contract::a_dripping_answer_times_out(run_threads);
}

#[test]
fn threads_crlf_answers_are_accepted() {
    contract::crlf_answers_are_accepted(run_threads);
}

#[test]
fn sequential_a_dripping_answer_times_out() {
    contract::a_dripping_answer_times_out(run_sequential);
}

#[test]
fn sequential_crlf_answers_are_accepted() {
    contract::crlf_answers_are_accepted(run_sequential);
}

#[test]
fn threads_a_timeout_is_not_waited_out() {
    contract::a_timeout_is_not_waited_out(run_threads);
}

#[test]
fn sequential_a_timeout_is_not_waited_out() {
    contract::a_timeout_is_not_waited_out(run_sequential);
}

#[test]
fn threads_a_far_timeout_is_no_limit() {
    contract::a_far_timeout_is_no_limit(run_threads);
}

#[test]
fn sequential_a_far_timeout_is_no_limit() {
    contract::a_far_timeout_is_no_limit(run_sequential);
}
