//! hyper's runtime traits, implemented over stage 4's runtime: for our event loop what
//! hyper-util's `TokioIo`, `TokioExecutor` and `TokioTimer` are for tokio. (Feature
//! `hyper`, on by default; the `hyper` example serves and fetches HTTP through it.)
//!
//! hyper 1.x brings no runtime. It parses and writes HTTP and asks its caller, through
//! the traits of `hyper::rt`, for the three things only a runtime has: a socket it can
//! poll (`Read`, `Write`), a way to start a task (`Executor`) and a clock (`Timer`).
//! Wrappers, because neither the traits nor our types belong to this crate (Rust's orphan
//! rule); they add nothing but the translation.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use crate::executor::spawn;
use crate::net::TcpStream;
use crate::time::{Sleep, sleep, sleep_until};

// ANCHOR: io
/// Our [`TcpStream`], read and written by hyper.
#[derive(Debug)]
pub struct HyperIo(pub TcpStream);

impl ::hyper::rt::Read for HyperIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ::hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // hyper lends memory that may be uninitialized, and `read(2)` through our
        // `poll_read` wants a `&mut [u8]`: zero it first (once: the cursor remembers).
        let read = ready!(self.0.poll_read(cx, buf.initialize_unfilled()))?;
        // SAFETY: `initialize_unfilled` initialized the whole unfilled part, and `read`
        // is at most its length (a read returns how many bytes it wrote into it).
        unsafe { buf.advance(read) };
        Poll::Ready(Ok(()))
    }
}

impl ::hyper::rt::Write for HyperIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // nothing buffered here: every write went to the kernel
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.shutdown_write())
    }
}
// ANCHOR_END: io

// ANCHOR: executor
/// Starts hyper's futures (a connection to drive) as tasks on the current event loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopExecutor;

// NB: tokio's executor wants `Send` futures (a worker thread may steal them); ours runs
// every task on the thread that spawned it, so any future will do.
impl<F> ::hyper::rt::Executor<F> for LoopExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, future: F) {
        let _detached = spawn(future); // dropping a JoinHandle lets its task run on
    }
}
// ANCHOR_END: executor

// ANCHOR: timer
/// hyper's clock: its timeouts (a client slow to send its headers) as our timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopTimer;

impl ::hyper::rt::Timer for LoopTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(LoopSleep(sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(LoopSleep(sleep_until(deadline)))
    }
    // `reset` keeps its default: a new sleep in place of the old one, whose drop takes
    // its timer out of the reactor's queue.
}

/// Our [`Sleep`], as hyper's `Sleep`.
#[derive(Debug)]
pub struct LoopSleep(Sleep);

impl Future for LoopSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

// hyper asks for `Send + Sync` sleeps, for runtimes whose timers cross threads. Ours
// is both, being a deadline and a key: the timer queue it points into is its thread's.
impl ::hyper::rt::Sleep for LoopSleep {}
// ANCHOR_END: timer
