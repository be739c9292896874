//! The context: what a future running on the loop can reach, through one thread-local.
//!
//! A future's `poll` gets a [`std::task::Context`], which carries only a `Waker`. A sleep
//! also needs the loop's timer queue and its clock; a socket needs the reactor to leave its
//! waker with. Those live here, in the `LoopContext` of the loop that runs on this
//! thread, which [`block_on`](crate::block_on) installs for as long as it runs (tokio's
//! `runtime/context.rs` plays the same part). The futures ([`crate::time`],
//! [`crate::net`], the io_uring operations) use this module and never the executor: all
//! they hand upward is a `Waker`.
//!
//! - `with_current`: the current loop's context; a clear panic outside `block_on`.
//! - `try_with_current`: the same, or `None` (for destructors, which may run anywhere).
//! - `enter`: installs a context, and refuses a second one on the same thread: a nested
//!   `block_on` would block the loop that runs it.

use std::cell::{Cell, RefCell, RefMut};
use std::rc::Rc;
use std::time::Instant;

use crate::reactor::Reactor;
use crate::task::{Name, TaskInfo};
use crate::trace::{Step, Trace, Waiting};

// ANCHOR: context
/// The parts of a running loop that its futures use.
pub(crate) struct LoopContext {
    /// Tells this loop's timer and socket keys from another loop's: a future moved to
    /// another loop must not touch that loop's reactor with a key that is not its own.
    pub(crate) id: u32,
    reactor: RefCell<Reactor>,
    /// The loop's clock, read once per turn of the loop (and again after it slept).
    /// Reading the real clock costs about 25 ns; read on every poll, it was 13% of a
    /// million tasks' time.
    clock: Cell<Instant>,
    /// The task being polled, for `--trace` lines and the nested-`block_on` refusal.
    running: Cell<Option<TaskInfo>>,
    /// `--trace`: print each step.
    pub(crate) trace: Trace,
}

thread_local! {
    /// The context of the loop running on this thread, if any.
    static CONTEXT: RefCell<Option<Rc<LoopContext>>> = const { RefCell::new(None) };
}
// ANCHOR_END: context

impl LoopContext {
    pub(crate) fn new(id: u32, reactor: Reactor, trace: Trace) -> LoopContext {
        LoopContext {
            id,
            reactor: RefCell::new(reactor),
            clock: Cell::new(Instant::now()),
            running: Cell::new(None),
            trace,
        }
    }

    /// Sets where `--trace` lines go, here and in the reactor (before the loop runs).
    pub(crate) fn set_trace(&mut self, trace: Trace) {
        self.trace = trace;
        self.reactor.get_mut().trace = trace;
    }

    /// The reactor: sockets, timers and the io_uring. Borrow it briefly, and never
    /// across a call to a waker (which may run code that needs it).
    pub(crate) fn reactor(&self) -> RefMut<'_, Reactor> {
        self.reactor.borrow_mut()
    }

    /// The loop's clock: when the reactor last returned. Timers compare deadlines with
    /// it; a deadline it has not seen pass yet fires at the next reactor turn.
    pub(crate) fn now(&self) -> Instant {
        self.clock.get()
    }

    /// Sets the loop's clock (the executor does, once per turn).
    pub(crate) fn set_now(&self, now: Instant) {
        self.clock.set(now);
    }

    /// Marks `task` as the one being polled; returns the one before (to put back).
    pub(crate) fn set_running(&self, task: Option<TaskInfo>) -> Option<TaskInfo> {
        self.running.replace(task)
    }

    /// Traces that the running task left its waker with the reactor.
    pub(crate) fn trace_waker(&self, on: Waiting) {
        if self.trace.is_on() {
            let task = Name(self.running.get().and_then(|info| info.id));
            let what = on.describe(self.trace);
            self.trace
                .say(Step::Waker, format_args!("{task} on {what}"));
        }
    }
}

/// Runs `f` with the context of this thread's loop; panics outside `block_on`, naming
/// `what`.
pub(crate) fn with_current<R>(what: &str, f: impl FnOnce(&LoopContext) -> R) -> R {
    CONTEXT.with_borrow(|current| match current {
        Some(context) => f(context),
        None => panic!(
            "{what} must be called from a future running inside block_on (no event loop \
             runs on this thread)"
        ),
    })
}

/// Like [`with_current`], but `None` when no loop runs here (for destructors).
pub(crate) fn try_with_current<R>(f: impl FnOnce(&LoopContext) -> R) -> Option<R> {
    CONTEXT
        .try_with(|current| {
            current
                .try_borrow()
                .ok()?
                .as_ref()
                .map(|context| f(context))
        })
        .ok()
        .flatten()
}

// ANCHOR: enter
/// Installs `context` as this thread's for as long as the guard lives.
///
/// # Panics
///
/// When a loop already runs on this thread: `main` (the `block_on` call) is nested in a
/// task or in the future of another `block_on`.
#[track_caller]
pub(crate) fn enter(context: Rc<LoopContext>, main: TaskInfo) -> Entered {
    CONTEXT.with_borrow_mut(|current| {
        if let Some(running) = current {
            let within = match running.running.get() {
                Some(task) => format!(" (in {})", task.to_string().trim_end_matches(',')),
                None => String::new(),
            };
            // NB: asyncio refuses too: "asyncio.run() cannot be called from a running
            // event loop". A nested loop would run only the inner future's tasks and
            // freeze every task of the outer loop until it returned.
            panic!(
                "block_on called at {} from inside a running event loop{within}: it \
                 would block the loop and starve its other tasks. `.await` the future \
                 instead (or `spawn` it and `.await` the JoinHandle)",
                main.spawned_at
            );
        }
        *current = Some(context);
    });
    Entered(())
}

/// The thread's context until this is dropped.
#[must_use = "the context is removed when the guard is dropped"]
pub(crate) struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        // Whatever unwinds, the thread must not stay marked as running a loop: every
        // later `block_on` on it would be refused.
        let _ = CONTEXT.try_with(|current| current.borrow_mut().take());
    }
}
// ANCHOR_END: enter
