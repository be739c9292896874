//! Anti-pattern 1: a blocking call inside a task stalls every other task, and the
//! runtime says so.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example blocking_call
//! ```
//!
//! A heartbeat task ticks every 20 ms while another task waits 300 ms four ways:
//! `std::thread::sleep`, a request over blocking `std::net` sockets to a slow server,
//! the runtime's `sleep(..).await`, and `std::thread::sleep` on a thread of its own
//! through `spawn_blocking`. The runtime prints its slow-poll warning (here
//! with a 100 ms threshold, the default) as it happens.

use std::process::ExitCode;
use std::time::Duration;

use shared::server::SlowServer;
use stage4_async_await::DEFAULT_SLOW_POLL_THRESHOLD;
use stage4_async_await::anti_patterns::{Wait, blocking_call};

fn main() -> ExitCode {
    let wait = Duration::from_millis(300);
    let server = match SlowServer::start(wait) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: starting the slow server: {error}");
            return ExitCode::FAILURE;
        }
    };
    for (what, how) in [
        ("std::thread::sleep(300 ms)", Wait::ThreadSleep),
        (
            "a blocking std::net request (300 ms)",
            Wait::BlockingSocket(server.addr()),
        ),
        ("sleep(300 ms).await", Wait::AsyncSleep),
        (
            "spawn_blocking(std::thread::sleep(300 ms))",
            Wait::SpawnBlocking,
        ),
    ] {
        shared::say!("a task waits with {what}:");
        match blocking_call(how, wait, DEFAULT_SLOW_POLL_THRESHOLD) {
            Ok(stall) => shared::say!(
                "  longest gap between heartbeats (due every {} ms): {} ms; \
                 slow-poll warnings: {}\n",
                stall.period.as_millis(),
                stall.longest_gap.as_millis(),
                stall.warnings.len()
            ),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
