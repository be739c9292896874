//! The slow server: echoes each line after a fixed delay, on one thread, for thousands of
//! connections at once.
//!
//! It plays the part of the article's remote service that takes 5 seconds to answer.
//! It is itself an event loop (mio, one thread, a timer queue), which is the shape stage 1
//! builds from scratch; here it is only infrastructure, so read it after stage 1.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! let server = shared::server::SlowServer::start(Duration::from_millis(200))?;
//! println!("echoing lines after 200 ms on {}", server.addr());
//! // ... talk to it; dropping `server` shuts it down.
//! # Ok(())
//! # }
//! ```
//!
//! Rules it keeps:
//! - Each line is answered after the delay, counted from when the line arrived; several
//!   lines on one connection are answered in order.
//! - Bad input gets `ERROR <reason>\n` and the connection is closed; no other connection
//!   notices. A client that vanishes mid-delay is cleaned up when its answer is due.
//! - A line ends with `\n` or `\r\n`; the answer ends with `\n`.
//! - Memory per connection is bounded: it stops reading from a client that has
//!   [`MAX_PIPELINED`] lines waiting, or [`MAX_UNSENT`] bytes of lines waiting and answers
//!   it has not read, and reads again once the client catches up. Lines already received are always
//!   answered, also after the client's half-close.
//! - A connection with nothing pending and no bytes from the client for the idle timeout
//!   ([`DEFAULT_IDLE_TIMEOUT`] unless configured) is closed, so idle clients cannot hold
//!   descriptors that newcomers need.
//! - When `accept` fails because the process is out of file descriptors, the connections
//!   it has keep being served, newcomers wait in the listen backlog until one closes, and
//!   one line is logged (not one per attempt).

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::error::is_fd_exhaustion;
use crate::protocol::{DecodeError, LineDecoder};

/// Where to listen and how slow to be.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How long each line waits before it is echoed.
    pub delay: Duration,
    /// How long a connection with nothing pending may stay silent before it is closed;
    /// `None` keeps it open for ever.
    pub idle_timeout: Option<Duration>,
}

/// [`ServerConfig::idle_timeout`] unless told otherwise: as long as the clients'
/// default timeout ([`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)), far above any pause
/// between a client's connect and its request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Lines answered: counted when the delay is over, just before the echo is written,
    /// so a client that has read its answer always finds it counted.
    pub answered: u64,
    /// Connections closed because of bad input.
    pub errors: u64,
    /// Connections open now.
    pub open: u64,
    /// Most connections open at the same time.
    pub peak_open: u64,
    /// Times `accept` failed for lack of file descriptors.
    pub fd_exhausted: u64,
    /// Connections closed because they were idle for the idle timeout.
    pub idle_closed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    answered: AtomicU64,
    errors: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    fd_exhausted: AtomicU64,
    idle_closed: AtomicU64,
}

/// A running slow server. Dropping it stops the loop and closes every connection.
#[derive(Debug)]
pub struct SlowServer {
    addr: SocketAddr,
    delay: Duration,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl SlowServer {
    /// Starts a server on `127.0.0.1` with a free port, on a background thread.
    pub fn start(delay: Duration) -> io::Result<SlowServer> {
        SlowServer::start_with(ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            delay,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        })
    }

