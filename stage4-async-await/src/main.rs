//! Stage 4 on the command line: the article's requests as async tasks on one thread.
//!
//! ```text
//! cargo run -p stage4-async-await                                  # ten requests, ~5 s
//! cargo run --release -p stage4-async-await -- --requests 9000 --delay-ms 100
//! ```

use std::process::ExitCode;

use clap::Parser;

/// Stage 4: async/await on our own executor and mio reactor, one thread for every request.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: shared::cli::Args,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::exit(shared::cli::run(&args.common, stage4_async_await::run))
}
