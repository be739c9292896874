//! The OS layer by hand (article section 2.2): readiness loops written directly on libc,
//! and one completion loop on io_uring.
//!
//! Each module serves the echo protocol of section 3.2 (every byte a client sends comes
//! back) to many clients from one thread; they differ only in how they ask the kernel
//! what is ready. `select` hands over the whole set of descriptors on every call and runs
//! on every Unix; `epoll` (Linux) and `kqueue` (macOS and the BSDs) register each one once
//! and get back only the ready ones. One file per backend, each compiled only where its
//! system call exists. What to do with a ready client is the same for all, so it lives
//! here, in [`Connection`]. `uring` (Linux) asks a different question: it submits the
//! reads and writes themselves and is told when each is done, so it has no use for
//! [`Connection`].
//!
//! Run them: `cargo run -p stage1-callbacks --example echo_select` (or `echo_epoll` and
//! `echo_uring` on Linux, `echo_kqueue` on macOS and the BSDs), then talk to the port it
//! prints with `nc 127.0.0.1 PORT`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub mod select;

#[cfg(target_os = "linux")]
pub mod epoll;

#[cfg(target_os = "linux")]
pub mod uring;

// `kqueue` is set by build.rs on macOS and the BSDs.
#[cfg(kqueue)]
pub mod kqueue;

/// How long one wait for readiness may last before the loop checks its stop flag.
const STOP_CHECK_MS: i32 = 100;

// ANCHOR: connection
/// One client of the echo server: its non-blocking socket and the bytes read from it
/// that have not been echoed yet.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    unsent: Vec<u8>,
}

impl Connection {
    /// Takes a freshly accepted socket and makes it non-blocking.
    pub fn new(stream: TcpStream) -> io::Result<Connection> {
        stream.set_nonblocking(true)?;
        Ok(Connection {
            stream,
            unsent: Vec::new(),
        })
    }

    /// The socket, for the readiness API.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Whether we wait to write (echo bytes are left) rather than to read. We stop
    /// reading a client that does not read its echo, so it cannot make us buffer without
    /// bound.
    pub fn wants_write(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// The socket is readable: read once and echo what we can. `false` when the client
    /// is gone.
    ///
    /// NB: one read per wake-up is enough because `select` and our `epoll` use are
    /// level-triggered: if more bytes wait, the next wait returns at once. mio is
    /// edge-triggered, which is why the event loop drains until `WouldBlock`.
    pub fn on_readable(&mut self) -> bool {
        let mut buf = [0; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => false, // the client closed its end
            Ok(n) => {
                self.unsent.extend_from_slice(&buf[..n]);
                self.on_writable()
            }
            // A spurious wake-up, or a signal: wait again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => false,
        }
    }

    /// The socket is writable: echo what the kernel takes. `false` when the client is
    /// gone.
    pub fn on_writable(&mut self) -> bool {
        while !self.unsent.is_empty() {
            match self.stream.write(&self.unsent) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                // The kernel's buffer is full: the rest waits for the next writable.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }
}
// ANCHOR_END: connection

/// How the servers live through running out of file descriptors.
///
/// When `accept` fails with `EMFILE`, the client stays in the kernel's queue and the
/// listener stays readable: a level-triggered loop would be told so again at once, and
/// spin. So the servers stop watching the listener for a while, and say so once.
#[derive(Debug, Default)]
struct AcceptPause {
    until: Option<Instant>,
    warned: bool,
}

impl AcceptPause {
    const PAUSE: Duration = Duration::from_millis(100);

    /// Stops accepting for [`Self::PAUSE`]; the first time, explains why on stderr.
    fn start(&mut self, server: &str, error: &io::Error) {
        if !self.warned {
            eprintln!(
                "{server}: cannot accept: {error}. Out of file descriptors: not accepting \
                 new clients until some leave (retrying every 100 ms)"
            );
            self.warned = true;
        }
        self.until = Some(Instant::now() + Self::PAUSE);
    }

    /// Whether the listener may be watched now.
    fn is_over(&self) -> bool {
        self.until.is_none_or(|until| Instant::now() >= until)
    }

    /// `true` once, when a pause has just ended (to watch the listener again). For the
    /// loops that keep their interest list in the kernel; select rebuilds it every time.
    #[cfg(any(target_os = "linux", kqueue))]
    fn resume_now(&mut self) -> bool {
        match self.until {
            Some(until) if Instant::now() >= until => {
                self.until = None;
                true
            }
            _ => false,
        }
    }
}
