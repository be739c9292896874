//! The million, for real: a million concurrent TCP connections on this machine, stage
//! 4's client against the slow server, every request in flight at once and every answer
//! verified. The book's last chapter.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin million -- --connections 1000000 --delay-ms 5000
//! cargo run --release -p stage5-bench --bin million -- --connections 100000 --compare-floor
//! cargo run --release -p stage5-bench --bin million -- --floor --connections 100000
//! cargo run --release -p stage5-bench --bin million -- --connections 1200000 --plan
//! ```
//!
//! The same binary is each of the run's children, through hidden subcommands: that way
//! the run needs nothing built but itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use stage5_bench::million::client::ClientArgs;
use stage5_bench::million::floor::{FloorClientArgs, FloorServerArgs};
use stage5_bench::million::server::ServerArgs;
use stage5_bench::million::{self, Options};

/// Opens a million concurrent loopback TCP connections (stage 4's client, the slow
/// server), puts every request in flight at once and verifies every answer.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    child: Option<Child>,
    /// Connections, all open at once
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// How long the server waits before it answers each request, in milliseconds
    #[arg(long, value_name = "N", default_value_t = 5000)]
    delay_ms: u64,
    /// Measure the floor only: bare connects and accepts, in the same processes and
    /// addresses, nothing else
    #[arg(long, conflicts_with = "compare_floor")]
    floor: bool,
    /// Measure the floor too, after the run, and give the run's opening rate as a
    /// fraction of the floor's
    #[arg(long)]
    compare_floor: bool,
    /// Use at most N file descriptors per process (below the open-file limit), so that a
    /// small run still needs several processes
    #[arg(long, value_name = "N")]
    max_fds_per_process: Option<u64>,
    /// Connects in progress at once, per client process
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Write a picture of the run (SVG) to this file
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Only print the plan: the processes, the addresses and what each limit allows (or
    /// the limits the size would cross); start nothing
    #[arg(long)]
    plan: bool,
}

#[derive(Subcommand, Debug)]
enum Child {
    /// A client process of a run
    #[command(hide = true)]
    ClientProcess(ClientArgs),
    /// A server shard of a run
    #[command(hide = true)]
    ServerShard(ServerArgs),
    /// A client process of the floor
    #[command(hide = true)]
    FloorClient(FloorClientArgs),
    /// An acceptor of the floor
    #[command(hide = true)]
    FloorAcceptor(FloorServerArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let child = match args.child {
        None => {
            return million::main(&Options {
                connections: args.connections,
                delay: Duration::from_millis(args.delay_ms),
                floor: args.floor,
                compare_floor: args.compare_floor,
                max_fds_per_process: args.max_fds_per_process,
                window: args.window as usize,
                svg: args.svg,
                plan_only: args.plan,
            });
        }
        Some(child) => child,
    };
    let result = match child {
        Child::ClientProcess(args) => million::client::run(args),
        Child::ServerShard(args) => million::server::run(args),
        Child::FloorClient(args) => million::floor::run_client(args),
        Child::FloorAcceptor(args) => million::floor::run_server(args),
    };
    shared::cli::exit(result)
}
