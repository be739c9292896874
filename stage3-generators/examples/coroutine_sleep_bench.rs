//! The coroutine side of the article's benchmark, one configuration per run, with the
//! resident memory each suspended coroutine costs.
//!
//! ```text
//! cargo run --release -p stage3-generators --example coroutine_sleep_bench -- 100000 100000 10
//! # arguments: TOTAL_TASKS CONCURRENCY SLEEP_MS, then `mprotect` to force that fallback
//! cargo run --release -p stage3-generators --example coroutine_sleep_bench -- 100000 100000 10 mprotect
//! # `--stack-kib N` first gives every coroutine N KiB of stack instead of 256
//! cargo run --release -p stage3-generators --example coroutine_sleep_bench -- --stack-kib 64 100000 100000 10
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
use shared::memory::{page_table_bytes, resident_bytes};
use stage3_generators::Options;
use stage3_generators::stack::{self, page_size};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = Options::default();
    if args.first().is_some_and(|arg| arg == "--stack-kib") {
        match args.get(1).and_then(|kib| kib.parse::<usize>().ok()) {
            Some(kib) => options.stack_size = kib.saturating_mul(1024),
            None => args.clear(), // the usage line below
        }
        args.drain(..2.min(args.len()));
    }
    if args.last().is_some_and(|arg| arg == "mprotect") {
        args.pop();
        stack::force_mprotect_guards(true);
    }
    let bench = match SleepBench::parse("coroutine_sleep_bench", &args) {
        Ok(bench) => bench,
        Err(usage) => {
            let usage = usage.replacen(" TOTAL_TASKS", " [--stack-kib KIB] TOTAL_TASKS", 1);
            eprintln!("{usage} [mprotect]");
            return ExitCode::from(2);
        }
    };
    // Which guard pages this kernel gives us, asked before the baseline.
    let guard = match stack::guard_kind() {
        Ok(guard) => format!("{guard:?}").to_lowercase(),
        Err(error) => format!("none ({error})"),
    };
    let baseline = resident_bytes();
    let tables_before = page_table_bytes();
    let all_alive = Rc::new(Cell::new(None));
    let tables_alive = Rc::new(Cell::new(None));
    let (sample, tables) = (Rc::clone(&all_alive), Rc::clone(&tables_alive));
    let result = stage3_generators::sleep_bench_with(
        bench.total,
        bench.concurrency,
        bench.sleep,
        &options,
        move || {
            sample.set(resident_bytes());
            tables.set(page_table_bytes());
        },
    );
    let workers = bench.workers();
    let result = result.map(|run| run.elapsed);
    bench.print_outcome("coroutines", result, || {
        let mut lines = Vec::new();
        let stack_kib = options.stack_size.next_multiple_of(page_size()) / 1024;
        lines.push(format!(
            "address space reserved per coroutine: {} KiB ({stack_kib} KiB of stack, a {} KiB \
             guard page; guard pages by {guard})",
            stack_kib + page_size() / 1024,
            page_size() / 1024
        ));
        match (baseline, all_alive.get(), resident_bytes()) {
            (Some(baseline), Some(all_alive), Some(after)) => {
                if let Some(line) = bench.memory_line("coroutines", baseline, all_alive) {
                    let per = all_alive.saturating_sub(baseline) as f64 / workers as f64;
                    lines.push(format!(
                        "{line} ({:.2} pages of {} bytes)",
                        per / page_size() as f64,
                        page_size()
                    ));
                }
                lines.push(format!(
                    "resident memory after the run: {:.1} MiB above the baseline",
                    after.saturating_sub(baseline) as f64 / (1 << 20) as f64
                ));
            }
            _ => lines.push("resident memory: not measured on this OS".into()),
        }
        // Page tables are kernel memory, outside the resident figure: one 4 KiB table
        // maps 2 MiB, so the sparser the touched pages, the more tables they need.
        lines.push(match (tables_before, tables_alive.get()) {
            (Some(before), Some(alive)) => format!(
                "page tables with all {workers} coroutines alive: {:.1} MiB, {:.0} bytes per \
                 coroutine",
                alive.saturating_sub(before) as f64 / (1 << 20) as f64,
                alive.saturating_sub(before) as f64 / workers as f64
            ),
            _ => "page tables: not measured on this OS".into(),
        });
        lines
    })
}
