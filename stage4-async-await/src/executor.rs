//! The executor: it runs tasks, and polls each one again only when its waker says so.
//!
//! Read stage 3's `EventLoop` first: there a `Task` stepped a generator and a `Future`'s
//! done-callback rescheduled it. Here the compiler writes the generator (every `async fn`
//! is a state machine with a `poll` method), and the callback is a [`Waker`]: a handle the
//! task's future leaves wherever it is waiting (the reactor, a timer, a channel) and that
//! puts the task back in the ready queue when called.
//!
//! - [`EventLoop::block_on`] (or the free [`block_on`]) runs a future to completion on
//!   this thread, together with every task it [`spawn`]s.
//! - [`spawn`] starts a [task](crate::task) and returns a [`JoinHandle`], itself a future
//!   of the task's result.
//! - A waker may be cloned, stored, called many times, after its task finished, or from
//!   another thread; a wake from another thread interrupts the reactor's wait through a
//!   `mio::Waker`.
//! - Every poll is timed: a [slow poll](crate::slow_poll) means something blocked the loop.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::context::{self, Entered, LoopContext};
use crate::join_handle::{JoinHandle, join_pair};
use crate::reactor::{Reactor, WAKER_TOKEN};
use crate::slab::{Key, Slab};
use crate::slow_poll::{SlowPoll, SlowPolls, watch_clock};
use crate::task::{Name, Polling, Task, TaskFuture, TaskInfo};
use crate::trace::{Step, Trace};

mod spawn;
#[cfg(test)]
mod tests;
mod waker;

pub use spawn::{spawn, spawn_blocking, yield_now};
use waker::{KEY_BITS, LOOPS, RemoteQueue, Shared, task_waker, waker_word};

/// The executor's state: the tasks, the ready queue, and the context its futures see.
pub(crate) struct Inner {
    /// What the futures reach through the context's thread-local: the reactor, the clock.
    context: Rc<LoopContext>,
    /// Its place in `LOOPS` while `block_on` runs: the loop its wakers name.
    slot: Cell<Option<u16>>,
    shared: Arc<Shared>,
    tasks: RefCell<Slab<Task>>,
    /// Tasks to poll in the next round, in the order they were woken.
    ready: RefCell<Vec<Key>>,
    /// The `scheduled` flag of the `block_on` future, which has no slot.
    main_scheduled: Cell<bool>,
    next_id: Cell<u64>,
    /// When the next poll starts, on the slow-poll watch's clock.
    poll_started: Cell<Duration>,
    slow_polls: SlowPolls,
    trace: Trace,
}

static NEXT_LOOP_ID: AtomicU32 = AtomicU32::new(0);

// ANCHOR: current
thread_local! {
    /// The executor running on this thread, if any: how a waker called on the loop's
    /// own thread reaches the ready queue, and how `spawn` reaches the tasks.
    ///
    /// NB: the futures never read this one; theirs is the [context](crate::context)'s.
    /// Each hot path reads one thread-local: a wake or a spawn this, a sleep or a socket
    /// the context.
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}
// ANCHOR_END: current

