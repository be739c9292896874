//! Stage 4: `async`/`await` on std's `Future`, run by an executor and a reactor we build
//! ourselves.
//!
//! Read stage 3 first: its four players (generator, `Future`, `Task`, `EventLoop`) are all
//! here, renamed. The compiler writes the generator (an `async fn` is a state machine);
//! [`std::future::Future`] is the future, with `poll` instead of done-callbacks; a task
//! is a boxed future with a [`std::task::Waker`] ([`executor`]); the event loop is the
//! executor plus the [`reactor`] (mio and timers).
//!
//! ```text
//! cargo run -p stage4-async-await                                   # ten requests, ~5 s
//! cargo run --release -p stage4-async-await -- --requests 9000 --delay-ms 100
//! cargo run --release -p stage4-async-await --example task_sleep_bench -- 1000000 1000000 10
//! ```
//!
//! - [`EventLoop`], [`block_on`], [`spawn`], [`JoinHandle`], [`yield_now`],
//!   [`spawn_blocking`]: the executor.
//! - [`sleep`], [`sleep_until`], [`timeout`]: timers.
//! - [`net::TcpStream`], [`net::TcpListener`]: sockets.
//! - [`join_all`]: the article's `asyncio.gather`.
//! - [`run`] and [`sleep_bench`]: the article's demo and benchmark.
//!
//! Any standard future runs here, including the `futures` crate's channels, locks and
//! streams: the runtime only ever talks to a future through `poll` and a `Waker`.

pub mod anti_patterns;
pub mod client;
pub mod executor;
pub mod join;
pub mod net;
pub mod reactor;
mod slab;
pub mod time;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use shared::{Config, Error, Report, request_ids};

pub use executor::{
    DEFAULT_SLOW_POLL_THRESHOLD, EventLoop, JoinError, JoinHandle, SlowPoll, TaskInfo, block_on,
    spawn, spawn_blocking, yield_now,
};
pub use join::{JoinAll, join_all};
pub use time::{Elapsed, Sleep, sleep, sleep_until, timeout};

use client::consume_response;

// ANCHOR: run
/// Runs the article's demo: one task per request, all spawned at once on one thread,
/// each recording its response as it arrives.
pub fn run(config: &Config) -> Result<Report, Error> {
    let event_loop = EventLoop::new().map_err(|e| Error::io("creating the event loop", e))?;
    event_loop.block_on(async {
        // Tasks are 'static: each gets its own copy of the config and a handle on the
        // report. One thread, so an Rc<RefCell> is enough: no Mutex.
        let report = Rc::new(RefCell::new(Report::start(config)));
        let tasks: Vec<JoinHandle<()>> = request_ids(config.requests)
            .map(|id| {
                let (config, report) = (config.clone(), Rc::clone(&report));
                spawn(async move {
                    consume_response(&config, id, |id, response| {
                        report.borrow_mut().record(id, response);
                    })
                    .await;
                })
            })
            .collect();
        for joined in join_all(tasks).await {
            joined?; // only a panic in a task ends up here
        }
        let report = Rc::into_inner(report).expect("every task has finished");
        report.into_inner().finish()
    })
}
// ANCHOR_END: run

// ANCHOR: run_jobs
/// Runs `job(0)` to `job(total_tasks - 1)`, each exactly once, on `concurrency` worker
/// tasks that take job numbers from a shared counter behind an async lock, and returns
/// the wall time, task creation included.
pub fn run_jobs<F, Fut>(total_tasks: u64, concurrency: u64, job: F) -> Result<Duration, Error>
where
    F: Fn(u64) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let workers = concurrency.clamp(1, total_tasks.max(1));
    // NB: spawning a million tasks is one long poll of the block_on future (about 0.2 s
    // here), by design, as the article's `gather` of a million coroutines is. The
    // slow-poll warning would flag the benchmark's own set-up, so it is off here.
    let event_loop = EventLoop::new()
        .map_err(|e| Error::io("creating the event loop", e))?
        .slow_poll_threshold(Duration::MAX);
    event_loop.block_on(async move {
        let start = Instant::now();
        let jobs = Rc::new(Jobs {
            // NB: the article guards its counter with an asyncio.Lock, so we use an async
            // lock too. On one thread a `Cell` would do; it is never held across an .await.
            next: futures::lock::Mutex::new(0),
            total: total_tasks,
            done: Cell::new(0),
            job,
        });
        // Every worker is spawned before any runs, so all of them are alive at once:
        // that is what "concurrency" means in the article's table.
        let tasks: Vec<JoinHandle<()>> = (0..workers)
            .map(|_| spawn(worker(Rc::clone(&jobs))))
            .collect();
        for task in tasks {
            task.await?;
        }
        if jobs.done.get() != total_tasks {
            return Err(Error::Other(format!(
                "{} of {total_tasks} jobs ran",
                jobs.done.get()
            )));
        }
        Ok(start.elapsed())
    })
}

/// What the workers share: one `Rc` per worker, not four.
struct Jobs<F> {
    next: futures::lock::Mutex<u64>,
    total: u64,
    done: Cell<u64>,
    job: F,
}

async fn worker<F, Fut>(jobs: Rc<Jobs<F>>)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let id = {
            let mut next = jobs.next.lock().await;
            if *next == jobs.total {
                return;
            }
            *next += 1;
            *next - 1
        }; // the lock is released here, before the job runs
        (jobs.job)(id).await;
        jobs.done.set(jobs.done.get() + 1);
    }
}
// ANCHOR_END: run_jobs

/// The async side of the article's benchmark: `total_tasks` sleeps of `sleep` run by
/// `concurrency` tasks on one thread; returns the wall time.
pub fn sleep_bench(total_tasks: u64, concurrency: u64, sleep: Duration) -> Result<Duration, Error> {
    run_jobs(total_tasks, concurrency, move |_job| time::sleep(sleep))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    /// The book's per-task table counts on these; a change should be a decision.
    #[test]
    fn a_sleep_bench_worker_stays_small() {
        let worker = super::worker(Rc::new(super::Jobs {
            next: futures::lock::Mutex::new(0),
            total: 1,
            done: Cell::new(0),
            job: |_id: u64| crate::time::sleep(Duration::ZERO),
        }));
        assert!(std::mem::size_of_val(&worker) <= 56);
        assert!(std::mem::size_of::<crate::time::Sleep>() <= 32);
    }
}
