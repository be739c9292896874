//! The article's sleep benchmark (section 6), as every stage's example runs it.
//!
//! `TOTAL` jobs that each sleep `SLEEP_MS`, taken from a shared counter by `CONCURRENCY`
//! workers: OS threads in stage 0, coroutines in stage 3, async tasks in stage 4. How the
//! workers wait differs by stage; parsing the three numbers, the ideal time, the lines
//! every example prints and how it ends do not, so they live here.

use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::memory::resident_bytes;

/// One configuration of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepBench {
    /// Jobs to run.
    pub total: u64,
    /// Workers taking jobs.
    pub concurrency: u64,
    /// How long each job sleeps.
    pub sleep: Duration,
}

impl SleepBench {
    /// Parses `TOTAL CONCURRENCY SLEEP_MS`; the error is a usage line for `program`.
    pub fn parse(program: &str, args: &[String]) -> Result<SleepBench, String> {
        let numbers: Result<Vec<u64>, _> = args.iter().map(|arg| arg.parse()).collect();
        match numbers.as_deref() {
            Ok(&[total, concurrency, sleep_ms]) if total > 0 && concurrency > 0 => Ok(SleepBench {
                total,
                concurrency,
                sleep: Duration::from_millis(sleep_ms),
            }),
            _ => Err(format!(
                "usage: {program} TOTAL_TASKS CONCURRENCY SLEEP_MS (whole numbers, the first two \
                 at least 1)"
            )),
        }
    }

    /// Workers that actually run: never more than there are jobs.
    pub fn workers(&self) -> u64 {
        self.concurrency.min(self.total)
    }

    /// The floor no implementation can beat: `ceil(total / workers)` rounds of `sleep`.
    pub fn ideal(&self) -> Duration {
        let rounds = self.total.div_ceil(self.workers().max(1));
        self.sleep
            .saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
    }

    /// Whether every worker runs exactly one job, so that the last job to start finds
    /// all the others alive: the moment to sample memory per worker.
    pub fn one_job_each(&self) -> bool {
        self.concurrency >= self.total
    }

    /// The result line, e.g. `100000 tasks of 10 ms on 100 threads: 10.140 s (ideal
    /// 10.000 s)`; `workers` names them (`"threads"`, `"coroutines"`).
    pub fn time_line(&self, workers: &str, elapsed: Duration) -> String {
        format!(
            "{} tasks of {} ms on {} {workers}: {:.3} s (ideal {:.3} s)",
            self.total,
            self.sleep.as_millis(),
            self.workers(),
            elapsed.as_secs_f64(),
            self.ideal().as_secs_f64()
        )
    }

