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
//!
//! The code in three parts: this file holds what a user of the server sees (its
//! configuration, its counters and the handle that stops it); `event_loop` the loop that
//! accepts, waits and fires timers; `connection` what happens on one connection (reading
//! lines, answering them, refusing bad input).

mod connection;
mod event_loop;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use mio::Waker;

pub use connection::{MAX_PIPELINED, MAX_UNSENT};
use event_loop::EventLoop;

/// Where to listen and how slow to be.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How long each line waits before it is echoed.
    pub delay: Duration,
    /// How long a connection with nothing pending may stay silent before it is closed;
    /// `None` keeps it open for ever.
    pub idle_timeout: Option<Duration>,
}

/// [`ServerConfig::idle_timeout`] unless told otherwise: as long as the clients'
/// default timeout ([`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)), far above any pause
/// between a client's connect and its request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Lines answered: counted when the delay is over, just before the echo is written,
    /// so a client that has read its answer always finds it counted.
    pub answered: u64,
    /// Connections closed because of bad input.
    pub errors: u64,
    /// Connections open now.
    pub open: u64,
    /// Most connections open at the same time.
    pub peak_open: u64,
    /// Times `accept` failed for lack of file descriptors.
    pub fd_exhausted: u64,
    /// Connections closed because they were idle for the idle timeout.
    pub idle_closed: u64,
}

/// The counters the loop updates and [`SlowServer::stats`] reads.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    answered: AtomicU64,
    errors: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    fd_exhausted: AtomicU64,
    idle_closed: AtomicU64,
}

/// A running slow server. Dropping it stops the loop and closes every connection.
#[derive(Debug)]
pub struct SlowServer {
    addr: SocketAddr,
    delay: Duration,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl SlowServer {
    /// Starts a server on `127.0.0.1` with a free port, on a background thread.
    pub fn start(delay: Duration) -> io::Result<SlowServer> {
        SlowServer::start_with(ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            delay,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        })
    }

    /// Starts a server as configured, on a background thread.
    pub fn start_with(config: ServerConfig) -> io::Result<SlowServer> {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (mut event_loop, waker) =
            EventLoop::new(&config, Arc::clone(&counters), Arc::clone(&stop))?;
        let addr = event_loop.local_addr()?;
        let thread = thread::Builder::new()
            .name(format!("slow-server {addr}"))
            .spawn(move || event_loop.run())?;
        Ok(SlowServer {
            addr,
            delay: config.delay,
            counters,
            stop,
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
        let c = &self.counters;
        ServerStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            answered: c.answered.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            peak_open: c.peak_open.load(Ordering::Relaxed),
            fd_exhausted: c.fd_exhausted.load(Ordering::Relaxed),
            idle_closed: c.idle_closed.load(Ordering::Relaxed),
        }
    }

    /// Blocks until the loop ends, which only an I/O error on the poller can cause:
    /// what the standalone binary does after starting.
    pub fn wait(mut self) -> io::Result<()> {
        match self.thread.take().map(|thread| thread.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // If waking fails the loop is already gone; joining is still right.
            let _ = self.waker.wake();
            let _ = thread.join();
        }
    }
}
