//! `--trace`: the executor and the reactor at work, one line per step.
//!
//! `cargo run -p stage4-async-await -- --requests 2 --delay-ms 200 --trace`
//!
//! Every line has the same shape, so that a program can read it back (to draw the
//! sequence diagram of the article's section 4.3, say):
//!
//! ```text
//! [   0.219 s] event    socket 3 readable: wakes 1 waiter(s)
//! [   0.219 s] wake     task 1
//! [   0.219 s] poll     task 1
//! ```
//!
//! the time since the loop started, in brackets; one step, padded to eight columns;
//! then who, and what. The steps:
//!
//! | Step | Rest of the line | What happened |
//! | --- | --- | --- |
//! | `spawn` | `task N` | a task was spawned (numbered from 1, in spawn order) |
//! | `poll` | `task N`, or `main` | the executor polls it (`main`: `block_on`'s future) |
//! | `waker` | `task N on socket S readable` (or `writable`), `task N on timer T due at X s` | the poll left its waker with the reactor |
//! | `pending` | `task N` | the poll returned `Poll::Pending` |
//! | `ready` | `task N` | the poll returned `Poll::Ready`: the task is done |
//! | `reactor` | `waits ...`, `checks ...` | the loop asks the OS for events, blocking or not |
//! | `event` | `socket S readable: wakes K waiter(s)`, `timer T due: wakes 1 waiter` | the reactor calls the wakers left there |
//! | `wake` | `task N` | a waker queued its task: it is polled in the next round |
//!
//! The other lines are the demo's own: its responses as they arrive (`[   0.219 s]
//! Request 1`), and the report.

use std::fmt;
use std::time::Instant;

use crate::slab::Key;

/// Where trace lines go: nowhere, or stdout, timed from `start`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Trace {
    start: Option<Instant>,
}

/// The steps a trace line can show (the second column).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    Spawn,
    Poll,
    Waker,
    Pending,
    Ready,
    Reactor,
    Event,
    Wake,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Spawn => "spawn",
            Step::Poll => "poll",
            Step::Waker => "waker",
            Step::Pending => "pending",
            Step::Ready => "ready",
            Step::Reactor => "reactor",
            Step::Event => "event",
            Step::Wake => "wake",
        }
    }
}

impl Trace {
    /// A trace that prints, timed from now.
    pub(crate) fn starting_now() -> Trace {
        Trace {
            start: Some(Instant::now()),
        }
    }

    pub(crate) fn is_on(self) -> bool {
        self.start.is_some()
    }

    pub(crate) fn say(self, step: Step, what: fmt::Arguments<'_>) {
        if let Some(start) = self.start {
            shared::say!(
                "[{:>8.3} s] {:<8} {what}",
                start.elapsed().as_secs_f64(),
                step.as_str()
            );
        }
    }
}

/// Which readiness a future waits for on a socket: to read, or to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Read => "readable",
            Direction::Write => "writable",
        })
    }
}

/// What a task's waker was left with, for a `waker` line.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Waiting {
    /// A socket, for one direction.
    Socket(Key, Direction),
    /// A timer, and its deadline.
    Timer(Key, Instant),
    /// An io_uring operation, by its slot (the `--driver uring` completion driver).
    #[cfg(target_os = "linux")]
    Operation(Key),
}

impl Waiting {
    /// `socket 3 readable`, or `timer 0 due at 60.000 s` (seconds on the trace's clock).
    pub(crate) fn describe(self, trace: Trace) -> String {
        match self {
            Waiting::Socket(key, direction) => format!("socket {key} {direction}"),
            #[cfg(target_os = "linux")]
            Waiting::Operation(key) => format!("io_uring operation {key}"),
            Waiting::Timer(key, deadline) => {
                let start = trace.start.unwrap_or(deadline);
                let due = deadline.saturating_duration_since(start).as_secs_f64();
                format!("timer {key} due at {due:.3} s")
            }
        }
    }
}
