//! The load generator: one thread, N connections, each with one request in flight (a
//! closed loop: the next request leaves when the answer to the last one came).
//!
//! It must not be the bottleneck, so it is lean: no runtime, no allocation per request,
//! and its own CPU time over the window is measured, for the table to say when it was
//! near its limit. (It can be no leaner than the kernel's TCP path, though: on loopback
//! the sender's CPU runs much of the receiver's side of it, so a request costs the load
//! generator about what it costs the leanest server.) Two loops drive it, the same in
//! everything but how they talk to the kernel:
//!
//! - [`Driver::Uring`] (Linux 6.0 or later, `load/uring_loop.rs`): one `io_uring_enter`
//!   per round submits the round's requests and waits for a share of the answers, which
//!   one multishot receive per connection brings into buffers the kernel picks;
//! - [`Driver::Mio`] (everywhere, and where io_uring is unusable, `load/mio_loop.rs`):
//!   one `epoll_wait` (or `kevent`) per round, then a `send` and a `recv` per request.
//!
//! Every answer is checked byte for byte against what was asked: an echo message carries
//! its connection and sequence number, so an answer from another connection, a stale one
//! or a short one is caught; a wrong answer ends the run with an error that shows both.
//! The timeline (connect, warm up, measure, report) and the checks are this file's, shared
//! by both loops.

#[cfg(target_os = "linux")]
mod buf_ring;
mod mio_loop;
#[cfg(target_os = "linux")]
mod uring_loop;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shared::Error;

use super::harness::Usage;
use super::histogram::Histogram;
use super::{HTTP_REQUEST, HTTP_RESPONSE, Protocol};

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
    /// How it talks to the kernel.
    pub driver: Driver,
}

/// How the load generator talks to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// io_uring (Linux 6.0 or later): a round's requests in one submission, answers
    /// from multishot receives, one system call per round.
    Uring,
    /// mio: a readiness loop with a `send` and a `recv` per request.
    Mio,
}

impl Driver {
    /// The name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Mio => "mio",
        }
    }

    /// The driver for a [`key`](Driver::key).
    pub fn from_key(key: &str) -> Option<Driver> {
        [Driver::Uring, Driver::Mio]
            .into_iter()
            .find(|d| d.key() == key)
    }

    /// How the table's notes describe it.
    pub fn describe(self) -> &'static str {
        match self {
            Driver::Uring => {
                "io_uring: one io_uring_enter per round sends the round's requests and \
                 waits for answers, which a multishot receive per connection brings"
            }
            Driver::Mio => "mio: one send and one recv per request",
        }
    }

    /// Why this machine cannot run it, if it cannot (io_uring: not Linux, too old a
    /// kernel, or io_uring disabled).
    pub fn unavailable(self) -> Option<String> {
        match self {
            Driver::Mio => None,
            #[cfg(target_os = "linux")]
            Driver::Uring => uring_loop::unavailable(),
            #[cfg(not(target_os = "linux"))]
            Driver::Uring => Some("io_uring is Linux-only".into()),
        }
    }

    /// The best driver here: io_uring where it works, else mio and why not io_uring.
    pub fn best() -> (Driver, Option<String>) {
        match Driver::Uring.unavailable() {
            None => (Driver::Uring, None),
            Some(why) => (Driver::Mio, Some(why)),
        }
    }
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

/// The echo message `sequence` of connection `id`: `size` bytes, its two numbers in hex,
/// then letters that depend on both, then a newline.
pub fn message(id: usize, sequence: u64, size: usize, out: &mut Vec<u8>) {
    // (Written by hand, not with `write!`: this runs for every request.)
    hex(id as u64, 8, out);
    out.push(b' ');
    hex(sequence, 16, out);
    out.push(b' ');
    let mut letter = ((id as u64 % 26 + sequence % 26) % 26) as u8;
    while out.len() + 1 < size {
        out.push(b'a' + letter);
        letter = if letter == 25 { 0 } else { letter + 1 };
    }
    out.truncate(size.saturating_sub(1));
    out.push(b'\n');
}

