//! The article's table (section 6), reproduced: 100,000 sleeps of 10 ms at concurrency
//! 100 to 100,000, and a million at full concurrency, on OS threads (stage 0), stackful
//! coroutines (stage 3) and async tasks (stage 4), beside the physical floor, with
//! Python's asyncio and threads as reference rows when `python3` is present, and tokio
//! and smol as reference columns when built with the `reference` feature.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin table               # about 7 minutes on 2 cores
//! cargo run --release -p stage5-bench --bin table -- --quick    # 10,000 tasks, a minute
//! cargo run --release -p stage5-bench --bin table -- --runs 1   # one run per cell
//! cargo run --release -p stage5-bench --bin table --features reference   # + tokio, smol
//! cargo run --release -p stage5-bench --bin table -- --plot book/src/generated/stage5-table.svg
//! ```
//!
//! Each cell is the median of `--runs` runs (3 by default), printed with its spread. The
//! runs are interleaved: round 1 runs every cell once, then round 2, so that a noisy
//! minute on a shared machine spreads over all cells instead of spoiling one.
//!
//! Every cell runs in a fresh child process (this binary again, in its hidden `--cell`
//! mode), so memory and allocator state do not leak from one cell into the next, and a
//! cell the OS refuses, or one that crashes, shows up as such in its cell.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use shared::bench::SleepBench;
use stage5_bench::Model;
use stage5_bench::cell::{self, Outcome, Runs};
use stage5_bench::plot::{self, Series};
use stage5_bench::python::{self, PyModel};
use stage5_bench::reference::Runtime;
use stage5_bench::text::{machine, print_markdown, thousands};

#[derive(clap::Parser)]
/// Reproduces the article's table: threads, coroutines and async tasks on the same sleeps.
struct Args {
    /// A smaller table for a fast look: 10,000 tasks, no million row.
    #[arg(long)]
    quick: bool,
    /// Runs per cell; the table shows their median and spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
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

/// A column of the Rust rows: one of our models, or a reference runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Model(Model),
    Runtime(Runtime),
}

impl Column {
    /// Our three models, then tokio and smol when this binary was built with them.
    fn all() -> Vec<Column> {
        let mut columns: Vec<Column> = Model::ALL.map(Column::Model).to_vec();
        if Runtime::built_in() {
            columns.extend(Runtime::ALL.map(Column::Runtime));
        }
        columns
    }

    fn from_key(key: &str) -> Option<Column> {
        Model::from_key(key)
            .map(Column::Model)
            .or_else(|| Runtime::from_key(key).map(Column::Runtime))
    }

    fn key(self) -> &'static str {
        match self {
            Column::Model(model) => model.key(),
            Column::Runtime(runtime) => runtime.key(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Column::Model(model) => model.label(),
            Column::Runtime(runtime) => runtime.label(),
        }
    }
}

