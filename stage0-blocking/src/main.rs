//! Stage 0 on the command line: the article's ten requests with blocking sockets.
//!
//! ```text
//! cargo run -p stage0-blocking                          # one thread per request, ~5 s
//! cargo run -p stage0-blocking -- --mode sequential     # one at a time, ~50 s
//! cargo run -p stage0-blocking -- --delay-ms 300 --requests 100
//! ```

use std::process::ExitCode;

use clap::Parser;
use stage0_blocking::Mode;

/// Stage 0: blocking sockets, one request at a time or one thread per request.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: shared::cli::Args,

    /// How to wait for many requests
    #[arg(long, value_enum, default_value_t = Mode::Threads)]
    mode: Mode,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = shared::cli::run(&args.common, |config| {
        stage0_blocking::run_mode(config, args.mode)
    });
    if let (Ok(report), Mode::Threads) = (&result, args.mode) {
        // Every thread started at once, so each arrival time is that request's latency.
        let one_at_a_time: f64 = report.responses().iter().map(|r| r.at.as_secs_f64()).sum();
        println!(
            "one at a time (--mode sequential) they would have taken about {one_at_a_time:.3} s: \
             the sum of their latencies"
        );
    }
    shared::cli::exit(result)
}