/// `value` in lowercase hex, at least `digits` digits (as `{value:0digits$x}`).
fn hex(value: u64, digits: usize, out: &mut Vec<u8>) {
    let needed = (64 - value.leading_zeros() as usize).div_ceil(4);
    for digit in (0..digits.max(needed)).rev() {
        let nibble = (value >> (4 * digit)) & 0xf;
        out.push(b"0123456789abcdef"[nibble as usize]);
    }
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
    match load.driver {
        Driver::Mio => mio_loop::run(load, mark),
        #[cfg(target_os = "linux")]
        Driver::Uring => uring_loop::run(load, mark),
        #[cfg(not(target_os = "linux"))]
        Driver::Uring => Err(Error::Other(
            "--load-driver uring: io_uring is Linux-only; use --load-driver mio".into(),
        )),
    }
}

/// An I/O error's context, for `map_err`.
fn failed(what: &str) -> impl Fn(io::Error) -> Error {
    let what = what.to_string();
    move |e| Error::io(what.clone(), e)
}

/// One connection's request in flight and its answer so far: what both loops keep per
/// connection, and the byte-for-byte check.
struct Exchange {
    id: usize,
    /// The request in flight. NB: rewritten only between requests, never grown past
    /// the capacity it starts with, so its bytes stay where a send in flight points.
    request: Vec<u8>,
    /// The answer so far.
    answer: Vec<u8>,
    sent_at: Instant,
    /// The next request's sequence number (so the one in flight is `sequence - 1`).
    sequence: u64,
}

impl Exchange {
    fn new(id: usize, load: &Load) -> Exchange {
        Exchange {
            id,
            request: Vec::with_capacity(load.size.max(HTTP_REQUEST.len())),
            answer: Vec::with_capacity(answer_len(load)),
            sent_at: Instant::now(),
            sequence: 0,
        }
    }

    /// Writes this connection's next request (an echo message, or the HTTP request),
    /// leaving at `now`.
    fn next_request(&mut self, load: &Load, now: Instant) {
        self.request.clear();
        match load.protocol {
            Protocol::Echo => message(self.id, self.sequence, load.size, &mut self.request),
            Protocol::Http => self.request.extend_from_slice(HTTP_REQUEST),
        }
        self.sequence += 1;
        self.answer.clear();
        self.sent_at = now;
    }

    /// The answer the request in flight must get.
    fn expected(&self, protocol: Protocol) -> &[u8] {
        match protocol {
            Protocol::Echo => &self.request,
            Protocol::Http => HTTP_RESPONSE,
        }
    }

    /// Takes the next bytes of the answer and checks them: `true` once the whole answer
    /// is in; a wrong byte, or a byte too many, is an error that shows both answers.
    fn take(&mut self, bytes: &[u8], protocol: Protocol) -> Result<bool, Error> {
        self.answer.extend_from_slice(bytes);
        let expected = self.expected(protocol);
        let got = &self.answer;
        let so_far = got.len().min(expected.len());
        if got[..so_far] != expected[..so_far] || got.len() > expected.len() {
            return Err(Error::Other(format!(
                "wrong answer on connection {} to request {}:\n  asked    {:?}\n  \
                 expected {:?}\n  got      {:?}",
                self.id,
                self.sequence - 1,
                String::from_utf8_lossy(&self.request),
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(got),
            )));
        }
        Ok(got.len() == expected.len())
    }

    /// The error for a server that closed this connection (`how`: what said so).
    fn closed(&self, how: &str) -> Error {
        Error::Other(format!(
            "connection {} closed by the server before answering request {} ({how})",
            self.id,
            self.sequence.saturating_sub(1)
        ))
    }
}

/// The length of every answer `load` gets.
fn answer_len(load: &Load) -> usize {
    match load.protocol {
        Protocol::Echo => load.size,
        Protocol::Http => HTTP_RESPONSE.len(),
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy)]
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

/// What a loop does next, as [`Timeline::step`] says.
enum Step {
    /// Every connection is in: send every connection's first request of the closed loop.
    StartAll,
    /// Wait for the kernel, at most this long.
    Wait(Duration),
    /// The run is over.
    Done(Measured),
}

/// The run's timeline and what the window counts: connect, warm up, measure, report.
struct Timeline<'a> {
    load: &'a Load,
    phase: Phase,
    connect_deadline: Instant,
    /// Connections that got their first answer.
    established: usize,
    latency: Histogram,
    requests: u64,
    /// Answers per connection in the window.
    answered: Vec<u64>,
}

