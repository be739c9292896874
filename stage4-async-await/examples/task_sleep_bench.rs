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

use shared::bench::SleepBench;
use shared::memory::resident_bytes;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = match SleepBench::parse("task_sleep_bench", &args) {
        Ok(bench) => bench,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let baseline = resident_bytes().unwrap_or(0);
    let all_alive = Rc::new(Cell::new(0));
    let sample = Rc::clone(&all_alive);
    let result = stage4_async_await::run_jobs(bench.total, bench.concurrency, move |job| {
        if bench.one_job_each() && job == bench.total - 1 {
            sample.set(resident_bytes().unwrap_or(0));
        }
        stage4_async_await::sleep(bench.sleep)
    });
    bench.print_outcome("async tasks, one thread", result, || {
        bench.memory_line("tasks", baseline, all_alive.get())
    })
}
