//! The article's client, as generator code: `make_tcp_request` reads top to bottom like
//! the blocking client of stage 0, yet every wait suspends only its own task.
//!
//! Diff this file against stage 2's: the state machine (an enum of states and a `match`
//! per event) is gone. Its states became the places where the code calls `co.writable`
//! or `co.readable`, and its fields became plain local variables, kept alive on the
//! task's own stack while it is suspended.
//!
//! `cargo run -p stage3-generators -- --delay-ms 200 --trace`

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use shared::protocol::{DecodeError, LineDecoder, request};
use shared::{Config, Error};

use crate::task::Co;

// ANCHOR: make_tcp_request
/// Sends `Request {id}` to `addr` and returns the line the server answers.
pub fn make_tcp_request(co: &Co<'_>, addr: SocketAddr, id: u64) -> Result<String, Error> {
    let connect_error = |source| Error::Connect { addr, source };
    // A non-blocking connect returns at once; the socket becomes writable once the
    // handshake is over (or has failed).
    let mut stream = TcpStream::connect(addr).map_err(connect_error)?;
    loop {
        co.writable(&mut stream).map_err(connect_error)?;
        if let Some(e) = stream.take_error().map_err(connect_error)? {
            return Err(connect_error(e));
        }
        match stream.peer_addr() {
            Ok(_) => break,
            // Writable but not connected yet: a spurious wake-up, wait again.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
            Err(e) => return Err(connect_error(e)),
        }
    }

    let line = request(id);
    let mut sent = 0;
    while sent < line.len() {
        match stream.write(&line.as_bytes()[sent..]) {
            Ok(n) => sent += n,
            // The kernel's send buffer is full: suspend until there is room again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => co
                .writable(&mut stream)
                .map_err(|e| Error::request("sending", id, e))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::request("sending", id, e)),
        }
    }

    // The answer may come in pieces: feed them to the decoder until a line is complete.
    let mut decoder = LineDecoder::new();
    let mut buf = [0u8; 1024];
    loop {
        let line = decoder
            .next_line()
            .map_err(|source| Error::Decode { id, source })?;
        if let Some(line) = line {
            return Ok(line);
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                let source = DecodeError::ClosedMidLine;
                return Err(Error::Decode { id, source });
            }
            Ok(n) => decoder.push(&buf[..n]),
            // Drained: suspend until more bytes arrive (a spurious wake-up just loops).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => co
                .readable(&mut stream)
                .map_err(|e| Error::request("reading the answer to", id, e))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::request("reading the answer to", id, e)),
        }
    }
}
// ANCHOR_END: make_tcp_request

// ANCHOR: consume_response
/// The article's `consume_response`: one request, its outcome handed to `record`.
/// Calling `make_tcp_request` is a plain call, though it suspends inside: Python needs
/// `yield from` here.
pub fn consume_response(
    co: &Co<'_>,
    config: &Config,
    id: u64,
    record: impl FnOnce(u64, Result<String, Error>),
) {
    let response = make_tcp_request(co, config.addr, id);
    record(id, response);
}
// ANCHOR_END: consume_response
