//! Stage 4 on the command line: the article's requests as async tasks on one thread.
//!
//! Over stage 3, nothing here changes but the `run` it calls: the stage is in the library.
//!
//! ```text
//! cargo run -p stage4-async-await                                  # ten requests, ~5 s
//! cargo run -p stage4-async-await -- --requests 2 --delay-ms 200 --trace
//! cargo run --release -p stage4-async-await -- --requests 9000 --delay-ms 100
//! cargo run -p stage4-async-await -- --driver uring        # completion I/O (Linux)
//! ```

use std::process::ExitCode;

use clap::Parser;

/// Stage 4: async/await on our own executor and mio reactor, one thread for every request.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: shared::cli::Args,

    /// Print each step: task spawned, polled, its waker left with the reactor, Pending,
    /// the reactor's wait, the event that wakes it, the task polled again
    #[arg(long)]
    trace: bool,

    /// Socket I/O by readiness (mio: epoll, kqueue) or by completion (io_uring,
    /// Linux-only)
    #[arg(long, value_enum, default_value_t = stage4_async_await::Driver::Mio)]
    driver: stage4_async_await::Driver,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = stage4_async_await::Options {
        trace: args.trace,
        driver: args.driver,
    };
    shared::cli::exit(shared::cli::run(&args.common, |config| {
        stage4_async_await::run_with(config, &options)
    }))
}
