//! The article's `Task`: a future the executor owns, in a slot with its number and its
//! `scheduled` flag, and the wrapper that hands its output, or its panic, to the
//! [`JoinHandle`]. The waker that queues it again is in the [executor](crate::executor).
//!
//! Read stage 3's `task.rs` first. There a `Task` resumed a generator, and when the
//! generator yielded a future, the task registered its next step as that future's
//! done-callback. Here the compiler wrote the generator (the task's `Future`), the next
//! step is one more `poll`, and the done-callback is a [`Waker`]: whoever the future
//! waits on (a socket, a timer, another task) calls it, and the task is queued again.
//!
//! [`JoinHandle`]: crate::JoinHandle
//! [`Waker`]: std::task::Waker

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::join_handle::{Completion, JoinError};

// ANCHOR: task
/// A spawned task, in its slot of the executor's slab: its future, boxed so that tasks of
/// every type fit in one slab, its number, and whether it is in the ready queue.
pub(crate) struct Task {
    /// While the task is being polled, a placeholder: the future is out of the slab for
    /// that time, so the task itself may spawn others.
    pub(crate) future: Pin<Box<dyn Spawned>>,
    /// The task's number (from 1, in spawn order) in the low 62 bits, the `aborted`
    /// flag and the `scheduled` flag in the top two: one word for all three keeps a
    /// slot at 24 bytes.
    word: u64,
}

impl Task {
    pub(crate) fn new(future: Pin<Box<dyn Spawned>>, id: u64) -> Task {
        Task {
            future,
            word: id | SCHEDULED, // it is about to be queued
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.word & !(SCHEDULED | ABORTED)
    }

    /// Sets the `scheduled` flag and returns what it was: a task woken a thousand
    /// times before it runs is queued once.
    pub(crate) fn set_scheduled(&mut self, scheduled: bool) -> bool {
        let was = self.word & SCHEDULED != 0;
        self.word = (self.word & !SCHEDULED) | if scheduled { SCHEDULED } else { 0 };
        was
    }

    /// Marks the task aborted ([`JoinHandle::abort`](crate::JoinHandle::abort)): the
    /// executor drops it, instead of polling it, the next time it comes up.
    pub(crate) fn abort(&mut self) {
        self.word |= ABORTED;
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.word & ABORTED != 0
    }
}

const SCHEDULED: u64 = 1 << 63;
const ABORTED: u64 = 1 << 62;

/// A task's future, and where it was spawned (for warnings and `--trace`): kept in the
/// box, where it fits in what the allocator rounds up anyway.
pub(crate) trait Spawned: Future<Output = ()> {
    fn spawned_at(&self) -> &'static Location<'static>;
}
// ANCHOR_END: task

/// What a task's slot holds while its future is out being polled.
pub(crate) struct Polling;

impl Future for Polling {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Spawned for Polling {
    fn spawned_at(&self) -> &'static Location<'static> {
        Location::caller()
    }
}

/// Which task is running, for warnings and panic messages.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo {
    /// The task's number, in spawn order from 1; `None` for the future given to `block_on`.
    pub id: Option<u64>,
    /// Where `spawn` (or `block_on`) was called.
    pub spawned_at: &'static Location<'static>,
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "task {id}, spawned at {},", self.spawned_at),
            None => write!(f, "the block_on future at {}", self.spawned_at),
        }
    }
}

/// The short name `--trace` uses: `task 2`, or `main` for the `block_on` future.
pub(crate) struct Name(pub(crate) Option<u64>);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "task {id}"),
            None => f.write_str("main"),
        }
    }
}

// ANCHOR: task_future
pin_project! {
    /// What a spawned task runs: the user's future, then the hand-over of its output.
    pub(crate) struct TaskFuture<F: Future> {
        #[pin]
        pub(crate) future: F,
        pub(crate) completion: Completion<F::Output>,
        pub(crate) spawned_at: &'static Location<'static>,
    }
}

impl<F: Future> Spawned for TaskFuture<F> {
    fn spawned_at(&self) -> &'static Location<'static> {
        self.spawned_at
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // A panic ends this task only: it is caught here, at the task's edge, and handed
        // to the JoinHandle; the loop and the other tasks go on.
        match catch_unwind(AssertUnwindSafe(|| this.future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.completion.complete(Ok(output));
                Poll::Ready(())
            }
            Err(payload) => {
                this.completion.complete(Err(JoinError::panicked(payload)));
                Poll::Ready(())
            }
        }
    }
}
// ANCHOR_END: task_future

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join_handle::JoinState;

    /// The book's per-task table counts on these; a change should be a decision.
    #[test]
    fn the_parts_of_a_task_stay_small() {
        assert!(std::mem::size_of::<Task>() <= 24);
        assert_eq!(std::mem::size_of::<Option<Task>>(), 24);
        assert!(std::mem::size_of::<JoinState<()>>() <= 24);
    }
}