// ANCHOR: cell
/// The hidden `--cell MODEL TOTAL CONCURRENCY SLEEP_MS` mode: one measurement, one line.
fn run_cell(args: &[String]) -> ExitCode {
    let (key, numbers) = args
        .split_first()
        .map_or(("", &[][..]), |(k, n)| (k.as_str(), n));
    let parsed = SleepBench::parse("table --cell MODEL", numbers);
    let (Some(column), Ok(bench)) = (Column::from_key(key), parsed) else {
        shared::say!(
            "failed usage: table --cell threads|coroutines|tasks|tokio|smol TOTAL CONCURRENCY \
             SLEEP_MS"
        );
        return ExitCode::from(2);
    };
    let measured = match column {
        Column::Model(model) => model.measure(&bench),
        Column::Runtime(runtime) => runtime.measure(&bench),
    };
    let outcome = Outcome::of(measured);
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

/// What runs one cell once.
#[derive(Debug, Clone, Copy)]
enum Runner {
    Rust(Column),
    Python(PyModel),
}

/// One line of the table: who ran it, and the runs of each column's cell.
struct Line {
    runtime: String,
    bench: SleepBench,
    /// One per column of [`Column::all`]; `None` where the runtime has no such model.
    cells: Vec<Option<(Runner, Runs)>>,
}

fn table(args: &Args) -> ExitCode {
    let benches = benches(args.quick);
    let columns = Column::all();
    let mut lines: Vec<Line> = benches
        .iter()
        .map(|bench| Line {
            runtime: "Rust".into(),
            bench: *bench,
            cells: columns
                .iter()
                .map(|&column| Some((Runner::Rust(column), Runs::default())))
                .collect(),
        })
        .collect();
    let python = if args.no_python {
        None
    } else {
        python::version()
    };
    match &python {
        Some(version) => {
            for bench in &benches {
                // Python's threads under "threads", asyncio under "async tasks".
                let cells = columns
                    .iter()
                    .map(|column| match column {
                        Column::Model(Model::Threads) => Some(PyModel::Threads),
                        Column::Model(Model::AsyncTasks) => Some(PyModel::Asyncio),
                        _ => None,
                    })
                    .map(|model| model.map(|m| (Runner::Python(m), Runs::default())))
                    .collect();
                lines.push(Line {
                    runtime: version.clone(),
                    bench: *bench,
                    cells,
                });
            }
        }
        None if !args.no_python => eprintln!("python3 not found: no reference rows"),
        None => {}
    }
    // Interleaved rounds: every cell once, then again.
    for round in 1..=args.runs {
        for line in &mut lines {
            for (runner, runs) in line.cells.iter_mut().flatten() {
                if !runs.wants_more() {
                    continue; // refused or failed: once is enough
                }
                let name = match runner {
                    Runner::Rust(column) => format!("Rust {}", column.label()),
                    Runner::Python(model) => format!("{} {}", line.runtime, model.key()),
                };
                progress(round, args.runs, &name, &line.bench);
                let outcome = run_once(*runner, &line.bench);
                eprintln!("{}", outcome.cell_text());
                runs.0.push(outcome);
            }
        }
    }
    print_tables(&lines, &columns, args.runs);
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

fn run_once(runner: Runner, bench: &SleepBench) -> Outcome {
    match runner {
        Runner::Python(model) => python::run_cell(model, bench, timeout(bench)),
        Runner::Rust(column) => match std::env::current_exe() {
            Ok(exe) => {
                let mut command = Command::new(exe);
                command.args(["--cell", column.key()]).args(numbers(bench));
                cell::run_child(&mut command, timeout(bench))
            }
            Err(error) => Outcome::Failed {
                what: "spawn".into(),
                detail: format!("cannot find this binary to run the cell in: {error}"),
            },
        },
    }
}

fn numbers(bench: &SleepBench) -> [String; 3] {
    [
        bench.total.to_string(),
        bench.concurrency.to_string(),
        bench.sleep.as_millis().to_string(),
    ]
}

fn progress(round: u32, rounds: u32, what: &str, bench: &SleepBench) {
    eprint!(
        "[{round}/{rounds}] {what}: {} tasks at concurrency {}... ",
        thousands(bench.total),
        thousands(bench.concurrency)
    );
}

fn print_tables(lines: &[Line], columns: &[Column], runs: u32) {
    let each = if runs == 1 {
        "the wall time of one run, in a fresh process".to_string()
    } else {
        format!(
            "the median wall time of {runs} runs, each in a fresh process, and in brackets \
             their spread, (slowest - fastest) / median"
        )
    };
    shared::say!(
        "Each cell: TOTAL sleeps of 10 ms, taken from a shared counter by CONCURRENCY \
         workers; {each}. Floor: ceil(TOTAL / CONCURRENCY) rounds of 10 ms."
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
                Some((_, runs)) => runs.cell_text(),
                None => "n/a".to_string(),
            }));
            row.push(cell::seconds(line.bench.ideal()));
            row
        })
        .collect();
    let mut header = vec!["runtime", "tasks", "concurrency"];
    header.extend(columns.iter().map(|column| column.label()));
    print_markdown(&[&header[..], &["floor"]].concat(), &times, &[0]);
    shared::say!();
    shared::say!(
        "Resident memory per worker, sampled while every worker was alive{}:",
        if runs == 1 { "" } else { " (median)" }
    );
    shared::say!();
    let memory: Vec<Vec<String>> = lines
        .iter()
        .filter(|line| line.bench.one_job_each())
        .map(|line| {
            let mut row = size(line);
            row.extend(line.cells.iter().map(|cell| {
                match cell.as_ref().and_then(|(_, runs)| runs.outcome()) {
                    Some(Outcome::Ran(measured)) => match measured.per_worker {
                        Some(bytes) => cell::bytes(bytes),
                        None => "not all alive".to_string(),
                    },
                    Some(other) => other.cell_text(),
                    None => "n/a".to_string(),
                }
            }));
            row
        })
        .collect();
    print_markdown(&header, &memory, &[0]);
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
        for (column, cell) in columns.iter().zip(&line.cells) {
            let outcome = cell.as_ref().and_then(|(_, runs)| runs.outcome());
            if let Some(Outcome::Refused { detail, .. } | Outcome::Failed { detail, .. }) = outcome
            {
                let note = format!(
                    "- {} {}, {} tasks at concurrency {}: {detail}",
                    line.runtime,
                    column.label(),
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

/// Time against concurrency for the rows with `total` tasks (the million row is left
/// out: it is another amount of work), with the article's own figures for reference.
fn write_plot(path: &Path, lines: &[Line], total: u64) -> std::io::Result<()> {
    let mut series: Vec<Series> = Vec::new();
    let mut floor = Vec::new();
    for line in lines.iter().filter(|line| line.bench.total == total) {
        if line.runtime == "Rust" {
            floor.push((line.bench.concurrency, line.bench.ideal().as_secs_f64()));
        }
        for (runner, runs) in line.cells.iter().flatten() {
            let (name, dashed) = match runner {
                Runner::Rust(column) => (column.label().to_string(), false),
                Runner::Python(PyModel::Threads) => ("Python threads".to_string(), true),
                Runner::Python(PyModel::Asyncio) => ("Python asyncio".to_string(), true),
            };
            let point = (line.bench.concurrency, runs.time().map(|t| t.median));
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push(point),
                None => series.push(Series {
                    name,
                    style: if dashed {
                        plot::Style::Dashed
                    } else {
                        plot::Style::Solid
                    },
                    points: vec![point],
                }),
            }
        }
    }
    if total == 100_000 {
        series.extend(plot::article_series());
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
