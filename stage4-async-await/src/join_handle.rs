//! [`JoinHandle`]: a spawned task's result, as a future (the article's `Task` is
//! awaitable the same way), and [`JoinError`], why there is none.
//!
//! The task and its handle share one `Rc<Cell<JoinState>>` on the loop's thread: the
//! task leaves its outcome there and wakes whoever awaits the handle.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

// ANCHOR: join_handle
/// The result of a spawned task, as a future: the article's `Task` is awaitable the same
/// way. Output: `Ok(value)`, or a [`JoinError`] if the task panicked or was cancelled.
#[must_use = "a JoinHandle does nothing unless awaited; dropping it detaches the task"]
pub struct JoinHandle<T> {
    state: Rc<Cell<JoinState<T>>>,
    /// The task's waker word: which loop, which slot. [`JoinHandle::abort`] finds the task
    /// through it, while the state says the task still runs (so the slot is still its own).
    task: u64,
}

/// Where a task's result is: shared by the task and its `JoinHandle`, one thread only.
pub(crate) enum JoinState<T> {
    /// The task runs; the waker of whoever awaits the handle, once someone does.
    Running(Option<Waker>),
    /// The task is done; the result waits for the handle.
    Finished(Result<T, JoinError>),
    /// The handle has returned the result.
    Taken,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.state.replace(JoinState::Taken) {
            JoinState::Finished(outcome) => Poll::Ready(outcome),
            // Replace rather than keep the first waker: the joiner may have moved to
            // another task (a JoinHandle inside a `select`, say).
            JoinState::Running(_) => {
                self.state.set(JoinState::Running(Some(cx.waker().clone())));
                Poll::Pending
            }
            JoinState::Taken => panic!("JoinHandle polled after it returned its result"),
        }
    }
}
// ANCHOR_END: join_handle

/// A new task's two ends: the handle its spawner keeps, and the completion it keeps.
/// `task` is the task's waker word, for [`JoinHandle::abort`].
pub(crate) fn join_pair<T>(task: u64) -> (JoinHandle<T>, Completion<T>) {
    let state = Rc::new(Cell::new(JoinState::Running(None)));
    let completion = Completion(Rc::clone(&state));
    (JoinHandle { state, task }, completion)
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished (its result may be waiting in the handle).
    pub fn is_finished(&self) -> bool {
        !self.state.is_running()
    }

    /// The task to abort, while it runs: its waker word. `None` once it has finished,
    /// when its slot may belong to another task.
    pub(crate) fn running_task(&self) -> Option<u64> {
        self.state.is_running().then_some(self.task)
    }

    /// A handle that can abort the task without waiting for its result: it can go to
    /// another task (on the same thread: tasks here are never sent across threads).
    pub fn abort_handle(&self) -> AbortHandle
    where
        T: 'static,
    {
        AbortHandle {
            state: Rc::clone(&self.state) as Rc<dyn Running>,
            task: self.task,
        }
    }
}

/// Aborts a task without its result: see [`JoinHandle::abort_handle`] and
/// [`AbortHandle::abort`].
#[derive(Clone)]
pub struct AbortHandle {
    state: Rc<dyn Running>,
    task: u64,
}

impl AbortHandle {
    /// See [`JoinHandle::running_task`].
    pub(crate) fn running_task(&self) -> Option<u64> {
        self.state.is_running().then_some(self.task)
    }

    /// Whether the task has finished (or was aborted and dropped).
    pub fn is_finished(&self) -> bool {
        !self.state.is_running()
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Whether a task still runs, whatever its output type (for [`AbortHandle`]).
trait Running {
    fn is_running(&self) -> bool;
}

impl<T> Running for Cell<JoinState<T>> {
    fn is_running(&self) -> bool {
        let state = self.replace(JoinState::Taken);
        let running = matches!(state, JoinState::Running(_));
        self.set(state);
        running
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Hands the task's outcome to its `JoinHandle`; if the task is dropped before it
/// finished (aborted, or its loop stopped), the handle gets [`JoinError::Cancelled`].
pub(crate) struct Completion<T>(Rc<Cell<JoinState<T>>>);

impl<T> Completion<T> {
    pub(crate) fn complete(&self, outcome: Result<T, JoinError>) {
        if let JoinState::Running(Some(joiner)) = self.0.replace(JoinState::Finished(outcome)) {
            joiner.wake();
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        match self.0.replace(JoinState::Taken) {
            JoinState::Running(joiner) => {
                self.0.set(JoinState::Finished(Err(JoinError::Cancelled)));
                if let Some(joiner) = joiner {
                    joiner.wake();
                }
            }
            done => self.0.set(done),
        }
    }
}

/// Why a task has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The task panicked; the panic message (or `Box<dyn Any>` for other payloads). A
    /// `Box<str>`, not a `String`, keeps every task's join state 8 bytes smaller.
    Panicked(Box<str>),
    /// The task was dropped before it finished: it was aborted
    /// ([`JoinHandle::abort`]), or its event loop stopped.
    Cancelled,
    /// [`spawn_blocking`](crate::spawn_blocking) could not start a thread; what the OS said.
    NoThread(Box<str>),
}

impl JoinError {
    /// Whether the task was cancelled (aborted, or dropped with its loop), as tokio's
    /// `JoinError::is_cancelled`.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    pub(crate) fn panicked(payload: Box<dyn Any + Send>) -> JoinError {
        let message: Box<str> = if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).into()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.as_str().into()
        } else {
            "Box<dyn Any>".into()
        };
        JoinError::Panicked(message)
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(message) => write!(f, "task panicked: {message}"),
            JoinError::Cancelled => f.write_str(
                "task cancelled before it finished (aborted, or its event loop stopped)",
            ),
            JoinError::NoThread(error) => {
                write!(f, "spawn_blocking could not start a thread: {error}")
            }
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for shared::Error {
    fn from(error: JoinError) -> shared::Error {
        shared::Error::Other(error.to_string())
    }
}
