//! The load generator: one thread, one mio loop, N connections, each with one request in
//! flight (a closed loop: the next request leaves when the answer to the last one came).
//!
//! It must not be the bottleneck, so it is lean: no runtime, no allocation per request,
//! one `send` and one `recv` per request (a read shorter than the buffer emptied the
//! socket, so it does not read again until `WouldBlock`), and its own CPU time over the
//! window is measured, for the table to say when it was near its limit.
//!
//! Every answer is checked byte for byte against what was asked: an echo message carries
//! its connection and sequence number, so an answer from another connection, a stale one
//! or a short one is caught; a wrong answer ends the run with an error that shows both.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use shared::Error;

use super::harness::Usage;
use super::histogram::Histogram;
use super::{BUFFER, HTTP_REQUEST, HTTP_RESPONSE, Protocol};

/// At most this many connections wait for their first answer at once: the server's listen
/// backlog is never the limit, and an accept queue that overflows (and so a handshake
/// the kernel retries a second later) never shows up as latency.
const CONNECT_WINDOW: usize = 64;

/// How long every connection may take to get its first answer, all together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct Load {
    /// The server.
    pub addr: SocketAddr,
    /// How many connections, each with one request in flight.
    pub connections: usize,
    /// How long to run before measuring, once every connection has its first answer.
    pub warmup: Duration,
    /// How long to measure.
    pub window: Duration,
    /// What the server speaks.
    pub protocol: Protocol,
    /// The size of an echo message (HTTP requests are [`HTTP_REQUEST`]).
    pub size: usize,
    /// Paced by the parent through stdin (Unix): after the warm-up, mark
    /// [`Mark::Ready`] and open the window only on a `go` line; once `window` has passed,
    /// mark [`Mark::Stop`] but close the window only on an `end` line (or the end of
    /// stdin). So the parent samples the server and turns perf's counters on before the
    /// window opens and off before it closes, however long perf takes, with the load
    /// running all along: the window and the counts differ by a pipe's latency.
    pub paced: bool,
}

/// When the measured window starts and ends, for the caller to sample the server then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Warmed up: waiting for `go` ([`Load::paced`]).
    Ready,
    /// The window starts now.
    Start,
    /// The window ends now.
    Stop,
}

/// What the window saw.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Answers received (and verified) in the window.
    pub requests: u64,
    /// The window's length, as measured.
    pub elapsed: Duration,
    /// Their latencies, from the request's `send` to the answer's last byte.
    pub latency: Histogram,
    /// The fewest answers any one connection got in the window.
    pub fewest: u64,
    /// This process's own CPU time (user + system) in the window.
    pub cpu: Duration,
}

/// Where a run is.
#[derive(Debug, Clone)]
enum Phase {
    /// Opening connections, each answered once, until all are in.
    Connecting,
    /// The closed loop runs, not measured yet, until then.
    Warming(Instant),
    /// Warmed up, waiting for `go` (paced only).
    Ready,
    /// Measuring, since then, with this process's usage then, until then; `true` once
    /// the time is up and marked (paced: the window closes on `end`).
    Measuring(Instant, Usage, Instant, bool),
}

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
    id: usize,
    state: State,
    /// The request in flight, and how much of it is sent.
    request: Vec<u8>,
    written: usize,
    /// The answer so far.
    answer: Vec<u8>,
    sent_at: Instant,
    sequence: u64,
    answered: u64,
}

impl Connection {
    /// Writes this connection's next request (an echo message, or the HTTP request).
    fn next_request(&mut self, protocol: Protocol, size: usize) {
        self.request.clear();
        match protocol {
            Protocol::Echo => message(self.id, self.sequence, size, &mut self.request),
            Protocol::Http => self.request.extend_from_slice(HTTP_REQUEST),
        }
        self.sequence += 1;
        self.written = 0;
        self.answer.clear();
        self.state = State::Writing;
        self.sent_at = Instant::now();
    }

    /// The answer the request in flight must get.
    fn expected(&self, protocol: Protocol) -> &[u8] {
        match protocol {
            Protocol::Echo => &self.request,
            Protocol::Http => HTTP_RESPONSE,
        }
    }
}

/// The echo message `sequence` of connection `id`: `size` bytes, its two numbers in hex,
/// then letters that depend on both, then a newline.
pub fn message(id: usize, sequence: u64, size: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "{id:08x} {sequence:016x} ");
    let mut i = 0u64;
    while out.len() + 1 < size {
        out.push(b'a' + ((id as u64 + sequence + i) % 26) as u8);
        i += 1;
    }
    out.truncate(size.saturating_sub(1));
    out.push(b'\n');
}

