//! The slow server on its own: echoes each line after a delay.
//!
//! ```text
//! cargo run -p shared --bin slow-server -- --listen localhost:8080 --delay-ms 5000
//! printf 'Request 1\n' | nc 127.0.0.1 8080     # answers after 5 s
//! cargo run -p stage0-blocking -- --addr 127.0.0.1:8080
//! ```
//!
//! Ctrl-C (or SIGTERM) once stops it gracefully: no new connections, every request
//! already received answered, then exit 0 with a summary. Twice stops it at once.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use shared::server::{
    DEFAULT_BACKLOG, DEFAULT_IDLE_TIMEOUT, ServerConfig, ShutdownHandle, SlowServer, signals,
};

/// Echoes each request line after a delay, for thousands of connections at once.
///
/// The first SIGTERM or Ctrl-C stops it gracefully: it stops accepting, answers every
/// line already received after its delay (or `ERROR shutting down` once --drain-ms runs
/// out), then exits 0 with a one-line summary on stderr. A second signal stops it at
/// once.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (a host name or an IP address)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080",
          value_parser = shared::cli::parse_addr)]
    listen: SocketAddr,
    /// How long to wait before echoing each line, in milliseconds
    #[arg(long, value_name = "N", default_value_t = 5000)]
    delay_ms: u64,
    /// Close a connection that has nothing pending and sent nothing for this many
    /// milliseconds (0: never)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_IDLE_TIMEOUT.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// Set SO_REUSEPORT, so that several servers can listen on the same port (on Linux
    /// the kernel spreads the connections over them; macOS lets them bind but does not
    /// balance)
    #[arg(long)]
    reuse_port: bool,
    /// Listen backlog: connections the kernel queues before they are accepted. The
    /// kernel caps it at net.core.somaxconn (kern.ipc.somaxconn on macOS) without a word
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    backlog: u32,
    /// Every N milliseconds print one line of counters on stdout, and once more on exit:
    /// `stats open=.. peak_open=.. waiting=.. peak_waiting=.. accepted=.. answered=..
    /// errors=.. idle_closed=.. fd_exhausted=.. cut_short=..` (open and waiting are now,
    /// the peaks since start; waiting counts requests received and not answered yet)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    stats_ms: Option<u64>,
    /// After the first signal, how long to keep answering requests already received;
    /// when it runs out, those still waiting get `ERROR shutting down` and the server
    /// exits [default: the delay plus 5000]
    #[arg(long, value_name = "N")]
    drain_ms: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // More connections than the default soft limit of 1024 is the point of this server.
    let limit = match shared::limits::raise_fd_limit() {
        Ok(limit) => limit.soft.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    let delay = Duration::from_millis(args.delay_ms);
    let config = ServerConfig {
        idle_timeout: (args.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(args.idle_timeout_ms)),
        reuse_port: args.reuse_port,
        backlog: args.backlog,
        stats_interval: args.stats_ms.map(Duration::from_millis),
        ..ServerConfig::new(args.listen, delay)
    };
    // By default, long enough for every request already received to get its answer,
    // with 5 s to spare for clients slow to read it.
    let drain = Duration::from_millis(
        args.drain_ms
            .unwrap_or_else(|| args.delay_ms.saturating_add(5000)),
    );
    // Signals first: their pipe and thread need descriptors, which a server already
    // accepting at its open-file limit could have taken by the time we asked.
    // `signalled`: when the first signal came, which one, and how many answers were out.
    let signalled = Arc::new(OnceLock::new());
    let running: Arc<OnceLock<ShutdownHandle>> = Arc::new(OnceLock::new());
    let first = {
        let signalled = Arc::clone(&signalled);
        let running = Arc::clone(&running);
        move |signal| {
            let Some(handle) = running.get() else {
                // Not listening yet: nothing to drain.
                std::process::exit(128 + signal);
            };
            let stats = handle.stats();
            let _ = signalled.set((Instant::now(), signal, stats.answered));
            eprintln!(
                "slow-server: {}: no new connections; answering the {} requests waiting \
                 (drain budget {} ms); a second signal stops at once",
                signals::name(signal),
                stats.waiting,
                drain.as_millis()
            );
            handle.shutdown(Some(drain));
        }
    };
    let signals_refused = signals::on_first_signal(first).err();
    let server = match SlowServer::start_with(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let _ = running.set(server.shutdown_handle());
    eprintln!(
        "slow-server: listening on {}, echoing each line after {} ms (open-file limit {limit}, \
         idle connections closed after {}{}); Ctrl-C to stop",
        server.addr(),
        args.delay_ms,
        match args.idle_timeout_ms {
            0 => "never".to_string(),
            ms => format!("{ms} ms"),
        },
        backlog_note(args.backlog),
    );
    if let Some(e) = signals_refused {
        eprintln!("slow-server: cannot handle signals, Ctrl-C will stop at once: {e}");
    }
    let stats = match server.wait() {
        Ok(stats) => stats,
        Err(e) => return shared::cli::exit(Err::<(), _>(shared::Error::io("slow-server", e))),
    };
    if let Some((at, signal, answered)) = signalled.get() {
        eprintln!(
            "slow-server: stopped {:.3} s after {}: {} requests answered while draining, {} \
             cut short with `ERROR shutting down`; {} connections and {} answers in all",
            at.elapsed().as_secs_f64(),
            signals::name(*signal),
            stats.answered - answered,
            stats.cut_short,
            stats.accepted,
            stats.answered,
        );
    }
    shared::cli::exit(Ok::<(), shared::Error>(()))
}

/// Says so when the backlog asked for is more than the kernel will give (Linux).
fn backlog_note(backlog: u32) -> String {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    match somaxconn {
        Some(max) if max < backlog => {
            format!(", backlog {backlog} capped by the kernel at net.core.somaxconn = {max}")
        }
        _ => String::new(),
    }
}
