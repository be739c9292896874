//! The fourth player: the `EventLoop`. A ready queue of callbacks, mio readiness turned
//! into futures, and timers.
//!
//! Read `future.rs` and `task.rs` first. Compared with stage 2's loop, this one knows
//! nothing about requests or connections: it runs callbacks, and it completes futures
//! when a socket is ready or a timer is due. Everything else is in the tasks.
//!
//! `cargo run -p stage3-generators -- --trace` shows it at work.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Events, Interest, Poll, Token};
use shared::Error;

use crate::future::Future;
use crate::task::Cancel;

/// The longest one wait in poll may last (see where it is used).
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

// ANCHOR: callback
/// What the loop runs once, from its ready queue.
pub enum Callback {
    /// A function (Python: any callable handed to `call_soon`).
    Call(Box<dyn FnOnce()>),
    /// A task's next step. The task itself is the callback, as asyncio's bound method
    /// `task.__step` is: a boxed closure around the task would cost an allocation per
    /// step.
    Step(Rc<dyn Step>),
}

impl Callback {
    /// Runs it.
    pub fn run(self) {
        match self {
            Callback::Call(function) => function(),
            Callback::Step(task) => task.step(),
        }
    }
}

/// What the loop does with a task it was asked to step: implemented by `Task`.
pub trait Step {
    /// Resumes the task's generator until it waits again or returns.
    fn step(self: Rc<Self>);
}
// ANCHOR_END: callback

// ANCHOR: state
/// A handle to the event loop; clones share it.
#[derive(Clone)]
pub struct EventLoop {
    state: Rc<LoopState>,
}

/// Everything the loop owns. Every field is a cell and no borrow is held while a
/// callback runs, because callbacks come back to the loop (to create futures, register
/// sockets, schedule more callbacks).
pub(crate) struct LoopState {
    ready: RefCell<VecDeque<Callback>>,
    poll: RefCell<Poll>,
    /// Futures waiting for a socket, by the token it was registered with.
    io: RefCell<HashMap<Token, Future<()>>>,
    /// Futures waiting for a deadline. The sequence number makes keys unique, so two
    /// timers with the same deadline never collide, and fire in the order they were set.
    timers: RefCell<BTreeMap<(Instant, u64), Future<()>>>,
    /// Tasks not finished yet, for `close` to cancel (asyncio's `all_tasks`).
    tasks: RefCell<TaskSlots>,
    /// Numbers futures, tasks and tokens.
    next_id: Cell<u64>,
    /// When tracing, the time the loop was created.
    trace_start: Option<Instant>,
    /// Usable bytes of each new task's stack.
    stack_size: Cell<usize>,
}
// ANCHOR_END: state

impl EventLoop {
    /// A new loop. With `trace`, it prints each step of the article's sequence.
    pub fn new(trace: bool) -> Result<EventLoop, Error> {
        let poll = Poll::new().map_err(|e| Error::io("creating the epoll instance", e))?;
        Ok(EventLoop {
            state: Rc::new(LoopState {
                ready: RefCell::new(VecDeque::new()),
                poll: RefCell::new(poll),
                io: RefCell::new(HashMap::new()),
                timers: RefCell::new(BTreeMap::new()),
                tasks: RefCell::new(TaskSlots::default()),
                next_id: Cell::new(0),
                trace_start: trace.then(Instant::now),
                stack_size: Cell::new(crate::stack::DEFAULT_STACK_SIZE),
            }),
        })
    }

    /// Gives the tasks spawned from now on stacks of `bytes` usable bytes (rounded up to
    /// whole pages) instead of [`DEFAULT_STACK_SIZE`](crate::stack::DEFAULT_STACK_SIZE).
    /// A size out of range makes `Task::spawn` fail with a clear error.
    pub fn set_stack_size(&self, bytes: usize) {
        self.state.stack_size.set(bytes);
    }

    /// The stack size of the tasks spawned from now on.
    pub fn stack_size(&self) -> usize {
        self.state.stack_size.get()
    }

    /// Schedules `callback` to run on the next pass of the loop.
    pub fn call_soon(&self, callback: impl FnOnce() + 'static) {
        self.state.call_soon(Callback::Call(Box::new(callback)));
    }

    /// Schedules `callback` (a function or a task's step) on the next pass of the loop.
    pub(crate) fn schedule(&self, callback: Callback) {
        self.state.call_soon(callback);
    }

