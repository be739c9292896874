//! The reactor: it knows *when* a task can make progress, and wakes it.
//!
//! Two kinds of "when": a socket became readable or writable (mio's `Poll`, epoll on
//! Linux), or a deadline passed (its [timers](crate::timers)). The executor asks it to
//! wait, with `Reactor::wait`, only when no task is ready to run; the wait ends at the
//! next I/O event, the earliest deadline, or a wake from another thread, whichever comes
//! first.
//!
//! What stage 3's `EventLoop` did with callbacks, this does with [`Waker`]s: a future that
//! cannot progress leaves its waker here, and the reactor calls it.
//!
//! It owns the driver parts below it, and knows nothing of tasks or of the executor above:
//! only `Waker`s go up. On Linux it may also hold an io_uring (`uring::ring`,
//! `--driver uring`): the ring's fd is one more mio source, readable when completions
//! wait, and each turn submits what the futures queued since the last one.

use std::io;
use std::task::Waker;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use smallvec::SmallVec;

use crate::slab::{Key, Slab};
use crate::timers::Timers;
use crate::trace::{Direction, Step, Trace};

/// The token of the `mio::Waker` through which other threads wake the loop.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// The token of the io_uring's fd ([`crate::uring`]): completions are waiting.
const URING_TOKEN: Token = Token(usize::MAX - 1);

/// The token of the timerfd that ends a wait on time ([`crate::timers::PreciseWake`]).
#[cfg(target_os = "linux")]
const PRECISE_WAKE_TOKEN: Token = Token(usize::MAX - 2);

// ANCHOR: source
/// The tasks waiting on one socket, per direction. Several may wait at once (two tasks
/// accepting on one listener, or reading one stream through `&TcpStream`): readiness
/// wakes all of them, and each tries its system call again.
#[derive(Debug)]
struct Source {
    readers: Waiters,
    writers: Waiters,
    /// What the reactor last heard, per direction: ready (an event came, or nothing is
    /// known yet), or not (a `WouldBlock` or a short read or write since).
    readable: bool,
    writable: bool,
    /// The peer closed (or the socket failed): every later read or write returns at
    /// once, with no event to announce it, so the socket stays ready for good.
    /// (tokio's `READ_CLOSED` does the same.)
    read_closed: bool,
    write_closed: bool,
}

impl Default for Source {
    fn default() -> Source {
        // A new socket: edge-triggered epoll reports at registration what is already
        // there, so a read waits for that event rather than asking first (a client's
        // first read, before its answer came, is then no wasted `recvfrom`). A write is
        // tried at once: a new socket nearly always has room.
        Source {
            readers: Waiters::default(),
            writers: Waiters::default(),
            readable: false,
            writable: true,
            read_closed: false,
            write_closed: false,
        }
    }
}

/// The wakers waiting for one direction of one socket.
///
/// NB: tokio and smol keep one waker for their `poll_*` functions ("only the most recent
/// waker is woken"); we keep one per task there too, so that no caller is forgotten.
#[derive(Debug, Default)]
struct Waiters {
    /// Left by futures (`read`, `write`, `accept`, `connect`): each entry carries the
    /// future's number, and a dropped future takes its entry out. Room for one inline:
    /// nearly always one task waits per direction, and a million sockets then need no
    /// allocation each for it.
    futures: SmallVec<[(u64, Waker); 1]>,
    /// Left by the `poll_*` functions, which have no future whose drop could tell us
    /// that nobody waits any more: one entry per waker, until the next event.
    polls: Vec<Waker>,
    /// Numbers the next future's entry.
    next: u64,
}
// ANCHOR_END: source

// ANCHOR: waiters
impl Waiters {
    fn wait(&mut self, waiter: Option<&mut Option<u64>>, waker: &Waker) {
        let Some(waiter) = waiter else {
            if !self.polls.iter().any(|old| old.will_wake(waker)) {
                self.polls.push(waker.clone());
            }
            return;
        };
        // Still here from its last poll: only the waker may have changed.
        if let Some(id) = *waiter
            && let Some((_, old)) = self.futures.iter_mut().find(|(entry, _)| *entry == id)
        {
            if !old.will_wake(waker) {
                *old = waker.clone();
            }
            return;
        }
        let id = self.next;
        self.next += 1;
        self.futures.push((id, waker.clone()));
        *waiter = Some(id);
    }