/// The smallest echo message: its two numbers and a newline.
pub const MIN_SIZE: usize = 27;

/// Runs `load`, calling `mark` when the measured window starts and ends.
pub fn run(load: &Load, mark: &mut dyn FnMut(Mark)) -> Result<Measured, Error> {
    if load.connections == 0 {
        return Err(Error::Other("--conns: at least one connection".into()));
    }
    if load.protocol == Protocol::Echo && load.size < MIN_SIZE {
        return Err(Error::Other(format!(
            "--size: an echo message is at least {MIN_SIZE} bytes"
        )));
    }
    let io = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| Error::io(what, e)
    };
    let mut poll = Poll::new().map_err(io("creating the load generator's poll"))?;
    let mut events = Events::with_capacity(1024);
    let mut connections: Vec<Connection> = Vec::with_capacity(load.connections);
    let mut scratch = vec![0u8; BUFFER];
    let mut latency = Histogram::new();
    let (mut established, mut requests) = (0usize, 0u64);
    let connect_deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut phase = Phase::Connecting;
    let mut parent = Parent::new(load.paced, poll.registry())?;

    loop {
        // Open connections, a window at a time, until all are in.
        while connections.len() < load.connections
            && connections.len() - established < CONNECT_WINDOW
        {
            let id = connections.len();
            let mut stream = TcpStream::connect(load.addr).map_err(io("connecting"))?;
            stream
                .set_nodelay(true)
                .map_err(io("setting TCP_NODELAY"))?;
            poll.registry()
                .register(
                    &mut stream,
                    Token(id),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(io("registering a connection"))?;
            connections.push(Connection {
                stream,
                id,
                state: State::Connecting,
                request: Vec::with_capacity(load.size.max(HTTP_REQUEST.len())),
                written: 0,
                answer: Vec::with_capacity(BUFFER),
                sent_at: Instant::now(),
                sequence: 0,
                answered: 0,
            });
        }

        let now = Instant::now();
        phase = match phase {
            Phase::Connecting if established == load.connections => {
                // Everyone is in: the closed loop starts on every connection at once.
                // (Started one by one as they came in, the connections already running
                // would slow every newcomer's first answer down.)
                for connection in &mut connections {
                    connection.next_request(load.protocol, load.size);
                    send(connection)?;
                }
                Phase::Warming(now + load.warmup)
            }
            Phase::Connecting if now > connect_deadline => {
                return Err(Error::Other(format!(
                    "only {established} of {} connections got an answer within {} s",
                    load.connections,
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Phase::Warming(until) if now >= until && load.paced => {
                mark(Mark::Ready);
                Phase::Ready
            }
            Phase::Warming(until) if now >= until => {
                mark(Mark::Start);
                Phase::Ready
            }
            Phase::Ready if parent.go || !load.paced => {
                latency = Histogram::new();
                requests = 0;
                for connection in &mut connections {
                    connection.answered = 0;
                }
                Phase::Measuring(now, Usage::now(), now + load.window, false)
            }
            Phase::Ready if parent.end => {
                return Err(Error::Other("stdin ended before the window began".into()));
            }
            Phase::Measuring(start, usage, until, false) if now >= until => {
                mark(Mark::Stop);
                Phase::Measuring(start, usage, until, true)
            }
            Phase::Measuring(start, usage, _, true) if parent.end => {
                let cpu = Usage::now().cpu().saturating_sub(usage.cpu());
                if requests == 0 {
                    return Err(Error::Other(format!(
                        "no answer in {:.1} s on {} connections",
                        load.window.as_secs_f64(),
                        load.connections
                    )));
                }
                return Ok(Measured {
                    requests,
                    elapsed: now - start,
                    latency,
                    fewest: connections.iter().map(|c| c.answered).min().unwrap_or(0),
                    cpu,
                });
            }
            phase => phase,
        };
        if matches!(phase, Phase::Ready | Phase::Measuring(.., true)) && !load.paced {
            continue; // unpaced, straight on: to measuring, or to the end
        }

        let timeout = match &phase {
            Phase::Warming(until) | Phase::Measuring(_, _, until, false) => {
                until.saturating_duration_since(Instant::now())
            }
            _ => Duration::from_millis(100),
        };
        match poll.poll(&mut events, Some(timeout)) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => result.map_err(io("waiting for the server"))?,
        }
        for event in &events {
            if event.token() == PARENT {
                parent.read()?;
                continue;
            }
            let connection = &mut connections[event.token().0];
            if connection.state == State::Connecting {
                if let Some(error) = connection.stream.take_error().map_err(io("connecting"))? {
                    return Err(Error::io("connecting", error));
                }
                match connection.stream.peer_addr() {
                    Ok(_) => connection.next_request(load.protocol, load.size),
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
            let done = receive(connection, load.protocol, &mut scratch)?;
            if done {
                if connection.sequence == 1 && matches!(phase, Phase::Connecting) {
                    established += 1;
                    connection.state = State::Idle;
                    continue;
                }
                if matches!(phase, Phase::Measuring(..)) {
                    latency.record(connection.sent_at.elapsed());
                    requests += 1;
                    connection.answered += 1;
                }
                connection.next_request(load.protocol, load.size);
                send(connection)?;
            }
        }
    }
}

/// The token of the parent's pipe (our stdin), when paced.
const PARENT: Token = Token(usize::MAX);

/// What the parent said on our stdin: `go`, then `end`.
struct Parent {
    go: bool,
    end: bool,
    line: Vec<u8>,
}

impl Parent {
    /// Listens to stdin, non-blocking, in the loop's poll (when `paced`).
    fn new(paced: bool, registry: &mio::Registry) -> Result<Parent, Error> {
        if paced {
            #[cfg(unix)]
            {
                // SAFETY: fcntl on our own stdin; O_NONBLOCK only changes how reads wait.
                unsafe {
                    let flags = libc::fcntl(0, libc::F_GETFL);
                    libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK);
                }
                registry
                    .register(&mut mio::unix::SourceFd(&0), PARENT, Interest::READABLE)
                    .map_err(|e| Error::io("listening to stdin", e))?;
            }
            #[cfg(not(unix))]
            {
                let _ = registry;
                return Err(Error::Other("a paced load needs a Unix stdin".into()));
            }
        }
        Ok(Parent {
            go: !paced,
            end: !paced,
            line: Vec::new(),
        })
    }

    /// Reads what came on stdin, until it would block.
    fn read(&mut self) -> Result<(), Error> {
        let mut buf = [0u8; 64];
        loop {
            #[cfg(unix)]
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            #[cfg(not(unix))]
            let n: isize = 0;
            match n {
                0 => {
                    self.end = true; // the parent is gone: nothing more to measure for
                    return Ok(());
                }
                n if n > 0 => {
                    self.line.extend_from_slice(&buf[..n as usize]);
                    while let Some(at) = self.line.iter().position(|&b| b == b'\n') {
                        match &self.line[..at] {
                            b"go" => self.go = true,
                            b"end" => self.end = true,
                            _ => {}
                        }
                        self.line.drain(..=at);
                    }
                }
                _ => {
                    let error = io::Error::last_os_error();
                    match error.kind() {
                        io::ErrorKind::WouldBlock => return Ok(()),
                        io::ErrorKind::Interrupted => {}
                        _ => return Err(Error::io("reading stdin", error)),
                    }
                }
            }
        }
    }
}

/// Sends what is left of the request; on to `Reading` once all of it went.
fn send(connection: &mut Connection) -> Result<(), Error> {
    while connection.written < connection.request.len() {
        match connection
            .stream
            .write(&connection.request[connection.written..])
        {
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
fn receive(
    connection: &mut Connection,
    protocol: Protocol,
    scratch: &mut [u8],
) -> Result<bool, Error> {
    loop {
        match connection.stream.read(scratch) {
            Ok(0) => {
                return Err(Error::Other(format!(
                    "connection {} closed by the server before answering request {}",
                    connection.id,
                    connection.sequence - 1
                )));
            }
            Ok(n) => {
                connection.answer.extend_from_slice(&scratch[..n]);
                let expected = connection.expected(protocol);
                let got = &connection.answer;
                let so_far = got.len().min(expected.len());
                if got[..so_far] != expected[..so_far] || got.len() > expected.len() {
                    return Err(Error::Other(format!(
                        "wrong answer on connection {} to request {}:\n  asked    {:?}\n  \
                         expected {:?}\n  got      {:?}",
                        connection.id,
                        connection.sequence - 1,
                        String::from_utf8_lossy(&connection.request),
                        String::from_utf8_lossy(expected),
                        String::from_utf8_lossy(got),
                    )));
                }
                if got.len() == expected.len() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_their_size_and_differ_by_connection_and_sequence() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        message(1, 7, 64, &mut a);
        message(2, 7, 64, &mut b);
        message(1, 8, 64, &mut c);
        assert_eq!((a.len(), b.len(), c.len()), (64, 64, 64));
        assert!(a != b && a != c && b != c);
        assert!(a.starts_with(b"00000001 0000000000000007 ") && a.ends_with(b"\n"));
        let mut small = Vec::new();
        message(1, 7, MIN_SIZE, &mut small);
        assert_eq!(small.len(), MIN_SIZE);
        assert!(small.ends_with(b" \n"), "{small:?}");
    }
}
