//! The future of one io_uring operation: the bridge between a task and the ring.
//!
//! The ring ([`super::ring`], a driver part under the reactor) keeps each operation in a
//! slot from submission to completion. An [`OpFuture`] names its slot: polled, it asks the
//! ring for the outcome or leaves its waker there; dropped early, it abandons the slot to
//! the ring, which frees it (and the buffer the kernel may still be writing into) only when
//! the completion comes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use io_uring::squeue;

use super::ring::Held;
use crate::context::{try_with_current, with_current};
use crate::slab::Key;
use crate::trace::Waiting;

// ANCHOR: op_future
/// The future of one submitted operation: `(result, what the kernel held)` once the
/// completion is in. Dropping it early abandons the operation (see [`Ring::abandon`](super::ring::Ring::abandon)).
#[derive(Debug)]
pub(crate) struct OpFuture {
    key: Key,
    loop_id: u32,
    done: bool,
    /// What dropping it early does to the operation.
    on_drop: OnDrop,
}

/// What becomes of an operation whose future is dropped before its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDrop {
    /// Cancelled, and its slot freed at its completion: nobody will want its result.
    Abandon,
    /// Kept for its stream to take over (see `Ring::orphan`), cancelled or not.
    Keep {
        /// Ask the kernel to stop it (a read), or let it run to its end (a write).
        cancel: bool,
    },
}

impl OpFuture {
    /// A new future for the operation in slot `key`, which a dropped future left to its
    /// stream (see [`OnDrop::Keep`]).
    pub(crate) fn adopt(key: Key, loop_id: u32, on_drop: OnDrop) -> OpFuture {
        OpFuture {
            key,
            loop_id,
            done: false,
            on_drop,
        }
    }

    /// Sets what dropping this future early does to its operation.
    pub(crate) fn on_drop(mut self, on_drop: OnDrop) -> OpFuture {
        self.on_drop = on_drop;
        self
    }

    /// The operation's slot in the ring.
    pub(crate) fn key(&self) -> Key {
        self.key
    }

    /// Whether the operation's outcome has been collected.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }
}

/// Submits the entry that `entry` builds from the `held` it points into, on the current
/// loop's ring. Gives `held` back if the ring is unavailable.
///
/// # Safety
///
/// Every pointer in the entry must point into the `Held` given to `entry` (or be an fd
/// that stays open until the completion): the slot keeps that alive, nothing else.
pub(crate) unsafe fn submit_op(
    what: &str,
    held: Held,
    entry: impl FnOnce(&mut Held) -> squeue::Entry,
) -> Result<OpFuture, (io::Error, Held)> {
    with_current(what, |event_loop| {
        let mut reactor = event_loop.reactor();
        let ring = match reactor.uring() {
            Ok(ring) => ring,
            Err(error) => return Err((error, held)),
        };
        // SAFETY: the caller's promise: the entry points into `held`.
        let key = unsafe { ring.start(held, entry) };
        Ok(OpFuture {
            key,
            loop_id: event_loop.id,
            done: false,
            on_drop: OnDrop::Abandon,
        })
    })
}

impl Future for OpFuture {
    type Output = (i32, Held);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(i32, Held)> {
        let key = self.key;
        let poll = with_current("an io_uring operation", |event_loop| {
            assert!(
                event_loop.id == self.loop_id,
                "an io_uring operation must be awaited on the event loop that submitted it"
            );
            // A task out of budget yields before it collects (see `consume_budget`).
            ready!(event_loop.consume_budget(cx));
            let mut reactor = event_loop.reactor();
            let ring = reactor.uring().expect("the ring that took the operation");
            let poll = ring.poll_op(key, cx.waker());
            if poll.is_pending() {
                event_loop.refund_budget(); // no progress, no cost
                event_loop.trace_waker(Waiting::Operation(key));
            }
            poll
        });
        self.done = poll.is_ready();
        poll
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        try_with_current(|event_loop| {
            if event_loop.id == self.loop_id
                && let Ok(ring) = event_loop.reactor().uring()
            {
                match self.on_drop {
                    OnDrop::Abandon => ring.abandon(self.key),
                    OnDrop::Keep { cancel } => ring.orphan(self.key, cancel),
                }
            }
        });
        // No loop here (the loop is gone): the ring's own drop waited for the kernel.
    }
}
// ANCHOR_END: op_future

/// A completion's result as `io::Result`: `-errno` is an error, anything else a count
/// (or a file descriptor).
pub(crate) fn check(result: i32) -> io::Result<u32> {
    u32::try_from(result).map_err(|_| io::Error::from_raw_os_error(-result))
}
