//! The async side of the article's benchmark (section 6): `total_tasks` jobs that each
//! sleep, run by `concurrency` tasks on one thread.
//!
//! As in the article, the workers share a job counter under an async lock: each takes the
//! next job, sleeps, and comes back for another until none are left. With as many tasks
//! as jobs, every task sleeps once, all at the same time.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use shared::Error;

use crate::{EventLoop, JoinHandle, spawn, time};

/// The async side of the article's benchmark: `total_tasks` sleeps of `sleep` run by
/// `concurrency` tasks on one thread; returns the wall time.
pub fn sleep_bench(total_tasks: u64, concurrency: u64, sleep: Duration) -> Result<Duration, Error> {
    run_jobs(total_tasks, concurrency, move |_job| time::sleep(sleep))
}

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
    // NB: spawning a million tasks is one long poll of the block_on future (about 0.15 s
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
        // Boxed with its hand-over and spawn location, it still allocates 80 bytes.
        let (_handle, completion) = crate::join_handle::join_pair::<()>(0);
        let task = crate::task::TaskFuture {
            future: worker,
            completion,
            spawned_at: std::panic::Location::caller(),
        };
        assert!(std::mem::size_of_val(&task) <= 72);
        assert!(std::mem::size_of::<crate::time::Sleep>() <= 32);
    }
}
