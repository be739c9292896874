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
//! - [`spawn`] starts a task and returns a [`JoinHandle`], itself a future of the task's
//!   result. Dropping the handle detaches the task; a panic in the task reaches the
//!   joiner as a [`JoinError`] and the other tasks keep running.
//! - A waker is an `Arc` implementing [`std::task::Wake`]: it may be cloned, stored,
//!   called many times, after its task finished, or from another thread; a wake from
//!   another thread interrupts the reactor's wait through a `mio::Waker`.
//! - A poll that takes longer than a threshold (100 ms by default) prints a warning
//!   naming the task: something blocked the loop (see the anti-patterns chapter).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use crate::reactor::{Reactor, WAKER_TOKEN};
use crate::slab::{Key, Slab};

/// How long one poll may take before the loop warns that a task blocked it.
pub const DEFAULT_SLOW_POLL_THRESHOLD: Duration = Duration::from_millis(100);

// ANCHOR: ready_queue
/// What the wakers share with the loop, across threads: the ready queue, and the
/// `mio::Waker` that interrupts the loop when it sleeps in `epoll_wait`.
#[derive(Debug)]
struct Shared {
    ready: Mutex<ReadyQueue>,
    waker: mio::Waker,
}

#[derive(Debug, Default)]
struct ReadyQueue {
    tasks: Vec<Key>,
    /// The loop is (about to be) blocked in the reactor: a wake must interrupt it.
    sleeping: bool,
}

impl Shared {
    fn push(&self, key: Key) {
        let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        ready.tasks.push(key);
        let interrupt = std::mem::replace(&mut ready.sleeping, false);
        drop(ready);
        // Only a wake from another thread can find the loop asleep, so the common case,
        // a wake from a task or a timer on the loop's own thread, makes no system call.
        if interrupt && let Err(error) = self.waker.wake() {
            eprintln!("warning: could not interrupt the event loop: {error}");
        }
    }
}

/// A task's waker. `scheduled` is true while the task sits in the ready queue, so a task
/// woken a thousand times before it runs is queued once.
#[derive(Debug)]
struct TaskWaker {
    key: Key,
    scheduled: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.shared.push(self.key);
        }
    }
}
// ANCHOR_END: ready_queue

// ANCHOR: task
/// A spawned task: its future, boxed so that tasks of every type fit in one slab, and
/// its waker, made once and reused for every poll.
struct Task {
    /// `None` while the task is being polled (it is out of the slab for that time, so the
    /// task itself may spawn others).
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    waker: Arc<TaskWaker>,
    id: u64,
    spawned_at: &'static Location<'static>,
}
// ANCHOR_END: task

/// Which task is running, for warnings and panic messages.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo {
    /// The task's number, in spawn order from 1; `None` for the future given to `block_on`.
    pub id: Option<u64>,
    /// Where `spawn` (or `block_on`) was called.
    pub spawned_at: &'static Location<'static>,
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "task {id}, spawned at {},", self.spawned_at),
            None => write!(f, "the block_on future at {}", self.spawned_at),
        }
    }
}

/// A poll that took longer than the loop's threshold: every other task waited that long.
#[derive(Debug, Clone, Copy)]
pub struct SlowPoll {
    /// The task whose poll it was.
    pub task: TaskInfo,
    /// How long the poll took.
    pub took: Duration,
    /// The threshold it crossed.
    pub threshold: Duration,
}

impl fmt::Display for SlowPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {} blocked the event loop for {} ms in one poll (threshold {} ms); \
             is there a blocking call (std::thread::sleep, std::net, heavy computation) \
             in async code?",
            self.task,
            self.took.as_millis(),
            self.threshold.as_millis()
        )
    }
}

type SlowPollHook = Box<dyn Fn(&SlowPoll)>;

