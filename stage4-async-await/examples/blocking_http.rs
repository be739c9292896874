//! Anti-pattern 1 in the article's own form: a blocking HTTP request inside a task (its
//! `requests.get` in a coroutine, where aiohttp belonged), against hyper's client on
//! the loop.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example blocking_http
//! ```
//!
//! Five tasks each fetch one answer from an HTTP server that takes 200 ms to answer
//! (hyper, on a thread and an event loop of its own), joined like the article's
//! `gather`, while a heartbeat task ticks every 20 ms beside them. Three ways: std's
//! blocking sockets in the task, hyper's client awaited, and the blocking request moved
//! to `spawn_blocking`. The runtime prints its slow-poll warnings as they happen.

#[path = "hyper/blocking.rs"]
mod blocking;
// Shared with the hyper example and the tests, each of which uses part of them.
#[allow(dead_code)]
#[path = "hyper/echo.rs"]
mod echo;

use std::process::ExitCode;
use std::time::Duration;

use stage4_async_await::DEFAULT_SLOW_POLL_THRESHOLD;

use blocking::{How, fetch_all};
use echo::{Server, ServerThread};

fn main() -> ExitCode {
    let (requests, delay) = (5, Duration::from_millis(200));
    let server = match ServerThread::start(Server::new(delay)) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: starting the HTTP server: {error}");
            return ExitCode::FAILURE;
        }
    };
    shared::say!(
        "{requests} tasks, one request each, to an HTTP server that answers in {} ms:\n",
        delay.as_millis()
    );
    for (what, how) in [
        ("a blocking std::net request in each task", How::Blocking),
        ("hyper's client, awaited", How::Hyper),
        (
            "the blocking request in spawn_blocking, awaited",
            How::SpawnBlocking,
        ),
    ] {
        shared::say!("{what}:");
        server.stats().take_peak_waiting();
        match fetch_all(how, server.addr(), requests, DEFAULT_SLOW_POLL_THRESHOLD) {
            Ok(fetched) => shared::say!(
                "  {}; at most {} waiting at the server at once\n  \
                 longest gap between heartbeats (due every {} ms): {} ms; \
                 slow-poll warnings: {}\n",
                fetched.report,
                server.stats().take_peak_waiting(),
                fetched.stall.period.as_millis(),
                fetched.stall.longest_gap.as_millis(),
                fetched.stall.warnings.len(),
            ),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
