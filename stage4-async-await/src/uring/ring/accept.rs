//! Multishot accepts in the ring: one submission, a completion per connection, kept in
//! the operation's slot until the listener takes them.

use std::collections::VecDeque;
use std::os::fd::{FromRawFd, OwnedFd};
use std::task::{Poll, Waker};

use io_uring::{opcode, types};

use super::{Held, Op, Ring, State};
use crate::slab::Key;

// ANCHOR: accepts
/// The connections a multishot accept has completed and its listener has not taken yet.
#[derive(Debug, Default)]
pub(crate) struct Accepts {
    /// New sockets' fds, or `-errno` (an error ends the multishot).
    pub(super) results: VecDeque<i32>,
    /// The waker of the `accept` waiting for the next one.
    pub(super) waker: Option<Waker>,
    /// The kernel said no more will come (no `IORING_CQE_F_MORE`): the listener arms a
    /// new one once it has taken these.
    pub(super) ended: bool,
    /// The listener is gone: close what still comes, free the slot at the end.
    pub(super) abandoned: bool,
    /// A cancel was sent because nobody takes the connections as fast as they come.
    pub(super) paused: bool,
}

/// How many accepted connections may wait for the listener before the multishot accept
/// is cancelled: beyond that, the kernel's listen queue keeps them, as it does for a
/// server that does not call `accept`, instead of our memory and descriptors.
pub(super) const MAX_WAITING_ACCEPTS: usize = 128;
// ANCHOR_END: accepts

impl Ring {
    // ANCHOR: accept_multi
    /// Arms a multishot accept on the listening socket `fd`: every connection the kernel
    /// accepts from now on completes in the returned slot (see [`Ring::poll_accept`]).
    /// The fd must stay open until the slot ends (the listener abandons it first).
    pub(crate) fn start_accepting(&mut self, fd: i32) -> Key {
        self.accepting += 1;
        let key = self.ops.next_key();
        let inserted = self.ops.insert(Op {
            key,
            state: State::Accepting(Accepts::default()),
            held: Held::Nothing,
        });
        debug_assert_eq!(inserted, key);
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(key.to_usize() as u64);
        // SAFETY: the entry points at no memory; the fd is the listener's, open until
        // the listener abandons this slot.
        unsafe { self.push(&entry) };
        key
    }

    /// The next connection of the multishot accept in `key`: `Some(fd)` (or
    /// `Some(-errno)`), or `None` once it has ended and every result was taken (the
    /// slot is then freed, and the listener arms a new one). `Pending` leaves `waker`.
    pub(crate) fn poll_accept(&mut self, key: Key, waker: &Waker) -> Poll<Option<i32>> {
        let Some(Op {
            state: State::Accepting(accepts),
            ..
        }) = self.ops.get_mut(key)
        else {
            return Poll::Ready(None);
        };
        if let Some(result) = accepts.results.pop_front() {
            return Poll::Ready(Some(result));
        }
        if accepts.ended {
            self.ops.remove(key);
            self.accepting -= 1;
            return Poll::Ready(None);
        }
        match &accepts.waker {
            Some(old) if old.will_wake(waker) => {}
            _ => accepts.waker = Some(waker.clone()),
        }
        Poll::Pending
    }
    // ANCHOR_END: accept_multi
}

/// Closes a connection a multishot accept completed for a listener that is gone.
pub(super) fn close_accepted(result: i32) {
    if result >= 0 {
        // SAFETY: the kernel has just created this fd for us, and nothing else knows it.
        drop(unsafe { OwnedFd::from_raw_fd(result) });
    }
}
