//! The slow server's loop: accept every connection the kernel has queued, wait on mio
//! for readiness or the next timer, hand each event to its [`Connection`], fire the
//! timers that are due, and on a graceful shutdown drain what is left.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::connection::{Connection, Ctx, Next, TimerKind};
use super::stats::Counters;
use super::{ServerConfig, Shared, Stop};
use crate::error::is_fd_exhaustion;

/// How often to retry `accept` while the process is out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `i` of the slab is registered with mio as `Token(FIRST_CONNECTION + i)`.
const FIRST_CONNECTION: usize = 2;

fn bind(config: &ServerConfig) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = config.listen;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets the standalone server restart on its port while old connections sit in
    // TIME_WAIT.
    socket.set_reuse_address(true)?;
    if config.reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.bind(&addr.into())?;
    // The kernel caps it at `net.core.somaxconn` without a word; see `DEFAULT_BACKLOG`.
    socket.listen(i32::try_from(config.backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// `SO_REUSEPORT`: several sockets, in one process or several, bind the same port. On
/// Linux the kernel then spreads new connections over their accept queues (by a hash of
/// the addresses), which is how server processes share one port, as nginx's workers do.
/// macOS lets them bind but hands each connection to one of them, with no balancing.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn set_reuse_port(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn set_reuse_port(_: &socket2::Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT (--reuse-port) is supported on Linux and macOS only",
    ))
}

/// A timer: answer the oldest pending line of a connection, give up on a lingering
/// close, or look whether it is idle. Ordered by `(deadline, seq)`, so equal deadlines
/// keep their arrival order and never compare equal. 40 bytes, one or two per connection.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    deadline: Instant,
    seq: u64,
    slot: u32,
    /// The connection's generation: a timer outliving its connection must not act on
    /// the next one in the same slot.
    generation: u32,
    kind: TimerKind,
}

/// The open connections, in a slab: a vector indexed by slot, with a list of free slots.
/// A hash map would cost twice the memory per connection (its table is kept at most 7/8
/// full and doubles, and every bucket page gets touched); a slab's unused tail is never
/// touched, so the kernel never backs it with memory.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Connection>>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, connection: Connection) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(connection);
                slot
            }
            None => {
                self.slots.push(Some(connection));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Connection> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    fn remove(&mut self, slot: u32) -> Option<Connection> {
        let connection = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(connection)
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn occupied(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(slot, _)| slot as u32)
    }
}

pub(super) struct EventLoop {
    poll: Poll,
    /// `None` once a graceful shutdown has begun: no one new gets in.
    listener: Option<TcpListener>,
    delay: Duration,
    idle_timeout: Option<Duration>,
    connections: Slab,
    timers: BinaryHeap<Reverse<Timer>>,
    /// Lent to each `Ctx`, so asking for a timer does not allocate on every event.
    new_timers: Vec<(Duration, TimerKind)>,
    next_seq: u64,
    next_generation: u32,
    accept_paused: bool,
    logged_fd_exhaustion: bool,
    shared: Arc<Shared>,
    stats_every: Option<Duration>,
    next_stats: Option<Instant>,
    /// A graceful shutdown has begun.
    draining: bool,
    /// When its budget runs out; `None` for a budget too far away to count.
    drain_deadline: Option<Instant>,
}

impl EventLoop {
    /// A loop listening as `config` says, and the waker that interrupts its wait.
    pub(super) fn new(
        config: &ServerConfig,
        shared: Arc<Shared>,
    ) -> io::Result<(EventLoop, Arc<Waker>)> {
        let listener = bind(config)?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let event_loop = EventLoop {
            poll,
            listener: Some(listener),
            delay: config.delay,
            idle_timeout: config.idle_timeout,
            connections: Slab::default(),
            timers: BinaryHeap::new(),
            new_timers: Vec::new(),
            next_seq: 0,
            next_generation: 0,
            accept_paused: false,
            logged_fd_exhaustion: false,
            shared,
            stats_every: config.stats_interval,
            next_stats: None,
            draining: false,
            drain_deadline: None,
        };
        Ok((event_loop, waker))
    }

