//! Stage 5: every stage measured on the same work, and the article's table reproduced.
//!
//! Read the stages first: this crate adds no concurrency of its own. It is a thin,
//! uniform layer over their public APIs, so that a bench or a table can say "run this
//! stage" or "run this model" without knowing how each one waits.
//!
//! # The lesson: what the book's benchmark and "Choosing the right tool" chapters teach from
//!
//! Read these: the book's listings are included from them.
//!
//! - This file: [`Stage`] runs the article's demo (`run(&Config)`) of stages 0 to 4, and
//!   [`run_verified`] refuses a report that is not complete; [`Model`] runs the article's
//!   sleep benchmark on OS threads (stage 0), stackful coroutines (stage 3) and async
//!   tasks (stage 4), with the resident memory per worker ([`Model::measure`]).
//! - [`cell`]: one cell of the table, run in a child process of its own, the one-line
//!   format children print, and the interleaved runs.
//! - [`reference`](mod@reference): the same benchmark on tokio and smol (feature
//!   `reference`), and `reference.py`, the same in Python's asyncio and threads.
//! - [`net`]: stage 4 on real sockets beside tokio, smol and monoio; its [`net::servers`]
//!   are the lesson (stage 4's echo servers on mio and io_uring, hyper on stage 4, and the
//!   floor: only the system calls, no runtime), the rest of it the harness.
//! - [`million`]: a million real TCP connections on one machine, with stage 4's client
//!   and the shared slow server as shards (`--bin million`, the book's last chapter).
//! - The binaries `table` (the article's table), `compute` (where the event loop loses),
//!   `memory` (what a waiting request costs as a process, a thread, a task) and `net`
//!   (the network benchmark), `million`.
//!
//! # The tooling: what measures, prints and draws the book's figures
//!
//! Needed to reproduce the figures, not to follow the argument.
//!
//! - [`python`]: finds `python3` and runs `reference.py` as a cell.
//! - [`stats`] and [`text`]: medians and spreads; tables that line up.
//! - [`pin`]: a thread or a process pinned to one CPU, so that two sides of a
//!   measurement do not share one.
//! - [`svg`]: the one SVG writer; [`plot`] (the table as a picture) and [`pictures`]
//!   (timelines and sequence diagrams from real runs) draw with it.
//! - The binaries `latency` (the latency table of the book's first chapter, split by what
//!   it measures: CPU and caches, switches and wake-ups, the disk) and `pictures` (the
//!   book's figures).
//!
//! ```text
//! cargo bench -p stage5-bench --bench stages -- --quick   # stages 0 to 4, same workload
//! cargo bench -p stage5-bench --bench models -- --quick   # threads, coroutines, tasks
//! cargo run --release -p stage5-bench --bin table         # the article's table, ~7 min
//! cargo run --release -p stage5-bench --bin table -- --quick
//! cargo run --release -p stage5-bench --bin latency       # the latency table of 1.2
//! cargo run --release -p stage5-bench --bin compute       # where the event loop loses
//! cargo run --release -p stage5-bench --bin memory        # N waiting requests: processes,
//!                                                         # threads, tasks
//! cargo run --release -p stage5-bench --bin net           # echo servers on real sockets
//! cargo run --release -p stage5-bench --bin net --features reference   # + tokio, smol, ...
//! cargo run --release -p stage5-bench --bin million -- --connections 1000000 --delay-ms 30000
//! ```

// The lesson.
pub mod cell;
pub mod million;
pub mod net;
pub mod reference;

// The tooling.
pub mod pictures;
pub mod pin;
pub mod plot;
pub mod python;
pub mod stats;
pub mod svg;
pub mod text;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use shared::bench::SleepBench;
use shared::memory::resident_bytes;
use shared::{Config, Error, Report};

/// One of the client stages, each with the article's demo as its `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stage 0: one OS thread per request.
    Blocking,
    /// Stage 1: a callback event loop.
    Callbacks,
    /// Stage 2: the same loop, a state machine per request.
    StateMachine,
    /// Stage 3: stackful coroutines and the four players.
    Generators,
    /// Stage 4: `async`/`await` on our own executor.
    AsyncAwait,
}

impl Stage {
    /// Every stage, in the book's order.
    pub const ALL: [Stage; 5] = [
        Stage::Blocking,
        Stage::Callbacks,
        Stage::StateMachine,
        Stage::Generators,
        Stage::AsyncAwait,
    ];

    /// The crate's name, e.g. `stage0-blocking`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Blocking => "stage0-blocking",
            Stage::Callbacks => "stage1-callbacks",
            Stage::StateMachine => "stage2-state-machine",
            Stage::Generators => "stage3-generators",
            Stage::AsyncAwait => "stage4-async-await",
        }
    }

    // ANCHOR: stage_run
    /// Runs the stage's demo: `config.requests` requests at once, verified.
    pub fn run(self, config: &Config) -> Result<Report, Error> {
        match self {
            Stage::Blocking => stage0_blocking::run(config),
            Stage::Callbacks => stage1_callbacks::run(config),
            Stage::StateMachine => stage2_state_machine::run(config),
            Stage::Generators => stage3_generators::run(config),
            Stage::AsyncAwait => stage4_async_await::run(config),
        }
    }
    // ANCHOR_END: stage_run
}

