//! The coroutine side of the article's benchmark, one configuration per run, with the
//! resident memory each suspended coroutine costs.
//!
//! ```text
//! cargo run --release -p stage3-generators --example coroutine_sleep_bench -- 100000 100000 10
//! # arguments: TOTAL_TASKS CONCURRENCY SLEEP_MS, then `mprotect` to force that fallback
//! cargo run --release -p stage3-generators --example coroutine_sleep_bench -- 100000 100000 10 mprotect
//! ```
//!
//! Compare stage 0's `thread_sleep_bench` example (one OS thread per worker). Once every
//! worker coroutine has started, the last one samples the resident memory while all the
//! others are suspended in their sleep; the example prints it per coroutine, above a
//! baseline taken before any was created.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;

use shared::bench::SleepBench;
use shared::memory::resident_bytes;
use stage3_generators::stack::{self, page_size};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.last().is_some_and(|arg| arg == "mprotect") {
        args.pop();
        stack::force_mprotect_guards(true);
    }
    let bench = match SleepBench::parse("coroutine_sleep_bench", &args) {
        Ok(bench) => bench,
        Err(usage) => {
            eprintln!("{usage} [mprotect]");
            return ExitCode::from(2);
        }
    };
    // Which guard pages this kernel gives us, asked before the baseline.
    let guard = match stack::guard_kind() {
        Ok(guard) => format!("{guard:?}").to_lowercase(),
        Err(error) => format!("none ({error})"),
    };
    let baseline = resident_bytes().unwrap_or(0);
    let all_alive = Rc::new(Cell::new(0));
    let sample = Rc::clone(&all_alive);
    let result = stage3_generators::sleep_bench_probed(
        bench.total,
        bench.concurrency,
        bench.sleep,
        move || sample.set(resident_bytes().unwrap_or(0)),
    );
    match result {
        Ok(run) => {
            println!("{}", bench.time_line("coroutines", run.elapsed));
            if let Some(line) = bench.memory_line("coroutines", baseline, all_alive.get()) {
                let per = all_alive.get().saturating_sub(baseline) as f64 / run.workers as f64;
                println!(
                    "{line} ({:.2} pages of {} bytes; guard pages by {guard})",
                    per / page_size() as f64,
                    page_size()
                );
            }
            if let Some(after) = resident_bytes() {
                println!(
                    "resident memory after the run: {:.1} MiB above the baseline",
                    after.saturating_sub(baseline) as f64 / (1 << 20) as f64
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
