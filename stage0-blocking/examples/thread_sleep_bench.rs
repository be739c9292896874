//! The threads side of the article's benchmark, one configuration per run.
//!
//! ```text
//! cargo run --release -p stage0-blocking --example thread_sleep_bench -- 100000 1000 10
//! #                                                  total tasks ^  ^ threads ^ sleep (ms)
//! ```
//!
//! Prints the wall time and the ideal (`ceil(total / threads) x sleep`), or the limit that
//! stopped the threads. When there are as many threads as tasks, each thread runs exactly
//! one job, and the last job to start samples the resident memory. A thread runs as soon
//! as it is spawned, so with short sleeps the first ones may be gone by then: the example
//! prints the cost per thread only if the sample saw every thread alive, and says so
//! when it did not.

use std::process::ExitCode;

use shared::bench::{AllAliveProbe, SleepBench};
use shared::memory::resident_bytes;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = match SleepBench::parse("thread_sleep_bench", &args) {
        Ok(bench) => bench,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let baseline = resident_bytes();
    let probe = AllAliveProbe::new(&bench);
    let result = stage0_blocking::run_jobs(bench.total, bench.concurrency, |job| {
        probe.job(job, || std::thread::sleep(bench.sleep));
    });
    bench.print_outcome("threads", result, || match (baseline, probe.all_alive()) {
        _ if !bench.one_job_each() => None,
        (None, _) => Some("resident memory: not measured on this OS".to_string()),
        (Some(baseline), Some(all_alive)) => bench.memory_line("threads", baseline, all_alive),
        (Some(_), None) => Some(format!(
            "resident memory: not measured, only {} of {} threads were alive when the last \
             one started (the first had finished: try a longer sleep)",
            probe.alive_at_sample(),
            bench.workers()
        )),
    })
}
