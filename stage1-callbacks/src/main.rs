//! Stage 1 on the command line: the article's ten requests on a callback event loop,
//! from one thread.
//!
//! Over stage 0, nothing here changes but the `run` it calls: the stage is in the library.
//!
//! ```text
//! cargo run -p stage1-callbacks   # ten requests, ~5 s
//! cargo run --release -p stage1-callbacks -- --delay-ms 300
//! cargo run --release -p stage1-callbacks -- --requests 5000 --delay-ms 500
//! ```

use std::process::ExitCode;

use clap::Parser;

/// Stage 1: every request is a chain of callbacks on one event loop, in one thread.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: shared::cli::Args,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::exit(shared::cli::run(&args.common, stage1_callbacks::run))
}
