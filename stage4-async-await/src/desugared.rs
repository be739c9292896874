//! `make_tcp_request` without `async`: the state machine the compiler writes for it,
//! written by hand, as an enum with a `Future` impl.
//!
//! Read [`crate::client`] first, then this, side by side. Each `.await` there is a
//! variant here, holding the variables alive across that `.await`; `poll` runs from the
//! state it finds to the next `.await` that is not ready, stores what it will need,
//! and returns `Pending`. Stage 2's `State` enum was the same idea with the event loop
//! calling in; here the executor polls, and the waker says when.
//!
//! Two differences from the compiler's enum. Its states hold the future of each
//! `.await` (the `read_into` future, which borrows `decoder` from the same enum: a
//! self-referential value, which only the compiler may build without `unsafe`, and the
//! reason `poll` takes `Pin`); ours call the `poll_*` functions those futures call, so
//! each state holds data only, and the enum is `Unpin`. And ours moves its state out and
//! back at every step, which the compiler's does not need to.
//!
//! `cargo test -p stage4-async-await --test desugared` runs the article's demo through
//! it and checks the report.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use shared::Error;
use shared::protocol::{DecodeError, LineDecoder, request};

use crate::net::TcpStream;

// ANCHOR: state
/// Where `make_tcp_request` is: one variant per `.await`, holding what is alive there.
#[derive(Debug)]
enum State {
    /// Created, not polled yet: only the arguments.
    Start { addr: SocketAddr, id: u64 },
    /// At `TcpStream::connect(addr).await`.
    Connecting {
        addr: SocketAddr,
        id: u64,
        stream: TcpStream,
    },
    /// At `stream.write_all(request(id).as_bytes()).await`: `sent` bytes are out.
    Writing {
        id: u64,
        stream: TcpStream,
        request: String,
        sent: usize,
    },
    /// At `stream.read_into(&mut decoder).await`, in the loop. No read buffer: the
    /// bytes pass through one on the stack of the poll that reads them.
    Reading {
        id: u64,
        stream: TcpStream,
        decoder: LineDecoder,
    },
    /// Returned its output (the compiler's enum has this state too).
    Done,
}

/// `make_tcp_request(addr, id)`'s future, by hand.
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct MakeTcpRequest(State);

/// `make_tcp_request(addr, id)`, without `async`: nothing runs until it is polled.
pub fn make_tcp_request(addr: SocketAddr, id: u64) -> MakeTcpRequest {
    MakeTcpRequest(State::Start { addr, id })
}
// ANCHOR_END: state

// ANCHOR: poll
impl Future for MakeTcpRequest {
    type Output = Result<String, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        use State::*;
        let state = &mut self.0; // MakeTcpRequest is Unpin: no state borrows from another
        loop {
            // Take the state out (leaving `Done`), and put the next one back: either the
            // one to run on at once, or the one to resume from on the next poll.
            *state = match std::mem::replace(state, Done) {
                Start { addr, id } => match TcpStream::start_connect(addr) {
                    Ok(stream) => Connecting { addr, id, stream },
                    Err(source) => return Poll::Ready(Err(Error::Connect { addr, source })),
                },
                Connecting { addr, id, stream } => match stream.poll_connect(cx) {
                    Poll::Pending => {
                        *state = Connecting { addr, id, stream };
                        return Poll::Pending; // an `.await` that waits
                    }
                    Poll::Ready(Err(source)) => {
                        return Poll::Ready(Err(Error::Connect { addr, source }));
                    }
                    Poll::Ready(Ok(())) => Writing {
                        id,
                        stream,
                        request: request(id),
                        sent: 0,
                    },
                },
                Writing {
                    id,
                    stream,
                    request,
                    sent,
                } => match stream.poll_write(cx, &request.as_bytes()[sent..]) {
                    Poll::Pending => {
                        *state = Writing {
                            id,
                            stream,
                            request,
                            sent,
                        };
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(0)) => {
                        let error = io::ErrorKind::WriteZero.into();
                        return Poll::Ready(Err(Error::request("sending", id, error)));
                    }
                    Poll::Ready(Ok(n)) if sent + n < request.len() => Writing {
                        id,
                        stream,
                        request,
                        sent: sent + n,
                    },
                    Poll::Ready(Ok(_)) => Reading {
                        id,
                        stream,
                        decoder: LineDecoder::new(),
                    },
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(Error::request("sending", id, e)));
                    }
                },
                Reading {
                    id,
                    stream,
                    mut decoder,
                } => {
                    match decoder.next_line() {
                        Ok(Some(line)) => return Poll::Ready(Ok(line)),
                        Ok(None) => {}
                        Err(source) => return Poll::Ready(Err(Error::Decode { id, source })),
                    }
                    let mut buf = [0u8; 1024]; // for this poll only
                    match stream.poll_read(cx, &mut buf) {
                        Poll::Pending => {
                            *state = Reading {
                                id,
                                stream,
                                decoder,
                            };
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(0)) => {
                            let source = DecodeError::ClosedMidLine;
                            return Poll::Ready(Err(Error::Decode { id, source }));
                        }
                        Poll::Ready(Ok(n)) => {
                            decoder.push(&buf[..n]);
                            Reading {
                                id,
                                stream,
                                decoder,
                            }
                        }
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(Error::request(
                                "reading the answer to",
                                id,
                                e,
                            )));
                        }
                    }
                }
                // The compiler's future panics the same way: "`async fn` resumed after
                // completion".
                Done => panic!("MakeTcpRequest polled after it returned its result"),
            };
        }
    }
}
// ANCHOR_END: poll
