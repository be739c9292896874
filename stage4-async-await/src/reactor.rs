//! The reactor: it knows *when* a task can make progress, and wakes it.
//!
//! Two kinds of "when": a socket became readable or writable (mio's `Poll`, epoll on
//! Linux), or a deadline passed (a timer queue). The executor asks it to wait, with
//! `Reactor::wait`, only when no task is ready to run; the wait ends at the next I/O
//! event, the earliest deadline, or a wake from another thread, whichever comes first.
//!
//! What stage 3's `EventLoop` did with callbacks, this does with [`Waker`]s: a future that
//! cannot progress leaves its waker here, and the reactor calls it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::task::Waker;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::slab::{Key, Slab};

/// The token of the `mio::Waker` through which other threads wake the loop.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Which readiness a future waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

// ANCHOR: source
/// The wakers waiting on one socket: at most one reader and one writer (our `TcpStream`
/// takes `&mut self` to read or write, so there is never a second one).
#[derive(Debug, Default)]
struct Source {
    reader: Option<Waker>,
    writer: Option<Waker>,
}
// ANCHOR_END: source

/// mio's `Poll` with the wakers of every registered socket, and the timers.
#[derive(Debug)]
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    sources: Slab<Source>,
    pub(crate) timers: Timers,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            sources: Slab::new(),
            timers: Timers::new(),
        })
    }

    pub(crate) fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// How many sockets are registered.
    pub(crate) fn sources(&self) -> usize {
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

    /// Leaves `waker` to be called when the socket `key` is ready in `direction`.
    pub(crate) fn set_waker(&mut self, key: Key, direction: Direction, waker: &Waker) {
        if let Some(source) = self.sources.get_mut(key) {
            let slot = match direction {
                Direction::Read => &mut source.reader,
                Direction::Write => &mut source.writer,
            };
            match slot {
                Some(old) if old.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
    }

    // ANCHOR: wait
    /// Waits for I/O events for at most `timeout` (`None`: until one arrives) and moves
    /// the wakers of the sockets that became ready into `woken`. The caller wakes them
    /// once this `Reactor` is no longer borrowed.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>, woken: &mut Vec<Waker>) {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal arrived: return, and let the executor look around and come back.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return,
            Err(error) => panic!("epoll_wait failed, the event loop cannot go on: {error}"),
        }
        for event in &self.events {
            if event.token() == WAKER_TOKEN {
                continue; // another thread woke us; its task is already in the ready queue
            }
            // A stale token (socket closed since) finds no source: nothing to wake.
            let Some(source) = self.sources.get_mut(Key::from_usize(event.token().0)) else {
                continue;
            };
            // Errors and hang-ups wake both sides: the next read or write reports them.
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                woken.extend(source.reader.take());
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                woken.extend(source.writer.take());
            }
        }
    }
    // ANCHOR_END: wait
}

// ANCHOR: timers
/// Pending timers: a min-heap of `(deadline, sequence, key)` and a slab of wakers.
///
/// The sequence number keeps timers with equal deadlines apart and fires them in the
/// order they were set. Cancelling (dropping a `Sleep`) only empties the timer's slab
/// slot; its heap entry is skipped when it surfaces. A million timers cost a million
/// 32-byte heap entries and 24-byte slots, and no system call each: the reactor asks the
/// OS for one wake-up, at the earliest deadline.
#[derive(Debug)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Key)>>,
    wakers: Slab<Waker>,
    next_sequence: u64,
}

impl Timers {
    fn new() -> Timers {
        Timers {
            heap: BinaryHeap::new(),
            wakers: Slab::new(),
            next_sequence: 0,
        }
    }

    /// Sets a timer that will wake `waker` at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: &Waker) -> Key {
        let key = self.wakers.insert(waker.clone());
        self.heap.push(Reverse((deadline, self.next_sequence, key)));
        self.next_sequence += 1;
        // Lazily cancelled entries pile up when many timers are dropped long before
        // their deadline (a `timeout` around fast requests): sweep them out now and then.
        if self.heap.len() > 1024 && self.heap.len() > 2 * self.wakers.len() {
            let wakers = &self.wakers;
            self.heap
                .retain(|Reverse((_, _, key))| wakers.contains(*key));
        }
        key
    }

    /// Updates the waker of a pending timer; `false` if it has fired or was cancelled.
    pub(crate) fn update(&mut self, key: Key, waker: &Waker) -> bool {
        match self.wakers.get_mut(key) {
            Some(old) => {
                if !old.will_wake(waker) {
                    *old = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    /// Cancels a timer (nothing happens if it already fired).
    pub(crate) fn cancel(&mut self, key: Key) {
        self.wakers.remove(key);
    }

    /// The earliest deadline of a timer still pending.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, _, key))) = self.heap.peek() {
            if self.wakers.contains(*key) {
                return Some(*deadline);
            }
            self.heap.pop(); // cancelled
        }
        None
    }

    /// Removes and returns the waker of one timer whose deadline is `<= now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Waker> {
        while let Some(Reverse((deadline, _, key))) = self.heap.peek() {
            if *deadline > now {
                return None;
            }
            let key = *key;
            self.heap.pop();
            if let Some(waker) = self.wakers.remove(key) {
                return Some(waker);
            }
        }
        None
    }
}
// ANCHOR_END: timers

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_timers_neither_fire_nor_set_the_deadline() {
        let mut timers = Timers::new();
        let now = Instant::now();
        let waker = Waker::noop();
        let early = timers.insert(now + Duration::from_millis(1), waker);
        let late = timers.insert(now + Duration::from_millis(2), waker);
        timers.cancel(early);
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_millis(2)));
        assert!(timers.pop_expired(now + Duration::from_millis(1)).is_none());
        assert!(timers.pop_expired(now + Duration::from_millis(2)).is_some());
        assert!(!timers.update(late, waker), "a fired timer is gone");
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn cancelled_entries_are_swept_from_the_heap() {
        let mut timers = Timers::new();
        let later = Instant::now() + Duration::from_secs(3600);
        for _ in 0..10_000 {
            let key = timers.insert(later, Waker::noop());
            timers.cancel(key);
        }
        assert!(timers.heap.len() <= 2048, "{}", timers.heap.len());
    }
}
