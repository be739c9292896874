//! A server shard: the workspace's slow server, one of several processes listening on
//! the same port (`SO_REUSEPORT`: the kernel spreads the connections over them by a
//! hash of their addresses), reporting its counters every
//! [`REPORT_EVERY`].

use std::io::BufRead;
use std::net::SocketAddr;
use std::time::Duration;

use shared::Error;
use shared::server::{ServerConfig, SlowServer};

use super::wire::{ABORT, Message, STOP};
use super::{REPORT_EVERY, set_fd_limit};

/// What a server shard is told on its command line (the hidden subcommand
/// `server-shard`).
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The shared port; 0 for the first shard, which picks it
    #[arg(long)]
    pub port: u16,
    /// The slow server's delay, in milliseconds
    #[arg(long)]
    pub delay_ms: u64,
    /// The listen backlog
    #[arg(long)]
    pub backlog: u64,
    /// The open-file limit to run with
    #[arg(long)]
    pub fd_limit: u64,
}

impl ServerArgs {
    /// The command line that gives these arguments to a child.
    pub fn to_args(&self) -> Vec<String> {
        [
            "server-shard",
            "--port",
            &self.port.to_string(),
            "--delay-ms",
            &self.delay_ms.to_string(),
            "--backlog",
            &self.backlog.to_string(),
            "--fd-limit",
            &self.fd_limit.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }
}

/// How long a shard told to stop may take to answer what it holds: nothing, after a run
/// that finished; a run stopped early gets `ERROR shutting down` once this is over.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs a shard until the parent says `stop` (or goes away): the slow server on a
/// shared port, printing its own `stats` line every [`REPORT_EVERY`].
pub fn run(args: ServerArgs) -> Result<(), Error> {
    set_fd_limit(args.fd_limit)?;
    let listen = SocketAddr::from(([127, 0, 0, 1], args.port));
    let config = ServerConfig {
        // Connections stay open, idle, for as long as opening the others takes.
        idle_timeout: None,
        reuse_port: true,
        backlog: u32::try_from(args.backlog).unwrap_or(u32::MAX),
        stats_interval: Some(REPORT_EVERY),
        ..ServerConfig::new(listen, Duration::from_millis(args.delay_ms))
    };
    let server = SlowServer::start_with(config)
        .map_err(|e| Error::io(format!("listening on {listen}"), e))?;
    let port = u64::from(server.addr().port());
    println!("{}", Message::new("listening").with("port", port));
    // Until `stop` or `abort`, or the end of stdin: the parent is gone or wants us gone.
    let mut drain = Duration::ZERO;
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok(STOP) => {
                drain = DRAIN;
                break;
            }
            Ok(ABORT) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The loop prints its last counts as it ends.
    server
        .shutdown(Some(drain))
        .map(drop)
        .map_err(|e| Error::io("stopping the slow server", e))
}
