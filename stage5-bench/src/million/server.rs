//! A server shard: the workspace's slow server, one of several processes listening on
//! the same port (`SO_REUSEPORT`: the kernel spreads the connections over them by a
//! hash of their addresses), reporting its counters every
//! [`REPORT_EVERY`](super::REPORT_EVERY).

use std::net::SocketAddr;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use shared::Error;
use shared::server::{ServerConfig, ServerStats, SlowServer};

use super::wire::{Message, STOP};
use super::{REPORT_EVERY, read_commands, set_fd_limit};

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

/// Runs a shard until the parent says `stop` (or goes away).
pub fn run(args: ServerArgs) -> Result<(), Error> {
    set_fd_limit(args.fd_limit)?;
    let (sender, commands) = channel();
    let stop = sender.clone();
    read_commands(
        move |line| {
            let _ = sender.send(line);
        },
        move || {
            let _ = stop.send(STOP.to_string());
        },
    );
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], args.port)),
        delay: Duration::from_millis(args.delay_ms),
        // Connections stay open, idle, for as long as opening the others takes.
        idle_timeout: None,
    };
    let _ = args.backlog;
    let server = SlowServer::start_with(config)
        .map_err(|e| Error::io(format!("listening on 127.0.0.1:{}", args.port), e))?;
    println!(
        "{}",
        Message::new("listening").with("port", u64::from(server.addr().port()))
    );
    loop {
        match commands.recv_timeout(REPORT_EVERY) {
            Ok(line) if line.trim() == STOP => break,
            Ok(_) | Err(RecvTimeoutError::Timeout) => println!("{}", stats(&server.stats())),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Dropping the server closes every connection; the last counts go out first.
    println!("{}", stats(&server.stats()));
    drop(server);
    Ok(())
}

/// The shard's counters as a message.
fn stats(stats: &ServerStats) -> Message {
    Message::new("stats")
        .with("open", stats.open)
        .with("peak_open", stats.peak_open)
        .with("accepted", stats.accepted)
        .with("answered", stats.answered)
        .with("errors", stats.errors)
        .with("fd_exhausted", stats.fd_exhausted)
}
