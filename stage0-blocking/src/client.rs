//! Stage 0's client: the article's `make_tcp_request`, with blocking sockets.
//!
//! Every call here parks the calling thread until the kernel has what it asked for:
//! `connect` waits for the handshake, `read` waits for bytes. The code reads top to
//! bottom, and that is its charm; the price is one thread per request in flight.
//! Stages 1 to 4 keep this function's name and job and change only how it waits.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use shared::protocol::{DecodeError, LineDecoder, request};
use shared::{Config, Error};

// ANCHOR: make_tcp_request
/// Sends `Request {id}` and returns the line the server answers with.
pub fn make_tcp_request(addr: SocketAddr, id: u64, timeout: Duration) -> Result<String, Error> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| Error::Connect { addr, source })?;
    // Without these, a server that accepts and never answers would block us forever.
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| Error::io("setting socket timeouts", e))?;

    // write_all loops over partial writes for us.
    stream
        .write_all(request(id).as_bytes())
        .map_err(|e| io_error(e, id, "sending", timeout))?;

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
            // A signal arrived while we slept in read(): just read again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e, id, "reading the answer to", timeout)),
        }
    }
}
// ANCHOR_END: make_tcp_request

/// A read or write timeout shows up as `WouldBlock` (Unix) or `TimedOut` (Windows).
fn io_error(error: io::Error, id: u64, doing: &str, timeout: Duration) -> Error {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
            what: format!(
                "{doing} request {id} took more than {:.1} s",
                timeout.as_secs_f64()
            ),
        },
        _ => Error::io(format!("{doing} request {id}"), error),
    }
}

// ANCHOR: consume_response
/// The article's `consume_response`: one request, its outcome handed to `record`.
pub fn consume_response(config: &Config, id: u64, record: impl FnOnce(u64, Result<String, Error>)) {
    let response = make_tcp_request(config.addr, id, config.timeout);
    record(id, response);
}
// ANCHOR_END: consume_response