/// A single-threaded event loop: an executor (the ready queue and the tasks) and a
/// [reactor](crate::reactor) (sockets and timers).
///
/// ```
/// use std::time::Duration;
/// use stage4_async_await::{EventLoop, sleep, spawn};
///
/// let event_loop = EventLoop::new()?;
/// let answer = event_loop.block_on(async {
///     let task = spawn(async {
///         sleep(Duration::from_millis(10)).await;
///         6 * 7
///     });
///     task.await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct EventLoop {
    inner: Inner,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("slow_poll_threshold", &self.inner.slow_polls.threshold)
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// A new loop: an epoll instance and an eventfd for cross-thread wakes.
    pub fn new() -> std::io::Result<EventLoop> {
        let reactor = Reactor::new()?;
        let waker = mio::Waker::new(reactor.registry(), WAKER_TOKEN)?;
        Ok(EventLoop {
            inner: Inner {
                context: Rc::new(LoopContext::new(
                    NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
                    reactor,
                    Trace::default(),
                )),
                slot: Cell::new(None),
                shared: Arc::new(Shared {
                    remote: Mutex::new(RemoteQueue::default()),
                    waker,
                    trace: Trace::default(),
                }),
                tasks: RefCell::new(Slab::new()),
                ready: RefCell::new(Vec::new()),
                main_scheduled: Cell::new(false),
                next_id: Cell::new(1),
                poll_started: Cell::new(Duration::ZERO),
                slow_polls: SlowPolls::new(),
                trace: Trace::default(),
            },
        })
    }

    /// Warn about polls longer than `threshold` (default 100 ms, like asyncio's
    /// `slow_callback_duration` in debug mode). `Duration::MAX` turns the warning off.
    pub fn slow_poll_threshold(mut self, threshold: Duration) -> EventLoop {
        self.inner.slow_polls.threshold = threshold;
        self
    }

    /// How many operations (accepts, reads, writes, timers due) a task may complete in
    /// one poll before the runtime's futures make it yield: [`DEFAULT_BUDGET`] unless
    /// set; `None` means no limit, so that a task whose sockets are always ready holds
    /// the loop (the `flood` example shows both).
    ///
    /// [`DEFAULT_BUDGET`]: crate::context::DEFAULT_BUDGET
    pub fn budget(mut self, per_poll: Option<u32>) -> EventLoop {
        // No future exists before `block_on`: the loop is the only owner.
        if let Some(context) = Rc::get_mut(&mut self.inner.context) {
            context.set_budget_per_poll(per_poll.unwrap_or(u32::MAX));
        }
        self
    }

    /// Call `hook` for each slow poll instead of printing the warning on stderr.
    pub fn on_slow_poll(mut self, hook: impl Fn(&SlowPoll) + 'static) -> EventLoop {
        self.inner.slow_polls.hook = Some(Box::new(hook));
        self
    }

    /// Print each step of the executor and the reactor on stdout (`--trace`; the
    /// [`trace`](crate::trace) module describes the lines).
    pub fn trace(mut self, on: bool) -> EventLoop {
        let trace = if on {
            Trace::starting_now()
        } else {
            Trace::default()
        };
        self.inner.trace = trace;
        // No waker and no future exists before `block_on`: the loop is the only owner.
        if let Some(context) = Rc::get_mut(&mut self.inner.context) {
            context.set_trace(trace);
        }
        if let Some(shared) = Arc::get_mut(&mut self.inner.shared) {
            shared.trace = trace;
        }
        self
    }

    // ANCHOR: block_on
    /// Runs `future` to completion on this thread, with every task it spawns, and
    /// returns its output.
    ///
    /// Tasks still running when `future` completes are dropped (cancelled), as
    /// `asyncio.run()` cancels the tasks left over.
    ///
    /// # Panics
    ///
    /// When called from inside a running event loop (a task or the future of another
    /// `block_on` on this thread): `.await` the future instead.
    #[track_caller]
    pub fn block_on<F: Future>(self, future: F) -> F::Output {
        let main = TaskInfo {
            id: None,
            spawned_at: Location::caller(),
        };
        let inner = Enter::new(self.inner, main);
        let inner = &inner.inner;
        inner.context.set_now(Instant::now());
        inner.poll_started.set(watch_clock());
        let mut future = pin!(future);
        // The main future is a task like the others, under the key no task has: it
        // waits its turn in the ready queue, so tasks woken before it (timers that
        // expired earlier) run before it, even if it is about to return.
        let main_waker = inner.waker(Key::NONE);
        inner.main_scheduled.set(true);
        inner.ready.borrow_mut().push(Key::NONE);
        let mut batch = Vec::new();
        let mut woken = Vec::new();
        loop {
            // Run every task that is ready now, in the order they were woken; tasks they
            // wake run in the next round, after the reactor had its turn, so I/O and
            // timers are never starved.
            inner.take_ready(&mut batch);
            for key in batch.drain(..) {
                if key != Key::NONE {
                    inner.poll_task(key);
                    continue;
                }
                inner.main_scheduled.set(false);
                let poll = inner.poll_timed(main, || {
                    future.as_mut().poll(&mut Context::from_waker(&main_waker))
                });
                if let Poll::Ready(output) = poll {
                    return output;
                }
            }
            inner.turn_reactor(&mut woken);
        }
    }
    // ANCHOR_END: block_on
}

/// Runs `future` on a new [`EventLoop`] with the default settings.
///
/// # Panics
///
/// When called from inside a running event loop (`.await` instead), or when the OS
/// refuses an epoll instance (out of file descriptors).
#[track_caller]
pub fn block_on<F: Future>(future: F) -> F::Output {
    match EventLoop::new() {
        Ok(event_loop) => event_loop.block_on(future),
        Err(error) => panic!("cannot create an event loop: {error}"),
    }
}

/// Installs the loop as this thread's current one for the duration of `block_on`: its
/// context for the futures, itself for the wakers, and its slot in `LOOPS` for wakes
/// from other threads.
struct Enter {
    inner: Rc<Inner>,
    /// The context's guard: refuses a nested `block_on`, and lets go of the context last.
    _context: Entered,
}

