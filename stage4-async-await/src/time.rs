//! Time: [`sleep`], [`sleep_until`] and [`timeout`], on the reactor's timer queue.
//!
//! A `Sleep` sets no OS timer of its own: it leaves its deadline and waker in the
//! reactor's [timers](crate::timers), which wait in `epoll_wait` until the earliest
//! deadline of all. That is why a million sleeping tasks cost a million queue entries and
//! no system call each.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use crate::context::{try_with_current, with_current};
use crate::slab::Key;
use crate::trace::Waiting;

/// Waits until `duration` has passed (the article's `asyncio.sleep`).
pub fn sleep(duration: Duration) -> Sleep {
    let now = Instant::now();
    // An absurd duration (`Duration::MAX`) means "forever", not an overflow panic.
    let deadline = now
        .checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
    sleep_until(deadline)
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        timer: None,
    }
}

// ANCHOR: sleep
/// The future of [`sleep`]. Dropping it cancels the timer.
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    deadline: Instant,
    /// The timer's key in the reactor, once polled, and that loop's id: a `Sleep` moved
    /// to another loop must not touch that loop's timers with a key that is not its own.
    timer: Option<(u32, Key)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (deadline, timer) = (self.deadline, self.timer);
        let poll = with_current("sleep", |event_loop| {
            let mut reactor = event_loop.reactor();
            let timers = &mut reactor.timers;
            let timer = timer.filter(|&(loop_id, _)| loop_id == event_loop.id);
            // Spurious polls are allowed, so the clock decides, not the wake-up. (The
            // loop's clock, read at the end of the last poll: a deadline it has not seen
            // pass yet fires at the next reactor turn.)
            if event_loop.now() >= deadline {
                // Due, but a task out of budget yields first; the timer stays set.
                ready!(event_loop.consume_budget(cx));
                if let Some((_, key)) = timer {
                    timers.cancel(key);
                }
                return Poll::Ready(None);
            }
            let key = match timer {
                // Already set: only the waker may have changed.
                Some((_, key)) if timers.update(key, cx.waker()) => key,
                _ => timers.insert(deadline, cx.waker()),
            };
            event_loop.trace_waker(Waiting::Timer(key, deadline));
            Poll::Ready(Some((event_loop.id, key)))
        });
        match poll {
            Poll::Ready(None) => {
                self.timer = None;
                Poll::Ready(())
            }
            Poll::Ready(set) => {
                self.timer = set;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn cancel(&mut self) {
        if let Some((loop_id, key)) = self.timer.take() {
            try_with_current(|event_loop| {
                if event_loop.id == loop_id {
                    event_loop.reactor().timers.cancel(key);
                }
            });
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}
// ANCHOR_END: sleep

/// Runs `future` but gives up after `duration` (the article's `asyncio.wait_for`).
///
/// Giving up drops the inner future, which cancels whatever it was waiting for (a
/// socket read, a timer).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
        duration,
    }
}

// ANCHOR: timeout
pin_project! {
    /// The future of [`timeout`]: `Ok(output)`, or `Err(Elapsed)` if the time ran out.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
        duration: Duration,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The future first: an answer that arrived with the deadline still counts.
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(*this.duration))),
            Poll::Pending => Poll::Pending,
        }
    }
}
// ANCHOR_END: timeout

/// The error of [`timeout`]: the future did not complete within the duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(pub Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no result within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for Elapsed {}