    /// A new, pending future; `label` names it in traces.
    pub fn create_future<T>(&self, label: &'static str) -> Future<T> {
        Future::new(Rc::downgrade(&self.state), self.next_id(), label)
    }

    // ANCHOR: readiness
    /// A future that completes when `source` is readable. Registers `source` with the
    /// loop's `Poll`; call [`EventLoop::deregister`] once the future is done (Python:
    /// `selector.register(sock, EVENT_READ, callback)`).
    pub fn readable(&self, source: &mut impl Source) -> io::Result<Future<()>> {
        self.register(source, Interest::READABLE, "readable")
    }

    /// A future that completes when `source` is writable; see [`EventLoop::readable`].
    pub fn writable(&self, source: &mut impl Source) -> io::Result<Future<()>> {
        self.register(source, Interest::WRITABLE, "writable")
    }

    fn register(
        &self,
        source: &mut impl Source,
        interest: Interest,
        label: &'static str,
    ) -> io::Result<Future<()>> {
        let future = self.create_future(label);
        let token = Token(self.next_id() as usize);
        // NB: registering (EPOLL_CTL_ADD) reports a socket that is ready already, so no
        // readiness is lost between two waits.
        self.state
            .poll
            .borrow()
            .registry()
            .register(source, token, interest)?;
        self.state.io.borrow_mut().insert(token, future.clone());
        Ok(future)
    }

    /// Stops watching `source` (Python: `selector.unregister(sock)`).
    pub fn deregister(&self, source: &mut impl Source) -> io::Result<()> {
        self.state.poll.borrow().registry().deregister(source)
    }

    /// A future that completes after `duration` (Python: `asyncio.sleep`). A duration
    /// too far for an `Instant` to hold (`Duration::MAX`, say) never completes.
    pub fn sleep(&self, duration: Duration) -> Future<()> {
        let future = self.create_future("sleep");
        // Too far for an `Instant` (past `i64::MAX` seconds on Unix): no timer, so it
        // never fires.
        if let Some(deadline) = Instant::now().checked_add(duration) {
            let key = (deadline, self.next_id());
            self.state.timers.borrow_mut().insert(key, future.clone());
        }
        future
    }
    // ANCHOR_END: readiness

