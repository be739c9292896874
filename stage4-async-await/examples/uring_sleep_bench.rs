//! The article's sleep benchmark on the io_uring driver, with the sleeps either in the
//! reactor's timer queue (what `--driver uring` uses) or as io_uring timeouts (one
//! `IORING_OP_TIMEOUT` per sleep: the kernel's timers), to show why the driver keeps the
//! queue.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example uring_sleep_bench -- queue 100000 100000 10
//! cargo run --release -p stage4-async-await --example uring_sleep_bench -- ring 100000 100000 10
//! #                                            timers ^   total tasks ^  ^ tasks  ^ sleep (ms)
//! ```
//!
//! Prints the wall time and the ideal, as `task_sleep_bench` does, and the resident memory
//! per task when every task sleeps once (the kernel's share of a timeout, about 200
//! bytes of `io_kiocb` and timer, is not in that figure: it is kernel memory). Linux only.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use std::cell::Cell;
    use std::process::ExitCode;
    use std::rc::Rc;

    use shared::bench::SleepBench;
    use shared::memory::resident_bytes;
    use stage4_async_await::uring;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: uring_sleep_bench queue|ring TOTAL_TASKS CONCURRENCY SLEEP_MS";
    let (ring, bench) = match args.split_first() {
        Some((timers, rest)) if timers == "queue" || timers == "ring" => {
            match SleepBench::parse("uring_sleep_bench", rest) {
                Ok(bench) => (timers == "ring", bench),
                Err(_) => {
                    eprintln!("{usage}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    // io_uring missing or refused: one clear line before any task.
    if let Err(error) = stage4_async_await::block_on(async { uring::check() }) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let baseline = resident_bytes().unwrap_or(0);
    let all_alive = Rc::new(Cell::new(0));
    let sample = Rc::clone(&all_alive);
    let sample_memory = move |job| {
        if bench.one_job_each() && job == bench.total - 1 {
            sample.set(resident_bytes().unwrap_or(0));
        }
    };
    // Two closures, so each variant's task holds only its own future.
    let result = if ring {
        stage4_async_await::run_jobs(bench.total, bench.concurrency, move |job| {
            sample_memory(job);
            async move {
                if let Err(error) = uring::sleep(bench.sleep).await {
                    panic!("an io_uring timeout failed: {error}");
                }
            }
        })
    } else {
        stage4_async_await::run_jobs(bench.total, bench.concurrency, move |job| {
            sample_memory(job);
            if job == 0 {
                // The driver's ring is set up (as `--driver uring` does), yet stays idle:
                // each sleep is an entry in the reactor's queue.
                uring::check().expect("checked above");
            }
            stage4_async_await::sleep(bench.sleep)
        })
    };
    let workers = if ring {
        "tasks, io_uring timeouts"
    } else {
        "tasks, timer queue, uring driver"
    };
    bench.print_outcome(workers, result, || {
        bench.memory_line("tasks", baseline, all_alive.get())
    })
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("uring_sleep_bench: io_uring is Linux-only");
    std::process::ExitCode::FAILURE
}