    /// How every example ends: on success, the [time line](SleepBench::time_line) and
    /// then the lines of `details` (the memory, which each stage measures its own way),
    /// exit code 0; on failure, one `error:` line on stderr, exit code 1.
    pub fn print_outcome<E: fmt::Display, D: IntoIterator<Item = String>>(
        &self,
        workers: &str,
        result: Result<Duration, E>,
        details: impl FnOnce() -> D,
    ) -> ExitCode {
        match result {
            Ok(elapsed) => {
                crate::say!("{}", self.time_line(workers, elapsed));
                for line in details() {
                    crate::say!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    }

    /// The memory line, from the resident size before any worker existed and while all
    /// of them were alive: e.g. `resident memory with all 10000 threads alive: 93.5 MiB,
    /// 9.6 KiB per thread`. `None` when there is no growth to report.
    pub fn memory_line(&self, workers: &str, baseline: u64, all_alive: u64) -> Option<String> {
        let grown = all_alive.checked_sub(baseline).filter(|&g| g > 0)?;
        let count = self.workers();
        let per = grown as f64 / count as f64;
        let per = if per < 1024.0 {
            format!("{per:.0} bytes")
        } else {
            format!("{:.2} KiB", per / 1024.0)
        };
        let one = workers.strip_suffix('s').unwrap_or(workers);
        Some(format!(
            "resident memory with all {count} {workers} alive: {:.1} MiB, {per} per {one}",
            grown as f64 / (1 << 20) as f64
        ))
    }
}

// ANCHOR: all_alive
/// Samples resident memory while every worker is alive, for workers that run as soon as
/// they are created (OS threads).
///
/// Coroutines and async tasks are all created before any runs, so the last job to start
/// finds every other one alive. A thread runs the moment it is spawned, so with short
/// jobs the first threads may be gone before the last one starts (2,000 threads of 1 ms
/// each: most are). So every job is run through [`AllAliveProbe::job`], which counts the
/// workers inside a job; the last job samples memory and notes how many were inside, and
/// [`AllAliveProbe::all_alive`] gives the sample only if that was every worker.
#[derive(Debug)]
pub struct AllAliveProbe {
    workers: u64,
    last_job: Option<u64>,
    in_job: AtomicU64,
    alive_then: AtomicU64,
    resident: AtomicU64,
}

impl AllAliveProbe {
    /// A probe for `bench`: it samples only when each worker runs exactly one job
    /// ([`SleepBench::one_job_each`]).
    pub fn new(bench: &SleepBench) -> AllAliveProbe {
        AllAliveProbe {
            workers: bench.workers(),
            last_job: bench.one_job_each().then(|| bench.total - 1),
            in_job: AtomicU64::new(0),
            alive_then: AtomicU64::new(0),
            resident: AtomicU64::new(0),
        }
    }

    /// Runs `work` as job number `job`, counted as alive while it runs.
    pub fn job(&self, job: u64, work: impl FnOnce()) {
        let alive = self.in_job.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(job) == self.last_job {
            self.resident
                .store(resident_bytes().unwrap_or(0), Ordering::SeqCst);
            self.alive_then.store(alive, Ordering::SeqCst);
        }
        work();
        self.in_job.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many workers were inside a job when the last job started (0 before it did).
    pub fn alive_at_sample(&self) -> u64 {
        self.alive_then.load(Ordering::SeqCst)
    }

    /// The resident bytes sampled while every worker was alive, or `None` if not all of
    /// them were (or the OS does not tell, or no job was the last of one job each).
    pub fn all_alive(&self) -> Option<u64> {
        let resident = self.resident.load(Ordering::SeqCst);
        (self.alive_at_sample() == self.workers && resident > 0).then_some(resident)
    }
}
// ANCHOR_END: all_alive

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_three_numbers_and_refuses_anything_else() {
        let bench = SleepBench::parse("b", &args("100000 100 10")).unwrap();
        assert_eq!(bench.sleep, Duration::from_millis(10));
        for bad in ["", "1 2", "1 2 3 4", "x 2 3", "0 2 3", "1 0 3"] {
            let error = SleepBench::parse("b", &args(bad)).unwrap_err();
            assert!(error.starts_with("usage: b TOTAL_TASKS"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_ideal_is_whole_rounds_of_the_sleep() {
        let bench = SleepBench::parse("b", &args("100000 100 10")).unwrap();
        assert_eq!(bench.ideal(), Duration::from_secs(10));
        let bench = SleepBench::parse("b", &args("10 4 10")).unwrap();
        assert_eq!(bench.ideal(), Duration::from_millis(30));
        let bench = SleepBench::parse("b", &args("10 1000 10")).unwrap();
        assert_eq!(
            (bench.workers(), bench.ideal()),
            (10, Duration::from_millis(10))
        );
        assert!(bench.one_job_each());
    }

    #[test]
    fn lines_read_as_the_book_quotes_them() {
        let bench = SleepBench::parse("b", &args("10000 10000 1000")).unwrap();
        assert_eq!(
            bench.time_line("threads", Duration::from_millis(1582)),
            "10000 tasks of 1000 ms on 10000 threads: 1.582 s (ideal 1.000 s)"
        );
        let line = bench.memory_line("threads", 0, 98_000_000).unwrap();
        assert_eq!(
            line,
            "resident memory with all 10000 threads alive: 93.5 MiB, 9.57 KiB per thread"
        );
        let line = bench.memory_line("tasks", 0, 2_900_000).unwrap();
        assert!(line.ends_with(", 290 bytes per task"), "{line}");
        assert_eq!(bench.memory_line("tasks", 10, 5), None);
    }

    /// Three workers, one job each; the first finishes before the last starts: no
    /// sample. Then all three inside at once: a sample.
    #[test]
    fn the_probe_reports_memory_only_when_every_worker_was_alive() {
        let bench = SleepBench::parse("b", &args("3 3 0")).unwrap();
        let probe = AllAliveProbe::new(&bench);
        probe.job(0, || ());
        probe.job(1, || probe.job(2, || ()));
        assert_eq!(probe.alive_at_sample(), 2);
        assert_eq!(probe.all_alive(), None);

        let probe = AllAliveProbe::new(&bench);
        probe.job(0, || probe.job(1, || probe.job(2, || ())));
        assert_eq!(probe.alive_at_sample(), 3);
        if resident_bytes().is_some() {
            assert!(probe.all_alive().is_some());
        }

        // Several jobs per worker: never a sample.
        let bench = SleepBench::parse("b", &args("4 2 0")).unwrap();
        let probe = AllAliveProbe::new(&bench);
        probe.job(0, || probe.job(3, || ()));
        assert_eq!(probe.all_alive(), None);
    }
}
