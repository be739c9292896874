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
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use crate::join_handle::{JoinError, JoinHandle, join_pair};
use crate::reactor::{Reactor, WAKER_TOKEN};
use crate::slab::{Key, Slab};
use crate::slow_poll::{SlowPoll, SlowPolls, watch_clock};
use crate::task::{Name, Polling, Task, TaskFuture, TaskInfo};
use crate::trace::{Step, Trace, Waiting};

// ANCHOR: ready_queue
/// A waker is two words: a vtable, and a data word that std hands back to the vtable's
/// functions. Ours puts no pointer there, only numbers: which loop (16 bits), and the
/// task's key in that loop's slab (its index, and the low 16 bits of its generation).
/// Nothing to count or free, so cloning or dropping a waker costs nothing, and a spawn
/// allocates no waker.
fn task_waker(loop_slot: u16, key: Key) -> Waker {
    let word = (u64::from(loop_slot) << 48) | (key.to_u64() & KEY_BITS);
    let data = std::ptr::without_provenance(word as usize);
    // SAFETY: the vtable's functions never dereference `data` (it is a number, not a
    // pointer), may be called from any thread (a wake from elsewhere goes through a
    // mutex), and clone and drop own nothing, so every contract of `RawWaker` holds.
    unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
}

/// The bits of a waker's word that hold the key: index, and 16 bits of generation.
const KEY_BITS: u64 = (1 << 48) - 1;

// A waker's word must hold 64 bits.
const _: () = assert!(
    usize::BITS == 64,
    "stage 4's wakers pack a loop and a task key into 64 bits: a 64-bit target is needed"
);

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake, drop_waker);

fn clone_waker(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn drop_waker(_: *const ()) {}

/// Both `wake` and `wake_by_ref`: queue the task, once.
fn wake(data: *const ()) {
    let word = data.addr() as u64;
    let loop_slot = (word >> 48) as u16;
    // On the loop's own thread (a timer, a socket, a task waking another): straight
    // into its ready queue, no lock and no atomic operation.
    let local = CURRENT.try_with(|current| match current.try_borrow().as_deref() {
        Ok(Some(inner)) if inner.slot.get() == Some(loop_slot) => inner.wake_local(word),
        _ => false,
    });
    if local != Ok(true) {
        // From another thread, or after the loop stopped: through the registry.
        let loops = LOOPS.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = loops.get(usize::from(loop_slot)).cloned().flatten();
        drop(loops);
        if let Some(shared) = shared {
            shared.push(word);
        }
    }
}

/// The running loops, by slot, for wakes from other threads. A slot is reused once its
/// loop has stopped: a waker that outlived its loop then wakes a task of the next one,
/// which is a spurious wake-up, allowed by `Future`'s contract.
static LOOPS: Mutex<Vec<Option<Arc<Shared>>>> = Mutex::new(Vec::new());

/// What wakers on other threads share with the loop: their wakes, and the `mio::Waker`
/// that interrupts the loop when it sleeps in `epoll_wait`.
#[derive(Debug)]
pub(crate) struct Shared {
    remote: Mutex<RemoteQueue>,
    waker: mio::Waker,
    /// `--trace`: wakes from other threads say so.
    pub(crate) trace: Trace,
}

#[derive(Debug, Default)]
struct RemoteQueue {
    /// Waker words; the loop queues their tasks at its next round.
    wakes: Vec<u64>,
    /// The same words, so that a task woken again and again from another thread while
    /// the loop is busy takes one place in `wakes`, not one per wake.
    queued: HashSet<u64>,
    /// The loop is (about to be) blocked in the reactor: a wake must interrupt it.
    sleeping: bool,
}

impl Shared {
    fn push(&self, word: u64) {
        if self.trace.is_on() {
            self.trace
                .say(Step::Wake, format_args!("a task, from another thread"));
        }
        let mut remote = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
        if remote.queued.insert(word) {
            remote.wakes.push(word);
        }
        let interrupt = std::mem::replace(&mut remote.sleeping, false);
        drop(remote);
        // Only a wake from another thread can find the loop asleep, so the common case,
        // a wake on the loop's own thread, never makes a system call.
        if interrupt && let Err(error) = self.waker.wake() {
            eprintln!("warning: could not interrupt the event loop: {error}");
        }
    }
}
// ANCHOR_END: ready_queue

/// The loop's state, reachable from futures on its thread through `CURRENT`.
pub(crate) struct Inner {
    /// Tells this loop's timer and socket keys from another loop's.
    pub(crate) id: u32,
    /// Its place in `LOOPS` while `block_on` runs: the loop its wakers name.
    slot: Cell<Option<u16>>,
    shared: Arc<Shared>,
    tasks: RefCell<Slab<Task>>,
    /// Tasks to poll in the next round, in the order they were woken.
    ready: RefCell<Vec<Key>>,
    /// The `scheduled` flag of the `block_on` future, which has no slot.
    main_scheduled: Cell<bool>,
    pub(crate) reactor: RefCell<Reactor>,
    next_id: Cell<u64>,
    running: Cell<Option<TaskInfo>>,
    /// The loop's clock, read once per turn of the loop (and again after it slept).
    /// Reading the real clock costs about 25 ns; read on every poll, it was 13% of a
    /// million tasks' time.
    clock: Cell<Instant>,
    /// When the next poll starts, on the slow-poll watch's clock.
    poll_started: Cell<Duration>,
    /// Ends the reactor's wait at a deadline to the nanosecond (made at the first timed
    /// wait; `Err` if the OS refused, and the wait is then precise to the millisecond).
    #[cfg(target_os = "linux")]
    precise_wake: std::cell::OnceCell<std::io::Result<crate::time::PreciseWake>>,
    slow_polls: SlowPolls,
    trace: Trace,
}

static NEXT_LOOP_ID: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// The event loop running on this thread, if any.
    static CURRENT: RefCell<Option<Rc<Inner>>> = const { RefCell::new(None) };
}

