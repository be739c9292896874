//! The threads side of the article's benchmark, one configuration per run.
//!
//! ```text
//! cargo run --release -p stage0-blocking --example thread_sleep_bench -- 100000 1000 10
//! #                                                  total tasks ^  ^ threads ^ sleep (ms)
//! ```
//!
//! Prints the wall time and the ideal (`ceil(total / threads) x sleep`), or the limit that
//! stopped the threads. When there are as many threads as tasks, each thread runs exactly
//! one job, so the last job to start sees every thread alive: it samples the resident
//! memory then, and the example prints the cost per thread.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shared::memory::resident_bytes;

fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let [total, concurrency, sleep_ms] = args[..] else {
        eprintln!("usage: thread_sleep_bench TOTAL_TASKS CONCURRENCY SLEEP_MS");
        return ExitCode::from(2);
    };
    let sleep = Duration::from_millis(sleep_ms);
    let baseline = resident_bytes().unwrap_or(0);
    let with_all_alive = AtomicU64::new(0);
    let result = stage0_blocking::run_jobs(total, concurrency, |job| {
        if concurrency >= total && job == total - 1 {
            with_all_alive.store(resident_bytes().unwrap_or(0), Ordering::Relaxed);
        }
        std::thread::sleep(sleep);
    });
    match result {
        Ok(elapsed) => {
            let rounds = total.div_ceil(concurrency.clamp(1, total.max(1)));
            println!(
                "{total} tasks of {sleep_ms} ms on {concurrency} threads: {:.3} s \
                 (ideal {:.3} s)",
                elapsed.as_secs_f64(),
                (sleep * rounds as u32).as_secs_f64()
            );
            let resident = with_all_alive.load(Ordering::Relaxed);
            if resident > baseline {
                println!(
                    "resident memory with all {total} threads alive: {:.1} MiB, {:.1} KiB per thread",
                    (resident - baseline) as f64 / (1 << 20) as f64,
                    (resident - baseline) as f64 / 1024.0 / total as f64
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