    fn cancel(&mut self, id: u64) {
        self.futures.retain(|(entry, _)| *entry != id);
    }

    /// Everyone waiting: an event wakes them all, and each tries again.
    fn wake_all(&mut self, woken: &mut Vec<Waker>) {
        woken.extend(self.futures.drain(..).map(|(_, waker)| waker));
        woken.append(&mut self.polls);
    }
}
// ANCHOR_END: waiters

/// mio's `Poll` with the wakers of every registered socket, and the timers.
#[derive(Debug)]
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    sources: Slab<Source>,
    pub(crate) timers: Timers,
    /// `--trace`: say which sockets woke how many tasks.
    pub(crate) trace: Trace,
    /// The completion driver's ring, set up by its first operation.
    #[cfg(target_os = "linux")]
    uring: Option<crate::uring::ring::Ring>,
    /// Ends a wait at a deadline to the nanosecond (made at the first timed wait; `Err`
    /// if the OS refused, and waits are then precise to the millisecond).
    #[cfg(target_os = "linux")]
    precise_wake: Option<io::Result<crate::timers::PreciseWake>>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            sources: Slab::new(),
            timers: Timers::new(),
            trace: Trace::default(),
            #[cfg(target_os = "linux")]
            uring: None,
            #[cfg(target_os = "linux")]
            precise_wake: None,
        })
    }

    /// The io_uring, set up on first use (an error says why io_uring is unusable here).
    #[cfg(target_os = "linux")]
    pub(crate) fn uring(&mut self) -> io::Result<&mut crate::uring::ring::Ring> {
        if self.uring.is_none() {
            let ring = crate::uring::ring::Ring::new(self.poll.registry(), URING_TOKEN)?;
            self.uring = Some(ring);
        }
        Ok(self.uring.as_mut().expect("set up just above"))
    }

    pub(crate) fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// How many sockets are registered, and io_uring operations pending: while there
    /// are any, the executor must give the reactor its turn.
    pub(crate) fn sources(&self) -> usize {
        #[cfg(target_os = "linux")]
        if let Some(ring) = &self.uring {
            return self.sources.len() + ring.pending();
        }
        self.sources.len()
    }

    // ANCHOR: register
    /// Registers a socket for both directions, once, edge-triggered. A future that meets
    /// `WouldBlock` then leaves its waker with [`Reactor::set_waker`].
    pub(crate) fn register(&mut self, source: &mut impl mio::event::Source) -> io::Result<Key> {
        let key = self.sources.insert(Source::default());
        let token = Token(key.to_usize());
        if let Err(error) =
            self.poll
                .registry()
                .register(source, token, Interest::READABLE | Interest::WRITABLE)
        {
            self.sources.remove(key);
            return Err(error);
        }
        Ok(key)
    }
    // ANCHOR_END: register

    pub(crate) fn deregister(&mut self, key: Key, source: &mut impl mio::event::Source) {
        // Closing the socket right after removes it from epoll anyway; an error here
        // changes nothing for the caller.
        let _ = self.poll.registry().deregister(source);
        self.sources.remove(key);
    }

    // ANCHOR: set_waker
    /// Leaves `waker` to be called when the socket `key` is ready in `direction`.
    /// `waiter` is the waiting future's entry (`None` for a `poll_*` function): set on
    /// the first call, reused on the next ones, handed to [`Reactor::cancel_wait`] when
    /// the future is dropped.
    pub(crate) fn set_waker(
        &mut self,
        key: Key,
        direction: Direction,
        waiter: Option<&mut Option<u64>>,
        waker: &Waker,
    ) {
        if let Some(source) = self.sources.get_mut(key) {
            source.waiters(direction).wait(waiter, waker);
        }
    }

    /// Whether socket `key` may be ready in `direction`: an event came since the last
    /// `WouldBlock` or short read or write (or nothing is known yet).
    pub(crate) fn is_ready(&mut self, key: Key, direction: Direction) -> bool {
        self.sources
            .get_mut(key)
            .is_none_or(|source| match direction {
                Direction::Read => source.readable || source.read_closed,
                Direction::Write => source.writable || source.write_closed,
            })
    }

    /// Socket `key` is not ready in `direction` until its next event.
    pub(crate) fn clear_ready(&mut self, key: Key, direction: Direction) {
        if let Some(source) = self.sources.get_mut(key) {
            *source.ready(direction) = false;
        }
    }

    /// Takes a dropped future's entry out: its task no longer waits here.
    pub(crate) fn cancel_wait(&mut self, key: Key, direction: Direction, waiter: u64) {
        if let Some(source) = self.sources.get_mut(key) {
            source.waiters(direction).cancel(waiter);
        }
    }
    // ANCHOR_END: set_waker

    /// How many wakers wait on `key` in `direction` (futures', `poll_*` callers').
    #[cfg(test)]
    pub(crate) fn waiting(&mut self, key: Key, direction: Direction) -> (usize, usize) {
        let source = self.sources.get_mut(key).expect("a registered socket");
        let waiters = source.waiters(direction);
        (waiters.futures.len(), waiters.polls.len())
    }

    // ANCHOR: wait
    /// Collects I/O events and moves the wakers of the sockets that became ready into
    /// `woken`; the caller wakes them once this `Reactor` is no longer borrowed. With
    /// `block`, it waits until an event comes or the earliest timer is due (`now` is the
    /// loop's clock); without, it only looks.
    pub(crate) fn wait(&mut self, block: bool, now: Instant, woken: &mut Vec<Waker>) {
        let timeout = if block {
            self.timers
                .next_deadline()
                .map(|deadline| deadline.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        // With work waiting and no socket registered there is nothing to ask the OS.
        if timeout == Some(Duration::ZERO) && self.sources() == 0 {
            return;
        }
        if self.trace.is_on() {
            self.trace_wait(timeout);
        }
        #[cfg(target_os = "linux")]
        if self.uring.as_ref().is_some_and(|ring| ring.waits) {
            self.wait_on_ring(timeout, woken);
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(timeout) = timeout.filter(|timeout| !timeout.is_zero()) {
            self.arm_precise_wake(timeout);
        }
        self.poll_events(timeout, woken);
    }
    // ANCHOR_END: wait

    // ANCHOR: wait_on_ring
    /// The wait of a loop that has an io_uring: in the ring itself, one `io_uring_enter`
    /// that submits what the futures queued and waits for a completion or the timeout
    /// (to the nanosecond). epoll, which the mio sockets, the timers' wake-up and the
    /// wakes from other threads still use, is one more operation in the ring: a poll on
    /// its fd, which completes when epoll has events, and only then do we ask epoll.
    /// A request on io_uring then costs a fraction of a system call: one enter serves
    /// every completion of a turn.
    #[cfg(target_os = "linux")]
    fn wait_on_ring(&mut self, timeout: Option<Duration>, woken: &mut Vec<Waker>) {
        let epoll = std::os::fd::AsRawFd::as_raw_fd(&self.poll);
        let ring = self.uring.as_mut().expect("waits on the ring");
        let waited = match timeout {
            Some(Duration::ZERO) => ring.submit(),
            timeout => ring.wait(epoll, timeout),
        };
        if let Err(error) = waited {
            // Entries stay queued; the next turn submits them again.
            eprintln!("warning: io_uring_enter failed, submitting next turn: {error}");
        }
        self.reap(woken);
        if self
            .uring
            .as_mut()
            .is_some_and(|ring| ring.take_epoll_ready())
        {
            self.poll_events(Some(Duration::ZERO), woken);
        }
    }
    // ANCHOR_END: wait_on_ring

    // ANCHOR: poll_events
    /// Waits for I/O events for at most `timeout` (`None`: until one arrives), and moves
    /// the wakers of what became ready into `woken`.
    fn poll_events(&mut self, timeout: Option<Duration>, woken: &mut Vec<Waker>) {
        #[cfg(target_os = "linux")]
        let timeout = match self.uring.as_ref().is_some_and(|ring| ring.waits) {
            true => timeout, // `wait_on_ring` submitted and reaped already
            false => match self.submit_and_reap(woken) {
                0 => timeout,
                _ => Some(Duration::ZERO), // tasks to run: look for events, don't wait
            },
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal arrived: return, and let the executor look around and come back.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return,
            Err(error) => panic!(
                "waiting for events (epoll_wait or kevent) failed, the event loop cannot go \
                 on: {error}"
            ),
        }
        let mut completions = false;
        for event in &self.events {
            if event.token() == WAKER_TOKEN {
                continue; // another thread woke us; its task is already in the ready queue
            }
            if event.token() == URING_TOKEN {
                completions = true; // reaped below, once `events` is no longer borrowed
                continue;
            }
            // A stale token (socket closed since) finds no source: nothing to wake.
            let key = Key::from_usize(event.token().0);
            let Some(source) = self.sources.get_mut(key) else {
                continue;
            };
            // Errors and hang-ups wake both sides: the next read or write reports them.
            let read_closed = event.is_read_closed() || event.is_error();
            let write_closed = event.is_write_closed() || event.is_error();
            source.read_closed |= read_closed;
            source.write_closed |= write_closed;
            let readable = event.is_readable() || read_closed;
            let writable = event.is_writable() || write_closed;
            for (direction, ready) in [(Direction::Read, readable), (Direction::Write, writable)] {
                if ready {
                    *source.ready(direction) = true;
                    let before = woken.len();
                    source.waiters(direction).wake_all(woken);
                    let waiters = woken.len() - before;
                    self.trace.say(
                        Step::Event,
                        format_args!("socket {key} {direction}: wakes {waiters} waiter(s)"),
                    );
                }
            }
        }
        #[cfg(target_os = "linux")]
        if completions {
            self.reap(woken);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = completions; // no ring off Linux
    }
    // ANCHOR_END: poll_events

    /// Sets the timerfd to end the coming wait `after` from now: `epoll_wait` alone
    /// rounds up to the next millisecond (see [`crate::timers::PreciseWake`]).
    #[cfg(target_os = "linux")]
    fn arm_precise_wake(&mut self, after: Duration) {
        let registry = self.poll.registry();
        let wake = self
            .precise_wake
            .get_or_insert_with(|| crate::timers::PreciseWake::new(registry, PRECISE_WAKE_TOKEN));
        if let Ok(wake) = wake
            && let Err(error) = wake.set(after)
        {
            eprintln!("warning: timerfd_settime failed, timers are late by up to 1 ms: {error}");
        }
    }

    /// Traces the turn: how long it may block, on how many sockets and timers.
    fn trace_wait(&self, timeout: Option<Duration>) {
        let (sockets, timers) = (self.sources(), self.timers.len());
        let what = format!("({sockets} socket(s), {timers} timer(s))");
        match timeout {
            Some(Duration::ZERO) => self.trace.say(
                Step::Reactor,
                format_args!("checks without waiting: tasks are ready {what}"),
            ),
            Some(timeout) => self.trace.say(
                Step::Reactor,
                format_args!("waits {} ms at most {what}", timeout.as_millis()),
            ),
            None => self
                .trace
                .say(Step::Reactor, format_args!("waits for an event {what}")),
        }
    }

    // ANCHOR: uring_turn
    /// The ring's part of a turn, before the wait: submit every operation queued since
    /// the last turn (one `io_uring_enter` for all), then take the completions already in.
    /// Returns how many wakers that added to `woken`.
    #[cfg(target_os = "linux")]
    fn submit_and_reap(&mut self, woken: &mut Vec<Waker>) -> usize {
        let Some(ring) = &mut self.uring else {
            return 0;
        };
        if let Err(error) = ring.submit() {
            // Entries stay queued; the next turn submits them again.
            eprintln!("warning: io_uring_enter failed, submitting next turn: {error}");
        }
        self.reap(woken)
    }

    /// Moves the ring's completions into `woken`; returns how many wakers it added.
    #[cfg(target_os = "linux")]
    fn reap(&mut self, woken: &mut Vec<Waker>) -> usize {
        let Some(ring) = &mut self.uring else {
            return 0;
        };
        let before = woken.len();
        let completions = ring.reap(woken);
        let waiters = woken.len() - before;
        if completions > 0 {
            self.trace.say(
                Step::Event,
                format_args!("ring: {completions} completion(s), wake {waiters} waiter(s)"),
            );
        }
        waiters
    }
    // ANCHOR_END: uring_turn
}

impl Source {
    fn ready(&mut self, direction: Direction) -> &mut bool {
        match direction {
            Direction::Read => &mut self.readable,
            Direction::Write => &mut self.writable,
        }
    }

    fn waiters(&mut self, direction: Direction) -> &mut Waiters {
        match direction {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}