/// Runs `f` with the event loop of this thread; panics outside `block_on`, naming `what`.
pub(crate) fn with_current<R>(what: &str, f: impl FnOnce(&Inner) -> R) -> R {
    CURRENT.with_borrow(|current| match current {
        Some(inner) => f(inner),
        None => panic!(
            "{what} must be called from a future running inside block_on (no event loop \
             runs on this thread)"
        ),
    })
}

/// Like [`with_current`], but `None` when no loop runs here (for destructors).
pub(crate) fn try_with_current<R>(f: impl FnOnce(&Inner) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| current.try_borrow().ok()?.as_ref().map(|inner| f(inner)))
        .ok()
        .flatten()
}

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
                id: NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
                slot: Cell::new(None),
                shared: Arc::new(Shared {
                    remote: Mutex::new(RemoteQueue::default()),
                    waker,
                    trace: Trace::default(),
                }),
                tasks: RefCell::new(Slab::new()),
                ready: RefCell::new(Vec::new()),
                main_scheduled: Cell::new(false),
                reactor: RefCell::new(reactor),
                next_id: Cell::new(1),
                running: Cell::new(None),
                clock: Cell::new(Instant::now()),
                poll_started: Cell::new(Duration::ZERO),
                #[cfg(target_os = "linux")]
                precise_wake: std::cell::OnceCell::new(),
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
        self.inner.reactor.get_mut().trace = trace;
        // No waker exists before `block_on`: the loop is the only owner.
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
        let inner = &inner.0;
        inner.clock.set(Instant::now());
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

/// Installs the loop as this thread's current one for the duration of `block_on`.
struct Enter(Rc<Inner>);

