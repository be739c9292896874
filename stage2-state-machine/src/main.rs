//! Stage 2 on the command line: the article's ten requests, each a state machine driven
//! by one event loop.
//!
//! Over stage 1, nothing here changes but the `run` it calls: the stage is in the library.
//!
//! ```text
//! cargo run -p stage2-state-machine   # ten requests, ~5 s
//! cargo run --release -p stage2-state-machine -- --delay-ms 300
//! cargo run --release -p stage2-state-machine -- --requests 5000 --delay-ms 500
//! ```

use std::process::ExitCode;

use clap::Parser;

/// Stage 2: every request is a state machine driven by one event loop, in one thread.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: shared::cli::Args,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::exit(shared::cli::run(&args.common, stage2_state_machine::run))
}
