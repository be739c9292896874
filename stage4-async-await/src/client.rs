//! Stage 4's client: the article's `make_tcp_request`, as an `async fn`.
//!
//! Put this file next to stage 0's: the same steps in the same order, each blocking call
//! now an `.await`. Where stage 0 parked a whole thread, `.await` returns `Pending` up
//! to the executor, which runs other tasks until the reactor says this one can go on.
//! Next to stage 3's, the difference is who writes the state machine: stage 3 kept a
//! stack per coroutine, here the compiler turns this function into an enum holding just
//! the variables that live across an `.await`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use shared::protocol::{DecodeError, LineDecoder, request};
use shared::{Config, Error};

use crate::net::{LineError, TcpStream};
use crate::time::timeout;

// ANCHOR: make_tcp_request
/// Sends `Request {id}` and returns the line the server answers with.
pub async fn make_tcp_request(addr: SocketAddr, id: u64, limit: Duration) -> Result<String, Error> {
    // One deadline for the whole exchange; when it passes, the inner future is dropped
    // and its socket closed. Blocking code needed a timeout on every call instead.
    match timeout(limit, exchange(addr, id)).await {
        Ok(response) => response,
        Err(_elapsed) => Err(Error::Timeout {
            what: format!(
                "no answer to request {id} within {:.1} s",
                limit.as_secs_f64()
            ),
        }),
    }
}

async fn exchange(addr: SocketAddr, id: u64) -> Result<String, Error> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| Error::Connect { addr, source })?;

    // write_all loops over partial writes for us, each one an .await.
    stream
        .write_all(request(id).as_bytes())
        .await
        .map_err(|e| io_error(e, id, "sending"))?;

    // The answer may come in pieces: read_line feeds them to the decoder.
    let mut decoder = LineDecoder::new();
    match stream.read_line(&mut decoder).await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(Error::Decode {
            id,
            source: DecodeError::ClosedMidLine,
        }),
        Err(LineError::Decode(source)) => Err(Error::Decode { id, source }),
        Err(LineError::Io(e)) => Err(io_error(e, id, "reading the answer to")),
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
