//! The article's callback client (section 4.1): every request is a chain of callbacks.
//!
//! Over stage 0, nothing here blocks. `make_tcp_request` starts a non-blocking connect,
//! registers `on_connected` and returns at once; the event loop calls `on_connected` when
//! the socket becomes writable, which sends the request and registers `on_data_received`,
//! which reads until the line is complete and hands it to `on_response`. The state of a
//! request (bytes sent, the line decoder) lives in the closures.
//!
//! Run it: `cargo run -p stage1-callbacks` (10 requests, one thread, about one delay).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use shared::protocol::{self, DecodeError, LineDecoder};
use shared::{Error, Report};

use crate::event_loop::EventLoop;

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
    // NB: Python's closures all share `sock`. A Rust value has one owner, so callbacks
    // that take turns with the socket share it through Rc<RefCell<..>>.
    let stream = Rc::new(RefCell::new(stream));
    let on_response: Rc<dyn Fn(Result<String, Error>)> = Rc::new(on_response);
    let request = protocol::request(id).into_bytes();
    let mut sent = 0; // state kept in the closure, across calls

    // ANCHOR: on_connected
    let on_connected = {
        let stream = Rc::clone(&stream);
        let on_response = Rc::clone(&on_response);
        move |event_loop: &mut EventLoop, event: &Event| {
            let mut sock = stream.borrow_mut();
            let token = event.token();
            let sending = match connect_result(&sock) {
                Ok(true) => send_request(&mut sock, &request, &mut sent, id),
                Ok(false) => return, // a spurious wake-up: still connecting
                Err(source) => Poll::Ready(Err(Error::Connect { addr, source })),
            };
            match sending {
                // The kernel took only part of the request: the rest goes out the next
                // time the socket is writable, and `sent` remembers where we are.
                Poll::Pending => {}
                // Sent: from now on, wait for the answer, with the next callback.
                Poll::Ready(Ok(())) => {
                    let next = on_data_received(Rc::clone(&stream), id, Rc::clone(&on_response));
                    if let Err(e) =
                        event_loop.reregister(&mut *sock, token, Interest::READABLE, next)
                    {
                        let error = Error::request("waiting for the answer to", id, e);
                        finish(event_loop, &mut sock, token, &on_response, Err(error));
                    }
                }
                Poll::Ready(Err(error)) => {
                    finish(event_loop, &mut sock, token, &on_response, Err(error));
                }
            }
        }
    };
    // ANCHOR_END: on_connected

    let registered =
        event_loop.register(&mut *stream.borrow_mut(), Interest::WRITABLE, on_connected);
    if let Err(e) = registered {
        on_response(Err(Error::request("registering", id, e)));
    }
}
// ANCHOR_END: make_tcp_request

// ANCHOR: on_data_received
/// The callback that reads the answer to request `id`: it owns a decoder, and the loop
/// calls it every time the socket has bytes, until the line is complete.
fn on_data_received(
    stream: Rc<RefCell<TcpStream>>,
    id: u64,
    on_response: Rc<dyn Fn(Result<String, Error>)>,
) -> impl FnMut(&mut EventLoop, &Event) {
    let mut decoder = LineDecoder::new();
    move |event_loop: &mut EventLoop, event: &Event| {
        let mut sock = stream.borrow_mut();
        if let Poll::Ready(response) = receive_response(&mut sock, &mut decoder, id) {
            finish(event_loop, &mut sock, event.token(), &on_response, response);
        }
    }
}
// ANCHOR_END: on_data_received

// ANCHOR: consume_response
/// What the article's demo does with each response: here, record it in the report,
/// which checks it against the request.
pub fn consume_response(report: &RefCell<Report>, id: u64, response: Result<String, Error>) {
    report.borrow_mut().record(id, response);
}
// ANCHOR_END: consume_response

/// Ends a request: stop watching the socket, then pass the outcome on.
fn finish(
    event_loop: &mut EventLoop,
    sock: &mut TcpStream,
    token: Token,
    on_response: &Rc<dyn Fn(Result<String, Error>)>,
    response: Result<String, Error>,
) {
    // The callback is gone even if the OS call fails, and the socket closes when the
    // last closure holding it is dropped, so there is nothing left to clean up.
    let _ = event_loop.deregister(sock, token);
    on_response(response);
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
