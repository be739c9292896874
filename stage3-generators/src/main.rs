//! Stage 3's binary: the article's demo on generators, tasks and futures.
//!
//! `cargo run -p stage3-generators` (`-- --help` for the flags; `-- --trace` shows the
//! loop, the tasks and their futures at work).

use std::time::Duration;

// NB: not named `Args`: clap names the flattened group after its type, and
// `shared::cli::Args` already is `Args`.
#[derive(clap::Parser)]
/// Stage 3: one generator-based task per request, driven by futures and an event loop
struct Cli {
    #[command(flatten)]
    common: shared::cli::Args,
    /// Print each step: task created, resumed, yields a future, the loop waits in poll,
    /// a socket is ready, the future's result is set, the task is scheduled again
    #[arg(long)]
    trace: bool,
    /// Give up on requests still unanswered after this many seconds
    #[arg(long, value_name = "S", default_value_t = 60)]
    timeout_s: u64,
}

fn main() -> std::process::ExitCode {
    let args = <Cli as clap::Parser>::parse();
    let options = stage3_generators::Options {
        trace: args.trace,
        timeout: Duration::from_secs(args.timeout_s),
    };
    shared::cli::exit(shared::cli::run(&args.common, |config| {
        stage3_generators::run_with(config, &options)
    }))
}