impl<'a> Timeline<'a> {
    fn new(load: &'a Load) -> Timeline<'a> {
        Timeline {
            load,
            phase: Phase::Connecting,
            connect_deadline: Instant::now() + CONNECT_TIMEOUT,
            established: 0,
            latency: Histogram::new(),
            requests: 0,
            answered: vec![0; load.connections],
        }
    }

    /// How many more connections to open now: the rest, at most [`CONNECT_WINDOW`]
    /// waiting for their first answer at once.
    fn to_open(&self, opened: usize) -> usize {
        let waiting = opened - self.established;
        (self.load.connections - opened).min(CONNECT_WINDOW.saturating_sub(waiting))
    }

    /// Moves the timeline on at `now`, marking the window's start and end; says what the
    /// loop does next.
    fn step(
        &mut self,
        now: Instant,
        parent: &Parent,
        mark: &mut dyn FnMut(Mark),
    ) -> Result<Step, Error> {
        let load = self.load;
        loop {
            self.phase = match self.phase {
                Phase::Connecting if self.established == load.connections => {
                    // Everyone is in: the closed loop starts on every connection at once.
                    // (Started one by one as they came in, the connections already running
                    // would slow every newcomer's first answer down.)
                    self.phase = Phase::Warming(now + load.warmup);
                    return Ok(Step::StartAll);
                }
                Phase::Connecting if now > self.connect_deadline => {
                    return Err(Error::Other(format!(
                        "only {} of {} connections got an answer within {} s",
                        self.established,
                        load.connections,
                        CONNECT_TIMEOUT.as_secs()
                    )));
                }
                Phase::Warming(until) if now >= until => {
                    mark(if load.paced { Mark::Ready } else { Mark::Start });
                    Phase::Ready
                }
                Phase::Ready if parent.go => {
                    self.latency = Histogram::new();
                    self.requests = 0;
                    self.answered.fill(0);
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
                    if self.requests == 0 {
                        return Err(Error::Other(format!(
                            "no answer in {:.1} s on {} connections",
                            load.window.as_secs_f64(),
                            load.connections
                        )));
                    }
                    return Ok(Step::Done(Measured {
                        requests: self.requests,
                        elapsed: now - start,
                        latency: std::mem::take(&mut self.latency),
                        fewest: self.answered.iter().copied().min().unwrap_or(0),
                        cpu,
                    }));
                }
                Phase::Warming(until) | Phase::Measuring(_, _, until, false) => {
                    return Ok(Step::Wait(until.saturating_duration_since(now)));
                }
                // Connecting, or waiting for the parent: look around now and then.
                _ => return Ok(Step::Wait(Duration::from_millis(100))),
            };
        }
    }

    /// A whole answer came in, checked, at `now`: counts it. `false` while connecting
    /// (this was the connection's first answer: it waits for the others); else the
    /// connection sends its next request.
    fn answered(&mut self, exchange: &Exchange, now: Instant) -> bool {
        match self.phase {
            Phase::Connecting => {
                self.established += 1;
                false
            }
            Phase::Measuring(..) => {
                self.latency
                    .record(now.saturating_duration_since(exchange.sent_at));
                self.requests += 1;
                self.answered[exchange.id] += 1;
                true
            }
            _ => true,
        }
    }
}

/// What the parent said on our stdin: `go`, then `end`. Unpaced, both at once.
struct Parent {
    go: bool,
    end: bool,
    line: Vec<u8>,
}

impl Parent {
    /// Makes stdin non-blocking (when `paced`), for the loop to read it when it is ready.
    fn new(paced: bool) -> Result<Parent, Error> {
        if paced {
            #[cfg(unix)]
            // SAFETY: fcntl on our own stdin; O_NONBLOCK only changes how reads wait.
            unsafe {
                let flags = libc::fcntl(0, libc::F_GETFL);
                libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
            #[cfg(not(unix))]
            return Err(Error::Other("a paced load needs a Unix stdin".into()));
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

    #[test]
    fn messages_are_written_as_format_would() {
        for (id, sequence) in [
            (0, 0),
            (1, 7),
            (25, 1),
            (0xabc, 0xdead_beef),
            (1 << 33, u64::MAX / 3),
        ] {
            let mut fast = Vec::new();
            message(id, sequence, 64, &mut fast);
            let mut slow = format!("{id:08x} {sequence:016x} ").into_bytes();
            let mut i = 0u64;
            while slow.len() + 1 < 64 {
                slow.push(b'a' + ((id as u64 + sequence % 26 + i) % 26) as u8);
                i += 1;
            }
            slow.truncate(63);
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
        }
    }
}