    /// Starts a server as configured, on a background thread.
    pub fn start_with(config: ServerConfig) -> io::Result<SlowServer> {
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut event_loop = EventLoop {
            poll,
            listener,
            delay: config.delay,
            idle_timeout: config.idle_timeout,
            connections: HashMap::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            next_token: FIRST_CONNECTION,
            accept_paused: false,
            logged_fd_exhaustion: false,
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
        };
        let thread = thread::Builder::new()
            .name(format!("slow-server {addr}"))
            .spawn(move || event_loop.run())?;
        Ok(SlowServer {
            addr,
            delay: config.delay,
            counters,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configured delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The counters as they are now.
    pub fn stats(&self) -> ServerStats {
        let c = &self.counters;
        ServerStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            answered: c.answered.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            peak_open: c.peak_open.load(Ordering::Relaxed),
            fd_exhausted: c.fd_exhausted.load(Ordering::Relaxed),
            idle_closed: c.idle_closed.load(Ordering::Relaxed),
        }
    }

    /// Blocks until the loop ends, which only an I/O error on the poller can cause:
    /// what the standalone binary does after starting.
    pub fn wait(mut self) -> io::Result<()> {
        match self.thread.take().map(|thread| thread.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the server thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // If waking fails the loop is already gone; joining is still right.
            let _ = self.waker.wake();
            let _ = thread.join();
        }
    }
}

/// Connections queued by the kernel before `accept`. The kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux); a burst of ten thousand connects must
/// not overflow it while the loop is busy, or clients wait a second for a SYN retry.
const LISTEN_BACKLOG: i32 = 4096;

/// Lines one connection may have waiting for their delay before we stop reading from it:
/// a client that pipelines without bound must not make us buffer without bound.
pub const MAX_PIPELINED: usize = 1024;

/// Bytes one connection may have in lines waiting for their delay and answers the client
/// has not read, before we stop reading from it: a client that sends and never reads
/// must not make us buffer without bound either. Every waiting line becomes an answer,
/// so both count. 64 KiB is far more than the article's requests need, and little
/// beside what the kernel buffers for each socket.
pub const MAX_UNSENT: usize = 64 * 1024;

/// How long a connection we closed for bad input may take to close its side, so the
/// `ERROR` line is read instead of lost to a reset.
const LINGER: Duration = Duration::from_secs(2);

/// How often to retry `accept` while the process is out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets the standalone server restart on its port while old connections sit in
    // TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A timer: answer the oldest pending line of a connection, or give up on a lingering
/// close. Ordered by `(deadline, seq)`, so equal deadlines keep their arrival order and
/// never compare equal.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    deadline: Instant,
    seq: u64,
    token: Token,
    kind: TimerKind,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Answer,
    LingerExpired,
    /// The connection may have been idle long enough: look, and close it or look again.
    IdleCheck,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    decoder: LineDecoder,
    /// Lines waiting for their delay, oldest first; their timers are in the queue.
    pending: VecDeque<String>,
    /// The size of their answers, newlines included.
    pending_bytes: usize,
    /// Bytes to send, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// The peer sent EOF: no more lines will come, but answers still go out.
    read_closed: bool,
    /// We sent `ERROR`: input is discarded until the peer closes or `LINGER` ends.
    closing: bool,
    /// `shutdown(Write)` was done after the error line went out.
    write_shut: bool,
    /// Reading stopped because `MAX_PIPELINED` lines or `MAX_UNSENT` bytes are waiting.
    paused: bool,
    writable_interest: bool,
    /// When the client last sent bytes or was sent its last answer.
    last_active: Instant,
    /// An `IdleCheck` timer is in the queue: one at a time per connection.
    idle_check_queued: bool,
}

struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    delay: Duration,
    idle_timeout: Option<Duration>,
    connections: HashMap<Token, Connection>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_seq: u64,
    /// Tokens are never reused, so a timer for a closed connection cannot hit a new one.
    next_token: usize,
    accept_paused: bool,
    logged_fd_exhaustion: bool,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

/// What to do with a connection after handling an event.
enum Next {
    Keep,
    Close,
}

impl EventLoop {
    fn run(&mut self) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = self
                .timers
                .peek()
                .map(|Reverse(t)| t.deadline.saturating_duration_since(Instant::now()));
            if self.accept_paused {
                // Descriptors may come free elsewhere in the process (an embedded client
                // finishing), not only by closing one of ours: look again now and then.
                timeout = Some(timeout.map_or(ACCEPT_RETRY, |t| t.min(ACCEPT_RETRY)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                // A signal interrupted the wait: not an error, just wait again.
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        if self.stop.load(Ordering::Acquire) {
                            return Ok(());
                        }
                    }
                    token => {
                        if event.is_writable() {
                            let delay = self.delay;
                            self.with_connection(token, |c, ctx| c.on_writable(delay, ctx));
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(token);
                        }
                    }
                }
            }
            self.fire_timers();
            if self.accept_paused {
                self.accept_paused = false;
                self.accept_all();
            }
        }
    }

    fn accept_all(&mut self) {
        if self.accept_paused {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE)
                    {
                        eprintln!("slow-server: cannot register a connection: {e}");
                        continue;
                    }
                    // Answers are single small writes: do not let Nagle hold them back.
                    let _ = stream.set_nodelay(true);
                    self.connections.insert(token, Connection::new(stream));
                    // A client that connects and says nothing is idle from the start.
                    self.with_connection(token, |_, _| Next::Keep);
                    let c = &self.counters;
                    c.accepted.fetch_add(1, Ordering::Relaxed);
                    let open = c.open.fetch_add(1, Ordering::Relaxed) + 1;
                    c.peak_open.fetch_max(open, Ordering::Relaxed);
                }
                // The backlog is empty: the next connection brings a new event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    // Keep serving what we have; retry when a connection closes, or soon.
                    self.accept_paused = true;
                    self.counters.fd_exhausted.fetch_add(1, Ordering::Relaxed);
                    if !self.logged_fd_exhaustion {
                        self.logged_fd_exhaustion = true;
                        let limit = crate::limits::fd_limit().map_or(0, |l| l.soft);
                        eprintln!(
                            "slow-server: out of file descriptors with {} connections open \
                             (RLIMIT_NOFILE {limit}); new connections wait in the backlog \
                             until one closes. Raise the limit with `ulimit -n`.",
                            self.connections.len()
                        );
                    }
                    return;
                }
                // The peer gave up before we accepted (ECONNABORTED and friends).
                Err(_) => continue,
            }
        }
    }

    /// Runs `f` on the connection, closes it if `f` says so, and keeps its interest in
    /// step with whether it has bytes to write.
    fn with_connection(&mut self, token: Token, f: impl FnOnce(&mut Connection, &mut Ctx) -> Next) {
        let Entry::Occupied(mut entry) = self.connections.entry(token) else {
            return; // closed earlier in this batch of events
        };
        let mut ctx = Ctx {
            now: Instant::now(),
            new_timers: Vec::new(),
        };
        let mut next = f(entry.get_mut(), &mut ctx);
        let conn = entry.get_mut();
        if matches!(next, Next::Keep) && conn.update_interest(self.poll.registry(), token).is_err()
        {
            next = Next::Close;
        }
        if let (Next::Keep, Some(idle)) = (&next, self.idle_timeout)
            && conn.is_idle()
            && !conn.idle_check_queued
        {
            conn.idle_check_queued = true;
            let due = conn.last_active + idle;
            ctx.new_timers
                .push((due.saturating_duration_since(ctx.now), TimerKind::IdleCheck));
        }
        let c = &self.counters;
        if matches!(next, Next::Close) {
            let conn = entry.remove();
            if conn.closing {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
            drop(conn);
            c.open.fetch_sub(1, Ordering::Relaxed);
            if self.accept_paused {
                self.accept_paused = false;
                self.accept_all();
            }
            return;
        }
        for (delay, kind) in ctx.new_timers {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.timers.push(Reverse(Timer {
                deadline: ctx.now + delay,
                seq,
                token,
                kind,
            }));
        }
    }

    fn read(&mut self, token: Token) {
        let delay = self.delay;
        self.with_connection(token, |c, ctx| c.read(delay, ctx));
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse(timer)) = self.timers.peek() {
            if timer.deadline > now {
                break;
            }
            let Some(Reverse(timer)) = self.timers.pop() else {
                break;
            };
            match timer.kind {
                TimerKind::Answer => {
                    let answering = self.connections.get(&timer.token);
                    if answering.is_some_and(|c| !c.closing && !c.pending.is_empty()) {
                        self.counters.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    let delay = self.delay;
                    self.with_connection(timer.token, |c, ctx| c.answer_next(delay, ctx));
                }
                TimerKind::LingerExpired => self.with_connection(timer.token, |_, _| Next::Close),
                TimerKind::IdleCheck => {
                    let Some(idle) = self.idle_timeout else {
                        continue;
                    };
                    let counters = Arc::clone(&self.counters);
                    self.with_connection(timer.token, |c, ctx| {
                        c.idle_check_queued = false;
                        if c.is_idle() && ctx.now >= c.last_active + idle {
                            counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                            return Next::Close;
                        }
                        Next::Keep // busy, or active since: a new check is queued if idle
                    });
                }
            }
        }
    }
}

