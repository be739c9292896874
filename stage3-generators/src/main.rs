//! Stage 3 on the command line: the article's requests as generator-based tasks, driven by
//! futures and one event loop.
//!
//! ```text
//! cargo run -p stage3-generators                       # ten requests, ~5 s
//! cargo run -p stage3-generators -- --trace            # the loop, tasks and futures at work
//! cargo run --release -p stage3-generators -- --requests 5000 --delay-ms 500
//! ```

use std::process::ExitCode;

use clap::Parser;
use stage3_generators::stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE};

/// Stage 3: one generator-based task per request, driven by futures and an event loop.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: shared::cli::Args,
    /// Print each step: task created, resumed, yields a future, the loop waits in poll,
    /// a socket is ready, the future's result is set, the task is scheduled again
    #[arg(long)]
    trace: bool,
    /// Stack size of each task's coroutine, in KiB (untouched pages cost no memory)
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_STACK_SIZE as u64 / 1024,
          value_parser = clap::value_parser!(u64)
              .range(MIN_STACK_SIZE as u64 / 1024..=MAX_STACK_SIZE as u64 / 1024))]
    stack_kib: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = stage3_generators::Options {
        trace: args.trace,
        stack_size: (args.stack_kib * 1024) as usize,
    };
    shared::cli::exit(shared::cli::run(&args.common, |config| {
        stage3_generators::run_with(config, &options)
    }))
}
