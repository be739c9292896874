//! The async side of the article's benchmark, one configuration per run: `TOTAL` jobs of
//! a `SLEEP_MS` sleep, taken by `CONCURRENCY` tasks on one thread.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example task_sleep_bench -- 100000 100000 10
//! cargo run --release -p stage4-async-await --example task_sleep_bench -- 1000000 1000000 10
//! #                                                     total tasks ^  ^ tasks  ^ sleep (ms)
//! ```
//!
//! Prints the wall time and the ideal (`ceil(total / tasks) x sleep`). When there are as
//! many tasks as jobs, each task runs exactly one job, so the last job to start sees
//! every task alive and asleep: it samples the resident memory then, and the example
//! prints the cost per task (task, waker, timer and all). Run it in a fresh process for
//! that figure: memory freed by an earlier run would be reused and hide the cost.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use shared::memory::resident_bytes;

fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let [total, concurrency, sleep_ms] = args[..] else {
        eprintln!("usage: task_sleep_bench TOTAL_TASKS CONCURRENCY SLEEP_MS");
        return ExitCode::from(2);
    };
    let sleep = Duration::from_millis(sleep_ms);
    let baseline = resident_bytes().unwrap_or(0);
    let with_all_alive = Rc::new(Cell::new(0));
    let sample = Rc::clone(&with_all_alive);
    let result = stage4_async_await::run_jobs(total, concurrency, move |job| {
        if concurrency >= total && job == total - 1 {
            sample.set(resident_bytes().unwrap_or(0));
        }
        stage4_async_await::sleep(sleep)
    });
    match result {
        Ok(elapsed) => {
            let rounds = total.div_ceil(concurrency.clamp(1, total.max(1)));
            println!(
                "{total} tasks of {sleep_ms} ms on {concurrency} async tasks, one thread: \
                 {:.3} s (ideal {:.3} s)",
                elapsed.as_secs_f64(),
                (sleep * rounds as u32).as_secs_f64()
            );
            let resident = with_all_alive.get();
            if resident > baseline {
                println!(
                    "resident memory with all {total} tasks alive: {:.1} MiB, {:.0} bytes per task",
                    (resident - baseline) as f64 / (1 << 20) as f64,
                    (resident - baseline) as f64 / total as f64
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
