//! Stage 3: generators, and the article's four players (generator, `Future`, `Task`,
//! `EventLoop`).
//!
//! Read stage 2 first: its event loop drives one hand-written state machine per
//! connection. Here the state machine is gone. Each request is a task whose code reads
//! like the blocking client of stage 0, because it runs on a stack of its own (a
//! stackful coroutine, [`generator`]) and suspends wherever it would have blocked.
//!
//! The players, in the order to read them:
//!
//! 1. [`generator`]: `resume` / `suspend` (Python's `send` / `yield`), on stacks from
//!    [`stack`], switched by a few lines of assembly.
//! 2. [`future`]: a result not there yet, with done-callbacks.
//! 3. [`task`]: steps a generator; when it yields a future, steps it again once that
//!    future is done.
//! 4. [`event_loop`]: runs ready callbacks, turns socket readiness and timers into
//!    completed futures.
//!
//! Then [`client`]: `make_tcp_request` and `consume_response`, and [`run`] below.
//!
//! `cargo run -p stage3-generators` (add `-- --trace` to watch the players at work).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use shared::{Config, Error, Report, request_ids};

pub mod client;
pub mod event_loop;
pub mod future;
pub mod generator;
pub mod stack;
mod switch;
pub mod task;

use event_loop::EventLoop;
use task::Task;

/// How [`run_with`] runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print each step of the loop, the tasks and their futures.
    pub trace: bool,
}

/// Makes `config.requests` requests at once, one task each, and verifies the answers.
pub fn run(config: &Config) -> Result<Report, Error> {
    run_with(config, &Options::default())
}

// ANCHOR: run
/// [`run`], with tracing if asked for.
pub fn run_with(config: &Config, options: &Options) -> Result<Report, Error> {
    stack::check_stack_budget(config.requests + 1)?;
    let event_loop = EventLoop::new(options.trace)?;
    let report = Rc::new(RefCell::new(Report::start(config)));
    let outcome = run_tasks(&event_loop, config, &report);
    // Cancel the tasks still suspended (after a timeout or an error): their sockets close.
    event_loop.close();
    stack::release_free_stacks();
    outcome?;
    let report = Rc::try_unwrap(report)
        .map_err(|_| Error::Other("a task outlived its event loop".into()))?;
    report.into_inner().finish()
}

/// One task per request, and one that waits for all of them.
fn run_tasks(
    event_loop: &EventLoop,
    config: &Config,
    report: &Rc<RefCell<Report>>,
) -> Result<(), Error> {
    let mut tasks = Vec::new();
    for id in request_ids(config.requests) {
        let (report, config) = (report.clone(), config.clone());
        let task = Task::spawn(event_loop, format!("request {id}"), move |co| {
            client::consume_response(co, &config, id, |id, response| {
                report.borrow_mut().record(id, response);
            });
        })?;
        tasks.push((id, task));
    }
    // Python: `asyncio.gather(*tasks)`, a task that waits for each of the others.
    let waited = tasks.clone();
    let all = Task::spawn(event_loop, "gather", move |co| {
        for (_, task) in &waited {
            co.wait(task.result());
        }
    })?;
    // NB: one deadline for the whole run rather than a timer per request: all requests
    // start at once, so it is the same limit, and the loop stays small.
    match event_loop.run_until_complete(all.result(), config.timeout) {
        // Requests still unanswered fail in the report; the answers we have still count.
        Err(Error::Timeout { .. }) => {
            report.borrow_mut().time_out_unanswered(config.timeout);
            Ok(())
        }
        outcome => outcome,
    }
}
// ANCHOR_END: run

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
    let workers = concurrency.clamp(1, total_tasks.max(1));
    stack::check_stack_budget(workers + 1)?;
    let event_loop = EventLoop::new(false)?;
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
