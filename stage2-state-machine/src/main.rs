//! Stage 2's binary: the article's demo with a state machine per request, from one thread.
//!
//! Over stage 1 it has nothing new of its own: the stage is in the library. (The struct
//! is `Cli`, not `Args`: clap names an argument group after the struct, and the
//! flattened `shared::cli::Args` already took that name.)
//! Run it: `cargo run -p stage2-state-machine -- --delay-ms 300` (`--help` for the flags).

#[derive(clap::Parser)]
/// Stage 2: every request is a state machine driven by one event loop, in one thread
struct Cli {
    #[command(flatten)]
    common: shared::cli::Args,
}

fn main() -> std::process::ExitCode {
    let args = <Cli as clap::Parser>::parse();
    shared::cli::exit(shared::cli::run(&args.common, stage2_state_machine::run))
}
