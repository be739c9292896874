//! Stage 3's binary: the article's demo on generators, tasks and futures.
//!
//! `cargo run -p stage3-generators` (`-- --help` for the flags; `-- --trace` shows the
//! loop, the tasks and their futures at work).

#[derive(clap::Parser)]
/// Stage 3: one generator-based task per request, driven by futures and an event loop
struct Args {
    #[command(flatten)]
    common: shared::cli::Args,
    /// Print each step: task created, resumed, yields a future, the loop waits in poll,
    /// a socket is ready, the future's result is set, the task is scheduled again
    #[arg(long)]
    trace: bool,
}

fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    let options = stage3_generators::Options { trace: args.trace };
    shared::cli::exit(shared::cli::run(&args.common, |config| {
        stage3_generators::run_with(config, &options)
    }))
}
