//! The slow server on its own: echoes each line after a delay.
//!
//! ```text
//! cargo run -p shared --bin slow-server -- --listen localhost:8080 --delay-ms 5000
//! printf 'Request 1\n' | nc 127.0.0.1 8080     # answers after 5 s
//! cargo run -p stage0-blocking -- --addr 127.0.0.1:8080
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shared::server::{DEFAULT_IDLE_TIMEOUT, ServerConfig, SlowServer};

/// Echoes each request line after a delay, for thousands of connections at once.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (a host name or an IP address)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    listen: String,
    /// How long to wait before echoing each line, in milliseconds
    #[arg(long, value_name = "N", default_value_t = 5000)]
    delay_ms: u64,
    /// Close a connection that has nothing pending and sent nothing for this many
    /// milliseconds (0: never)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_IDLE_TIMEOUT.as_millis() as u64)]
    idle_timeout_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let listen = match shared::cli::resolve_flag("--listen", &args.listen) {
        Ok(listen) => listen,
        Err(error) => return shared::cli::exit(Err::<(), _>(error)),
    };
    // More connections than the default soft limit of 1024 is the point of this server.
    let limit = match shared::limits::raise_fd_limit() {
        Ok(limit) => limit.soft.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    let config = ServerConfig {
        listen,
        delay: Duration::from_millis(args.delay_ms),
        idle_timeout: (args.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(args.idle_timeout_ms)),
    };
    let server = match SlowServer::start_with(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "slow-server: listening on {}, echoing each line after {} ms (open-file limit {limit}, \
         idle connections closed after {}); Ctrl-C to stop",
        server.addr(),
        args.delay_ms,
        match args.idle_timeout_ms {
            0 => "never".to_string(),
            ms => format!("{ms} ms"),
        }
    );
    shared::cli::exit(
        server
            .wait()
            .map_err(|e| shared::Error::io("slow-server", e)),
    )
}
