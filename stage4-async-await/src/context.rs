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
use std::task::{Context, Poll};
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
    /// What the running task may still do in this poll before it must yield (see
    /// [`LoopContext::consume_budget`]), and what each poll starts with.
    budget: Cell<u32>,
    budget_per_poll: u32,
    /// `--trace`: print each step.
    pub(crate) trace: Trace,
}

/// How many operations a task may complete in one poll before the runtime's futures
/// make it yield: tokio's figure. Enough to amortise a turn of the loop, small enough that
/// one poll of an always-ready task stays well under a millisecond.
pub const DEFAULT_BUDGET: u32 = 128;

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
            budget: Cell::new(DEFAULT_BUDGET),
            budget_per_poll: DEFAULT_BUDGET,
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

    /// Marks `task` as the one being polled, with a full budget; returns the one before,
    /// for [`LoopContext::end_poll`].
    pub(crate) fn begin_poll(&self, task: TaskInfo) -> Option<TaskInfo> {
        self.budget.set(self.budget_per_poll);
        self.running.replace(Some(task))
    }

    /// The poll is over: `previous` runs again (`None`: no task).
    pub(crate) fn end_poll(&self, previous: Option<TaskInfo>) {
        self.running.set(previous);
    }

    /// Sets what each poll's budget starts with (`u32::MAX`: no limit).
    pub(crate) fn set_budget_per_poll(&mut self, budget: u32) {
        self.budget_per_poll = budget;
    }

    // ANCHOR: budget
    /// Takes one unit of the running task's budget, for an operation about to complete
    /// (an accept, a read, a write, a timer that is due). With none left, the task must
    /// yield: its waker is called at once, so it goes to the back of the ready queue, and
    /// the operation says `Pending` though it could have gone on.
    ///
    /// NB: cooperative multitasking has two halves. The loop never takes the thread from
    /// a task; a task gives it back at an `.await` that is `Pending`. But a task whose
    /// sockets are always ready (an accept loop under a flood of connections) never meets
    /// a `Pending`, and holds the loop for as long as the flood lasts. The budget makes
    /// the runtime's own futures say `Pending` after a bounded amount of work, as tokio's
    /// `coop` module does, so that every task gives the thread back.
    pub(crate) fn consume_budget(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self.budget.get() {
            0 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            left => {
                self.budget.set(left - 1);
                Poll::Ready(())
            }
        }
    }

    /// Gives back the unit [`LoopContext::consume_budget`] took, for an operation that
    /// did not complete after all (it met `WouldBlock`): only progress costs budget.
    pub(crate) fn refund_budget(&self) {
        self.budget.set(self.budget.get().saturating_add(1));
    }
    // ANCHOR_END: budget

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
