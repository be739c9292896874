//! The slow server: echoes each line after a fixed delay, on one thread, for thousands of
//! connections at once.
//!
//! It plays the part of the article's remote service that takes 5 seconds to answer.
//! It is itself an event loop (mio, one thread, a timer queue), which is the shape stage 1
//! builds from scratch; here it is only infrastructure, so read it after stage 1.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! let server = shared::server::SlowServer::start(Duration::from_millis(200))?;
//! println!("echoing lines after 200 ms on {}", server.addr());
//! // ... talk to it; dropping `server` shuts it down.
//! # Ok(())
//! # }
//! ```
//!
//! Rules it keeps:
//! - Each line is answered after the delay, counted from when the line arrived; several
//!   lines on one connection are answered in order.
//! - Bad input gets `ERROR <reason>\n` and the connection is closed; no other connection
//!   notices. A client that vanishes mid-delay is cleaned up when its answer is due.
//! - A line ends with `\n` or `\r\n`; the answer ends with `\n`.
//! - Memory per connection is bounded: it stops reading from a client that has
//!   [`MAX_PIPELINED`] lines waiting, or [`MAX_UNSENT`] bytes of lines waiting and answers
//!   it has not read, and reads again once the client catches up. Lines already received
//!   are always answered, also after the client's half-close.
//! - A connection with nothing pending and no bytes from the client for the idle timeout
//!   ([`DEFAULT_IDLE_TIMEOUT`] unless configured) is closed, so idle clients cannot hold
//!   descriptors that newcomers need.
//! - When `accept` fails because the process is out of file descriptors, the connections
//!   it has keep being served, newcomers wait in the listen backlog until one closes, and
//!   one line is logged (not one per attempt).
//! - A graceful [`shutdown`](SlowServer::shutdown) (what `slow-server` does on its first
//!   SIGTERM or Ctrl-C) stops accepting, answers every line already received after its
//!   delay, and closes each connection once its answers are out. Lines still waiting
//!   when the drain budget runs out get `ERROR shutting down` instead, so a client that
//!   never reads cannot hold the exit for ever. Dropping a [`SlowServer`] stops it at
//!   once.
//! - Memory per connection stays small (a few hundred bytes for one waiting line: see
//!   `Connection`), so one process can hold as many connections as it has descriptors.
//!
//! The code in parts: this file holds what a user of the server sees (its configuration
//! and the handle that stops it); `stats` its counters; `event_loop` the loop that
//! accepts, waits, fires timers and drains; `connection` what happens on one connection
//! (reading lines, answering them, refusing bad input); [`signals`] the first-SIGTERM,
//! second-SIGTERM handling of the standalone binary.

mod connection;
mod event_loop;
pub mod signals;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mio::Waker;

pub use connection::{MAX_PIPELINED, MAX_UNSENT};
use event_loop::EventLoop;
use stats::Counters;
pub use stats::{ParseStatsError, ServerStats};

/// Where to listen, how slow to be, and how to behave under load.
///
/// Start from [`ServerConfig::new`] and change the fields you need:
///
/// ```no_run
/// # use std::time::Duration;
/// use shared::server::{ServerConfig, SlowServer};
/// let config = ServerConfig {
///     reuse_port: true,
///     ..ServerConfig::new("127.0.0.1:8080".parse().unwrap(), Duration::from_secs(5))
/// };
/// let server = SlowServer::start_with(config)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How long each line waits before it is echoed.
    pub delay: Duration,
    /// How long a connection with nothing pending may stay silent before it is closed;
    /// `None` keeps it open for ever.
    pub idle_timeout: Option<Duration>,
    /// Set `SO_REUSEPORT` on the listener, so that several servers (processes or
    /// threads) can listen on the same port, and on Linux share its connections. Linux
    /// and macOS; elsewhere starting fails with a clear error.
    pub reuse_port: bool,
    /// The listen backlog: connections the kernel completes and queues before we
    /// accept them. The kernel silently caps it at `net.core.somaxconn` (4096 on
    /// current Linux, 128 on macOS; `kern.ipc.somaxconn` there).
    pub backlog: u32,
    /// Print the counters as one [`ServerStats`] line on stdout this often, and once
    /// more when the loop ends; `None` prints nothing.
    pub stats_interval: Option<Duration>,
}

