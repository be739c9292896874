//! The threads side of the article's benchmark (section 6): `total_tasks` jobs that each
//! sleep, run by `concurrency` OS threads.
//!
//! As in the article, the workers share a job counter under a lock: each takes the next
//! job, sleeps, and comes back for another until none are left. With 100,000 jobs of 10 ms
//! and 100 threads that is 1,000 rounds, about 10 s; with 100,000 threads it would be one
//! round, if the OS let us start them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use shared::Error;

use crate::threads::{self, check_thread_budget};

/// Runs `total_tasks` sleeps of `sleep` on `concurrency` threads and returns the wall
/// time, thread start-up included (an asyncio run pays for its loop and tasks too).
pub fn sleep_bench(total_tasks: u64, concurrency: u64, sleep: Duration) -> Result<Duration, Error> {
    run_jobs(total_tasks, concurrency, |_job| thread::sleep(sleep))
}

// ANCHOR: run_jobs
/// Runs `job(0)` to `job(total_tasks - 1)`, each exactly once, on `concurrency` worker
/// threads that take job numbers from a shared counter.
///
/// Fails before starting anything if the threads would not fit in the process's
/// memory-mapping budget. If the OS still refuses a thread, no new jobs are started, the
/// running ones finish, and the error says how many threads had started.
pub fn run_jobs<F>(total_tasks: u64, concurrency: u64, job: F) -> Result<Duration, Error>
where
    F: Fn(u64) + Sync,
{
    let workers = concurrency.clamp(1, total_tasks.max(1));
    check_thread_budget(workers)?;
    let next_job = Mutex::new(0u64);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let refused = thread::scope(|scope| {
        for started in 0..workers {
            let spawned = threads::builder()
                .spawn_scoped(scope, || worker(&next_job, total_tasks, &job, &stop));
            if let Err(error) = spawned {
                stop.store(true, Ordering::Relaxed);
                return Some(threads::refused(workers, started, error));
            }
        }
        None // the scope joins every worker before it returns
    });
    match refused {
        Some(error) => Err(error),
        None => Ok(start.elapsed()),
    }
}

fn worker(next_job: &Mutex<u64>, total_tasks: u64, job: &impl Fn(u64), stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let id = {
            // A panicking job poisons nothing we care about: the counter is always valid.
            let mut next = next_job.lock().unwrap_or_else(PoisonError::into_inner);
            if *next == total_tasks {
                return;
            }
            *next += 1;
            *next - 1
        }; // the lock is released here, before the job runs
        job(id);
    }
}
// ANCHOR_END: run_jobs
