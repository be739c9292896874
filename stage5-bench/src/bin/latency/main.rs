//! The latency table of the article's section 1.2, measured on this machine: caches and
//! memory, a mutex, a system call, a thread switch, our coroutines and tasks, a loopback
//! round trip, a read from the disk and an `fsync`.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin latency               # about 15 seconds
//! cargo run --release -p stage5-bench --bin latency -- --runs 15  # more runs per row
//! cargo run --release -p stage5-bench --bin latency -- --dir /mnt/disk   # files there
//! ```
//!
//! Each row is measured `--runs` times (a run repeats the operation many times and
//! divides); the table shows the median run, the fastest and slowest, and the article's
//! human scale: one nanosecond as one second (which is what the article's figures
//! are), and one CPU cycle as one second (what its text says), at the clock rate measured
//! here. A row that cannot be measured on this OS says why.
//!
//! The rows, by what they measure:
//!
//! - [`cpu`]: the clock, the caches and main memory, mutexes, a system call;
//! - [`switches`]: handing the CPU to someone else and back (a thread switch, a
//!   coroutine switch, a task's wake-up, a loopback round trip);
//! - [`disk`]: a read from the device, past the page cache, and an `fsync`.
//!
//! This file runs them and prints the table.

mod cpu;
mod disk;
mod switches;

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use stage5_bench::stats::Summary;
use stage5_bench::text::{print_markdown, thousands};

use cpu::{
    Caches, cache_row, caches, clock_ghz, contended_mutex, memory_row, system_call,
    uncontended_mutex,
};
use disk::{Scratch, fsync, uncached_read};
use switches::{context_switch, coroutine_switch, task_wake, tcp_round_trip};

#[derive(clap::Parser)]
/// Measures the latency table of the article's section 1.2 on this machine.
struct Args {
    /// Runs per row; the table shows their median and range.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
    /// Where to put the scratch file for the disk rows (removed afterwards). It should be
    /// on the disk you care about, not on a RAM-backed tmpfs.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

/// A row of the table.
struct Row {
    /// What was measured, as the table names it.
    name: String,
    /// How, in one line, for the notes under the table.
    how: String,
    /// The article's row beside it: its name and its figure (on its scale).
    article: Option<(&'static str, &'static str)>,
    /// Nanoseconds per operation over the runs, or why there are none.
    ns: Result<Summary, String>,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let runs = args.runs as usize;
    let clock = clock_ghz();
    let caches = caches();
    let mut rows = Vec::new();

    for (level, bytes) in [(1, caches.l1), (2, caches.l2), (3, caches.l3)] {
        rows.push(match bytes {
            Some(size) => cache_row(level, size, &caches, runs),
            None => Row {
                name: format!("L{level} cache load"),
                how: format!("no L{level} cache reported by the OS"),
                article: None,
                ns: Err(format!("no L{level} cache reported")),
            },
        });
    }
    rows.push(memory_row(&caches, runs));
    rows.push(uncontended_mutex(runs));
    rows.push(contended_mutex(runs));
    rows.push(system_call(runs));
    rows.push(context_switch(runs));
    rows.push(coroutine_switch(runs));
    rows.push(task_wake(runs));
    rows.push(tcp_round_trip(runs));
    let scratch = Scratch::new(&args.dir);
    rows.push(uncached_read(&scratch, runs));
    rows.push(fsync(&scratch, runs));
    drop(scratch);

    print(&rows, clock, &caches, args.runs);
    ExitCode::SUCCESS
}

/// Runs `once` (which returns nanoseconds per operation) `runs` times, after one run
/// to warm up.
fn measure(runs: usize, mut once: impl FnMut() -> Result<f64, String>) -> Result<Summary, String> {
    once()?;
    let values = (0..runs)
        .map(|_| once())
        .collect::<Result<Vec<f64>, String>>()?;
    Summary::of(&values).ok_or_else(|| "no measurement".to_string())
}

fn per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn print(rows: &[Row], (ghz, measured): (f64, bool), caches: &Caches, runs: u32) {
    let clock = if measured {
        format!("{ghz:.2} GHz, measured with a chain of dependent additions")
    } else {
        format!("{ghz:.2} GHz, assumed: this CPU's clock could not be measured")
    };
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    shared::say!(
        "Machine: {cpus} CPUs, {} {}; clock {clock}; caches from {}.",
        std::env::consts::OS,
        std::env::consts::ARCH,
        caches.source
    );
    shared::say!(
        "Each row: the median of {} (each repeats the operation and divides), and \
         the fastest and slowest run, in ns. Then the article's scales: one ns as one second \
         (what its figures are; in brackets its own row, where it has one), and one CPU \
         cycle as one second (what its text says).",
        if runs == 1 {
            "one run".to_string()
        } else {
            format!("{runs} runs")
        }
    );
    shared::say!();
    let header = [
        "operation",
        "median",
        "fastest - slowest",
        "1 ns = 1 s (article)",
        "1 cycle = 1 s",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            // The article's figures are on the 1 ns = 1 s scale: side by side with ours.
            let article = row
                .article
                .map_or(String::new(), |(_, figure)| format!(" ({figure})"));
            match &row.ns {
                Ok(s) => vec![
                    row.name.clone(),
                    format!("{} ns", ns(s.median)),
                    format!("{} - {}", ns(s.min), ns(s.max)),
                    format!("{}{article}", human(s.median)),
                    human(s.median * ghz),
                ],
                Err(_) => vec![
                    row.name.clone(),
                    "not measured".into(),
                    String::new(),
                    article.trim().to_string(),
                    String::new(),
                ],
            }
        })
        .collect();
    print_markdown(&header, &body, &[0]);
    shared::say!();
    let pairs: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let (name, _) = row.article?;
            Some(format!("{} beside {name}", row.name))
        })
        .collect();
    shared::say!("The article's rows in brackets: {}.", pairs.join("; "));
    shared::say!(
        "The article's rows with no row here: disk seek (16.5 weeks; no spinning disk to \
         seek), packet Tokyo to Los Angeles (3.6 years; that needs the network)."
    );
    shared::say!();
    shared::say!("How each row was measured:");
    for row in rows {
        match &row.ns {
            Ok(_) => shared::say!("- {}: {}.", row.name, row.how),
            Err(why) => shared::say!("- {}: not measured: {why}.", row.name),
        }
    }
}

/// `0.98`, `12.3`, `1,234`: nanoseconds with as many digits as they deserve.
fn ns(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        thousands(value.round() as u64)
    }
}

/// Seconds on the article's human scale: `0.5 s`, `1.7 min`, `5.5 hours`, `1.7 days`,
/// `16.5 weeks`, `3.6 years`.
fn human(seconds: f64) -> String {
    let figure = |v: f64, unit: &str| {
        if v < 10.0 {
            format!("{v:.1} {unit}")
        } else {
            format!("{v:.0} {unit}")
        }
    };
    const MINUTE: f64 = 60.0;
    const HOUR: f64 = 60.0 * MINUTE;
    const DAY: f64 = 24.0 * HOUR;
    const WEEK: f64 = 7.0 * DAY;
    const YEAR: f64 = 365.25 * DAY;
    match seconds {
        s if s < MINUTE => figure(s, "s"),
        s if s < HOUR => figure(s / MINUTE, "min"),
        s if s < 2.0 * DAY => figure(s / HOUR, "hours"),
        s if s < 2.0 * WEEK => figure(s / DAY, "days"),
        s if s < YEAR => figure(s / WEEK, "weeks"),
        s => figure(s / YEAR, "years"),
    }
}
