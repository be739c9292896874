//! The threads side of the article's benchmark, one configuration per run.
//!
//! ```text
//! cargo run --release -p stage0-blocking --example sleep_bench -- 100000 1000 10
//! #                                                  total tasks ^  ^ threads ^ sleep (ms)
//! ```
//!
//! Prints the wall time and the ideal (`ceil(total / threads) x sleep`), or the limit that
//! stopped the threads.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let [total, concurrency, sleep_ms] = args[..] else {
        eprintln!("usage: sleep_bench TOTAL_TASKS CONCURRENCY SLEEP_MS");
        return ExitCode::from(2);
    };
    let sleep = Duration::from_millis(sleep_ms);
    match stage0_blocking::sleep_bench(total, concurrency, sleep) {
        Ok(elapsed) => {
            let rounds = total.div_ceil(concurrency.clamp(1, total.max(1)));
            println!(
                "{total} tasks of {sleep_ms} ms on {concurrency} threads: {:.3} s \
                 (ideal {:.3} s)",
                elapsed.as_secs_f64(),
                (sleep * rounds as u32).as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