impl Enter {
    #[track_caller]
    fn new(inner: Inner, main: TaskInfo) -> Enter {
        let inner = Rc::new(inner);
        CURRENT.with_borrow_mut(|current| {
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
            *current = Some(Rc::clone(&inner));
        });
        let enter = Enter(inner);
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
            Some(_) => loops[slot] = Some(Arc::clone(&enter.0.shared)),
            None => loops.push(Some(Arc::clone(&enter.0.shared))),
        }
        enter.0.slot.set(Some(slot16));
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
            let tasks = self.0.tasks.borrow_mut().drain();
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(task))) {
                    first_panic.get_or_insert(payload);
                }
            }
        }
        if let Some(slot) = self.0.slot.take() {
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

    /// The loop's clock: when the reactor last returned. Timers compare deadlines with
    /// it; a deadline it has not seen pass yet fires at the next reactor turn.
    pub(crate) fn now(&self) -> Instant {
        self.clock.get()
    }

    /// Polls through `poll`, timing it against the slow-poll threshold.
    fn poll_timed<T>(&self, info: TaskInfo, poll: impl FnOnce() -> Poll<T>) -> Poll<T> {
        let name = Name(info.id);
        self.trace.say(Step::Poll, format_args!("{name}"));
        let previous = self.running.replace(Some(info));
        // The watch reads a coarse clock (10 ns here, against 40 to 60 for `Instant`),
        // once per poll: the end of one poll is the start of the next.
        let result = poll();
        let ended = watch_clock();
        let started = self.poll_started.replace(ended);
        self.slow_polls.check(info, ended.saturating_sub(started));
        self.running.set(previous);
        let step = if result.is_ready() {
            Step::Ready
        } else {
            Step::Pending
        };
        self.trace.say(step, format_args!("{name}"));
        result
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

    // ANCHOR: turn_reactor
    /// Fires expired timers and collects I/O events. Blocks only if no task is ready,
    /// and then only until the earliest deadline.
    fn turn_reactor(&self, woken: &mut Vec<Waker>) {
        // The one clock read of a busy turn: timers and `Sleep`s use it until the next.
        let now = Instant::now();
        self.clock.set(now);
        self.fire_timers(now);
        let mut reactor = self.reactor.borrow_mut();
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
        let timeout = if idle {
            reactor
                .timers
                .next_deadline()
                .map(|deadline| deadline.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        #[cfg(target_os = "linux")]
        if let Some(timeout) = timeout.filter(|timeout| !timeout.is_zero()) {
            let wake = self
                .precise_wake
                .get_or_init(|| crate::time::PreciseWake::new(reactor.registry()));
            if let Ok(wake) = wake
                && let Err(error) = wake.set(timeout)
            {
                eprintln!(
                    "warning: timerfd_settime failed, timers are late by up to 1 ms: {error}"
                );
            }
        }
        // With work waiting and no socket registered there is nothing to ask the OS.
        if timeout != Some(Duration::ZERO) || reactor.sources() > 0 {
            if self.trace.is_on() {
                trace_wait(self.trace, &reactor, timeout);
            }
            reactor.wait(timeout, woken);
        }
        drop(reactor);
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
            self.clock.set(now);
            self.fire_timers(now);
        }
        // What happened in this turn is nobody's poll.
        self.poll_started.set(watch_clock());
    }
    // ANCHOR_END: turn_reactor

    fn fire_timers(&self, now: Instant) {
        loop {
            // One timer at a time: the waker runs with the reactor not borrowed.
            let expired = self.reactor.borrow_mut().timers.pop_expired(now);
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
        let (handle, completion) = join_pair();
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
        let key = self
            .tasks
            .borrow_mut()
            .insert(Task::new(Box::pin(task), id));
        self.ready.borrow_mut().push(key);
        handle
    }
}

/// Traces the reactor's turn: how long it may block, on how many sockets and timers.
fn trace_wait(trace: Trace, reactor: &Reactor, timeout: Option<Duration>) {
    let (sockets, timers) = (reactor.sources(), reactor.timers.len());
    match timeout {
        Some(Duration::ZERO) => trace.say(
            Step::Reactor,
            format_args!(
                "checks without waiting: tasks are ready ({sockets} socket(s), {timers} timer(s))"
            ),
        ),
        Some(timeout) => trace.say(
            Step::Reactor,
            format_args!(
                "waits {} ms at most ({sockets} socket(s), {timers} timer(s))",
                timeout.as_millis()
            ),
        ),
        None => trace.say(
            Step::Reactor,
            format_args!("waits for an event ({sockets} socket(s), {timers} timer(s))"),
        ),
    }
}

// ANCHOR: spawn
/// Starts `future` as a new task on this thread's event loop and returns a handle to
/// its result. The task runs whether or not the handle is awaited; dropping the handle
/// detaches it.
///
/// # Panics
///
/// Outside [`block_on`].
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let spawned_at = Location::caller();
    with_current("spawn", |inner| inner.spawn(future, spawned_at))
}
// ANCHOR_END: spawn

// ANCHOR: spawn_blocking
/// Runs `f` on a thread of its own and returns a future of its result: the way to call
/// something that blocks (a blocking library, a long computation) without blocking the
/// loop. The thread's result comes back through a futures-crate oneshot channel, whose
/// waker wakes the loop from that thread.
///
/// NB: one OS thread per call, to keep it short; tokio keeps a pool of them instead.
pub fn spawn_blocking<T, F>(f: F) -> impl Future<Output = Result<T, JoinError>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (sender, receiver) = futures::channel::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("spawn_blocking".into())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f)).map_err(JoinError::panicked);
            let _ = sender.send(outcome); // the receiver may be gone: nobody waits
        });
    async move {
        if let Err(error) = started {
            return Err(JoinError::NoThread(error.to_string().into()));
        }
        // A dropped sender without a value cannot happen: the thread always sends.
        receiver.await.unwrap_or(Err(JoinError::Cancelled))
    }
}
// ANCHOR_END: spawn_blocking