    /// The address the listener is bound to (with the port the OS picked for port 0).
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::other("the server no longer listens")),
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Runs until told to stop ([`Stop::Now`]) or until a graceful shutdown has drained.
    pub(super) fn run(&mut self) -> io::Result<()> {
        let result = self.serve();
        self.listener = None;
        self.close_all();
        if self.stats_every.is_some() {
            // The last word: peaks and totals as the server leaves.
            crate::say!("{}", self.counters().snapshot());
        }
        result
    }

    fn serve(&mut self) -> io::Result<()> {
        if let Some(listener) = &mut self.listener {
            self.poll
                .registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        self.next_stats = self.stats_every.map(|every| Instant::now() + every);
        let mut events = Events::with_capacity(1024);
        loop {
            let deadlines = [
                self.timers.peek().map(|Reverse(t)| t.deadline),
                self.next_stats,
                self.drain_deadline,
            ];
            let now = Instant::now();
            let mut timeout = deadlines
                .into_iter()
                .flatten()
                .min()
                .map(|deadline| deadline.saturating_duration_since(now));
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
                    WAKER => match self.shared.asked() {
                        Stop::Run => {}
                        Stop::Now => return Ok(()),
                        Stop::Drain(budget) => self.begin_drain(budget),
                    },
                    Token(token) => {
                        let slot = (token - FIRST_CONNECTION) as u32;
                        if event.is_writable() {
                            let delay = self.delay;
                            self.with_connection(slot, |c, ctx| c.on_writable(delay, ctx));
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let delay = self.delay;
                            self.with_connection(slot, |c, ctx| c.read(delay, ctx));
                        }
                    }
                }
            }
            self.fire_timers();
            if self.accept_paused {
                self.accept_paused = false;
                self.accept_all();
            }
            let now = Instant::now();
            if self.draining {
                if self.connections.len() == 0 {
                    return Ok(()); // drained: every answer is out
                }
                if self.drain_deadline.is_some_and(|deadline| now >= deadline) {
                    self.cut_short();
                    return Ok(());
                }
            }
            if let (Some(due), Some(every)) = (self.next_stats, self.stats_every)
                && now >= due
            {
                crate::say!("{}", self.counters().snapshot());
                // From now, not from `due`: a loop that fell behind prints once, not a
                // burst of stale lines.
                self.next_stats = Some(now + every);
            }
        }
    }

    /// Accepts until the kernel's queue is empty: with edge-triggered readiness, one
    /// event may stand for many connections, and a full queue makes the kernel drop
    /// handshakes that clients then retry only after a second or more.
    fn accept_all(&mut self) {
        if self.accept_paused {
            return;
        }
        loop {
            let accepted = match &self.listener {
                Some(listener) => listener.accept(),
                None => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let now = Instant::now();
                    let generation = self.next_generation;
                    self.next_generation = self.next_generation.wrapping_add(1);
                    // Answers are single small writes: do not let Nagle hold them back.
                    let _ = stream.set_nodelay(true);
                    let slot = self
                        .connections
                        .insert(Connection::new(stream, generation, now));
                    let token = Token(FIRST_CONNECTION + slot as usize);
                    let connection = self.connections.get_mut(slot).expect("just inserted");
                    if let Err(e) = connection.register(self.poll.registry(), token) {
                        eprintln!("slow-server: cannot register a connection: {e}");
                        self.connections.remove(slot);
                        continue;
                    }
                    self.counters().opened();
                    // A client that connects and says nothing is idle from the start.
                    self.with_connection(slot, |_, _| Next::Keep);
                }
                // The backlog is empty: the next connection brings a new event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    // Keep serving what we have; retry when a connection closes, or soon.
                    self.accept_paused = true;
                    Counters::add(&self.counters().fd_exhausted, 1);
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
    fn with_connection(&mut self, slot: u32, f: impl FnOnce(&mut Connection, &mut Ctx) -> Next) {
        let Some(conn) = self.connections.get_mut(slot) else {
            return; // closed earlier in this batch of events
        };
        let mut ctx = Ctx {
            now: Instant::now(),
            new_timers: std::mem::take(&mut self.new_timers),
        };
        let waiting_before = conn.waiting();
        let mut next = f(conn, &mut ctx);
        self.shared
            .counters
            .waiting_changed(waiting_before, conn.waiting());
        let token = Token(FIRST_CONNECTION + slot as usize);
        if matches!(next, Next::Keep) && conn.update_interest(self.poll.registry(), token).is_err()
        {
            next = Next::Close;
        }
        // Draining: a connection with nothing left to answer or send is closed now.
        if self.draining && conn.is_done() {
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
        let generation = conn.generation;
        if matches!(next, Next::Close) {
            self.close(slot);
        } else {
            for (delay, kind) in ctx.new_timers.drain(..) {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.timers.push(Reverse(Timer {
                    deadline: ctx.now + delay,
                    seq,
                    slot,
                    generation,
                    kind,
                }));
            }
        }
        ctx.new_timers.clear();
        self.new_timers = ctx.new_timers;
    }

    fn close(&mut self, slot: u32) {
        let Some(conn) = self.connections.remove(slot) else {
            return;
        };
        let counters = &self.shared.counters;
        if conn.closing {
            Counters::add(&counters.errors, 1);
        }
        counters.waiting_changed(conn.waiting(), 0);
        counters
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        drop(conn); // closes the socket, which also removes it from the poller
        if self.accept_paused {
            self.accept_paused = false;
            self.accept_all();
        }
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
            let slot = timer.slot;
            let answering = match self.connections.get_mut(slot) {
                Some(c) if c.generation == timer.generation => !c.closing && c.waiting() > 0,
                _ => continue, // its connection is gone
            };
            match timer.kind {
                TimerKind::Answer => {
                    if answering {
                        Counters::add(&self.counters().answered, 1);
                    }
                    let delay = self.delay;
                    self.with_connection(slot, |c, ctx| c.answer_next(delay, ctx));
                }
                TimerKind::LingerExpired => self.with_connection(slot, |_, _| Next::Close),
                TimerKind::IdleCheck => {
                    let Some(idle) = self.idle_timeout else {
                        continue;
                    };
                    let mut idle_closed = false;
                    self.with_connection(slot, |c, ctx| {
                        c.idle_check_queued = false;
                        if c.is_idle() && ctx.now >= c.last_active + idle {
                            idle_closed = true;
                            return Next::Close;
                        }
                        Next::Keep // busy, or active since: a new check is queued if idle
                    });
                    if idle_closed {
                        Counters::add(&self.counters().idle_closed, 1);
                    }
                }
            }
        }
    }

    /// The first step of a graceful shutdown: take in the connections the kernel has
    /// already queued (their clients finished the handshake and may have sent a request),
    /// then close the listener, so new connects are refused. Connections with nothing
    /// waiting close now; the others when their last answer is out, or when `budget`
    /// runs out. Lines that arrive during the drain on a connection still open are
    /// received too, and answered the same way.
    fn begin_drain(&mut self, budget: Option<Duration>) {
        if self.draining {
            return;
        }
        self.accept_paused = false;
        self.accept_all();
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.draining = true;
        // A budget too far away to count is no budget: drain until done.
        self.drain_deadline = budget.and_then(|budget| Instant::now().checked_add(budget));
        // Lines that reached a socket before the signal count as received, also on a
        // connection just taken from the queue whose readiness we have not seen yet:
        // read them, then close every connection left with nothing to answer.
        let delay = self.delay;
        let slots: Vec<u32> = self.connections.occupied().collect();
        for slot in slots {
            self.with_connection(slot, |c, ctx| c.read(delay, ctx));
        }
    }

    /// The drain budget ran out: every line still waiting is cut short with
    /// `ERROR shutting down`.
    fn cut_short(&mut self) {
        let slots: Vec<u32> = self.connections.occupied().collect();
        let mut cut = 0;
        for slot in slots {
            self.with_connection(slot, |c, ctx| {
                cut += c.cut_short(ctx);
                Next::Close
            });
        }
        Counters::add(&self.counters().cut_short, cut as u64);
    }

    fn close_all(&mut self) {
        let slots: Vec<u32> = self.connections.occupied().collect();
        for slot in slots {
            self.close(slot);
        }
    }
}
