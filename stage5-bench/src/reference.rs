//! The reference columns: the same benchmark on tokio's current-thread runtime and on
//! smol, the runtimes a reader will use, beside our stage 4.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin table --features reference
//! ```
//!
//! The workload is stage 4's `run_jobs`, written the way a user of each runtime would
//! write it: `concurrency` tasks, all spawned before any runs, take job numbers from a
//! shared counter behind the runtime family's async lock (`tokio::sync::Mutex`, smol's
//! `async-lock`) and sleep on the runtime's timer. One thread each: tokio's
//! `new_current_thread` runtime, smol's `LocalExecutor` driven by `smol::block_on`.
//!
//! The dependencies are optional (feature `reference`, off by default): without it the
//! columns are still known, and a cell asked for says how to get it.

use shared::Error;
use shared::bench::SleepBench;

use crate::Measured;

/// A runtime of the reference columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// tokio, `Builder::new_current_thread()`, `tokio::sync::Mutex`, `tokio::time::sleep`.
    Tokio,
    /// smol, a `LocalExecutor` on `smol::block_on`, `smol::lock::Mutex`, `smol::Timer`.
    Smol,
}

impl Runtime {
    /// Both, in the order of the table's columns.
    pub const ALL: [Runtime; 2] = [Runtime::Tokio, Runtime::Smol];

    /// The name on the command line and in cell lines.
    pub fn key(self) -> &'static str {
        match self {
            Runtime::Tokio => "tokio",
            Runtime::Smol => "smol",
        }
    }

    /// The runtime for a [`key`](Runtime::key).
    pub fn from_key(key: &str) -> Option<Runtime> {
        Runtime::ALL
            .into_iter()
            .find(|runtime| runtime.key() == key)
    }

    /// The column header.
    pub fn label(self) -> &'static str {
        match self {
            Runtime::Tokio => "tokio (1 thread)",
            Runtime::Smol => "smol (1 thread)",
        }
    }

    /// Whether this binary was built with the runtime (feature `reference`).
    pub fn built_in() -> bool {
        cfg!(feature = "reference")
    }

    /// The article's benchmark on this runtime, with the resident memory per worker when
    /// every worker runs one job, as [`Model::measure`](crate::Model::measure) does.
    pub fn measure(self, bench: &SleepBench) -> Result<Measured, Error> {
        #[cfg(feature = "reference")]
        {
            let probe = std::sync::Arc::new(Probe::new(bench));
            let elapsed = match self {
                Runtime::Tokio => run::tokio(bench, std::sync::Arc::clone(&probe))?,
                Runtime::Smol => run::smol(bench, std::sync::Arc::clone(&probe))?,
            };
            Ok(Measured {
                elapsed,
                per_worker: probe.per_worker(bench),
            })
        }
        #[cfg(not(feature = "reference"))]
        {
            let _ = bench;
            Err(Error::Other(format!(
                "the {} column needs the reference runtimes: build with `--features reference`",
                self.key()
            )))
        }
    }
}

/// The resident-size sample, taken by the last job to start (all other workers asleep).
#[cfg_attr(not(feature = "reference"), allow(dead_code))]
struct Probe {
    baseline: u64,
    last_job: Option<u64>,
    sample: std::sync::atomic::AtomicU64,
}

#[cfg_attr(not(feature = "reference"), allow(dead_code))]
impl Probe {
    fn new(bench: &SleepBench) -> Probe {
        Probe {
            baseline: shared::memory::resident_bytes().unwrap_or(0),
            last_job: bench.one_job_each().then(|| bench.total.saturating_sub(1)),
            sample: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn job_started(&self, job: u64) {
        if self.last_job == Some(job) {
            let rss = shared::memory::resident_bytes().unwrap_or(0);
            self.sample.store(rss, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn per_worker(&self, bench: &SleepBench) -> Option<f64> {
        let sample = self.sample.load(std::sync::atomic::Ordering::Relaxed);
        let grown = sample.checked_sub(self.baseline).filter(|&g| g > 0)?;
        Some(grown as f64 / bench.workers() as f64)
    }
}

#[cfg(feature = "reference")]
mod run {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use shared::Error;
    use shared::bench::SleepBench;

    use super::Probe;

    /// What the workers share, as in stage 4's `run_jobs`.
    struct Jobs<M> {
        next: M,
        total: u64,
        done: AtomicU64,
    }

    fn check(jobs_done: u64, total: u64, elapsed: Duration) -> Result<Duration, Error> {
        if jobs_done != total {
            return Err(Error::Other(format!("{jobs_done} of {total} jobs ran")));
        }
        Ok(elapsed)
    }

    // ANCHOR: tokio
    pub(super) fn tokio(bench: &SleepBench, probe: Arc<Probe>) -> Result<Duration, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Error::io("creating the tokio runtime", e))?;
        let jobs = Arc::new(Jobs {
            next: tokio::sync::Mutex::new(0u64),
            total: bench.total,
            done: AtomicU64::new(0),
        });
        let sleep = bench.sleep;
        let elapsed = runtime.block_on(async {
            let start = Instant::now();
            let workers: Vec<_> = (0..bench.workers())
                .map(|_| {
                    let (jobs, probe) = (Arc::clone(&jobs), Arc::clone(&probe));
                    tokio::spawn(async move {
                        loop {
                            let job = {
                                let mut next = jobs.next.lock().await;
                                if *next == jobs.total {
                                    return;
                                }
                                *next += 1;
                                *next - 1
                            };
                            probe.job_started(job);
                            tokio::time::sleep(sleep).await;
                            jobs.done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker
                    .await
                    .map_err(|e| Error::Other(format!("a tokio task failed: {e}")))?;
            }
            Ok::<_, Error>(start.elapsed())
        });
        // ANCHOR_END: tokio
        check(jobs.done.load(Ordering::Relaxed), bench.total, elapsed?)
    }

    // ANCHOR: smol
    pub(super) fn smol(bench: &SleepBench, probe: Arc<Probe>) -> Result<Duration, Error> {
        let executor = smol::LocalExecutor::new();
        let jobs = Arc::new(Jobs {
            next: smol::lock::Mutex::new(0u64),
            total: bench.total,
            done: AtomicU64::new(0),
        });
        let sleep = bench.sleep;
        let elapsed = smol::block_on(executor.run(async {
            let start = Instant::now();
            let workers: Vec<_> = (0..bench.workers())
                .map(|_| {
                    let (jobs, probe) = (Arc::clone(&jobs), Arc::clone(&probe));
                    executor.spawn(async move {
                        loop {
                            let job = {
                                let mut next = jobs.next.lock().await;
                                if *next == jobs.total {
                                    return;
                                }
                                *next += 1;
                                *next - 1
                            };
                            probe.job_started(job);
                            smol::Timer::after(sleep).await;
                            jobs.done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.await;
            }
            start.elapsed()
        }));
        // ANCHOR_END: smol
        check(jobs.done.load(Ordering::Relaxed), bench.total, elapsed)
    }
}
