//! The timers: every pending deadline in one queue, and (on Linux) the precise wake-up
//! that ends the reactor's wait on time. A driver part: the [reactor](crate::reactor)
//! owns one of each, and nothing here knows about tasks or futures, only [`Waker`]s.
//!
//! A [`Sleep`](crate::time::Sleep) sets no OS timer of its own: it leaves its deadline and
//! waker here, and the reactor waits in `epoll_wait` until the earliest deadline of all.
//! That is why a million sleeping tasks cost a million queue entries and no system call
//! each.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::slab::{Key, Slab};

// ANCHOR: timers
/// Pending timers: their deadlines in two queues, and a slab of wakers.
///
/// Most programs set timers of one duration (a sleep, a timeout per request), so
/// deadlines mostly arrive in order: those go to a FIFO queue, O(1) to push and to pop,
/// 16 bytes each (deadline, key), and only the out-of-order ones pay a min-heap's
/// O(log n) and a sequence number that keeps equal deadlines in the order they were set.
///
/// Cancelling (dropping a `Sleep`) only empties the timer's slab slot; its queue entry is
/// skipped when it surfaces. A million timers cost a million 16-byte entries and 24-byte
/// slots, and no system call each: the reactor asks the OS for one wake-up, at the
/// earliest deadline.
#[derive(Debug)]
pub(crate) struct Timers {
    in_order: VecDeque<(u64, Key)>,
    heap: BinaryHeap<Reverse<(u64, u64, Key)>>,
    /// The latest deadline ever queued in order: a deadline before it goes to the heap.
    /// It never goes down while the heap holds entries, so a timer in order was always
    /// set before a heap timer with the same deadline, and fires first.
    watermark: u64,
    wakers: Slab<Waker>,
    next_sequence: u64,
    /// Deadlines are kept as nanoseconds since `epoch`: 8 bytes instead of an `Instant`'s 16.
    epoch: Instant,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            in_order: VecDeque::new(),
            heap: BinaryHeap::new(),
            watermark: 0,
            wakers: Slab::new(),
            next_sequence: 0,
            epoch: Instant::now(),
        }
    }

    /// Sets a timer that will wake `waker` at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: &Waker) -> Key {
        let key = self.wakers.insert(waker.clone());
        let deadline = self.nanos(deadline);
        if self.heap.is_empty() && self.in_order.is_empty() {
            self.watermark = 0; // nothing queued: start afresh
        }
        if deadline >= self.watermark {
            self.watermark = deadline;
            self.in_order.push_back((deadline, key));
        } else {
            self.heap.push(Reverse((deadline, self.next_sequence, key)));
            self.next_sequence += 1;
        }
        // Lazily cancelled entries pile up when many timers are dropped long before
        // their deadline (a `timeout` around fast requests): sweep them out now and then.
        let entries = self.in_order.len() + self.heap.len();
        if entries > 1024 && entries > 2 * self.wakers.len() {
            let wakers = &self.wakers;
            self.heap
                .retain(|Reverse((_, _, key))| wakers.contains(*key));
            self.in_order.retain(|(_, key)| wakers.contains(*key));
        }
        key
    }
    // ANCHOR_END: timers

    fn nanos(&self, instant: Instant) -> u64 {
        // 2^64 ns is 584 years: a later deadline saturates, which is the same in practice.
        let since = instant.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
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

    /// The earliest entry, cancelled or not, and whether it is in the FIFO queue. On
    /// equal deadlines the FIFO's comes first: it was set first (see `watermark`).
    fn first(&self) -> Option<(u64, Key, bool)> {
        match (self.in_order.front(), self.heap.peek()) {
            (Some(&(a, _)), Some(&Reverse((b, _, key)))) if b < a => Some((b, key, false)),
            (Some(&(a, key)), _) => Some((a, key, true)),
            (None, Some(&Reverse((b, _, key)))) => Some((b, key, false)),
            (None, None) => None,
        }
    }

    fn pop_first(&mut self, in_order: bool) {
        if in_order {
            self.in_order.pop_front();
        } else {
            self.heap.pop();
        }
    }

    /// The earliest deadline of a timer still pending.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some((deadline, key, in_order)) = self.first() {
            if self.wakers.contains(key) {
                return Some(self.epoch + Duration::from_nanos(deadline));
            }
            self.pop_first(in_order); // cancelled
        }
        None
    }

    /// Removes one timer whose deadline is `<= now`; returns its key and its waker.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(Key, Waker)> {
        let now = self.nanos(now);
        while let Some((deadline, key, in_order)) = self.first() {
            if deadline > now {
                return None;
            }
            self.pop_first(in_order);
            if let Some(waker) = self.wakers.remove(key) {
                return Some((key, waker));
            }
        }
        None
    }

    /// How many timers are pending.
    pub(crate) fn len(&self) -> usize {
        self.wakers.len()
    }
}

