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
    // One at a time holds one connection, however many requests there are.
    let in_flight = match args.mode {
        Mode::Threads => args.common.requests,
        Mode::Sequential => 1,
    };
    let result = shared::cli::run_with_in_flight(&args.common, in_flight, |config| {
        stage0_blocking::run_mode(config, args.mode)
    });
    if let (Ok(report), Mode::Threads) = (&result, args.mode) {
        // The quickest answer is one request's latency with nothing queued before it.
        if let Some(one) = report.responses().iter().map(|r| r.at).min() {
            let n = report.verified();
            shared::say!(
                "one at a time (--mode sequential) they would take about {n} x {:.3} s = {:.1} s",
                one.as_secs_f64(),
                one.as_secs_f64() * n as f64
            );
        }
    }
    shared::cli::exit(result)
}
