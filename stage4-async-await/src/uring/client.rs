//! The article's client on the completion driver.
//!
//! Diff it against [`crate::client`]: the same steps, but every buffer goes to the kernel
//! by value and comes back with the result, `(result, buffer)`.

use std::net::SocketAddr;

use shared::protocol::{DecodeError, LineDecoder, request};
use shared::{Config, Error};

use super::TcpStream;

// ANCHOR: make_tcp_request
/// Sends `Request {id}` to `addr` and returns the line the server answers.
pub async fn make_tcp_request(addr: SocketAddr, id: u64) -> Result<String, Error> {
    let connect_error = |source| Error::Connect { addr, source };
    // The connect is an operation in the ring; the address lives in its slot meanwhile.
    let stream = TcpStream::connect(addr).await.map_err(connect_error)?;

    // The request's bytes move into the operation, and come back when it completes.
    let (sent, _request) = stream.write_all(request(id).into_bytes()).await;
    sent.map_err(|e| Error::request("sending", id, e))?;

    // The answer may come in pieces: feed them to the decoder until a line is complete.
    let mut decoder = LineDecoder::new();
    let mut buf = Vec::with_capacity(1024);
    loop {
        let line = decoder
            .next_line()
            .map_err(|source| Error::Decode { id, source })?;
        if let Some(line) = line {
            return Ok(line);
        }
        // No `&mut buf` here: the kernel will write into it after this call returns
        // Pending, so it must own it; `read` hands it back, filled.
        buf.clear();
        let (read, filled) = stream.read(buf).await;
        buf = filled;
        match read {
            Ok(0) => {
                let source = DecodeError::ClosedMidLine;
                return Err(Error::Decode { id, source });
            }
            Ok(_) => decoder.push(&buf),
            Err(e) => return Err(Error::request("reading the answer to", id, e)),
        }
    }
}
// ANCHOR_END: make_tcp_request

/// The article's `consume_response` on this driver: one request, its outcome handed to
/// `record`.
pub async fn consume_response(
    config: &Config,
    id: u64,
    record: impl FnOnce(u64, Result<String, Error>),
) {
    let response = make_tcp_request(config.addr, id).await;
    record(id, response);
}