    // ANCHOR: run
    /// Runs callbacks, waits for sockets and timers, and completes their futures, until
    /// `future` is done; returns its result. Python: `loop.run_until_complete(future)`.
    ///
    /// Fails with [`Error::Timeout`] if `timeout` passes first, and with an error if
    /// nothing is left that could ever complete `future`. A timeout too far for an
    /// `Instant` to hold (`Duration::MAX`, say) is no limit.
    pub fn run_until_complete<T>(&self, future: &Future<T>, timeout: Duration) -> Result<T, Error> {
        let deadline = Instant::now().checked_add(timeout);
        let mut events = Events::with_capacity(1024);
        loop {
            self.run_ready();
            if let Some(result) = future.take_result() {
                return Ok(result);
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                let what = format!("{future:?} not done after {:.1} s", timeout.as_secs_f64());
                return Err(Error::Timeout { what });
            }
            // Block in poll only when no callback is ready; wake for the next timer or
            // the deadline, whichever is first (neither: poll waits for a socket).
            let next_timer = self
                .state
                .timers
                .borrow()
                .first_key_value()
                .map(|(k, _)| k.0);
            let wait = match self.state.ready.borrow().is_empty() {
                false => Some(Duration::ZERO),
                true => next_timer
                    .into_iter()
                    .chain(deadline)
                    .min()
                    .map(|at| at - now),
            };
            // NB: a day at most: macOS's kqueue refuses a wait of more than about three
            // years (EINVAL), and waking early costs one more pass of the loop.
            let wait = wait.map(|wait| wait.min(MAX_WAIT));
            if wait != Some(Duration::ZERO)
                && next_timer.is_none()
                && self.state.io.borrow().is_empty()
            {
                return Err(Error::Other(format!(
                    "{future:?} can never complete: no callback, socket or timer is pending"
                )));
            }
            if self.state.trace_start.is_some() {
                let how: String = match wait {
                    Some(Duration::ZERO) if !self.state.ready.borrow().is_empty() => {
                        "polls without blocking: callbacks are ready".into()
                    }
                    Some(Duration::ZERO) => "polls without blocking: a timer is due".into(),
                    Some(wait) => format!("waits in poll, {} ms at most", wait.as_millis()),
                    None => "waits in poll for a socket, however long".into(),
                };
                self.state.trace(format_args!(
                    "loop {how} ({} socket(s) and {} timer(s) pending)",
                    self.state.io.borrow().len(),
                    self.state.timers.borrow().len(),
                ));
            }
            if let Err(e) = self.state.poll.borrow_mut().poll(&mut events, wait) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue; // a signal arrived: just poll again
                }
                return Err(Error::io("waiting in epoll", e));
            }
            for event in &events {
                // No entry: the socket's future was already completed, or its task is
                // gone. A spurious event costs nothing.
                let Some(ready) = self.state.io.borrow_mut().remove(&event.token()) else {
                    continue;
                };
                self.state
                    .trace(format_args!("socket of {ready:?} is ready"));
                ready.set_result(());
            }
            self.fire_timers();
        }
    }
    // ANCHOR_END: run

    /// Runs the callbacks that are ready now. Callbacks they schedule wait for the next
    /// pass, after the loop has checked sockets and timers, so nothing starves.
    fn run_ready(&self) {
        let ready = self.state.ready.borrow().len();
        for _ in 0..ready {
            let Some(callback) = self.state.ready.borrow_mut().pop_front() else {
                break;
            };
            callback.run();
        }
    }

    fn fire_timers(&self) {
        let now = Instant::now();
        loop {
            let mut timers = self.state.timers.borrow_mut();
            let Some(entry) = timers.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let due = entry.remove();
            drop(timers);
            due.set_result(());
        }
    }

    /// Cancels every unfinished task, dropping its generator (which unwinds its stack,
    /// closing its sockets), and drops everything still pending: queued callbacks and
    /// futures waiting for a socket or a timer. Python: cancel `all_tasks()`, then
    /// `loop.close()`.
    ///
    /// Needed after an early return from [`EventLoop::run_until_complete`]: a suspended
    /// task and the futures it waits for point at each other, so `Rc` alone would never
    /// free them.
    pub fn close(&self) {
        self.state.close();
    }

    fn next_id(&self) -> u64 {
        let id = self.state.next_id.get();
        self.state.next_id.set(id + 1);
        id
    }

    pub(crate) fn trace(&self, args: fmt::Arguments<'_>) {
        self.state.trace(args);
    }

    /// Records an unfinished task; returns its slot, for [`EventLoop::untrack`].
    pub(crate) fn track(&self, task: Weak<dyn Cancel>) -> usize {
        self.state.tasks.borrow_mut().insert(task)
    }

    pub(crate) fn untrack(&self, slot: usize) {
        self.state.tasks.borrow_mut().remove(slot);
    }
}

/// The unfinished tasks: a slab, a vector whose free slots are reused.
///
/// NB: a `HashMap` keyed by task id did the same job, but at a million tasks every insert
/// and remove lands on a random cache line of a 50 MB table: 10% of the million row's
/// time. Here a new task takes the most recently freed slot or the end of the vector, and
/// a finished one clears the slot it was given.
#[derive(Default)]
pub(crate) struct TaskSlots {
    slots: Vec<Option<Weak<dyn Cancel>>>,
    free: Vec<usize>,
}

impl TaskSlots {
    fn insert(&mut self, task: Weak<dyn Cancel>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(task);
                slot
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if self.slots.get_mut(slot).and_then(Option::take).is_some() {
            self.free.push(slot);
        }
    }

    fn drain(&mut self) -> impl Iterator<Item = Weak<dyn Cancel>> {
        self.free.clear();
        std::mem::take(&mut self.slots).into_iter().flatten()
    }
}

impl LoopState {
    pub(crate) fn call_soon(&self, callback: Callback) {
        self.ready.borrow_mut().push_back(callback);
    }

    pub(crate) fn trace(&self, args: fmt::Arguments<'_>) {
        if let Some(start) = self.trace_start {
            shared::say!("[{:>8.3} s] {args}", start.elapsed().as_secs_f64());
        }
    }

    fn close(&self) {
        // Take everything out first: dropping a task runs its destructors, which may come
        // back here.
        let ready = std::mem::take(&mut *self.ready.borrow_mut());
        let io = std::mem::take(&mut *self.io.borrow_mut());
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        let tasks: Vec<_> = self.tasks.borrow_mut().drain().collect();
        for future in io.values().chain(timers.values()) {
            future.erased().drop_callbacks();
        }
        drop((ready, io, timers));
        for task in tasks.iter().filter_map(Weak::upgrade) {
            task.cancel();
        }
    }
}

impl Drop for LoopState {
    fn drop(&mut self) {
        self.close();
    }
}
