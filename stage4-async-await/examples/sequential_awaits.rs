//! Anti-pattern 3: awaiting one request after another where all could wait at once.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example sequential_awaits
//! ```
//!
//! Five requests to the embedded slow server (delay 200 ms): an `.await` in a loop
//! against `join_all`.

use std::process::ExitCode;
use std::time::Duration;

use shared::server::SlowServer;
use stage4_async_await::anti_patterns::sequential_awaits;

fn main() -> ExitCode {
    let (requests, delay) = (5, Duration::from_millis(200));
    let result = SlowServer::start(delay)
        .map_err(|e| shared::Error::io("starting the slow server", e))
        .and_then(|server| sequential_awaits(server.addr(), requests));
    match result {
        Ok(timings) => {
            shared::say!(
                "{requests} requests, server delay {} ms:",
                delay.as_millis()
            );
            shared::say!(
                "  one .await after another: {:.3} s",
                timings.sequential.as_secs_f64()
            );
            shared::say!(
                "  join_all:                 {:.3} s",
                timings.concurrent.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
