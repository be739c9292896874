//! The article's class-based client (section 4.2): every request is a state machine.
//!
//! Over stage 1, the closures are gone. A request is a struct that owns its socket and
//! keeps its progress in one explicit `State` (connecting, writing with bytes left,
//! reading with the decoder, done). `make_tcp_request` hands it to the loop, and the loop
//! calls its `on_event` for every event on its token; `on_event` looks at the state,
//! does what that state allows, and moves on. This is the shape of Java NIO code, and
//! of the futures that stage 4's compiler writes for us.
//!
//! Run it: `cargo run -p stage2-state-machine` (10 requests, one thread, about one delay).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;

use mio::event::{Event, Source};
use mio::net::TcpStream;
use mio::{Interest, Token};
use shared::protocol::{self, DecodeError, LineDecoder};
use shared::{Error, Report};

use crate::event_loop::{EventLoop, Handler};

// ANCHOR: make_tcp_request
/// Starts request `id` to the server at `addr` and returns at once. The loop later calls
/// `on_response` with the server's line, or with why there is none.
pub fn make_tcp_request(
    event_loop: &mut EventLoop,
    addr: SocketAddr,
    id: u64,
    on_response: impl Fn(Result<String, Error>) + 'static,
) {
    // Non-blocking: the handshake goes on in the kernel, and the socket becomes
    // writable when it is over, whether it worked or not.
    let stream = match TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(source) => return on_response(Err(Error::Connect { addr, source })),
    };
    let on_response: Rc<dyn Fn(Result<String, Error>)> = Rc::new(on_response);
    let request = Request {
        id,
        addr,
        stream, // one owner, no Rc<RefCell<..>>: the request itself
        state: State::Connecting,
        on_response: Rc::clone(&on_response),
    };
    // The loop owns the request from now on, and calls its `on_event` by token.
    let registered = event_loop.register(request, Interest::WRITABLE);
    if let Err(e) = registered {
        on_response(Err(Error::request("registering", id, e)));
    }
}
// ANCHOR_END: make_tcp_request

// ANCHOR: state
/// Where a request is in its life. What a step needs lives in its variant, and only
/// there: a decoder exists only while we read.
enum State {
    /// The non-blocking connect is under way: wait for the socket to be writable.
    Connecting,
    /// Connected; the bytes left to send are `request[sent..]`.
    Writing { request: Vec<u8>, sent: usize },
    /// The request is out; the decoder collects the answer.
    Reading { decoder: LineDecoder },
    /// The answer went to `on_response`, and the loop has let go of us.
    Done,
}

/// One request, as an object: its socket, its state, and whom to tell at the end.
pub struct Request {
    id: u64,
    addr: SocketAddr,
    stream: TcpStream,
    state: State,
    on_response: Rc<dyn Fn(Result<String, Error>)>,
}
// ANCHOR_END: state

// ANCHOR: on_event
impl Handler for Request {
    fn source(&mut self) -> &mut dyn Source {
        &mut self.stream
    }

    /// Runs the state machine as far as this event allows: each arm either moves to the
    /// next state and goes round again, returns to wait for the next event, or ends the
    /// request with its response.
    fn on_event(&mut self, event_loop: &mut EventLoop, event: &Event) {
        let token = event.token();
        let id = self.id;
        let response = loop {
            match &mut self.state {
                State::Connecting => match connect_result(&self.stream) {
                    Ok(true) => {
                        let request = protocol::request(id).into_bytes();
                        self.state = State::Writing { request, sent: 0 };
                    }
                    Ok(false) => return, // a spurious wake-up: still connecting
                    Err(source) => {
                        break Err(Error::Connect {
                            addr: self.addr,
                            source,
                        });
                    }
                },
                State::Writing { request, sent } => {
                    match send_request(&mut self.stream, request, sent, id) {
                        // The kernel took only part of the request: the rest goes out the
                        // next time the socket is writable, and `sent` remembers where.
                        Poll::Pending => return,
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => break Err(error),
                    }
                    // Sent: from now on, wait for the answer, in the next state.
                    if let Err(e) =
                        event_loop.reregister(&mut self.stream, token, Interest::READABLE)
                    {
                        break Err(Error::request("waiting for the answer to", id, e));
                    }
                    self.state = State::Reading {
                        decoder: LineDecoder::new(),
                    };
                    return;
                }
                State::Reading { decoder } => {
                    match receive_response(&mut self.stream, decoder, id) {
                        Poll::Pending => return,
                        Poll::Ready(response) => break response,
                    }
                }
                State::Done => return, // an event that was already queued: nothing to do
            }
        };
        self.finish(event_loop, token, response);
    }
}
// ANCHOR_END: on_event

// ANCHOR: consume_response
/// What the article's demo does with each response: here, record it in the report,
/// which checks it against the request.
pub fn consume_response(report: &RefCell<Report>, id: u64, response: Result<String, Error>) {
    report.borrow_mut().record(id, response);
}
// ANCHOR_END: consume_response

impl Request {
    /// Ends the request: stop watching the socket, then pass the outcome on.
    fn finish(
        &mut self,
        event_loop: &mut EventLoop,
        token: Token,
        response: Result<String, Error>,
    ) {
        self.state = State::Done;
        // The handler is gone even if the OS call fails, and the socket closes when the
        // loop drops it, so there is nothing left to clean up.
        let _ = event_loop.deregister(&mut self.stream, token);
        (self.on_response)(response);
    }
}

// ANCHOR: readiness
/// Whether a non-blocking connect is over: `Ok(true)` connected, `Ok(false)` still in
/// progress, `Err` why it failed (e.g. `ConnectionRefused`).
fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(error) = stream.take_error()? {
        return Err(error);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `request[*sent..]` until it is all out (`Ready`) or the kernel's buffer is full
/// (`Pending`: call again when the socket is writable).
fn send_request(
    stream: &mut TcpStream,
    request: &[u8],
    sent: &mut usize,
    id: u64,
) -> Poll<Result<(), Error>> {
    while *sent < request.len() {
        match stream.write(&request[*sent..]) {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Poll::Ready(Err(Error::request("sending", id, e))),
        }
    }
    Poll::Ready(Ok(()))
}

/// Reads until `decoder` has a whole line (`Ready`) or the socket has nothing more for
/// now (`Pending`: call again when it is readable).
fn receive_response(
    stream: &mut TcpStream,
    decoder: &mut LineDecoder,
    id: u64,
) -> Poll<Result<String, Error>> {
    // The answer may come in pieces: feed them to the decoder until a line is complete.
    let mut buf = [0u8; 1024];
    loop {
        match decoder.next_line() {
            Ok(Some(line)) => return Poll::Ready(Ok(line)),
            Ok(None) => {}
            Err(source) => return Poll::Ready(Err(Error::Decode { id, source })),
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                let source = DecodeError::ClosedMidLine;
                return Poll::Ready(Err(Error::Decode { id, source }));
            }
            Ok(n) => decoder.push(&buf[..n]),
            // mio is edge-triggered: we read until WouldBlock, or this wake-up would be
            // the last. Drained (or a spurious wake-up): wait for the next event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Poll::Ready(Err(Error::request("reading the answer to", id, e))),
        }
    }
}
// ANCHOR_END: readiness
