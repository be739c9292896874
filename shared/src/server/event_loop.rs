//! The slow server's loop: accept every connection the kernel has queued, wait on mio
//! for readiness or the next timer, hand each event to its [`Connection`], fire the
//! timers that are due.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::connection::{Connection, Ctx, Next, TimerKind};
use super::{Counters, ServerConfig};
use crate::error::is_fd_exhaustion;

/// Connections queued by the kernel before `accept`. The kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux); a burst of ten thousand connects must
/// not overflow it while the loop is busy, or clients wait a second for a SYN retry.
const LISTEN_BACKLOG: i32 = 4096;

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

pub(super) struct EventLoop {
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

impl EventLoop {
    /// A loop listening as `config` says, and the waker that interrupts its wait.
    pub(super) fn new(
        config: &ServerConfig,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<(EventLoop, Arc<Waker>)> {
        let listener = bind(config.listen)?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let event_loop = EventLoop {
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
            counters,
            stop,
        };
        Ok((event_loop, waker))
    }

    /// The address the listener is bound to (with the port the OS picked for port 0).
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub(super) fn run(&mut self) -> io::Result<()> {
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
