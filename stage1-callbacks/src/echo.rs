//! The echo server of article 3.2 on the callback event loop.
//!
//! Over `os::epoll` and `os::kqueue`, the loop is mio's and the reaction to readiness
//! is a callback: the listener's callback accepts clients and registers one callback per
//! client, which echoes what arrives. Nothing here knows about epoll, kqueue or select.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_server`, then
//! `nc 127.0.0.1 PORT` in a few terminals.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::Interest;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;

use crate::event_loop::EventLoop;

// ANCHOR: serve
/// Echoes every client of `listener` until `stop` is set (checked every 100 ms).
///
/// Returns an error only if the event loop itself fails.
pub fn serve(listener: std::net::TcpListener, stop: &AtomicBool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // Shared with the retry timer of `on_accept`.
    let listener = Rc::new(TcpListener::from_std(listener));
    let mut event_loop = EventLoop::new()?;
    let fd = listener.as_raw_fd(); // see the NB in on_accept
    event_loop.register(
        &mut SourceFd(&fd),
        Interest::READABLE,
        move |event_loop, _| on_accept(event_loop, &listener),
    )?;
    // The listener's callback is never removed: run in slices, to look at `stop`.
    while !stop.load(Ordering::Relaxed) {
        event_loop.run_until(Some(Instant::now() + Duration::from_millis(100)))?;
    }
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: on_accept
/// The listener is readable: accept every waiting client and give each a callback.
fn on_accept(event_loop: &mut EventLoop, listener: &Rc<TcpListener>) {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(client) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return, // drained
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if shared::is_fd_exhaustion(&e) => {
                // Edge-triggered: no new event will come for the clients still queued,
                // so we come back for them ourselves once some descriptors are free.
                if !WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!("cannot accept: {e}; retrying every 100 ms");
                }
                let listener = Rc::clone(listener);
                let retry = move |event_loop: &mut EventLoop| on_accept(event_loop, &listener);
                return event_loop.call_later(Duration::from_millis(100), retry);
            }
            Err(e) => {
                eprintln!("accept failed: {e}"); // one client's problem, e.g. a reset
                continue;
            }
        };
        // NB: the callback will own the socket, so we register its descriptor first
        // (mio's SourceFd), then move the socket into the closure.
        let fd = stream.as_raw_fd();
        let mut unsent = Vec::new();
        let registered = event_loop.register(
            &mut SourceFd(&fd),
            Interest::READABLE | Interest::WRITABLE,
            move |event_loop, event| on_client(event_loop, event, &mut stream, &mut unsent),
        );
        if let Err(e) = registered {
            eprintln!("dropping {peer}: {e}");
        }
    }
}
// ANCHOR_END: on_accept

/// Whether running out of descriptors was reported already (once is enough).
static WARNED: AtomicBool = AtomicBool::new(false);

// ANCHOR: on_client
/// A client is readable or writable: echo, then close it if it is gone.
fn on_client(
    event_loop: &mut EventLoop,
    event: &Event,
    stream: &mut TcpStream,
    unsent: &mut Vec<u8>,
) {
    if echo(stream, unsent).is_err() {
        // Removing the callback drops it, and with it the socket it owns.
        let _ = event_loop.deregister(stream, event.token());
    }
}

/// Echoes until the kernel says "would block"; `Err` when the client is gone.
///
/// We wait for both directions at once and, mio being edge-triggered, do all we can on
/// every event: flush what is unsent, then read. Reading only once the echo is out means
/// a client that does not read its echo cannot make us buffer without bound.
fn echo(stream: &mut TcpStream, unsent: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0; 4096];
    loop {
        while !unsent.is_empty() {
            match stream.write(unsent) {
                Ok(n) => {
                    unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()), // no room
                Err(e) => return Err(e),
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()), // client closed
            Ok(n) => unsent.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()), // drained
            Err(e) => return Err(e),
        }
    }
}
// ANCHOR_END: on_client

/// The command line of the echo examples: `--listen ADDR`, and `--help`.
#[derive(Debug, clap::Parser)]
pub struct EchoCli {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:0", value_parser = shared::cli::parse_addr)]
    pub listen: std::net::SocketAddr,
}

impl EchoCli {
    /// Parses the command line of an echo example; `about` is the first line of its
    /// `--help`, which says which loop serves. Exits with clap's usage error (status 2)
    /// on a bad argument.
    pub fn parse_with_about(about: &'static str) -> EchoCli {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = EchoCli::command().about(about);
        let matches = command.get_matches_mut();
        EchoCli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
    }
}

/// The `main` of the echo examples (`echo_select`, `echo_epoll`, `echo_kqueue`,
/// `echo_uring`, `echo_server`), which differ only in the loop that serves: binds
/// `listen`, says where to point `nc`, and runs `serve` until the process is stopped.
/// `name` says which loop, e.g. `"select"`.
pub fn example_main(
    name: &str,
    listen: std::net::SocketAddr,
    serve: fn(std::net::TcpListener, &AtomicBool) -> io::Result<()>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        shared::say!(
            "echo server ({name}) on {addr}: try `nc {} {}`",
            addr.ip(),
            addr.port()
        );
    }
    // Nothing sets it: Ctrl-C ends the process, and the OS closes every socket.
    static STOP: AtomicBool = AtomicBool::new(false);
    match serve(listener, &STOP) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the {name} loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
