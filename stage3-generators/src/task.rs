//! The third player: a `Task` steps a generator, and whenever the generator yields a
//! future, asks to be stepped again once that future is done.
//!
//! Read `generator.rs` and `future.rs` first. The whole mechanism is `Task::step`, the
//! article's:
//!
//! ```python
//! def step(self, future):
//!     try:
//!         next_future = self.coro.send(future.result)
//!     except StopIteration:
//!         return
//!     next_future.add_done_callback(self.step)
//! ```
//!
//! The body of a task gets a [`Co`]: its loop, and the yielder that suspends it.
//! [`Co::wait`] is Python's `yield from future`.
//!
//! `cargo run -p stage3-generators -- --trace` shows tasks being stepped.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::{Rc, Weak};
use std::time::Duration;

use mio::event::Source;
use shared::Error;

use crate::event_loop::{Callback, EventLoop, Step};
use crate::future::{AnyFuture, Future};
use crate::generator::{Generator, GeneratorState, Yielder};

/// What a task's generator yields: the future it waits for, whatever its result type.
pub type Awaited = Rc<dyn AnyFuture>;

// ANCHOR: task
/// A generator driven by the loop, with a future for its result.
pub struct Task<R> {
    /// For `--trace`, e.g. `request 7`.
    name: Cow<'static, str>,
    event_loop: EventLoop,
    /// `None` once cancelled by [`EventLoop::close`].
    generator: RefCell<Option<Generator<(), Awaited, R>>>,
    /// Where the loop keeps it while it is unfinished.
    slot: Cell<usize>,
    result: Future<R>,
}

impl<R: 'static> Task<R> {
    /// Wraps `body` in a generator and schedules its first step (Python:
    /// `loop.create_task(coro)`). `name` appears in traces. Fails when no stack can be
    /// had for it.
    pub fn spawn(
        event_loop: &EventLoop,
        name: impl Into<Cow<'static, str>>,
        body: impl FnOnce(&Co<'_>) -> R + 'static,
    ) -> Result<Rc<Task<R>>, Error> {
        let handle = event_loop.clone();
        let generator = Generator::with_stack_size(event_loop.stack_size(), move |yielder, ()| {
            body(&Co {
                event_loop: handle,
                yielder,
            })
        })
        .map_err(no_stack)?;
        let task = Rc::new(Task {
            name: name.into(),
            event_loop: event_loop.clone(),
            generator: RefCell::new(Some(generator)),
            slot: Cell::new(0),
            result: event_loop.create_future("task result"),
        });
        event_loop.trace(format_args!(
            "task `{}` created (its result: {:?}), first step scheduled",
            task.name, task.result
        ));
        task.slot
            .set(event_loop.track(Rc::downgrade(&task) as Weak<dyn Cancel>));
        event_loop.schedule(Callback::Step(task.clone()));
        Ok(task)
    }

    /// Resumes the generator until it yields a future (then waits for it) or returns
    /// (then completes the task's result).
    fn step(self: Rc<Self>) {
        self.event_loop
            .trace(format_args!("task `{}` resumed", self.name));
        let Some(state) = self.generator.borrow_mut().as_mut().map(|g| g.resume(())) else {
            return; // cancelled
        };
        match state {
            GeneratorState::Yielded(future) => {
                let (id, label) = future.name();
                self.event_loop.trace(format_args!(
                    "task `{}` yielded future {id} ({label}); registers its step as a \
                     done-callback",
                    self.name
                ));
                future.add_done_callback(Callback::Step(self.clone()));
            }
            GeneratorState::Complete(value) => {
                self.event_loop
                    .trace(format_args!("task `{}` complete", self.name));
                self.event_loop.untrack(self.slot.get());
                self.result.set_result(value);
            }
        }
    }

    /// The future of the task's return value, for other tasks to wait on.
    pub fn result(&self) -> &Future<R> {
        &self.result
    }
}

impl<R: 'static> Step for Task<R> {
    fn step(self: Rc<Self>) {
        Task::step(self);
    }
}

/// What [`EventLoop::close`] does to a task that has not finished.
pub(crate) trait Cancel {
    /// Drops the generator, unwinding its stack.
    fn cancel(&self);
}

impl<R> Cancel for Task<R> {
    fn cancel(&self) {
        // A task that closes its own loop is running: it is left to finish.
        let Ok(mut generator) = self.generator.try_borrow_mut() else {
            return;
        };
        let generator = generator.take();
        drop(generator); // outside the borrow: unwinding may drop other tasks
    }
}
// ANCHOR_END: task

// ANCHOR: co
/// Lent to a task's body while it runs: its loop, and the way to wait.
pub struct Co<'a> {
    event_loop: EventLoop,
    yielder: &'a Yielder<(), Awaited>,
}

impl Co<'_> {
    /// The loop this task runs on.
    pub fn event_loop(&self) -> &EventLoop {
        &self.event_loop
    }

    /// Suspends the task until `future` is done, then returns its result.
    /// Python: `result = yield from future`.
    pub fn wait<T: 'static>(&self, future: &Future<T>) -> T {
        if !future.done() {
            self.yielder.suspend(future.erased());
        }
        future
            .take_result()
            .expect("a task is resumed once its future is done, and takes its result once")
    }

    /// Suspends the task until `source` is readable.
    pub fn readable(&self, source: &mut impl Source) -> io::Result<()> {
        let ready = self.event_loop.readable(source)?;
        self.wait(&ready);
        self.event_loop.deregister(source)
    }

    /// Suspends the task until `source` is writable.
    pub fn writable(&self, source: &mut impl Source) -> io::Result<()> {
        let ready = self.event_loop.writable(source)?;
        self.wait(&ready);
        self.event_loop.deregister(source)
    }

    /// Suspends the task for `duration`. Python: `yield from asyncio.sleep(duration)`.
    pub fn sleep(&self, duration: Duration) {
        self.wait(&self.event_loop.sleep(duration));
    }
}
// ANCHOR_END: co

fn no_stack(error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::InvalidInput {
        Error::Other(format!("cannot spawn a task: {error}"))
    } else if error.kind() == io::ErrorKind::OutOfMemory {
        Error::Limit {
            limit: "address space or memory-mapping limit".into(),
            asked: "one more coroutine stack".into(),
            fix: format!("The kernel said: {error}."),
        }
    } else {
        Error::Other(format!("cannot map a coroutine stack: {error}"))
    }
}