// ANCHOR: precise_wake
/// A wake-up to the nanosecond for the reactor's wait. `epoll_wait` counts its timeout in
/// whole milliseconds and mio rounds it up, so a wait for a deadline 0.3 ms away lasts
/// 1 ms: half a millisecond late on average, 5% of a 10 ms sleep, on every round of the
/// benchmark. A `timerfd` set to the deadline, registered with epoll, ends the wait on
/// time (smol's `polling` crate does the same); the rounded timeout stays as a backstop.
///
/// NB: Linux only. kqueue takes its timeout as a `timespec`, already to the nanosecond.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct PreciseWake {
    timer: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
impl PreciseWake {
    /// A timerfd, registered with `registry` under `token`; its events wake the reactor
    /// and nothing else (the token names no socket).
    pub(crate) fn new(registry: &mio::Registry, token: mio::Token) -> std::io::Result<PreciseWake> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain system call; a non-negative result is a new fd that we own.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let timer = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        registry.register(
            &mut mio::unix::SourceFd(&timer.as_raw_fd()),
            token,
            mio::Interest::READABLE,
        )?;
        Ok(PreciseWake { timer })
    }

    /// Sets the timer to fire `after` from now. Setting it again replaces the last
    /// time and clears an expiry nobody read, so the next expiry is a new edge.
    pub(crate) fn set(&self, after: Duration) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // Zero would disarm the timer: one nanosecond is "now".
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                tv_nsec: after.subsec_nanos().into(),
            },
        };
        // SAFETY: a valid timerfd we own, a valid itimerspec, no old value asked for.
        let status = unsafe {
            libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut())
        };
        if status != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
// ANCHOR_END: precise_wake

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets timers at `start + ms` for each of `order`, numbered by position, and
    /// returns the numbers in the order they fire, ms by ms.
    fn fire_order(timers: &mut Timers, start: Instant, order: &[u64]) -> Vec<usize> {
        let at = |ms: u64| start + Duration::from_millis(ms);
        let keys: Vec<Key> = order
            .iter()
            .map(|&ms| timers.insert(at(ms), Waker::noop()))
            .collect();
        let mut fired = Vec::new();
        for ms in 0..=order.iter().copied().max().unwrap_or(0) {
            while let Some((key, _)) = timers.pop_expired(at(ms)) {
                fired.push(keys.iter().position(|&k| k == key).unwrap());
            }
        }
        fired
    }

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
    fn cancelled_entries_are_swept_from_the_queues() {
        let mut timers = Timers::new();
        let later = Instant::now() + Duration::from_secs(3600);
        for _ in 0..10_000 {
            let key = timers.insert(later, Waker::noop());
            timers.cancel(key);
        }
        assert!(timers.in_order.len() + timers.heap.len() <= 2048);
    }

    #[test]
    fn in_order_and_out_of_order_deadlines_fire_in_deadline_order() {
        let mut timers = Timers::new();
        // 5, 10, 10, 20 go to the FIFO queue; 7 and 1 to the heap.
        let fired = fire_order(&mut timers, Instant::now(), &[5, 10, 7, 10, 1, 20]);
        assert_eq!(fired, [4, 0, 2, 1, 3, 5]);
    }

    #[test]
    fn equal_deadlines_fire_in_the_order_they_were_set() {
        let mut timers = Timers::new();
        // 10 (FIFO), 20 (FIFO), 5 (heap), 5 (heap), 10 (heap, after the first 10).
        let fired = fire_order(&mut timers, Instant::now(), &[10, 20, 5, 5, 10]);
        assert_eq!(fired, [2, 3, 0, 4, 1]);
    }

    #[test]
    fn equal_deadlines_keep_their_order_after_a_sweep_shortens_the_fifo_queue() {
        let mut timers = Timers::new();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let soon = timers.insert(at(5), Waker::noop()); // FIFO
        let long = timers.insert(at(100), Waker::noop()); // FIFO
        let first = timers.insert(at(10), Waker::noop()); // heap: before 100
        timers.cancel(long);
        // Timers set and dropped at once (a `timeout` around fast requests) until a
        // sweep takes them and `long` out: the FIFO queue is back to `soon` alone.
        while timers.in_order.len() > 1 {
            let key = timers.insert(at(50), Waker::noop());
            timers.cancel(key);
        }
        // A second timer at 10 ms must still fire after the first.
        let second = timers.insert(at(10), Waker::noop());
        let fired: Vec<Key> = std::iter::from_fn(|| timers.pop_expired(at(10)))
            .map(|(key, _)| key)
            .collect();
        assert_eq!(fired, [soon, first, second]);
    }
}
