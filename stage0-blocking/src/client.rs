//! Stage 0's client: the article's `make_tcp_request`, with blocking sockets.
//!
//! Every call here parks the calling thread until the kernel has what it asked for:
//! `connect` waits for the handshake, `read` waits for bytes. The code reads top to
//! bottom, and that is its charm; the price is one thread per request in flight.
//! Stages 1 to 4 keep this function's name and job and change only how it waits.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use shared::protocol::{DecodeError, LineDecoder, request};
use shared::{Config, Error};

// ANCHOR: make_tcp_request
/// Sends `Request {id}` and returns the line the server answers with.
pub fn make_tcp_request(addr: SocketAddr, id: u64, timeout: Duration) -> Result<String, Error> {
    // NB: one deadline for the whole exchange, as in stages 1 to 4. A socket timeout only
    // bounds each call: a server that drips a byte just before each one runs out would
    // keep us waiting for ever. So each call gets what is left of the deadline.
    let deadline = Deadline::new(id, timeout);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| Error::Connect { addr, source })?;

    // write_all loops over partial writes for us.
    stream
        .set_write_timeout(deadline.left()?)
        .map_err(|e| Error::io("setting the socket's write timeout", e))?;
    stream
        .write_all(request(id).as_bytes())
        .map_err(|e| deadline.error(e, "sending"))?;

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
        stream
            .set_read_timeout(deadline.left()?)
            .map_err(|e| Error::io("setting the socket's read timeout", e))?;
        match stream.read(&mut buf) {
            Ok(0) => {
                let source = DecodeError::ClosedMidLine;
                return Err(Error::Decode { id, source });
            }
            Ok(n) => decoder.push(&buf[..n]),
            // A signal arrived while we slept in read(): just read again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(deadline.error(e, "reading the answer to")),
        }
    }
}
// ANCHOR_END: make_tcp_request

/// When the request `id` must be done by.
struct Deadline {
    id: u64,
    timeout: Duration,
    /// `None`: never (a timeout too far for an `Instant`, such as `Duration::MAX`).
    at: Option<Instant>,
}

impl Deadline {
    fn new(id: u64, timeout: Duration) -> Deadline {
        Deadline {
            id,
            timeout,
            at: Instant::now().checked_add(timeout),
        }
    }

    /// Time left as a socket timeout (`None`: no limit), never zero (a zero socket
    /// timeout is refused), or the timeout error.
    fn left(&self) -> Result<Option<Duration>, Error> {
        match self.at.map(|at| at.checked_duration_since(Instant::now())) {
            None => Ok(None),
            Some(Some(left)) if !left.is_zero() => Ok(Some(left)),
            Some(_) => Err(self.timed_out()),
        }
    }

    /// The same line as stages 1 to 4 give.
    fn timed_out(&self) -> Error {
        let (id, secs) = (self.id, self.timeout.as_secs_f64());
        Error::Timeout {
            what: format!("no answer to request {id} within {secs:.1} s"),
        }
    }

    /// A socket timeout shows up as `WouldBlock` (Unix) or `TimedOut` (Windows).
    fn error(&self, error: io::Error, doing: &str) -> Error {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timed_out(),
            _ => Error::request(doing, self.id, error),
        }
    }
}

// ANCHOR: consume_response
/// The article's `consume_response`: one request, its outcome handed to `record`.
pub fn consume_response(config: &Config, id: u64, record: impl FnOnce(u64, Result<String, Error>)) {
    let response = make_tcp_request(config.addr, id, config.timeout);
    record(id, response);
}
// ANCHOR_END: consume_response
