//! The book's pictures from real runs: a timeline of ten requests for each stage, and the
//! four players' dance of stages 3 and 4 read from their `--trace`.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin pictures             # into book/src/figures
//! cargo run --release -p stage5-bench --bin pictures -- --out /tmp/figures
//! ```
//!
//! Each picture `NAME.svg` comes with `NAME.structure.txt` (what `.ci/pictures --check`
//! compares) and, for a dance, `NAME.trace.txt` (the trace it was drawn from).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;
use shared::server::SlowServer;
use shared::{Config, Error};
use stage5_bench::Stage;
use stage5_bench::pictures::{DELAY, Dance, Threads, Timeline};

/// Draws the book's pictures from real runs of the stages.
#[derive(Parser, Debug)]
struct Args {
    /// Where to write the pictures [default: the book's `src/figures`]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// (Internal) run stage N (3 or 4) with `--trace` on and print its trace
    #[arg(long, value_name = "N", hide = true)]
    trace_child: Option<u8>,
}

/// Requests in each timeline, as in the article's demo, and in each dance, few enough
/// that the diagram stays legible.
const TIMELINE_REQUESTS: u64 = 10;
const DANCE_REQUESTS: u64 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(stage) = args.trace_child {
        return shared::cli::exit(trace_child(stage));
    }
    let out = args
        .out
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/figures"));
    shared::cli::exit(draw_all(&out))
}

fn draw_all(out: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(out)
        .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let server = SlowServer::start(DELAY).map_err(|e| Error::io("starting the slow server", e))?;
    let config = Config::new(server.addr(), TIMELINE_REQUESTS);
    let runs: [(&str, &str, Threads, Option<Stage>); 6] = [
        (
            "timeline-stage0-sequential",
            "stage 0, one request at a time",
            Threads::OneSequential,
            None,
        ),
        (
            "timeline-stage0-threads",
            "stage 0, one thread per request",
            Threads::PerRequest,
            Some(Stage::Blocking),
        ),
        (
            "timeline-stage1",
            "stage 1, callbacks on one event loop",
            Threads::OneInterleaved,
            Some(Stage::Callbacks),
        ),
        (
            "timeline-stage2",
            "stage 2, state machines on one event loop",
            Threads::OneInterleaved,
            Some(Stage::StateMachine),
        ),
        (
            "timeline-stage3",
            "stage 3, generator tasks on one event loop",
            Threads::OneInterleaved,
            Some(Stage::Generators),
        ),
        (
            "timeline-stage4",
            "stage 4, async tasks on one executor",
            Threads::OneInterleaved,
            Some(Stage::AsyncAwait),
        ),
    ];
    for (name, title, threads, stage) in runs {
        let report = match stage {
            None => stage0_blocking::run_sequential(&config)?,
            Some(stage) => stage5_bench::run_verified(stage, &config)?,
        };
        let title = format!("{title}: {TIMELINE_REQUESTS} requests");
        let timeline = Timeline::from_report(&title, threads, &report)?;
        write(out, name, "svg", &timeline.svg())?;
        write(out, name, "structure.txt", &timeline.structure())?;
        shared::say!("{name}: {report}");
    }
    for stage in [3, 4] {
        let trace = run_trace_child(stage)?;
        let title = format!("stage {stage}: the four players, {DANCE_REQUESTS} requests");
        let dance = if stage == 3 {
            Dance::parse_stage3(&title, &trace)?
        } else {
            Dance::parse_stage4(&title, &trace)?
        };
        let name = format!("dance-stage{stage}");
        write(out, &name, "trace.txt", &trace)?;
        write(out, &name, "svg", &dance.svg())?;
        write(out, &name, "structure.txt", &dance.structure())?;
        shared::say!("{name}: {} messages", dance.messages.len());
    }
    Ok(())
}

fn write(dir: &Path, name: &str, ext: &str, text: &str) -> Result<(), Error> {
    let path = dir.join(format!("{name}.{ext}"));
    std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The trace of a stage, printed on its stdout by a child process: the stages print
/// their traces there, so this process runs itself with `--trace-child` and reads them.
fn run_trace_child(stage: u8) -> Result<String, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding this program", e))?;
    let output = Command::new(exe)
        .args(["--trace-child", &stage.to_string()])
        .output()
        .map_err(|e| Error::io("running the trace child", e))?;
    if !output.status.success() {
        return Err(Error::Other(format!(
            "the stage {stage} trace run failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Error::Other(format!("stage {stage}'s trace is not UTF-8")))
}

fn trace_child(stage: u8) -> Result<(), Error> {
    let server = SlowServer::start(DELAY).map_err(|e| Error::io("starting the slow server", e))?;
    let mut config = Config::new(server.addr(), DANCE_REQUESTS);
    config.progress = true; // the answers, as the binaries print them
    let report = match stage {
        3 => stage3_generators::run_with(
            &config,
            &stage3_generators::Options {
                trace: true,
                ..Default::default()
            },
        )?,
        4 => stage4_async_await::run_with(
            &config,
            &stage4_async_await::Options {
                trace: true,
                ..Default::default()
            },
        )?,
        _ => return Err(Error::Other(format!("--trace-child {stage}: only 3 or 4"))),
    };
    shared::say!("{report}");
    Ok(())
}