/// Timers a connection asks for while handling an event.
struct Ctx {
    now: Instant,
    new_timers: Vec<(Duration, TimerKind)>,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            decoder: LineDecoder::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            out: Vec::new(),
            written: 0,
            read_closed: false,
            closing: false,
            write_shut: false,
            paused: false,
            writable_interest: false,
            last_active: Instant::now(),
            idle_check_queued: false,
        }
    }

    /// Nothing to answer and nothing to send: only the idle timeout keeps it open.
    fn is_idle(&self) -> bool {
        !self.closing && self.pending.is_empty() && self.out.is_empty()
    }

    /// Whether this connection holds as much as we let it: then we stop reading.
    fn is_full(&self) -> bool {
        self.pending.len() >= MAX_PIPELINED || self.buffered() >= MAX_UNSENT
    }

    /// Bytes of waiting lines and unsent answers.
    fn buffered(&self) -> usize {
        self.pending_bytes + self.out.len() - self.written
    }

    /// Reads until the socket would block, turning complete lines into timers; stops
    /// early, with `paused` set, when the connection is full.
    fn read(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        let mut buf = [0u8; 4096];
        loop {
            // Lines left in the decoder by an earlier pause come first: the socket may
            // have nothing more to say (the peer sent everything in one write, or left).
            if let Err(error) = self.take_lines(delay, ctx) {
                return self.fail(&error.to_string(), ctx);
            }
            if self.paused || self.read_closed {
                return Next::Keep;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.read_closed = true;
                    if self.closing || self.decoder.finish().is_err() {
                        // The peer is gone or left a line unfinished: nothing to answer.
                        return Next::Close;
                    }
                    return self.close_if_done();
                }
                // After an ERROR line, the rest of the input is drained and dropped.
                Ok(_) if self.closing => continue,
                Ok(n) => {
                    self.last_active = ctx.now;
                    self.decoder.push(&buf[..n]);
                }
                // Drained: edge-triggered readiness will tell us when more arrives.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Reset by the peer, or worse: the connection is gone.
                Err(_) => return Next::Close,
            }
        }
    }

    /// Moves complete lines from the decoder to `pending`, each with its timer, until
    /// the decoder has none left or the connection is full (then `paused` is set).
    fn take_lines(&mut self, delay: Duration, ctx: &mut Ctx) -> Result<(), DecodeError> {
        if self.closing {
            return Ok(());
        }
        loop {
            if self.is_full() {
                self.paused = true;
                return Ok(());
            }
            match self.decoder.next_line()? {
                Some(line) => {
                    self.pending_bytes += line.len() + 1;
                    self.pending.push_back(line);
                    ctx.new_timers.push((delay, TimerKind::Answer));
                }
                None => return Ok(()),
            }
        }
    }

    /// Reading was paused and the client has caught up (half of each bound is free
    /// again, so we do not flip at every line): read what arrived meanwhile.
    fn resume_if_room(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        if self.paused && self.pending.len() < MAX_PIPELINED / 2 && self.buffered() < MAX_UNSENT / 2
        {
            self.paused = false;
            // Bytes may have arrived while paused; their readiness edge has passed,
            // so read now instead of waiting for an event that will not come.
            return self.read(delay, ctx);
        }
        Next::Keep
    }

    /// Sends `ERROR <reason>` and closes politely: no more answers, input discarded.
    fn fail(&mut self, reason: &str, ctx: &mut Ctx) -> Next {
        self.closing = true;
        self.pending.clear();
        self.pending_bytes = 0;
        self.paused = false;
        self.out
            .extend_from_slice(format!("ERROR {reason}\n").as_bytes());
        ctx.new_timers.push((LINGER, TimerKind::LingerExpired));
        match self.flush(ctx) {
            Next::Close => Next::Close,
            // Keep reading to drain the peer's remaining input until it closes.
            Next::Keep => self.read(Duration::ZERO, ctx),
        }
    }

    /// The delay of the oldest pending line is over: queue its echo.
    fn answer_next(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        // Timers of a failed connection outlive its cleared queue: nothing to do.
        let Some(line) = self.pending.pop_front() else {
            return Next::Keep;
        };
        self.pending_bytes -= line.len() + 1;
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(b'\n');
        match self.flush(ctx) {
            Next::Close => Next::Close,
            Next::Keep => self.resume_if_room(delay, ctx),
        }
    }

    /// The socket is writable again: send what waits, then read if that made room.
    fn on_writable(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        match self.flush(ctx) {
            Next::Close => Next::Close,
            Next::Keep => self.resume_if_room(delay, ctx),
        }
    }

    /// Writes until done or the socket would block.
    fn flush(&mut self, ctx: &Ctx) -> Next {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Next::Close,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EPIPE or ECONNRESET: the client left mid-delay.
                Err(_) => return Next::Close,
            }
        }
        if !self.out.is_empty() {
            self.last_active = ctx.now; // the idle timeout counts from the last answer
        }
        self.out.clear();
        self.written = 0;
        if self.closing && !self.write_shut {
            // FIN after the ERROR line; we keep reading until the peer closes too.
            self.write_shut = true;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        self.close_if_done()
    }

    fn close_if_done(&mut self) -> Next {
        if self.read_closed && self.pending.is_empty() && self.out.is_empty() {
            Next::Close
        } else {
            Next::Keep
        }
    }

    fn update_interest(&mut self, registry: &mio::Registry, token: Token) -> io::Result<()> {
        let want_writable = !self.out.is_empty();
        if want_writable != self.writable_interest {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.stream, token, interest)?;
            self.writable_interest = want_writable;
        }
        Ok(())
    }
}
