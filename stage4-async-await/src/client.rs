//! Stage 4's client: the article's `make_tcp_request`, as an `async fn`.
//!
//! Put this file next to the previous stage's: the same steps in the same order, each
//! blocking call now an `.await`. Where stage 0 parked a whole thread, `.await` returns
//! `Pending` up to the executor, which runs other tasks until the reactor says this one
//! can go on. Next to stage 3's, the difference is who writes the state machine: stage 3
//! kept a stack per coroutine; here the compiler turns this function into an enum that
//! holds just the variables alive across an `.await`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use shared::protocol::{DecodeError, LineDecoder, request};
use shared::{Config, Error};

use crate::net::TcpStream;
use crate::time;

// ANCHOR: make_tcp_request
/// Sends `Request {id}` and returns the line the server answers with.
pub async fn make_tcp_request(
    addr: SocketAddr,
    id: u64,
    timeout: Duration,
) -> Result<String, Error> {
    // NB: one deadline for the whole exchange, not one per socket call: when it passes,
    // the exchange's future is dropped, and with it the socket.
    match time::timeout(timeout, exchange(addr, id)).await {
        Ok(response) => response,
        Err(_elapsed) => Err(Error::Timeout {
            what: format!(
                "no answer to request {id} within {:.1} s",
                timeout.as_secs_f64()
            ),
        }),
    }
}

async fn exchange(addr: SocketAddr, id: u64) -> Result<String, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| Error::Connect { addr, source })?;

    // write_all loops over partial writes for us.
    stream
        .write_all(request(id).as_bytes())
        .await
        .map_err(|e| io_error(e, id, "sending"))?;

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
        // `read` retries `Interrupted` itself, and waits for readiness on `WouldBlock`.
        match stream.read(&mut buf).await {
            Ok(0) => {
                let source = DecodeError::ClosedMidLine;
                return Err(Error::Decode { id, source });
            }
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) => return Err(io_error(e, id, "reading the answer to")),
        }
    }
}
// ANCHOR_END: make_tcp_request

fn io_error(error: io::Error, id: u64, doing: &str) -> Error {
    Error::io(format!("{doing} request {id}"), error)
}

// ANCHOR: consume_response
/// The article's `consume_response`: one request, its outcome handed to `record`.
pub async fn consume_response(
    config: &Config,
    id: u64,
    record: impl FnOnce(u64, Result<String, Error>),
) {
    let response = make_tcp_request(config.addr, id, config.timeout).await;
    record(id, response);
}
// ANCHOR_END: consume_response
