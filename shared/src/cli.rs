//! The flags every stage binary shares, and the `main` they all run.
//!
//! A stage's `main.rs` stays a few lines long: it flattens [`Args`] into its own flags,
//! then hands its library's `run` to [`run`], which starts the embedded slow server (or
//! resolves `--addr`), checks the fd limit, prints the report and turns an error into one
//! clear line and a non-zero exit code.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use crate::server::SlowServer;
use crate::{Config, Error, Report, limits};

/// Flags shared by every stage binary. Flatten them into a stage's own parser with
/// `#[command(flatten)]`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Talk to a slow server already running at HOST:PORT instead of starting one
    /// in-process (start one with `cargo run -p shared --bin slow-server`)
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,

    /// Delay of the embedded server before it echoes each line, in milliseconds
    /// (ignored with --addr)
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub delay_ms: u64,

    /// How many requests to make, all at once (ids N-1 down to 0)
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
}

/// Resolves `HOST:PORT` to its first address.
pub fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    let mut addrs = addr.to_socket_addrs().map_err(|e| {
        Error::Other(format!(
            "--addr {addr}: {e} (expected HOST:PORT, e.g. 127.0.0.1:8080)"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| Error::Other(format!("--addr {addr}: the name has no address")))
}

/// Starts the embedded server unless `--addr` was given, checks the fd limit, prints
/// where the requests go, runs `run_stage` with progress lines on, and prints the final
/// report line. Returns the verified report for anything the stage prints after it.
pub fn run(
    args: &Args,
    run_stage: impl FnOnce(&Config) -> Result<Report, Error>,
) -> Result<Report, Error> {
    let _server;
    let addr = match &args.addr {
        Some(addr) => {
            limits::check_connections(args.requests)?;
            let addr = resolve(addr)?;
            println!("{} requests to the slow server at {addr}", args.requests);
            addr
        }
        None => {
            // Both ends of every connection live in this process.
            limits::check_connections(2 * args.requests)?;
            let delay = Duration::from_millis(args.delay_ms);
            let server = SlowServer::start(delay)
                .map_err(|e| Error::io("starting the embedded slow server", e))?;
            println!(
                "{} requests to the embedded slow server at {} (delay {} ms)",
                args.requests,
                server.addr(),
                args.delay_ms
            );
            _server = server;
            _server.addr()
        }
    };
    let config = Config {
        addr,
        requests: args.requests,
        progress: true,
    };
    let report = run_stage(&config)?;
    println!("{report}");
    Ok(report)
}

/// Prints an error as one line on stderr and picks the exit code.
pub fn exit(result: Result<impl Sized, Error>) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
