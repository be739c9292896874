//! [`join_all`], the article's `asyncio.gather`: wait for every future, keep their
//! outputs in order.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

// ANCHOR: join_all
/// Waits for every future of `futures` and returns their outputs in the order given.
///
/// All of them make progress at once: each time the `JoinAll` is polled it polls every
/// child that has not finished. That is one poll per child per wake-up, fine for
/// thousands of children. For a million, spawn them and await the handles one by one
/// (each finished task wakes its joiner once), or use the futures crate's
/// `FuturesUnordered`, which polls only the children that were woken.
pub fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> JoinAll<F> {
    JoinAll {
        children: futures
            .into_iter()
            .map(|future| Child::Running(Box::pin(future)))
            .collect(),
    }
}

/// The future of [`join_all`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct JoinAll<F: Future> {
    children: Vec<Child<F>>,
}

// Outputs are never pinned and children are boxed, so moving a JoinAll moves nothing
// that was promised to stay put.
impl<F: Future> Unpin for JoinAll<F> {}

enum Child<F: Future> {
    // Boxed so that each child stays pinned where it is while the Vec is ours to move.
    Running(Pin<Box<F>>),
    Done(Option<F::Output>),
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<F::Output>> {
        let this = &mut *self; // JoinAll is Unpin: its children are boxed
        let mut running = 0;
        for child in &mut this.children {
            if let Child::Running(future) = child {
                match future.as_mut().poll(cx) {
                    Poll::Ready(output) => *child = Child::Done(Some(output)),
                    Poll::Pending => running += 1,
                }
            }
        }
        if running > 0 {
            return Poll::Pending;
        }
        let outputs = this.children.iter_mut().map(|child| match child {
            Child::Done(output) => output.take().expect("join_all polled after it completed"),
            Child::Running(_) => unreachable!("every child has finished"),
        });
        Poll::Ready(outputs.collect())
    }
}
// ANCHOR_END: join_all

impl<F: Future> std::fmt::Debug for JoinAll<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinAll")
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}
