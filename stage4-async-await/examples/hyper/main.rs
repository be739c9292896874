//! hyper, the HTTP library under reqwest and axum, on stage 4's runtime: an HTTP/1.1
//! server and a thousand concurrent clients, all on one thread, no tokio runtime.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example hyper
//! cargo run --release -p stage4-async-await --example hyper -- --requests 4000 --delay-ms 200
//! ```
//!
//! hyper reaches our runtime only through the traits of `hyper::rt` (see `src/hyper.rs`): our
//! `TcpStream` as its `Read` and `Write`, our `spawn` as its `Executor`, our `sleep` as
//! its `Timer`. The server (`echo.rs`) answers `POST /` with the request's body after a
//! delay; each client task posts `Request {id}` on a connection of its own and the
//! answers are verified like every stage's.

// Shared with the blocking_http example and the tests, each of which uses part of it.
#[allow(dead_code)]
mod echo;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shared::{Config, Error, Report, limits, request_ids, say};
use stage4_async_await::net::TcpListener;
use stage4_async_await::{EventLoop, join_all, spawn, timeout};

use echo::{Server, Stats, fetch};

/// hyper's HTTP/1.1 server and client on our executor, answering and fetching at once.
#[derive(Parser, Debug)]
struct Args {
    /// How many requests to make, all at once, each on a connection of its own
    #[arg(long, value_name = "N", default_value_t = 1000)]
    requests: u64,

    /// How long the server waits before it answers each request, in milliseconds
    #[arg(long, value_name = "N", default_value_t = 1000)]
    delay_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::exit(run(args.requests, Duration::from_millis(args.delay_ms)))
}

// ANCHOR: run
/// Serves and fetches on one event loop: the server is a task, each connection it
/// accepts is a task, and so is each request.
fn run(requests: u64, delay: Duration) -> Result<Report, Error> {
    // Both ends of every connection are in this process.
    limits::check_connections(2 * requests)?;
    let stats = Arc::new(Stats::default());
    let event_loop = EventLoop::new().map_err(|e| Error::io("creating the event loop", e))?;
    let report = event_loop.block_on(async {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = TcpListener::bind(any_port).map_err(|e| Error::io("listening", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("listening", e))?;
        say!(
            "{requests} HTTP requests at once to a hyper server at {addr} (delay {} ms)",
            delay.as_millis()
        );
        let server = spawn(Server::new(delay).serve(listener, Arc::clone(&stats)));

        let config = Config::new(addr, requests);
        let report = Rc::new(RefCell::new(Report::start(&config)));
        // Every client connects in the same round of the loop, before the server's
        // accept task gets its turn: the listen backlog (`net::LISTEN_BACKLOG`, 4,096)
        // holds them until it does.
        let clients: Vec<_> = request_ids(requests)
            .map(|id| {
                let report = Rc::clone(&report);
                spawn(async move {
                    let answer = fetch(addr, id).await.map_err(Error::from);
                    report.borrow_mut().record(id, answer);
                })
            })
            .collect();
        if timeout(config.timeout, join_all(clients)).await.is_err() {
            report.borrow_mut().time_out_unanswered(config.timeout);
        }
        // The server runs until the loop ends, unless accepting failed: then say why.
        if server.is_finished() {
            server.await?.map_err(|e| Error::io("accepting", e))?;
        }
        Ok::<_, Error>(report)
    })?;
    let report = Rc::try_unwrap(report)
        .map_err(|_| Error::Other("a client task outlived its event loop".into()))?
        .into_inner()
        .finish()?;
    say!("{report}");
    say!(
        "the server answered {}, at most {} waiting at once; failed connections: {}",
        stats.answered(),
        stats.peak_waiting(),
        stats.failed_connections()
    );
    Ok(report)
}
// ANCHOR_END: run
