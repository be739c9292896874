//! The task that is always ready: an accept loop under a flood of connections, with and
//! without the runtime's cooperative budget.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example flood            # 21,000 connections
//! cargo run --release -p stage4-async-await --example flood -- 5000
//! ```
//!
//! Two threads connect and hang up as fast as they can, after filling the listen queue;
//! one task accepts and spawns a reader per connection; a heartbeat beside it should tick
//! every 10 ms. Without a budget, every accept completes at once and the accept loop
//! never yields; with one, it yields every 128 accepts.

use stage4_async_await::anti_patterns::flood;
use stage4_async_await::context::DEFAULT_BUDGET;

fn main() {
    let connections = match std::env::args().nth(1).map(|arg| arg.parse::<u64>()) {
        None => 21_000,
        Some(Ok(connections)) if connections > 0 => connections,
        Some(_) => {
            eprintln!("usage: flood [CONNECTIONS]   (a positive number; default 21000)");
            std::process::exit(2);
        }
    };
    shared::say!("{connections} connections, accepted by one task beside a heartbeat every 10 ms:");
    shared::say!(
        "  budget per poll   accepted   time      longest accept poll   longest heartbeat gap"
    );
    for budget in [None, Some(DEFAULT_BUDGET)] {
        match flood(connections, budget) {
            Ok(flood) => shared::say!(
                "  {:<16}  {:>8}   {:>5.3} s   {:>6} ms             {:>6} ms",
                budget.map_or("none".to_string(), |b| b.to_string()),
                flood.accepted,
                flood.elapsed.as_secs_f64(),
                flood.longest_accept_poll.as_millis(),
                flood.stall.longest_gap.as_millis()
            ),
            Err(error) => {
                eprintln!("error: {error}");
                std::process::exit(1);
            }
        }
    }
}
