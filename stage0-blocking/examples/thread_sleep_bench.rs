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

use shared::bench::SleepBench;
use shared::memory::resident_bytes;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = match SleepBench::parse("thread_sleep_bench", &args) {
        Ok(bench) => bench,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let baseline = resident_bytes().unwrap_or(0);
    let all_alive = AtomicU64::new(0);
    let result = stage0_blocking::run_jobs(bench.total, bench.concurrency, |job| {
        if bench.one_job_each() && job == bench.total - 1 {
            all_alive.store(resident_bytes().unwrap_or(0), Ordering::Relaxed);
        }
        std::thread::sleep(bench.sleep);
    });
    match result {
        Ok(elapsed) => {
            println!("{}", bench.time_line("threads", elapsed));
            let all_alive = all_alive.load(Ordering::Relaxed);
            if let Some(line) = bench.memory_line("threads", baseline, all_alive) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
