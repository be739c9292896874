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
use std::time::Duration;

use shared::memory::resident_bytes;
use stage3_generators::stack::{self, page_size};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.last().is_some_and(|arg| arg == "mprotect") {
        args.pop();
        stack::force_mprotect_guards(true);
    }
    let numbers: Vec<u64> = args
        .iter()
        .map(|arg| arg.parse())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let [total, concurrency, sleep_ms] = numbers[..] else {
        eprintln!("usage: coroutine_sleep_bench TOTAL_TASKS CONCURRENCY SLEEP_MS [mprotect]");
        return ExitCode::from(2);
    };
    let sleep = Duration::from_millis(sleep_ms);
    // Which guard pages this kernel gives us, asked before the baseline.
    let guard = match stack::guard_kind() {
        Ok(guard) => format!("{guard:?}").to_lowercase(),
        Err(error) => format!("none ({error})"),
    };
    let baseline = resident_bytes().unwrap_or(0);
    let with_all_alive = Rc::new(Cell::new(0));
    let sample = with_all_alive.clone();
    let result = stage3_generators::sleep_bench_probed(total, concurrency, sleep, move || {
        sample.set(resident_bytes().unwrap_or(0));
    });
    match result {
        Ok(run) => {
            let rounds = total.div_ceil(run.workers.max(1));
            println!(
                "{} tasks of {sleep_ms} ms on {} coroutines: {:.3} s (ideal {:.3} s)",
                run.jobs,
                run.workers,
                run.elapsed.as_secs_f64(),
                (sleep * rounds as u32).as_secs_f64()
            );
            let resident = with_all_alive.get();
            if resident > baseline && run.workers > 0 {
                let per = (resident - baseline) as f64 / run.workers as f64;
                println!(
                    "resident memory with all {} coroutines alive: {:.1} MiB, {:.2} KiB per \
                     coroutine ({:.2} pages of {} bytes; guard pages by {guard})",
                    run.workers,
                    (resident - baseline) as f64 / (1 << 20) as f64,
                    per / 1024.0,
                    per / page_size() as f64,
                    page_size(),
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
