//! The article's table (section 6), reproduced: 100,000 sleeps of 10 ms at concurrency
//! 100 to 100,000, and a million at full concurrency, on OS threads (stage 0), stackful
//! coroutines (stage 3) and async tasks (stage 4), beside the physical floor, with
//! Python's asyncio and threads as reference rows when `python3` is present.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin table               # about 3 minutes on 2 cores
//! cargo run --release -p stage5-bench --bin table -- --quick    # 10,000 tasks, seconds
//! cargo run --release -p stage5-bench --bin table -- --plot book/src/generated/stage5-table.svg
//! ```
//!
//! Every cell runs in a fresh child process (this binary again, in its hidden `--cell`
//! mode), so memory and allocator state do not leak from one cell into the next, and a
//! cell the OS refuses, or one that crashes, shows up as such in its cell.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use shared::bench::SleepBench;
use stage5_bench::Model;
use stage5_bench::cell::{self, Outcome};
use stage5_bench::plot::{self, Series};
use stage5_bench::python::{self, PyModel};

#[derive(clap::Parser)]
/// Reproduces the article's table: threads, coroutines and async tasks on the same sleeps.
struct Args {
    /// A smaller table for a fast look: 10,000 tasks, no million row.
    #[arg(long)]
    quick: bool,
    /// Where to write the SVG plot of the table.
    #[arg(long, value_name = "PATH", default_value = "target/table.svg")]
    plot: PathBuf,
    /// Leave out the Python reference rows.
    #[arg(long)]
    no_python: bool,
    /// Run one cell in this process and print its line (what the table runs in its
    /// children).
    #[arg(
        long,
        num_args = 4,
        value_names = ["MODEL", "TOTAL", "CONCURRENCY", "SLEEP_MS"],
        hide = true
    )]
    cell: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    match &args.cell {
        Some(cell) => run_cell(cell),
        None => table(&args),
    }
}

// ANCHOR: cell
/// The hidden `--cell MODEL TOTAL CONCURRENCY SLEEP_MS` mode: one measurement, one line.
fn run_cell(args: &[String]) -> ExitCode {
    let (key, numbers) = args
        .split_first()
        .map_or(("", &[][..]), |(k, n)| (k.as_str(), n));
    let parsed = SleepBench::parse("table --cell MODEL", numbers);
    let (Some(model), Ok(bench)) = (Model::from_key(key), parsed) else {
        shared::say!(
            "failed usage: table --cell threads|coroutines|tasks TOTAL CONCURRENCY SLEEP_MS"
        );
        return ExitCode::from(2);
    };
    let outcome = Outcome::of(model.measure(&bench));
    shared::say!("{outcome}");
    match outcome {
        // A refusal is a result worth a cell, not a failure of the cell.
        Outcome::Ran(_) | Outcome::Refused { .. } => ExitCode::SUCCESS,
        Outcome::Failed { .. } => ExitCode::FAILURE,
    }
}
// ANCHOR_END: cell

/// The rows: the article's, or a quick look.
fn benches(quick: bool) -> Vec<SleepBench> {
    let sleep = Duration::from_millis(10);
    let bench = |total, concurrency| SleepBench {
        total,
        concurrency,
        sleep,
    };
    if quick {
        return [100, 1_000, 10_000].map(|c| bench(10_000, c)).to_vec();
    }
    let mut rows: Vec<SleepBench> = [100, 1_000, 10_000, 100_000]
        .map(|c| bench(100_000, c))
        .to_vec();
    rows.push(bench(1_000_000, 1_000_000));
    rows
}

/// Generous: a cell only hits this if something is badly wrong.
fn timeout(bench: &SleepBench) -> Duration {
    bench.ideal() * 2 + Duration::from_secs(120)
}

/// One line of the table: who ran it, and a cell per model column.
struct Line {
    runtime: String,
    bench: SleepBench,
    /// threads, coroutines, async tasks; `None` where the runtime has no such model.
    cells: [Option<Outcome>; 3],
}

