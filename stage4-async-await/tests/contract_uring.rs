//! Stage 4's contract on the io_uring driver (`--driver uring`): the same promises as
//! `tests/contract.rs` (every response verified, requests overlapping, clear errors for a
//! server that is not there, answers garbage or never answers), with completion I/O.
//!
//! Run them: `cargo test -p stage4-async-await --test contract_uring` (Linux only).

#![cfg(target_os = "linux")]

use shared::{Config, Error, Report};
use stage4_async_await::{Driver, Options, run_with};

mod common;

/// `run` on the uring driver; where io_uring is refused (and not on CI), on mio, after a
/// note that says so: the contract's macro cannot skip a test.
fn run_uring(config: &Config) -> Result<Report, Error> {
    let driver = match common::io_uring_refused() {
        None => Driver::Uring,
        Some(_) => Driver::Mio,
    };
    let options = Options {
        driver,
        ..Options::default()
    };
    run_with(config, &options)
}

shared::contract_tests!(run_uring);
