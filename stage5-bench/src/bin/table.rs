//! The article's table (section 6), reproduced: 100,000 sleeps of 10 ms at concurrency
//! 100 to 100,000, and a million at full concurrency, on OS threads (stage 0), stackful
//! coroutines (stage 3) and async tasks (stage 4), beside the physical floor, with
//! Python's asyncio and threads as reference rows when `python3` is present, and tokio
//! and smol as reference columns when built with the `reference` feature. Three tables
//! with the same rows: the wall time, the CPU time of each cell's process (its 6.2 shows
//! CPU use beside wall time), and the memory per worker.
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
use stage5_bench::cell::{self, Outcome, Run, Runs, seconds};
use stage5_bench::plot::{self, Series};
use stage5_bench::python::{self, PyModel};
use stage5_bench::reference::Runtime;
use stage5_bench::text::{NBSP, Sections, machine, thousands, wrap};

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

    /// The name in the plot's legend: `async tasks`, `tokio (1 thread)`.
    fn label(self) -> &'static str {
        match self {
            Column::Model(model) => model.label(),
            Column::Runtime(runtime) => runtime.label(),
        }
    }

    /// The column's header: `async tasks`, `tokio` (the caption says "one thread").
    fn header(self) -> &'static str {
        match self {
            Column::Model(model) => model.label(),
            Column::Runtime(runtime) => runtime.key(),
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
                let run = run_once(*runner, &line.bench);
                match run.cpu {
                    Some(cpu) => eprintln!("{}, CPU {}", run.outcome.headline(), seconds(cpu)),
                    None => eprintln!("{}", run.outcome.headline()),
                }
                runs.0.push(run);
            }
        }
    }
    for line in render(&lines, &columns, args.runs, &machine()) {
        shared::say!("{line}");
    }
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