/// Gives the loop a turn: the current task goes to the back of the ready queue.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::time::sleep;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_loop_clock_advances_with_every_turn_and_never_runs_ahead() {
        block_on(async {
            let mut last = with_current("test", Inner::now);
            for _ in 0..3 {
                thread::sleep(5 * MS); // a busy poll: the clock must see it next turn
                yield_now().await;
                let now = with_current("test", Inner::now);
                assert!(now >= last + 5 * MS, "{:?} after {:?}", now - last, last);
                assert!(now <= Instant::now());
                last = now;
            }
        });
    }

    #[test]
    fn a_sleep_set_late_in_a_long_poll_still_lasts_its_duration() {
        // The loop's clock was read before this poll began, 50 ms before the sleep is
        // set: measured from that clock, the sleep would be over before it started.
        block_on(async {
            yield_now().await;
            thread::sleep(50 * MS);
            let set = Instant::now();
            sleep(20 * MS).await;
            assert!(set.elapsed() >= 20 * MS, "fired after {:?}", set.elapsed());
        });
    }

    #[test]
    fn a_waker_of_a_stopped_loop_is_harmless_even_when_its_slot_is_reused() {
        let stale =
            block_on(async { std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await });
        stale.wake_by_ref(); // no loop runs on this thread
        // The next loop on this thread may take the same slot in `LOOPS`: the stale
        // waker then wakes its main future, spuriously. Never a panic, a lost task or
        // a hang.
        let done = block_on(async move {
            let task = spawn(sleep(20 * MS));
            yield_now().await;
            let from_thread = stale.clone();
            thread::spawn(move || from_thread.wake()).join().unwrap();
            stale.wake();
            task.await
        });
        assert!(done.is_ok());
    }

    #[test]
    fn a_task_woken_again_and_again_from_another_thread_is_queued_once() {
        block_on(async {
            let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            // The loop is busy (in this very poll), so nothing drains the queue meanwhile.
            thread::spawn(move || (0..1000).for_each(|_| waker.wake_by_ref()))
                .join()
                .unwrap();
            let queued = with_current("test", |inner| {
                let remote = inner.shared.remote.lock().unwrap();
                remote.wakes.len()
            });
            assert_eq!(queued, 1);
        });
    }
}
