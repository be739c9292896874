//! The load generator on mio: one readiness loop, one `send` and one `recv` per request
//! (a read shorter than the buffer emptied the socket, so it does not read again until
//! `WouldBlock`). It runs everywhere mio does, and where io_uring is unusable.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use shared::Error;

use super::{Exchange, Load, Mark, Measured, Parent, Step, Timeline, failed};
use crate::net::BUFFER;

/// The token of the parent's pipe (our stdin), when paced.
const PARENT: Token = Token(usize::MAX);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Writing,
    Reading,
    /// Answered its first request; waits for the others to be in.
    Idle,
}

/// One connection and its request in flight.
struct Connection {
    stream: TcpStream,
    state: State,
    exchange: Exchange,
    /// How much of the request is sent.
    written: usize,
}

impl Connection {
    fn next_request(&mut self, load: &Load) {
        self.exchange.next_request(load, Instant::now());
        self.written = 0;
        self.state = State::Writing;
    }
}

/// Runs `load` on mio (see [`super::run`]).
pub(super) fn run(load: &Load, mark: &mut dyn FnMut(Mark)) -> Result<Measured, Error> {
    let mut poll = Poll::new().map_err(failed("creating the load generator's poll"))?;
    let mut events = Events::with_capacity(1024);
    let mut connections: Vec<Connection> = Vec::with_capacity(load.connections);
    let mut scratch = vec![0u8; BUFFER];
    let mut timeline = Timeline::new(load);
    let mut parent = Parent::new(load.paced)?;
    if load.paced {
        #[cfg(unix)]
        poll.registry()
            .register(&mut mio::unix::SourceFd(&0), PARENT, Interest::READABLE)
            .map_err(failed("listening to stdin"))?;
    }

    loop {
        for _ in 0..timeline.to_open(connections.len()) {
            let id = connections.len();
            let mut stream = TcpStream::connect(load.addr).map_err(failed("connecting"))?;
            stream
                .set_nodelay(true)
                .map_err(failed("setting TCP_NODELAY"))?;
            poll.registry()
                .register(
                    &mut stream,
                    Token(id),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(failed("registering a connection"))?;
            connections.push(Connection {
                stream,
                state: State::Connecting,
                exchange: Exchange::new(id, load),
                written: 0,
            });
        }

        let timeout = match timeline.step(Instant::now(), &parent, mark)? {
            Step::Done(measured) => return Ok(measured),
            Step::StartAll => {
                for connection in &mut connections {
                    connection.next_request(load);
                    send(connection)?;
                }
                continue;
            }
            Step::Wait(timeout) => timeout,
        };
        match poll.poll(&mut events, Some(timeout)) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => result.map_err(failed("waiting for the server"))?,
        }
        for event in &events {
            if event.token() == PARENT {
                parent.read()?;
                continue;
            }
            let connection = &mut connections[event.token().0];
            if connection.state == State::Connecting {
                if let Some(error) = connection
                    .stream
                    .take_error()
                    .map_err(failed("connecting"))?
                {
                    return Err(Error::io("connecting", error));
                }
                match connection.stream.peer_addr() {
                    Ok(_) => connection.next_request(load),
                    Err(error) if error.kind() == io::ErrorKind::NotConnected => continue,
                    Err(error) => return Err(Error::io("connecting", error)),
                }
            }
            if connection.state == State::Writing {
                send(connection)?;
            }
            // A writable edge alone has nothing to read: no `recv` for it.
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            if connection.state != State::Reading || !readable {
                continue;
            }
            if receive(connection, load, &mut scratch)? {
                if timeline.answered(&connection.exchange, Instant::now()) {
                    connection.next_request(load);
                    send(connection)?;
                } else {
                    connection.state = State::Idle;
                }
            }
        }
    }
}

/// Sends what is left of the request; on to `Reading` once all of it went.
fn send(connection: &mut Connection) -> Result<(), Error> {
    let request = &connection.exchange.request;
    while connection.written < request.len() {
        match connection.stream.write(&request[connection.written..]) {
            Ok(0) => return Err(Error::Other("the server stopped taking bytes".into())),
            Ok(n) => connection.written += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(Error::io("sending a request", error)),
        }
    }
    connection.state = State::Reading;
    Ok(())
}

/// Reads what came; `true` once the whole answer is in and checked.
fn receive(connection: &mut Connection, load: &Load, scratch: &mut [u8]) -> Result<bool, Error> {
    loop {
        match connection.stream.read(scratch) {
            Ok(0) => return Err(connection.exchange.closed("end of stream")),
            Ok(n) => {
                if connection.exchange.take(&scratch[..n], load.protocol)? {
                    return Ok(true);
                }
                // NB: a short read emptied the socket; the rest makes a new edge.
                if n < scratch.len() {
                    return Ok(false);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(Error::io("reading an answer", error)),
        }
    }
}
