//! The coroutine side of the article's benchmark (section 6): `total_tasks` jobs that each
//! sleep, run by `concurrency` worker coroutines on one thread.
//!
//! As in stage 0, the workers share a job counter: each takes the next job, sleeps (on
//! the loop's timers, not the OS's), and comes back for another until none are left.
//! `cargo run --release -p stage3-generators --example coroutine_sleep_bench` runs it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use shared::Error;

use crate::event_loop::EventLoop;
use crate::task::Task;
use crate::{Options, stack};

/// What [`sleep_bench_probed`] measured.
#[derive(Debug, Clone, Copy)]
pub struct SleepBench {
    /// From the first worker's start to the last job's end.
    pub elapsed: Duration,
    /// Jobs that ran (always `total_tasks` when the run succeeds).
    pub jobs: u64,
    /// Worker coroutines, alive at once.
    pub workers: u64,
}

/// The article's benchmark: `total_tasks` jobs of one `sleep` each, run by `concurrency`
/// coroutines that take jobs from a shared counter. Returns the wall time.
pub fn sleep_bench(total_tasks: u64, concurrency: u64, sleep: Duration) -> Result<Duration, Error> {
    sleep_bench_probed(total_tasks, concurrency, sleep, || {}).map(|run| run.elapsed)
}

// ANCHOR: sleep_bench
/// [`sleep_bench`], calling `probe` once every worker has started (from inside the
/// last one, while all the others are suspended): the moment to sample memory.
pub fn sleep_bench_probed(
    total_tasks: u64,
    concurrency: u64,
    sleep: Duration,
    probe: impl FnOnce() + 'static,
) -> Result<SleepBench, Error> {
    sleep_bench_with(total_tasks, concurrency, sleep, &Options::default(), probe)
}

/// [`sleep_bench_probed`] with `options` (the stack size of the workers, tracing).
pub fn sleep_bench_with(
    total_tasks: u64,
    concurrency: u64,
    sleep: Duration,
    options: &Options,
    probe: impl FnOnce() + 'static,
) -> Result<SleepBench, Error> {
    let workers = concurrency.clamp(1, total_tasks.max(1));
    stack::check_stack_budget(workers + 1)?;
    let event_loop = EventLoop::new(options.trace)?;
    event_loop.set_stack_size(options.stack_size);
    let remaining = Rc::new(Cell::new(total_tasks));
    let jobs = Rc::new(Cell::new(0u64));
    let probe = Rc::new(Cell::new(Some(probe)));
    let started = Instant::now();
    // Spawn and run in a closure, so that the loop is closed below whatever happens.
    let outcome = (|| {
        let mut tasks = Vec::with_capacity(workers as usize);
        for worker in 0..workers {
            let (remaining, jobs, probe) = (remaining.clone(), jobs.clone(), probe.clone());
            tasks.push(Task::spawn(&event_loop, "worker", move |co| {
                if worker == workers - 1
                    && let Some(probe) = probe.take()
                {
                    probe();
                }
                while remaining.get() > 0 {
                    remaining.set(remaining.get() - 1);
                    co.sleep(sleep);
                    jobs.set(jobs.get() + 1);
                }
            })?);
        }
        let all = Task::spawn(&event_loop, "gather", move |co| {
            for task in &tasks {
                co.wait(task.result());
            }
        })?;
        // Only a bug could hang a benchmark of sleeps; even then, it must end.
        let floor = shared::bench::SleepBench {
            total: total_tasks,
            concurrency: workers,
            sleep,
        }
        .ideal();
        let timeout = floor.saturating_add(Duration::from_secs(600));
        event_loop.run_until_complete(all.result(), timeout)
    })();
    let elapsed = started.elapsed();
    event_loop.close();
    stack::release_free_stacks();
    outcome?;
    Ok(SleepBench {
        elapsed,
        jobs: jobs.get(),
        workers,
    })
}
// ANCHOR_END: sleep_bench