impl Enter {
    #[track_caller]
    fn new(inner: Inner, main: TaskInfo) -> Enter {
        let inner = Rc::new(inner);
        // Panics here if a loop already runs on this thread; nothing is set up yet.
        let context = context::enter(Rc::clone(&inner.context), main);
        CURRENT.with_borrow_mut(|current| *current = Some(Rc::clone(&inner)));
        let enter = Enter {
            inner,
            _context: context,
        };
        // Register for wakes from other threads (after `Enter` exists, whose drop
        // unregisters, even if this panics).
        let mut loops = LOOPS.lock().unwrap_or_else(PoisonError::into_inner);
        let free = loops.iter().position(Option::is_none);
        let slot = free.unwrap_or(loops.len());
        let Ok(slot16) = u16::try_from(slot) else {
            drop(loops);
            panic!("more than 65,536 event loops run at once: a waker cannot name them");
        };
        match free {
            Some(_) => loops[slot] = Some(Arc::clone(&enter.inner.shared)),
            None => loops.push(Some(Arc::clone(&enter.inner.shared))),
        }
        enter.inner.slot.set(Some(slot16));
        enter
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        // Whatever unwinds from here, the thread must not stay marked as running a loop:
        // every later `block_on` on it would be refused.
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                CURRENT.with_borrow_mut(|current| *current = None);
            }
        }
        let _leave = Leave;
        // Cancel leftover tasks while the loop is still current: their destructors may
        // deregister sockets or cancel timers. Dropping one may spawn another, hence the
        // loop. A destructor that panics does not stop the others from running; its
        // panic is raised again once all are dropped.
        let mut first_panic = None;
        loop {
            let tasks = self.inner.tasks.borrow_mut().drain();
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(task))) {
                    first_panic.get_or_insert(payload);
                }
            }
        }
        if let Some(slot) = self.inner.slot.take() {
            LOOPS.lock().unwrap_or_else(PoisonError::into_inner)[usize::from(slot)] = None;
        }
        drop(_leave);
        // Already unwinding (the main future panicked): a second panic would abort.
        if let Some(payload) = first_panic
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Inner {
    /// The waker of the task under `key` (`Key::NONE`: the `block_on` future).
    fn waker(&self, key: Key) -> Waker {
        task_waker(self.slot.get().expect("the loop is running"), key)
    }

    /// Queues the task a waker's `word` names, unless it is queued already or gone;
    /// `false` if the slab is busy (the caller then goes the remote way).
    fn wake_local(&self, word: u64) -> bool {
        let key = Key::from_u64(word & KEY_BITS);
        if key.index() == Key::NONE.index() {
            if !self.main_scheduled.replace(true) {
                self.trace.say(Step::Wake, format_args!("{}", Name(None)));
                self.ready.borrow_mut().push(Key::NONE);
            }
            return true;
        }
        let Ok(mut tasks) = self.tasks.try_borrow_mut() else {
            return false;
        };
        // A stale waker (its task finished, the slot maybe reused) finds no task, or
        // one whose generation differs; at worst, after 65,536 reuses of one slot, it
        // polls a task that did not need it, which `Future`'s contract allows.
        let Some((key, task)) = tasks.get_mut_by_short_key(key) else {
            return true;
        };
        if !task.set_scheduled(true) {
            if self.trace.is_on() {
                self.trace
                    .say(Step::Wake, format_args!("{}", Name(Some(task.id()))));
            }
            self.ready.borrow_mut().push(key);
        }
        true
    }

    /// Marks the task of `word` aborted and queues it, if it is this loop's and alive.
    fn abort(&self, word: u64) {
        let key = Key::from_u64(word & KEY_BITS);
        let mut tasks = self.tasks.borrow_mut();
        if let Some((key, task)) = tasks.get_mut_by_short_key(key) {
            task.abort();
            if !task.set_scheduled(true) {
                self.ready.borrow_mut().push(key);
            }
        }
    }

    /// Moves the tasks woken since the last round into `batch` (empty), those woken
    /// from other threads after the others.
    fn take_ready(&self, batch: &mut Vec<Key>) {
        let remote = {
            let mut remote = self
                .shared
                .remote
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            remote.queued.clear();
            std::mem::take(&mut remote.wakes)
        };
        for word in remote {
            self.wake_local(word);
        }
        std::mem::swap(&mut *self.ready.borrow_mut(), batch);
    }

    // ANCHOR: poll_task
    fn poll_task(&self, key: Key) {
        // A stale key (the task finished after it was queued) finds nothing.
        let mut tasks = self.tasks.borrow_mut();
        let Some(task) = tasks.get_mut(key) else {
            return;
        };
        if task.is_aborted() {
            // Dropped instead of polled: its destructors run (sockets close), and its
            // handle gets `JoinError::Cancelled`. Outside the borrow, as below.
            let task = tasks.remove(key);
            drop(tasks);
            self.trace.say(
                Step::Ready,
                format_args!("{} (aborted)", Name(task.as_ref().map(Task::id))),
            );
            drop(task);
            return;
        }
        // Out of the slab while it runs, so that it may spawn others; the placeholder
        // is a `Box` of a zero-sized type, which allocates nothing.
        let mut future = std::mem::replace(&mut task.future, Box::pin(Polling));
        let info = TaskInfo {
            id: Some(task.id()),
            spawned_at: future.spawned_at(),
        };
        // Clear the flag *before* polling: a wake during the poll queues the task again,
        // so it is polled again and no wake-up is lost.
        task.set_scheduled(false);
        drop(tasks);
        let waker = self.waker(key);
        let poll = self.poll_timed(info, || {
            future.as_mut().poll(&mut Context::from_waker(&waker))
        });
        match poll {
            Poll::Pending => {
                if let Some(task) = self.tasks.borrow_mut().get_mut(key) {
                    task.future = future;
                }
            }
            Poll::Ready(()) => {
                // Its wakers now find no task under this key: they do nothing.
                let task = self.tasks.borrow_mut().remove(key);
                // Dropped outside the borrow: the future's destructor may use the loop.
                drop((task, future));
            }
        }
    }
    // ANCHOR_END: poll_task

    /// Polls through `poll`, timing it against the slow-poll threshold.
    fn poll_timed<T>(&self, info: TaskInfo, poll: impl FnOnce() -> Poll<T>) -> Poll<T> {
        let name = Name(info.id);
        self.trace.say(Step::Poll, format_args!("{name}"));
        let previous = self.context.begin_poll(info);
        // The watch reads a coarse clock (10 ns here, against 40 to 60 for `Instant`),
        // once per poll: the end of one poll is the start of the next.
        let result = poll();
        let ended = watch_clock();
        let started = self.poll_started.replace(ended);
        self.slow_polls.check(info, ended.saturating_sub(started));
        self.context.end_poll(previous);
        let step = if result.is_ready() {
            Step::Ready
        } else {
            Step::Pending
        };
        self.trace.say(step, format_args!("{name}"));
        result
    }

    // ANCHOR: turn_reactor
    /// Fires expired timers and collects I/O events. Blocks only if no task is ready,
    /// and then only until the earliest deadline.
    fn turn_reactor(&self, woken: &mut Vec<Waker>) {
        // The one clock read of a busy turn: timers and `Sleep`s use it until the next.
        let now = Instant::now();
        self.context.set_now(now);
        self.fire_timers(now);
        let idle = {
            let mut remote = self
                .shared
                .remote
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let idle = self.ready.borrow().is_empty() && remote.wakes.is_empty();
            // From here on a wake from another thread must interrupt the wait.
            remote.sleeping = idle;
            idle
        };
        self.context.reactor().wait(idle, now, woken);
        self.shared
            .remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sleeping = false;
        for waker in woken.drain(..) {
            waker.wake();
        }
        if idle {
            // It slept: read the clock again, for the timers that woke it.
            let now = Instant::now();
            self.context.set_now(now);
            self.fire_timers(now);
        }
        // What happened in this turn is nobody's poll.
        self.poll_started.set(watch_clock());
    }
    // ANCHOR_END: turn_reactor

    fn fire_timers(&self, now: Instant) {
        loop {
            // One timer at a time: the waker runs with the reactor not borrowed.
            let expired = self.context.reactor().timers.pop_expired(now);
            let Some((key, waker)) = expired else {
                break;
            };
            self.trace
                .say(Step::Event, format_args!("timer {key} due: wakes 1 waiter"));
            waker.wake();
        }
    }

    fn spawn<T: 'static>(
        &self,
        future: impl Future<Output = T> + 'static,
        spawned_at: &'static Location<'static>,
    ) -> JoinHandle<T> {
        let mut tasks = self.tasks.borrow_mut();
        let key = tasks.next_key();
        let loop_slot = self.slot.get().expect("the loop is running");
        let (handle, completion) = join_pair(waker_word(loop_slot, key));
        let task = TaskFuture {
            future,
            completion,
            spawned_at,
        };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.trace
            .say(Step::Spawn, format_args!("{}", Name(Some(id))));
        // One allocation per task: the box. Its waker is made from its key when needed.
        let inserted = tasks.insert(Task::new(Box::pin(task), id));
        debug_assert_eq!(inserted, key);
        drop(tasks);
        self.ready.borrow_mut().push(key);
        handle
    }
}