fn table(args: &Args) -> ExitCode {
    let benches = benches(args.quick);
    let mut lines = Vec::new();
    for bench in &benches {
        let cells = Model::ALL.map(|model| {
            progress(&format!("{} {}", "Rust", model.label()), bench);
            let outcome = match std::env::current_exe() {
                Ok(exe) => {
                    let mut command = Command::new(exe);
                    command.args(["--cell", model.key()]).args(numbers(bench));
                    cell::run_child(&mut command, timeout(bench))
                }
                Err(error) => Outcome::Failed {
                    what: "spawn".into(),
                    detail: format!("cannot find this binary to run the cell in: {error}"),
                },
            };
            Some(done(outcome))
        });
        lines.push(Line {
            runtime: "Rust".into(),
            bench: *bench,
            cells,
        });
    }
    let python = if args.no_python {
        None
    } else {
        python::version()
    };
    match &python {
        Some(version) => {
            for bench in &benches {
                let run = |model: PyModel| {
                    progress(&format!("{version} {}", model.key()), bench);
                    Some(done(python::run_cell(model, bench, timeout(bench))))
                };
                let threads = run(PyModel::Threads);
                let asyncio = run(PyModel::Asyncio);
                lines.push(Line {
                    runtime: version.clone(),
                    bench: *bench,
                    cells: [threads, None, asyncio],
                });
            }
        }
        None if !args.no_python => eprintln!("python3 not found: no reference rows"),
        None => {}
    }
    print_tables(&lines);
    match write_plot(&args.plot, &lines, benches[0].total) {
        Ok(()) => {
            eprintln!("plot written to {}", args.plot.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "error: writing the plot to {}: {error}",
                args.plot.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn numbers(bench: &SleepBench) -> [String; 3] {
    [
        bench.total.to_string(),
        bench.concurrency.to_string(),
        bench.sleep.as_millis().to_string(),
    ]
}

fn progress(what: &str, bench: &SleepBench) {
    eprint!(
        "{what}: {} tasks at concurrency {}... ",
        thousands(bench.total),
        thousands(bench.concurrency)
    );
}

fn done(outcome: Outcome) -> Outcome {
    eprintln!("{}", outcome.cell_text());
    outcome
}

// ANCHOR: print_tables
fn print_tables(lines: &[Line]) {
    shared::say!(
        "Each cell: TOTAL sleeps of 10 ms, taken from a shared counter by CONCURRENCY \
         workers; the wall time of one run, in a fresh process. Floor: ceil(TOTAL / \
         CONCURRENCY) rounds of 10 ms."
    );
    shared::say!("Machine: {}.", machine());
    shared::say!();
    let size = |line: &Line| {
        vec![
            line.runtime.clone(),
            thousands(line.bench.total),
            thousands(line.bench.concurrency),
        ]
    };
    let times: Vec<Vec<String>> = lines
        .iter()
        .map(|line| {
            let mut row = size(line);
            row.extend(line.cells.iter().map(|cell| match cell {
                Some(outcome) => outcome.cell_text(),
                None => "n/a".to_string(),
            }));
            row.push(cell::seconds(line.bench.ideal()));
            row
        })
        .collect();
    let header = [
        "runtime",
        "tasks",
        "concurrency",
        "threads",
        "coroutines",
        "async tasks",
    ];
    print_markdown(&[&header[..], &["floor"]].concat(), &times);
    shared::say!();
    shared::say!("Resident memory per worker, sampled while every worker was alive:");
    shared::say!();
    let memory: Vec<Vec<String>> = lines
        .iter()
        .filter(|line| line.bench.one_job_each())
        .map(|line| {
            let mut row = size(line);
            row.extend(line.cells.iter().map(|cell| match cell {
                Some(Outcome::Ran(measured)) => match measured.per_worker {
                    Some(bytes) => cell::bytes(bytes),
                    None => "not all alive".to_string(),
                },
                Some(other) => other.cell_text(),
                None => "n/a".to_string(),
            }));
            row
        })
        .collect();
    print_markdown(&header, &memory);
    if memory.iter().flatten().any(|cell| cell == "not all alive") {
        shared::say!();
        shared::say!(
            "not all alive: a thread runs as soon as it is spawned, and the first ones had \
             finished their job before the last one started, so there is no honest figure."
        );
    }
    // The whole reason for every cell that did not run.
    let mut notes: Vec<String> = Vec::new();
    for line in lines {
        for (model, cell) in ["threads", "coroutines", "async tasks"]
            .iter()
            .zip(&line.cells)
        {
            if let Some(Outcome::Refused { detail, .. } | Outcome::Failed { detail, .. }) = cell {
                let note = format!(
                    "- {} {model}, {} tasks at concurrency {}: {detail}",
                    line.runtime,
                    thousands(line.bench.total),
                    thousands(line.bench.concurrency)
                );
                notes.push(note);
            }
        }
    }
    if !notes.is_empty() {
        shared::say!();
        shared::say!("Cells that did not run:");
        shared::say!();
        for note in notes {
            shared::say!("{note}");
        }
    }
}

/// A markdown table whose columns line up in a terminal too: the first column to the
/// left, the figures to the right.
fn print_markdown(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| shared::say!("| {} |", cells.join(" | "));
    let pad = |i: usize, text: &str| match i {
        0 => format!("{text:<w$}", w = widths[0]),
        _ => format!("{text:>w$}", w = widths[i]),
    };
    line(header.iter().enumerate().map(|(i, h)| pad(i, h)).collect());
    line(
        widths
            .iter()
            .enumerate()
            .map(|(i, &w)| match i {
                0 => "-".repeat(w),
                _ => format!("{}:", "-".repeat(w - 1)),
            })
            .collect(),
    );
    for row in rows {
        line(
            row.iter()
                .enumerate()
                .map(|(i, cell)| pad(i, cell))
                .collect(),
        );
    }
}
// ANCHOR_END: print_tables

/// Time against concurrency for the rows with `total` tasks (the million row is left
/// out: it is another amount of work).
fn write_plot(path: &Path, lines: &[Line], total: u64) -> std::io::Result<()> {
    let mut series = Vec::new();
    let mut floor = Vec::new();
    for line in lines.iter().filter(|line| line.bench.total == total) {
        if line.runtime == "Rust" {
            floor.push((line.bench.concurrency, line.bench.ideal().as_secs_f64()));
        }
        for (column, cell) in line.cells.iter().enumerate() {
            let Some(outcome) = cell else { continue };
            let name = match (line.runtime.as_str(), column) {
                ("Rust", _) => Model::ALL[column].label().to_string(),
                (_, 0) => "Python threads".to_string(),
                _ => "Python asyncio".to_string(),
            };
            let point = (line.bench.concurrency, outcome.seconds());
            match series.iter_mut().find(|s: &&mut Series| s.name == name) {
                Some(s) => s.points.push(point),
                None => series.push(Series {
                    dashed: line.runtime != "Rust",
                    name,
                    points: vec![point],
                }),
            }
        }
    }
    let title = format!(
        "{} sleeps of 10 ms: wall time by concurrency",
        thousands(total)
    );
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, plot::svg(&title, &series, &floor))
}

/// `2 CPUs, Linux 6.18.0, vm.max_map_count 65530`: what the figures depend on.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string());
    let mut text = format!("{cpus} CPUs, {}", std::env::consts::OS);
    if let Ok(release) = read("/proc/sys/kernel/osrelease") {
        text += &format!(" {release}");
    }
    if let Ok(max) = read("/proc/sys/vm/max_map_count") {
        text += &format!(", vm.max_map_count {max}");
    }
    text
}

/// `100,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