impl ServerConfig {
    /// Listen on `listen` and echo each line after `delay`; everything else as by
    /// default: the [`DEFAULT_IDLE_TIMEOUT`], no `SO_REUSEPORT`, a backlog of
    /// [`DEFAULT_BACKLOG`], no stats lines.
    pub fn new(listen: SocketAddr, delay: Duration) -> ServerConfig {
        ServerConfig {
            listen,
            delay,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            reuse_port: false,
            backlog: DEFAULT_BACKLOG,
            stats_interval: None,
        }
    }
}

/// [`ServerConfig::idle_timeout`] unless told otherwise: as long as the clients'
/// default timeout ([`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)), far above any pause
/// between a client's connect and its request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// [`ServerConfig::backlog`] unless told otherwise. A burst of ten thousand connects
/// must not overflow the queue while the loop is busy, or clients wait a second or more
/// for a SYN retry; 4096 is what current Linux allows by default (`net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 4096;

/// What the loop is asked to do; read when the waker fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    /// Graceful shutdown, with its budget (`None`: no limit).
    Drain(Option<Duration>),
    Now,
}

/// What the loop and its handles share.
#[derive(Debug)]
struct Shared {
    counters: Counters,
    stop: Mutex<Stop>,
}

impl Shared {
    fn asked(&self) -> Stop {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `stop`, unless a stop already asked for is at least as strong: a second
    /// graceful shutdown neither extends nor shortens the first one's budget.
    fn ask(&self, stop: Stop) {
        let mut current = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        match (*current, stop) {
            (Stop::Now, _) | (Stop::Drain(_), Stop::Drain(_)) => {}
            _ => *current = stop,
        }
    }
}

/// A running slow server. Dropping it stops the loop at once and closes every
/// connection; [`shutdown`](SlowServer::shutdown) stops it gracefully.
#[derive(Debug)]
pub struct SlowServer {
    addr: SocketAddr,
    delay: Duration,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

/// Starts a graceful shutdown of a [`SlowServer`] from anywhere (a signal handler's
/// thread, another task): cheap to clone, and `Send`.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Begins a graceful shutdown and returns at once: the server closes its listener,
    /// answers every line it has received after its delay, closes each connection once
    /// its answers are out, and ends its loop when none is left. If `budget` runs out
    /// first, the lines still waiting are answered `ERROR shutting down` and every
    /// connection is closed. `None` waits for every delay, however long; a budget too
    /// large to count counts as `None`. Calling it again changes nothing.
    pub fn shutdown(&self, budget: Option<Duration>) {
        self.shared.ask(Stop::Drain(budget));
        // If waking fails the loop is already gone, which is what was asked.
        let _ = self.waker.wake();
    }

    /// The server's counters as they are now.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }
}

impl SlowServer {
    /// Starts a server on `127.0.0.1` with a free port, on a background thread.
    pub fn start(delay: Duration) -> io::Result<SlowServer> {
        SlowServer::start_with(ServerConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            delay,
        ))
    }

    /// Starts a server as configured, on a background thread.
    pub fn start_with(config: ServerConfig) -> io::Result<SlowServer> {
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            stop: Mutex::new(Stop::Run),
        });
        let (mut event_loop, waker) = EventLoop::new(&config, Arc::clone(&shared))?;
        let addr = event_loop.local_addr()?;
        let thread = thread::Builder::new()
            .name(format!("slow-server {addr}"))
            .spawn(move || event_loop.run())?;
        Ok(SlowServer {
            addr,
            delay: config.delay,
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configured delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The counters as they are now.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }

    /// A handle that can start a graceful shutdown from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Shuts down gracefully (see [`ShutdownHandle::shutdown`]) and waits until the loop
    /// has ended; returns the final counters.
    pub fn shutdown(self, budget: Option<Duration>) -> io::Result<ServerStats> {
        self.shutdown_handle().shutdown(budget);
        self.wait()
    }

    /// Blocks until the loop ends: after a graceful shutdown asked for through a
    /// [`ShutdownHandle`] (what the standalone binary does on a signal), or on an I/O
    /// error of the poller. Returns the final counters.
    pub fn wait(mut self) -> io::Result<ServerStats> {
        let result = match self.thread.take().map(|thread| thread.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the server thread panicked")),
            None => Ok(()),
        };
        result.map(|()| self.stats())
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.shared.ask(Stop::Now);
        if let Some(thread) = self.thread.take() {
            // If waking fails the loop is already gone; joining is still right.
            let _ = self.waker.wake();
            let _ = thread.join();
        }
    }
}