/// The loop's state, reachable from futures on its thread through `CURRENT`.
pub(crate) struct Inner {
    /// Tells this loop's timer and socket keys from another loop's.
    pub(crate) id: u32,
    shared: Arc<Shared>,
    tasks: RefCell<Slab<Task>>,
    pub(crate) reactor: RefCell<Reactor>,
    next_id: Cell<u64>,
    running: Cell<Option<TaskInfo>>,
    /// The loop's clock: when the last poll or the last reactor turn ended. Reading the
    /// real clock costs ~25 ns; a million timers make that count.
    clock: Cell<Instant>,
    slow_poll_threshold: Duration,
    on_slow_poll: Option<SlowPollHook>,
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
            .field("slow_poll_threshold", &self.inner.slow_poll_threshold)
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
                shared: Arc::new(Shared {
                    ready: Mutex::new(ReadyQueue::default()),
                    waker,
                }),
                tasks: RefCell::new(Slab::new()),
                reactor: RefCell::new(reactor),
                next_id: Cell::new(1),
                running: Cell::new(None),
                clock: Cell::new(Instant::now()),
                slow_poll_threshold: DEFAULT_SLOW_POLL_THRESHOLD,
                on_slow_poll: None,
            },
        })
    }

    /// Warn about polls longer than `threshold` (default 100 ms, like asyncio's
    /// `slow_callback_duration` in debug mode). `Duration::MAX` turns the warning off.
    pub fn slow_poll_threshold(mut self, threshold: Duration) -> EventLoop {
        self.inner.slow_poll_threshold = threshold;
        self
    }

    /// Call `hook` for each slow poll instead of printing the warning on stderr.
    pub fn on_slow_poll(mut self, hook: impl Fn(&SlowPoll) + 'static) -> EventLoop {
        self.inner.on_slow_poll = Some(Box::new(hook));
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
        let mut future = pin!(future);
        // The main future is a task like the others, under the key no task has: it
        // waits its turn in the ready queue, so tasks woken before it (timers that
        // expired earlier) run before it, even if it is about to return.
        let main_waker = Arc::new(TaskWaker {
            key: Key::NONE,
            scheduled: AtomicBool::new(true), // queued just below
            shared: Arc::clone(&inner.shared),
        });
        inner.shared.push(Key::NONE);
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
                main_waker.scheduled.store(false, Ordering::Release);
                let waker = Waker::from(Arc::clone(&main_waker));
                let poll = inner.timed(main, || {
                    future.as_mut().poll(&mut Context::from_waker(&waker))
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
        Enter(inner)
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
    fn take_ready(&self, batch: &mut Vec<Key>) {
        let mut ready = self
            .shared
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut ready.tasks, batch);
    }

    // ANCHOR: poll_task
    fn poll_task(&self, key: Key) {
        // A stale key (the task finished after it was queued) finds nothing.
        let mut tasks = self.tasks.borrow_mut();
        let Some(task) = tasks.get_mut(key) else {
            return;
        };
        let Some(mut future) = task.future.take() else {
            return;
        };
        let waker = Arc::clone(&task.waker);
        let info = TaskInfo {
            id: Some(task.id),
            spawned_at: task.spawned_at,
        };
        drop(tasks); // the task may spawn others while it runs
        // Clear the flag *before* polling: a wake during the poll queues the task again,
        // so it is polled again and no wake-up is lost.
        waker.scheduled.swap(false, Ordering::AcqRel);
        let task_waker = Waker::from(Arc::clone(&waker));
        let poll = self.timed(info, || {
            future.as_mut().poll(&mut Context::from_waker(&task_waker))
        });
        match poll {
            Poll::Pending => {
                if let Some(task) = self.tasks.borrow_mut().get_mut(key) {
                    task.future = Some(future);
                }
            }
            Poll::Ready(()) => {
                // Wakes after this point are no-ops: the flag stays set forever.
                waker.scheduled.store(true, Ordering::Release);
                let task = self.tasks.borrow_mut().remove(key);
                // Dropped outside the borrow: the future's destructor may use the loop.
                drop((task, future));
            }
        }
    }
    // ANCHOR_END: poll_task

    /// The loop's clock, at most one poll behind the real one. Timers compare deadlines
    /// with it: a deadline that passed meanwhile fires at the next reactor turn.
    pub(crate) fn now(&self) -> Instant {
        self.clock.get()
    }

    /// Polls through `poll`, timing it against the slow-poll threshold.
    fn timed<T>(&self, info: TaskInfo, poll: impl FnOnce() -> T) -> T {
        let previous = self.running.replace(Some(info));
        // One clock read per poll: the end of this poll is the start of the next.
        let started = self.clock.get();
        let result = poll();
        let ended = Instant::now();
        self.clock.set(ended);
        let took = ended.saturating_duration_since(started);
        self.running.set(previous);
        if took >= self.slow_poll_threshold {
            let slow = SlowPoll {
                task: info,
                took,
                threshold: self.slow_poll_threshold,
            };
            match &self.on_slow_poll {
                Some(hook) => hook(&slow),
                None => eprintln!("{slow}"),
            }
        }
        result
    }

    // ANCHOR: turn_reactor
    /// Fires expired timers and collects I/O events. Blocks only if no task is ready,
    /// and then only until the earliest deadline.
    fn turn_reactor(&self, woken: &mut Vec<Waker>) {
        let now = Instant::now();
        self.fire_timers(now);
        let mut reactor = self.reactor.borrow_mut();
        let idle = {
            let mut ready = self
                .shared
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let idle = ready.tasks.is_empty();
            // From here on a wake from another thread must interrupt the wait.
            ready.sleeping = idle;
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
        // With work waiting and no socket registered there is nothing to ask the OS.
        if timeout != Some(Duration::ZERO) || reactor.sources() > 0 {
            reactor.wait(timeout, woken);
        }
        drop(reactor);
        self.shared
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sleeping = false;
        for waker in woken.drain(..) {
            waker.wake();
        }
        if idle {
            self.fire_timers(Instant::now());
        }
        // What happened in this turn is nobody's poll: start the clock for the next one.
        self.clock.set(Instant::now());
    }
    // ANCHOR_END: turn_reactor

    fn fire_timers(&self, now: Instant) {
        loop {
            // One timer at a time: the waker runs with the reactor not borrowed.
            let waker = self.reactor.borrow_mut().timers.pop_expired(now);
            match waker {
                Some(waker) => waker.wake(),
                None => break,
            }
        }
    }

    fn spawn<T: 'static>(
        &self,
        future: impl Future<Output = T> + 'static,
        spawned_at: &'static Location<'static>,
    ) -> JoinHandle<T> {
        let state = Rc::new(Cell::new(JoinState::Running(None)));
        let task = TaskFuture {
            future,
            completion: Completion(Rc::clone(&state)),
        };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut tasks = self.tasks.borrow_mut();
        let key = tasks.next_key();
        let waker = Arc::new(TaskWaker {
            key,
            scheduled: AtomicBool::new(true), // it is about to be queued
            shared: Arc::clone(&self.shared),
        });
        let inserted = tasks.insert(Task {
            future: Some(Box::pin(task)),
            waker,
            id,
            spawned_at,
        });
        debug_assert_eq!(inserted, key);
        drop(tasks);
        self.shared.push(key);
        JoinHandle { state }
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

// ANCHOR: task_future
pin_project! {
    /// What a spawned task runs: the user's future, then the hand-over of its output.
    struct TaskFuture<F: Future> {
        #[pin]
        future: F,
        completion: Completion<F::Output>,
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // A panic ends this task only: it is caught here, at the task's edge, and handed
        // to the JoinHandle; the loop and the other tasks go on.
        match catch_unwind(AssertUnwindSafe(|| this.future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.completion.complete(Ok(output));
                Poll::Ready(())
            }
            Err(payload) => {
                this.completion.complete(Err(JoinError::panicked(payload)));
                Poll::Ready(())
            }
        }
    }
}
// ANCHOR_END: task_future

// ANCHOR: join_handle
/// The result of a spawned task, as a future: the article's `Task` is awaitable the same
/// way. Output: `Ok(value)`, or a [`JoinError`] if the task panicked or was cancelled.
#[must_use = "a JoinHandle does nothing unless awaited; dropping it detaches the task"]
pub struct JoinHandle<T> {
    state: Rc<Cell<JoinState<T>>>,
}

/// Where a task's result is: shared by the task and its `JoinHandle`, one thread only.
enum JoinState<T> {
    /// The task runs; the waker of whoever awaits the handle, once someone does.
    Running(Option<Waker>),
    /// The task is done; the result waits for the handle.
    Finished(Result<T, JoinError>),
    /// The handle has returned the result.
    Taken,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.state.replace(JoinState::Taken) {
            JoinState::Finished(outcome) => Poll::Ready(outcome),
            // Replace rather than keep the first waker: the joiner may have moved to
            // another task (a JoinHandle inside a `select`, say).
            JoinState::Running(_) => {
                self.state.set(JoinState::Running(Some(cx.waker().clone())));
                Poll::Pending
            }
            JoinState::Taken => panic!("JoinHandle polled after it returned its result"),
        }
    }
}
// ANCHOR_END: join_handle

impl<T> JoinHandle<T> {
    /// Whether the task has finished (its result may be waiting in the handle).
    pub fn is_finished(&self) -> bool {
        let state = self.state.replace(JoinState::Taken);
        let finished = !matches!(state, JoinState::Running(_));
        self.state.set(state);
        finished
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Hands the task's outcome to its `JoinHandle`; if the task is dropped before it
/// finished (its loop stopped), the handle gets [`JoinError::Cancelled`].
struct Completion<T>(Rc<Cell<JoinState<T>>>);

impl<T> Completion<T> {
    fn complete(&self, outcome: Result<T, JoinError>) {
        if let JoinState::Running(Some(joiner)) = self.0.replace(JoinState::Finished(outcome)) {
            joiner.wake();
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        match self.0.replace(JoinState::Taken) {
            JoinState::Running(joiner) => {
                self.0.set(JoinState::Finished(Err(JoinError::Cancelled)));
                if let Some(joiner) = joiner {
                    joiner.wake();
                }
            }
            done => self.0.set(done),
        }
    }
}

/// Why a task has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The task panicked; the panic message (or `Box<dyn Any>` for other payloads). A
    /// `Box<str>`, not a `String`, keeps every task's join state 8 bytes smaller.
    Panicked(Box<str>),
    /// The task was dropped before it finished, because its event loop stopped.
    Cancelled,
    /// [`spawn_blocking`] could not start a thread; what the OS said.
    NoThread(Box<str>),
}

impl JoinError {
    fn panicked(payload: Box<dyn Any + Send>) -> JoinError {
        let message: Box<str> = if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).into()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.as_str().into()
        } else {
            "Box<dyn Any>".into()
        };
        JoinError::Panicked(message)
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(message) => write!(f, "task panicked: {message}"),
            JoinError::Cancelled => {
                f.write_str("task cancelled: its event loop stopped before it finished")
            }
            JoinError::NoThread(error) => {
                write!(f, "spawn_blocking could not start a thread: {error}")
            }
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for shared::Error {
    fn from(error: JoinError) -> shared::Error {
        shared::Error::Other(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The book's per-task table counts on these; a change should be a decision.
    #[test]
    fn the_parts_of_a_task_stay_small() {
        assert!(std::mem::size_of::<Task>() <= 40);
        assert!(std::mem::size_of::<TaskWaker>() <= 24);
        assert!(std::mem::size_of::<JoinState<()>>() <= 24);
    }
}