// ANCHOR: run_verified
/// [`Stage::run`], and an error unless every request was answered with its own line.
///
/// `Report::finish` already fails on a wrong or missing response; this checks the count
/// once more, so a bench can never time a run that did less work than it claims.
pub fn run_verified(stage: Stage, config: &Config) -> Result<Report, Error> {
    let report = stage.run(config)?;
    if report.verified() as u64 != config.requests {
        return Err(Error::Other(format!(
            "{}: {} of {} responses verified",
            stage.name(),
            report.verified(),
            config.requests
        )));
    }
    Ok(report)
}
// ANCHOR_END: run_verified

/// A concurrency model of the article's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One OS thread per worker (stage 0).
    Threads,
    /// One stackful coroutine per worker, on one thread (stage 3).
    Coroutines,
    /// One async task per worker, on one thread (stage 4).
    AsyncTasks,
}

/// What one run of the sleep benchmark measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Wall time, from the first worker's creation to the last job's end.
    pub elapsed: Duration,
    /// Resident bytes per worker, sampled while every worker was alive; only when each
    /// worker runs exactly one job ([`SleepBench::one_job_each`]) and the sample really
    /// saw all of them alive.
    pub per_worker: Option<f64>,
}

impl Model {
    /// Every model, in the order of the table's columns.
    pub const ALL: [Model; 3] = [Model::Threads, Model::Coroutines, Model::AsyncTasks];

    /// The name on the command line and in cell lines: `threads`, `coroutines`, `tasks`.
    pub fn key(self) -> &'static str {
        match self {
            Model::Threads => "threads",
            Model::Coroutines => "coroutines",
            Model::AsyncTasks => "tasks",
        }
    }

    /// The model for a [`key`](Model::key).
    pub fn from_key(key: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|model| model.key() == key)
    }

    /// The column header: `threads`, `coroutines`, `async tasks`.
    pub fn label(self) -> &'static str {
        match self {
            Model::Threads => "threads",
            Model::Coroutines => "coroutines",
            Model::AsyncTasks => "async tasks",
        }
    }

    // ANCHOR: sleep_bench
    /// The article's benchmark on this model: `bench.total` sleeps of `bench.sleep`,
    /// taken from a shared counter by `bench.concurrency` workers. Returns the wall time.
    pub fn sleep_bench(self, bench: &SleepBench) -> Result<Duration, Error> {
        let SleepBench {
            total,
            concurrency,
            sleep,
        } = *bench;
        match self {
            Model::Threads => stage0_blocking::sleep_bench(total, concurrency, sleep),
            Model::Coroutines => stage3_generators::sleep_bench(total, concurrency, sleep),
            Model::AsyncTasks => stage4_async_await::sleep_bench(total, concurrency, sleep),
        }
    }
    // ANCHOR_END: sleep_bench

    // ANCHOR: measure
    /// [`Model::sleep_bench`], with the resident memory per worker when every worker runs
    /// one job. Run it in a fresh process for that figure: memory an earlier run freed
    /// would be reused and hide the cost.
    pub fn measure(self, bench: &SleepBench) -> Result<Measured, Error> {
        let baseline = resident_bytes().unwrap_or(0);
        let sample = |all_alive: u64| {
            let grown = all_alive.checked_sub(baseline).filter(|&g| g > 0)?;
            Some(grown as f64 / bench.workers() as f64)
        };
        // The last job to start is taken by the last worker to start: with one job each,
        // every other worker is alive then, asleep in its own job.
        let (one_each, last_job) = (bench.one_job_each(), bench.total.saturating_sub(1));
        let last = move |job: u64| one_each && job == last_job;
        let sleep = bench.sleep;
        match self {
            Model::Threads => {
                // NB: unlike coroutines and tasks, a thread runs as soon as it is
                // spawned, so the first threads may be done before the last one starts
                // (10,000 spawns take about half a second here). Count who is alive, and
                // only report a figure that saw every thread.
                let probe = shared::bench::AllAliveProbe::new(bench);
                let elapsed = stage0_blocking::run_jobs(bench.total, bench.concurrency, |job| {
                    probe.job(job, || std::thread::sleep(sleep));
                })?;
                let per_worker = probe.all_alive().and_then(sample);
                Ok(Measured {
                    elapsed,
                    per_worker,
                })
            }
            Model::Coroutines => {
                // The probe runs inside the last worker to start, all others suspended.
                let rss = Rc::new(Cell::new(0));
                let probe = Rc::clone(&rss);
                let run = stage3_generators::sleep_bench_probed(
                    bench.total,
                    bench.concurrency,
                    sleep,
                    move || probe.set(resident_bytes().unwrap_or(0)),
                )?;
                let per_worker = bench.one_job_each().then(|| sample(rss.get())).flatten();
                Ok(Measured {
                    elapsed: run.elapsed,
                    per_worker,
                })
            }
            Model::AsyncTasks => {
                // Every task is spawned before any runs, so all are alive at the sample.
                let rss = Rc::new(Cell::new(0));
                let probe = Rc::clone(&rss);
                let elapsed =
                    stage4_async_await::run_jobs(bench.total, bench.concurrency, move |job| {
                        if last(job) {
                            probe.set(resident_bytes().unwrap_or(0));
                        }
                        stage4_async_await::sleep(sleep)
                    })?;
                let per_worker = bench.one_job_each().then(|| sample(rss.get())).flatten();
                Ok(Measured {
                    elapsed,
                    per_worker,
                })
            }
        }
    }
    // ANCHOR_END: measure
}
