//! The network benchmark: stage 4 serving real TCP beside the runtimes a reader will use.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin net                         # stage 4, the floor
//! cargo run --release -p stage5-bench --bin net --features reference    # + tokio, smol,
//!                                                                       #   monoio, hyper
//! ```
//!
//! An echo server per runtime, each the few lines a user of that runtime would write (an
//! accept loop, a task per connection, read then write back), and one load generator, each
//! in a process of its own, pinned to different CPUs where there are two. The load is a
//! closed loop: N connections, each with one request in flight; a request is a 64-byte
//! message, and every answer is checked byte for byte. hyper's HTTP/1.1 server answering
//! "hello" runs the same way, on stage 4 and on tokio.
//!
//! - [`servers`]: the lesson, stage 4's echo servers (on its mio driver and on its
//!   io_uring driver) and the floor: a loop that makes only the system calls a request
//!   needs, with no runtime at all.
//! - [`reference`](mod@reference): the same server on tokio, smol and monoio, and hyper on
//!   tokio (feature `reference`).
//! - [`load`] and [`histogram`]: the load generator and its latency histogram (tooling).
//! - [`harness`]: the processes, their CPU time and memory from `getrusage`; [`perf`]:
//!   the server's system calls counted by `perf stat` (tooling).
//! - [`chart`]: the picture of the table (tooling).

pub mod chart;
pub mod harness;
pub mod histogram;
pub mod load;
pub mod perf;
pub mod reference;
pub mod servers;

use std::io;
use std::net::SocketAddr;

/// The size of one echo message, both ways.
pub const MESSAGE: usize = 64;

/// Each server's read buffer: far more than a message, so a read that returns less than
/// this emptied the socket.
pub const BUFFER: usize = 4096;

/// The request every HTTP connection sends, again and again.
pub const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n";

/// The one answer to [`HTTP_REQUEST`], byte for byte: hyper without its `date` header
/// (which changes every second, so no answer could be checked whole).
pub const HTTP_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

/// A server: serves on the address (port 0: any free port) until the process ends, after
/// calling the function with the address it listens on.
pub type Serve = fn(SocketAddr, &dyn Fn(SocketAddr)) -> io::Result<()>;

/// What a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Each message comes back as it went.
    Echo,
    /// HTTP/1.1, keep-alive: [`HTTP_REQUEST`] answered by [`HTTP_RESPONSE`].
    Http,
}

impl Protocol {
    /// The name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Http => "http",
        }
    }

    /// The protocol for a [`key`](Protocol::key).
    pub fn from_key(key: &str) -> Option<Protocol> {
        [Protocol::Echo, Protocol::Http]
            .into_iter()
            .find(|p| p.key() == key)
    }
}

/// A server of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The floor: a mio loop with one `recv` and one `send` per request, no runtime.
    Floor,
    /// Stage 4 on its mio (readiness) driver.
    Stage4Mio,
    /// Stage 4 on its io_uring (completion) driver (Linux).
    Stage4Uring,
    /// tokio, `new_current_thread` (feature `reference`).
    Tokio,
    /// smol, a `LocalExecutor` on `smol::block_on` (feature `reference`).
    Smol,
    /// monoio on io_uring (feature `reference`, Linux).
    Monoio,
    /// hyper's HTTP/1.1 server on stage 4.
    HyperStage4,
    /// hyper's HTTP/1.1 server on tokio, `new_current_thread` (feature `reference`).
    HyperTokio,
}

impl Server {
    /// Every server, in the order of the table's rows.
    pub const ALL: [Server; 8] = [
        Server::Floor,
        Server::Stage4Mio,
        Server::Stage4Uring,
        Server::Tokio,
        Server::Smol,
        Server::Monoio,
        Server::HyperStage4,
        Server::HyperTokio,
    ];

    /// The name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Server::Floor => "floor",
            Server::Stage4Mio => "stage4-mio",
            Server::Stage4Uring => "stage4-uring",
            Server::Tokio => "tokio",
            Server::Smol => "smol",
            Server::Monoio => "monoio",
            Server::HyperStage4 => "hyper-stage4",
            Server::HyperTokio => "hyper-tokio",
        }
    }

    /// The server for a [`key`](Server::key).
    pub fn from_key(key: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The row's name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Server::Floor => "floor: mio loop",
            Server::Stage4Mio => "stage 4, mio",
            Server::Stage4Uring => "stage 4, io_uring",
            Server::Tokio => "tokio",
            Server::Smol => "smol",
            Server::Monoio => "monoio",
            Server::HyperStage4 => "hyper on stage 4",
            Server::HyperTokio => "hyper on tokio",
        }
    }

    /// What it speaks.
    pub fn protocol(self) -> Protocol {
        match self {
            Server::HyperStage4 | Server::HyperTokio => Protocol::Http,
            _ => Protocol::Echo,
        }
    }

    /// The server its rows are compared with: tokio for the echo servers, hyper on tokio
    /// for hyper.
    pub fn baseline(self) -> Server {
        match self.protocol() {
            Protocol::Echo => Server::Tokio,
            Protocol::Http => Server::HyperTokio,
        }
    }

    /// Why this binary cannot run it, if it cannot: built without it, or not on this OS.
    pub fn unavailable(self) -> Option<&'static str> {
        match self {
            Server::Floor | Server::Stage4Mio => None,
            Server::Stage4Uring => servers::uring_unavailable(),
            Server::HyperStage4 => None,
            Server::Tokio | Server::Smol | Server::HyperTokio => reference::unavailable(),
            Server::Monoio => reference::monoio_unavailable(),
        }
    }

    /// Serves on `addr` (port 0: any free port) until the process ends, after calling
    /// `bound` with the address it listens on. Call it on a thread of its own: it blocks.
    pub fn serve(self, addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
        if let Some(why) = self.unavailable() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, why));
        }
        match self {
            Server::Floor => servers::floor(addr, bound),
            Server::Stage4Mio => servers::stage4_mio(addr, bound),
            Server::Stage4Uring => servers::stage4_uring(addr, bound),
            Server::HyperStage4 => servers::hyper_stage4(addr, bound),
            Server::Tokio => reference::tokio(addr, bound),
            Server::Smol => reference::smol(addr, bound),
            Server::Monoio => reference::monoio(addr, bound),
            Server::HyperTokio => reference::hyper_tokio(addr, bound),
        }
    }
}
