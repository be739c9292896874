//! The second player: a `Future`, a result that is not there yet, with done-callbacks.
//!
//! Read `generator.rs` first. This is the article's `Future` nearly line for line:
//! `set_result` stores the value and hands every callback to the event loop's ready queue;
//! a callback added after the fact is scheduled at once.
//!
//! NB: this is not `std::future::Future` (that one is polled, and arrives in stage 4).
//! Here nobody polls: whoever has the result calls `set_result`, and the callbacks do the
//! rest, as in Python's asyncio.
//!
//! `cargo run -p stage3-generators -- --trace` shows futures being created and completed.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};

use smallvec::SmallVec;

use crate::event_loop::{Callback, LoopState};

// ANCHOR: future
/// A result of type `T` that is not ready yet. Cloning gives another handle to the
/// same future.
pub struct Future<T> {
    state: Rc<State<T>>,
}

struct State<T> {
    /// For `--trace`: `future 17 (readable)`.
    id: u64,
    label: &'static str,
    result: RefCell<Option<T>>,
    done: Cell<bool>,
    /// Nearly always one: the step of the task waiting for this future. Room for it
    /// inside `State` saves an allocation per future; more go to the heap.
    callbacks: RefCell<SmallVec<[Callback; 1]>>,
    /// Where callbacks are scheduled. Weak: the loop holds pending futures, not the
    /// other way round.
    event_loop: Weak<LoopState>,
}

impl<T> Future<T> {
    pub(crate) fn new(event_loop: Weak<LoopState>, id: u64, label: &'static str) -> Future<T> {
        Future {
            state: Rc::new(State {
                id,
                label,
                result: RefCell::new(None),
                done: Cell::new(false),
                callbacks: RefCell::new(SmallVec::new()),
                event_loop,
            }),
        }
    }

    /// The number `--trace` shows.
    pub fn id(&self) -> u64 {
        self.state.id
    }

    /// Whether `set_result` has been called.
    pub fn done(&self) -> bool {
        self.state.done.get()
    }

    /// Stores the result and schedules every done-callback on the loop's ready queue.
    ///
    /// # Panics
    ///
    /// If the future is already done (asyncio raises `InvalidStateError`).
    pub fn set_result(&self, value: T) {
        assert!(!self.done(), "{self:?} already has a result");
        *self.state.result.borrow_mut() = Some(value);
        self.state.done.set(true);
        let callbacks = std::mem::take(&mut *self.state.callbacks.borrow_mut());
        if let Some(event_loop) = self.state.event_loop.upgrade() {
            event_loop.trace(format_args!(
                "{self:?} set_result: {} callback(s) scheduled",
                callbacks.len()
            ));
            for callback in callbacks {
                event_loop.call_soon(callback);
            }
        }
    }

    /// Runs `callback` (through the ready queue) once the future is done; at once if it
    /// is done already.
    pub fn add_done_callback(&self, callback: impl FnOnce() + 'static) {
        self.state
            .add_done_callback(Callback::Call(Box::new(callback)));
    }

    /// Takes the result out, if there is one (a result is taken once).
    pub fn take_result(&self) -> Option<T> {
        self.state.result.borrow_mut().take()
    }

    /// The same future without its result type: what a task's generator yields.
    pub fn erased(&self) -> Rc<dyn AnyFuture>
    where
        T: 'static,
    {
        self.state.clone()
    }
}
// ANCHOR_END: future

/// What a task needs of the future its generator yielded: a way to be called back.
pub trait AnyFuture {
    /// See [`Future::add_done_callback`].
    fn add_done_callback(&self, callback: Callback);
    /// Forgets the callbacks without running them: how a closed loop breaks the cycle
    /// task -> generator -> future -> callback -> task.
    fn drop_callbacks(&self);
    /// The number and label `--trace` shows: `future 17 (readable)`.
    fn name(&self) -> (u64, &'static str);
}

impl<T> AnyFuture for State<T> {
    fn add_done_callback(&self, callback: Callback) {
        if !self.done.get() {
            self.callbacks.borrow_mut().push(callback);
        } else if let Some(event_loop) = self.event_loop.upgrade() {
            event_loop.call_soon(callback);
        }
    }

    fn drop_callbacks(&self) {
        let callbacks = std::mem::take(&mut *self.callbacks.borrow_mut());
        drop(callbacks);
    }

    fn name(&self) -> (u64, &'static str) {
        (self.id, self.label)
    }
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Future<T> {
        Future {
            state: self.state.clone(),
        }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "future {} ({})", self.state.id, self.state.label)
    }
}