fn run_once(runner: Runner, bench: &SleepBench) -> Run {
    match runner {
        Runner::Python(model) => python::run_cell(model, bench, timeout(bench)),
        Runner::Rust(column) => match std::env::current_exe() {
            Ok(exe) => {
                let mut command = Command::new(exe);
                command.args(["--cell", column.key()]).args(numbers(bench));
                cell::run_child(&mut command, timeout(bench))
            }
            Err(error) => Run {
                outcome: Outcome::Failed {
                    what: "spawn".into(),
                    detail: format!("cannot find this binary to run the cell in: {error}"),
                },
                cpu: None,
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
        "[{round}/{rounds}] {what}: {} tasks, {} at once... ",
        thousands(bench.total),
        thousands(bench.concurrency)
    );
}

/// The widest a line of the tables may be: the book shows them in a box of 118 columns
/// at 1280 px, and a row that wraps is a table no one can read.
const WIDTH: usize = 110;

/// Everything the table prints: a caption, the wall times, the CPU times, the memory per
/// worker, and a note for every cell that did not run.
fn render(lines: &[Line], columns: &[Column], runs: u32, machine: &str) -> Vec<String> {
    // No-break spaces keep a formula on one line of the caption.
    let median = if runs == 1 {
        "one run, in a fresh process".to_string()
    } else {
        format!(
            "the median of {runs} runs, each in a fresh process, and in brackets their spread, \
             (slowest{NBSP}-{NBSP}fastest){NBSP}/{NBSP}median"
        )
    };
    let mut header = vec!["tasks", "at once"];
    header.extend(columns.iter().map(|column| column.header()));
    let all: Vec<&Line> = lines.iter().collect();
    let references = if columns.iter().any(|c| matches!(c, Column::Runtime(_))) {
        "; tokio and smol each run on one thread"
    } else {
        ""
    };
    let mut out = wrap(
        &format!(
            "Wall time in seconds, {median}. Each row: TASKS sleeps of 10 ms, taken from a \
             shared counter by AT{NBSP}ONCE workers; the floor is \
             ceil(TASKS{NBSP}/{NBSP}AT{NBSP}ONCE) rounds of 10 ms. Threads are stage 0's, \
             coroutines stage 3's, async tasks stage 4's{references}."
        ),
        WIDTH,
    );
    out.extend(wrap(&format!("Machine: {machine}."), WIDTH));
    out.push(String::new());
    let with_floor = [&header[..], &["floor"]].concat();
    out.extend(grid(&with_floor, &all, Runs::cell_text, true));

    out.push(String::new());
    let cpu = if runs == 1 {
        "one run"
    } else {
        "the median and spread of the same runs"
    };
    out.extend(wrap(
        &format!(
            "CPU time in seconds, user + system, of each cell's whole process (start-up \
             included), {cpu}:"
        ),
        WIDTH,
    ));
    out.push(String::new());
    out.extend(grid(&header, &all, Runs::cpu_text, false));

    out.push(String::new());
    out.push(format!(
        "Resident memory per worker, sampled while every worker was alive{}:",
        if runs == 1 { "" } else { " (median)" }
    ));
    out.push(String::new());
    let one_each: Vec<&Line> = all
        .into_iter()
        .filter(|line| line.bench.one_job_each())
        .collect();
    let memory = grid(&header, &one_each, memory_text, false);
    let not_all_alive = memory.iter().any(|line| line.contains("not all alive"));
    out.extend(memory);
    if not_all_alive {
        out.push(String::new());
        out.extend(wrap(
            "not all alive: a thread runs as soon as it is spawned, and the first ones had \
             finished their job before the last one started, so there is no honest figure.",
            WIDTH,
        ));
    }

    // The whole reason for every cell that did not run: a note may be long, and wraps as
    // prose does.
    let mut notes: Vec<String> = Vec::new();
    for line in lines {
        for (column, cell) in columns.iter().zip(&line.cells) {
            let (word, short, detail) = match cell.as_ref().and_then(|(_, r)| r.outcome()) {
                Some(Outcome::Refused { limit, detail }) => ("refused", limit, detail),
                Some(Outcome::Failed { what, detail }) => ("failed", what, detail),
                _ => continue,
            };
            notes.push(format!(
                "- {} {}, {} tasks, {} at once, {word} ({short}): {detail}",
                line.runtime,
                column.header(),
                thousands(line.bench.total),
                thousands(line.bench.concurrency)
            ));
        }
    }
    if !notes.is_empty() {
        out.push(String::new());
        out.push("Cells that did not run:".to_string());
        out.push(String::new());
        out.extend(notes);
    }
    out
}

/// One table of `lines`, each runtime's rows under its heading, a cell per column made
/// by `cell` (`n/a` where the runtime has no such model), and the floor if asked.
fn grid(header: &[&str], lines: &[&Line], cell: fn(&Runs) -> String, floor: bool) -> Vec<String> {
    let mut table = Sections::new(header);
    let mut runtime = None;
    for line in lines {
        if runtime != Some(&line.runtime) {
            runtime = Some(&line.runtime);
            table.heading(&heading(&line.runtime));
        }
        let mut row = vec![
            thousands(line.bench.total),
            thousands(line.bench.concurrency),
        ];
        row.extend(line.cells.iter().map(|c| match c {
            Some((_, runs)) => cell(runs),
            None => "n/a".to_string(),
        }));
        if floor {
            row.push(format!("{:.3}", line.bench.ideal().as_secs_f64()));
        }
        table.row(row);
    }
    table.lines()
}

/// The line above a runtime's rows: `Rust`, or for Python which of its models stands in
/// which column.
fn heading(runtime: &str) -> String {
    if runtime.starts_with("Python") {
        format!("{runtime}: threading under threads, asyncio under async tasks")
    } else {
        runtime.to_string()
    }
}

/// A cell of the memory table: `4.49 KiB`, or why there is no figure.
fn memory_text(runs: &Runs) -> String {
    match runs.outcome() {
        Some(Outcome::Ran(measured)) => match measured.per_worker {
            Some(bytes) => cell::bytes(bytes),
            None => "not all alive".to_string(),
        },
        Some(other) => other.cell_text(),
        None => "not run".to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use stage5_bench::Measured;

    /// Three runs of a cell, at `seconds` and 1% slower and faster, using `cpu` seconds of
    /// CPU each; one bytes figure per worker.
    fn ran(seconds: f64, spread: f64, cpu: f64, bytes: f64) -> Runs {
        let run = |factor: f64| Run {
            outcome: Outcome::Ran(Measured {
                elapsed: Duration::from_secs_f64(seconds * factor),
                per_worker: Some(bytes),
            }),
            cpu: Some(Duration::from_secs_f64(cpu * factor)),
        };
        Runs(vec![
            run(1.0 - spread / 2.0),
            run(1.0),
            run(1.0 + spread / 2.0),
        ])
    }

    fn refused() -> Runs {
        Runs(vec![Run {
            outcome: Outcome::Refused {
                limit: "vm.max_map_count".into(),
                detail: "100000 threads need about 402000 memory mappings, more than the \
                         memory-mapping limit (vm.max_map_count = 65530, 35 in use) allows"
                    .into(),
            },
            cpu: Some(Duration::from_millis(2)),
        }])
    }

    /// The article's rows, every column, with the widest figures a run gives: ten seconds
    /// and more, spreads of 9.9% and of 100%, and the cells that did not run.
    fn synthetic() -> (Vec<Line>, Vec<Column>) {
        let mut columns: Vec<Column> = Model::ALL.map(Column::Model).to_vec();
        columns.extend(Runtime::ALL.map(Column::Runtime));
        let mut lines = Vec::new();
        for bench in benches(false) {
            let wide = |i: usize| {
                let spread = if i.is_multiple_of(2) { 0.099 } else { 1.0 };
                ran(10.0 * i as f64 + 10.119, spread, 19.876, 4_600.0)
            };
            let cells = columns
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let runs = match column {
                        Column::Model(Model::Threads) if bench.one_job_each() => refused(),
                        _ => wide(i),
                    };
                    Some((Runner::Rust(*column), runs))
                })
                .collect();
            lines.push(Line {
                runtime: "Rust".into(),
                bench,
                cells,
            });
            let python = columns
                .iter()
                .map(|column| match column {
                    Column::Model(Model::Threads) if bench.one_job_each() => {
                        Some((Runner::Python(PyModel::Threads), refused()))
                    }
                    Column::Model(Model::Threads) => {
                        Some((Runner::Python(PyModel::Threads), wide(0)))
                    }
                    Column::Model(Model::AsyncTasks) => Some((
                        Runner::Python(PyModel::Asyncio),
                        ran(26.116, 0.026, 26.5, 1650.0),
                    )),
                    _ => None,
                })
                .collect();
            lines.push(Line {
                runtime: "Python 3.11.7".into(),
                bench,
                cells: python,
            });
        }
        // Python's lines after Rust's, as the table orders them.
        lines.sort_by_key(|line| line.runtime != "Rust");
        (lines, columns)
    }

    #[test]
    fn every_line_of_the_tables_fits_the_books_box() {
        let (lines, columns) = synthetic();
        let machine = "2 CPUs, linux 6.18.44-fc-v857, vm.max_map_count 65530";
        let out = render(&lines, &columns, 3, machine);
        let text = out.join("\n");
        // The notes below the tables are prose, and may wrap; nothing else may.
        for line in out.iter().filter(|line| !line.starts_with("- ")) {
            assert!(
                line.chars().count() <= WIDTH,
                "{} columns:\n{line}\n\n{text}",
                line.chars().count()
            );
        }
        // Every column the reader compares is there, in one row, with its figure.
        let header = "    tasks |   at once |       threads |    coroutines |   async tasks |  \
                      \x20      tokio |          smol |  floor";
        assert_eq!(out.iter().filter(|l| *l == header).count(), 1, "{text}");
        let row = "  100,000 |       100 | 10.119 (9.9%) | 20.119 (100%) | 30.119 (9.9%) | \
                   40.119 (100%) | 50.119 (9.9%) | 10.000";
        assert!(out.iter().any(|l| l == row), "{text}");
        assert!(
            out.iter()
                .any(|l| l.starts_with("1,000,000 | 1,000,000 |       refused |"))
        );
        // Three tables (time, CPU, memory), each with both headings.
        assert_eq!(out.iter().filter(|l| *l == "Rust").count(), 3, "{text}");
        let python = "Python 3.11.7: threading under threads, asyncio under async tasks";
        assert_eq!(out.iter().filter(|l| *l == python).count(), 3, "{text}");
        let cpu = "  100,000 |       100 | 19.876 (9.9%) | 19.876 (100%) | 19.876 (9.9%) | \
                   19.876 (100%) | 19.876 (9.9%)";
        assert!(out.iter().any(|l| l == cpu), "{text}");
        assert!(out.iter().any(|l| l.contains("| 4.49 KiB |")), "{text}");
        // Each refused cell's reason is a note, once.
        let notes: Vec<&String> = out.iter().filter(|l| l.starts_with("- ")).collect();
        assert_eq!(notes.len(), 4, "{text}");
        assert!(
            notes[0].starts_with(
                "- Rust threads, 100,000 tasks, 100,000 at once, refused (vm.max_map_count): \
                 100000 threads need"
            ),
            "{text}"
        );
    }

    #[test]
    fn one_run_has_no_spread_and_says_so() {
        let (mut lines, columns) = synthetic();
        for line in &mut lines {
            for (_, runs) in line.cells.iter_mut().flatten() {
                runs.0.truncate(1);
            }
        }
        let out = render(&lines, &columns, 1, "1 CPU").join("\n");
        assert!(
            out.starts_with("Wall time in seconds, one run, in a fresh process."),
            "{out}"
        );
        assert!(!out.contains('%'), "{out}");
        assert!(out.contains("| 10.000\n"), "{out}");
    }
}
