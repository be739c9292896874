//! Stage 1's binary: the article's demo on a callback event loop, from one thread.
//!
//! Over stage 0 it has nothing new of its own: the stage is in the library. (The struct
//! is `Cli`, not `Args`: clap names an argument group after the struct, and the
//! flattened `shared::cli::Args` already took that name.)
//! Run it: `cargo run -p stage1-callbacks -- --delay-ms 300` (`--help` for the flags).

#[derive(clap::Parser)]
/// Stage 1: every request is a chain of callbacks on one event loop, in one thread
struct Cli {
    #[command(flatten)]
    common: shared::cli::Args,
}

fn main() -> std::process::ExitCode {
    let args = <Cli as clap::Parser>::parse();
    shared::cli::exit(shared::cli::run(&args.common, stage1_callbacks::run))
}
