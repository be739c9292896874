//! The article's client, as an `async fn`: `make_tcp_request` reads top to bottom like
//! the blocking client of stage 0, yet every wait suspends only its own task.
//!
//! Diff this file against stage 3's: the `co` handle is gone, and so are the loops that
//! suspended on `WouldBlock`: each wait is an `.await` now. The task's own stack is gone
//! too: the compiler turns this function into an enum that keeps only the variables alive
//! across an `.await` ([`crate::desugared`] writes that enum by hand).
//!
//! `cargo run -p stage4-async-await -- --delay-ms 200 --trace`

use std::net::SocketAddr;

use shared::protocol::{DecodeError, LineDecoder, request};
use shared::{Config, Error};

use crate::net::TcpStream;

// ANCHOR: make_tcp_request
/// Sends `Request {id}` to `addr` and returns the line the server answers.
pub async fn make_tcp_request(addr: SocketAddr, id: u64) -> Result<String, Error> {
    let connect_error = |source| Error::Connect { addr, source };
    // A non-blocking connect returns at once; the socket becomes writable once the
    // handshake is over (or has failed).
    let stream = TcpStream::connect(addr).await.map_err(connect_error)?;
    request_on(&stream, id).await
}

/// Sends `Request {id}` on a connected `stream` and returns the line the server answers.
pub async fn request_on(stream: &TcpStream, id: u64) -> Result<String, Error> {
    if let Err(e) = stream.write_all(request(id).as_bytes()).await {
        return Err(Error::request("sending", id, e));
    }

    // The answer may come in pieces: feed them to the decoder until a line is complete.
    let mut decoder = LineDecoder::new();
    loop {
        let line = decoder
            .next_line()
            .map_err(|source| Error::Decode { id, source })?;
        if let Some(line) = line {
            return Ok(line);
        }
        // Drained: wait for more bytes; `read_into` hands them to the decoder.
        match stream.read_into(&mut decoder).await {
            Ok(0) => {
                let source = DecodeError::ClosedMidLine;
                return Err(Error::Decode { id, source });
            }
            Ok(_) => {}
            Err(e) => return Err(Error::request("reading the answer to", id, e)),
        }
    }
}
// ANCHOR_END: make_tcp_request

// ANCHOR: consume_response
/// The article's `consume_response`: one request, its outcome handed to `record`.
/// Calling `make_tcp_request` takes an `.await`: a future suspends only where it is seen.
pub async fn consume_response(
    config: &Config,
    id: u64,
    record: impl FnOnce(u64, Result<String, Error>),
) {
    let response = make_tcp_request(config.addr, id).await;
    record(id, response);
}
// ANCHOR_END: consume_response
