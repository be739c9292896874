//! Starting tasks: [`spawn`] (and [`spawn_blocking`] for a call that blocks), stopping
//! them ([`JoinHandle::abort`]), and [`yield_now`], which gives the loop a turn.

use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::task::Poll;

use super::{CURRENT, waker};
use crate::join_handle::{AbortHandle, JoinError, JoinHandle};

// ANCHOR: spawn
/// Starts `future` as a new task on this thread's event loop and returns a handle to
/// its result. The task runs whether or not the handle is awaited; dropping the handle
/// detaches it.
///
/// # Panics
///
/// Outside [`block_on`](crate::block_on).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let spawned_at = Location::caller();
    CURRENT.with_borrow(|current| match current {
        Some(inner) => inner.spawn(future, spawned_at),
        None => panic!(
            "spawn must be called from a future running inside block_on (no event loop \
             runs on this thread)"
        ),
    })
}
// ANCHOR_END: spawn

// ANCHOR: abort
// The executor's half of `JoinHandle` and `AbortHandle`: aborting needs the task's slot.
impl<T> JoinHandle<T> {
    /// Aborts the task: the executor drops its future the next time the task comes up
    /// in the ready queue (abort queues it), instead of polling it. Its destructors run
    /// then (its sockets close, its timers are cancelled), and awaiting this handle gives
    /// [`JoinError::Cancelled`]. Aborting a finished task does nothing.
    ///
    /// NB: as in tokio, a task is only ever stopped between two polls: a task that
    /// blocks the thread inside one poll cannot be aborted until that poll returns.
    pub fn abort(&self) {
        if let Some(word) = self.running_task() {
            abort_task(word);
        }
    }
}

impl AbortHandle {
    /// Aborts the task, as [`JoinHandle::abort`].
    pub fn abort(&self) {
        if let Some(word) = self.running_task() {
            abort_task(word);
        }
    }
}

/// Aborts the task a waker word names. It runs (its handle says so), so its loop runs
/// on this thread (a handle never leaves it) and the slot the word names is still its own.
fn abort_task(word: u64) {
    CURRENT.with_borrow(|current| {
        if let Some(inner) = current
            && inner.slot.get() == Some(waker::loop_slot(word))
        {
            inner.abort(word);
        }
    });
}
// ANCHOR_END: abort

// ANCHOR: spawn_blocking
/// Runs `f` on a thread of its own and returns a future of its result: the way to call
/// something that blocks (a blocking library, a long computation) without blocking the
/// loop. The thread's result comes back through a futures-crate oneshot channel, whose
/// waker wakes the loop from that thread.
///
/// NB: one OS thread per call, to keep it short; tokio keeps a pool of them instead.
pub fn spawn_blocking<T, F>(f: F) -> impl Future<Output = Result<T, JoinError>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (sender, receiver) = futures::channel::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("spawn_blocking".into())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f)).map_err(JoinError::panicked);
            let _ = sender.send(outcome); // the receiver may be gone: nobody waits
        });
    async move {
        if let Err(error) = started {
            return Err(JoinError::NoThread(error.to_string().into()));
        }
        // A dropped sender without a value cannot happen: the thread always sends.
        receiver.await.unwrap_or(Err(JoinError::Cancelled))
    }
}
// ANCHOR_END: spawn_blocking

/// Gives the loop a turn: the current task goes to the back of the ready queue.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}
