//! Stage 0: blocking sockets, first one request at a time, then one thread per request.
//!
//! Read the crate `shared` first (the protocol, the slow server, the report). This stage
//! is the baseline the article starts from: `make_tcp_request` blocks, so ten requests
//! to a server that takes 5 s each take 50 s in a row, or 5 s with ten threads. The
//! threads side of the article's benchmark ([`sleep_bench`]) lives here too, and so do
//! the limits that make threads stop scaling.
//!
//! ```text
//! cargo run -p stage0-blocking                       # ten threads, ~5 s
//! cargo run -p stage0-blocking -- --mode sequential  # one at a time, ~50 s
//! ```

pub mod client;
mod sleep_bench;
mod threads;

use std::sync::mpsc;
use std::thread;

use shared::{Config, Error, Report, request_ids};

pub use sleep_bench::{run_jobs, sleep_bench};
pub use threads::{MAPS_PER_THREAD, THREAD_STACK_SIZE, check_thread_budget};

use client::consume_response;

/// How stage 0 waits for many requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One OS thread per request: all of them wait at once.
    Threads,
    /// One request after another on the calling thread.
    Sequential,
}

/// Runs the article's demo in thread-per-request mode, the stage's default.
pub fn run(config: &Config) -> Result<Report, Error> {
    run_threads(config)
}

/// Runs the article's demo in the given mode.
pub fn run_mode(config: &Config, mode: Mode) -> Result<Report, Error> {
    match mode {
        Mode::Threads => run_threads(config),
        Mode::Sequential => run_sequential(config),
    }
}

// ANCHOR: run_sequential
/// One request at a time: each waits for the previous one's answer.
pub fn run_sequential(config: &Config) -> Result<Report, Error> {
    let mut report = Report::start(config);
    for id in request_ids(config.requests) {
        consume_response(config, id, |id, response| report.record(id, response));
    }
    report.finish()
}
// ANCHOR_END: run_sequential

// ANCHOR: run_threads
/// One OS thread per request, all started at once; the main thread records the
/// responses in the order they arrive.
pub fn run_threads(config: &Config) -> Result<Report, Error> {
    check_thread_budget(config.requests)?;
    let mut report = Report::start(config);
    let (responses, arrivals) = mpsc::channel();
    let refused = thread::scope(|scope| {
        for (started, id) in request_ids(config.requests).enumerate() {
            let responses = responses.clone();
            let spawned = threads::builder().spawn_scoped(scope, move || {
                consume_response(config, id, |id, response| {
                    // The receiver outlives every thread of the scope.
                    let _ = responses.send((id, response));
                });
            });
            if let Err(error) = spawned {
                return Some(threads::refused(config.requests, started as u64, error));
            }
        }
        drop(responses); // so the loop below ends when the last thread is done
        for (id, response) in arrivals.iter() {
            report.record(id, response);
        }
        None
    });
    match refused {
        Some(error) => Err(error),
        None => report.finish(),
    }
}
// ANCHOR_END: run_threads
