//! The article's `Task`: a future the executor owns, the waker that queues it again, and
//! the wrapper that hands its output, or its panic, to the [`JoinHandle`].
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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake};

use pin_project_lite::pin_project;

use crate::executor::Shared;
use crate::join_handle::{Completion, JoinError};
use crate::slab::Key;

// ANCHOR: task
/// A spawned task: its future, boxed so that tasks of every type fit in one slab, and
/// its waker, made once and reused for every poll.
pub(crate) struct Task {
    /// `None` while the task is being polled (it is out of the slab for that time, so the
    /// task itself may spawn others).
    pub(crate) future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    pub(crate) waker: Arc<TaskWaker>,
    pub(crate) id: u64,
    pub(crate) spawned_at: &'static Location<'static>,
}
// ANCHOR_END: task

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

// ANCHOR: task_waker
/// woken a thousand times before it runs is queued once.
#[derive(Debug)]
pub(crate) struct TaskWaker {
    pub(crate) key: Key,
    pub(crate) scheduled: AtomicBool,
    pub(crate) shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if self.shared.trace.is_on() {
                self.shared.trace_wake(self.key);
            }
            self.shared.push(self.key);
        }
    }
}
// ANCHOR_END: task_waker

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
        assert!(std::mem::size_of::<Task>() <= 40);
        assert!(std::mem::size_of::<TaskWaker>() <= 24);
        assert!(std::mem::size_of::<JoinState<()>>() <= 24);
    }
}
