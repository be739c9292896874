//! The echo server of article 3.2 on stage 1's callback event loop.
//!
//! Over `echo_epoll`, the loop is mio's and the reaction to readiness is a callback: the
//! listener's callback accepts clients and registers one callback per client, which
//! echoes what arrives. Nothing here knows about epoll, kqueue or select.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_server [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use mio::Interest;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use stage1_callbacks::event_loop::EventLoop;

#[derive(clap::Parser)]
/// An echo server on stage 1's callback event loop: every line you send comes back
struct Cli {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    match serve(cli.listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(listen: std::net::SocketAddr) -> io::Result<()> {
    let mut event_loop = EventLoop::new()?;
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    println!(
        "echo server (callbacks on mio) on {addr}: try `nc {} {}`",
        addr.ip(),
        addr.port()
    );
    let fd = listener.as_raw_fd(); // see the NB in on_accept
    event_loop.register(
        &mut SourceFd(&fd),
        Interest::READABLE,
        move |event_loop, _| on_accept(event_loop, &listener),
    )?;
    // The listener's callback is never removed, so this runs until Ctrl-C.
    event_loop.run()
}

// ANCHOR: on_accept
/// The listener is readable: accept every waiting client and give each a callback.
fn on_accept(event_loop: &mut EventLoop, listener: &TcpListener) {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(client) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return, // drained
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return eprintln!("accept failed: {e}"), // e.g. out of descriptors
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
