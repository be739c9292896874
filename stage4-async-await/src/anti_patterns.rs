//! The article's section 5, made measurable: four ways to get async wrong, each next to
//! the right way, returning what a reader would measure. The examples print them:
//!
//! ```text
//! cargo run --release -p stage4-async-await --example blocking_call
//! cargo run --release -p stage4-async-await --example nested_block_on
//! cargo run --release -p stage4-async-await --example sequential_awaits
//! cargo run --release -p stage4-async-await --example busy_polling
//! ```
//!
//! The tests assert on the same functions, so the figures in the book are the ones CI
//! checks the shape of.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use shared::Error;

use crate::client::make_tcp_request;
use crate::net::TcpListener;
use crate::{EventLoop, SlowPoll, block_on, join_all, sleep, spawn, spawn_blocking};

/// What happened to a heartbeat task that should tick every `period`.
#[derive(Debug, Clone)]
pub struct Stall {
    /// The heartbeat's period.
    pub period: Duration,
    /// The longest time between two ticks: the longest the loop was unavailable.
    pub longest_gap: Duration,
    /// The runtime's slow-poll warnings, in order.
    pub warnings: Vec<SlowPoll>,
}

/// How a task waits, for [`blocking_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `std::thread::sleep`: the whole thread, so the whole loop, sleeps.
    ThreadSleep,
    /// A request over blocking `std::net` sockets to the slow server at this address.
    BlockingSocket(SocketAddr),
    /// The runtime's `sleep(..).await`: only this task waits.
    AsyncSleep,
    /// `std::thread::sleep` moved to a thread of its own with `spawn_blocking`, awaited.
    SpawnBlocking,
}

// ANCHOR: blocking_call
/// Anti-pattern 1: a blocking call inside a task. A heartbeat task ticks every 20 ms
/// while another task waits `wait` for `duration`; the result says how long the
/// heartbeat was stalled and what the runtime warned (threshold: `threshold`).
pub fn blocking_call(wait: Wait, duration: Duration, threshold: Duration) -> Result<Stall, Error> {
    let ((), stall) = heartbeat_during(threshold, || async move {
        let waiter = spawn(async move {
            match wait {
                Wait::ThreadSleep => std::thread::sleep(duration), // blocks the loop
                Wait::BlockingSocket(addr) => blocking_request(addr, duration)?, // so does this
                Wait::AsyncSleep => sleep(duration).await,         // the right way
                // The other right way, for a call that cannot be made async:
                Wait::SpawnBlocking => spawn_blocking(move || std::thread::sleep(duration)).await?,
            }
            Ok::<(), Error>(())
        });
        waiter.await?
    })?;
    Ok(stall)
}

/// The measurement behind [`blocking_call`], for work of any shape (the hyper example's
/// `blocking_http` uses it too): runs the future that `work` makes on a new event loop
/// beside a heartbeat task that ticks every 20 ms, and returns its output with the
/// heartbeat's longest gap and the runtime's slow-poll warnings (threshold: `threshold`).
pub fn heartbeat_during<T, F>(
    threshold: Duration,
    work: impl FnOnce() -> F,
) -> Result<(T, Stall), Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let event_loop = EventLoop::new().map_err(|e| Error::io("creating the event loop", e))?;
    heartbeat_on(event_loop, Duration::from_millis(20), threshold, true, work)
}

/// [`heartbeat_during`] on a loop the caller set up, with a heartbeat of `period`;
/// `echo` prints each slow-poll warning on stderr as it comes.
fn heartbeat_on<T, F>(
    event_loop: EventLoop,
    period: Duration,
    threshold: Duration,
    echo: bool,
    work: impl FnOnce() -> F,
) -> Result<(T, Stall), Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let warnings = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&warnings);
    let event_loop = event_loop
        .slow_poll_threshold(threshold)
        .on_slow_poll(move |slow| {
            if echo {
                eprintln!("{slow}");
            }
            record.borrow_mut().push(*slow);
        });
    let (output, longest_gap) = event_loop.block_on(async move {
        let running = Rc::new(Cell::new(true));
        let beating = Rc::clone(&running);
        let heartbeat = spawn(async move {
            let (mut last, mut longest) = (Instant::now(), Duration::ZERO);
            while beating.get() {
                sleep(period).await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        });
        sleep(2 * period).await;
        let output = work().await?;
        sleep(2 * period).await;
        running.set(false);
        Ok::<_, Error>((output, heartbeat.await?))
    })?;
    let warnings = Rc::into_inner(warnings).map_or_else(Vec::new, RefCell::into_inner);
    let stall = Stall {
        period,
        longest_gap,
        warnings,
    };
    Ok((output, stall))
}
// ANCHOR_END: blocking_call

/// One request with std's blocking sockets, as stage 0 made it: fine on a thread of its
/// own, a disaster inside a task.
fn blocking_request(addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
    let io = |e| Error::io("blocking request", e);
    let mut stream =
        std::net::TcpStream::connect(addr).map_err(|source| Error::Connect { addr, source })?;
    stream.set_read_timeout(Some(2 * timeout)).map_err(io)?;
    stream
        .write_all(shared::protocol::request(0).as_bytes())
        .map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    Ok(())
}

// ANCHOR: nested_block_on
/// Anti-pattern 2: starting an event loop inside a running one. Returns the panic
/// message our `block_on` refuses with, which reaches us through the task's JoinHandle.
pub fn nested_block_on() -> String {
    block_on(async {
        let task = spawn(async {
            // Wrong: a second loop inside this task's poll would freeze the first one.
            block_on(sleep(Duration::from_millis(10)));
            // Right: `sleep(Duration::from_millis(10)).await;`
        });
        match task.await {
            Ok(()) => "no panic: the nested block_on ran".to_string(),
            Err(error) => error.to_string(),
        }
    })
}
// ANCHOR_END: nested_block_on

/// Wall times of the same requests made two ways.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// `for id in ids { make_tcp_request(..).await }`.
    pub sequential: Duration,
    /// `join_all(ids.map(make_tcp_request)).await`.
    pub concurrent: Duration,
}

// ANCHOR: sequential_awaits
/// Anti-pattern 3: awaiting in a loop where concurrency was wanted. Makes `requests`
/// requests to the server at `addr`, one `.await` after another, then all at once.
pub fn sequential_awaits(addr: SocketAddr, requests: u64) -> Result<Timings, Error> {
    let event_loop = EventLoop::new().map_err(|e| Error::io("creating the event loop", e))?;
    event_loop.block_on(async {
        // Each .await waits for its answer before the next request is even sent.
        let started = Instant::now();
        for id in 0..requests {
            make_tcp_request(addr, id).await?;
        }
        let sequential = started.elapsed();

        // The same futures, created first and awaited together: the article's gather.
        let started = Instant::now();
        let requests = (0..requests).map(|id| make_tcp_request(addr, id));
        for response in join_all(requests).await {
            response?;
        }
        let concurrent = started.elapsed();
        Ok(Timings {
            sequential,
            concurrent,
        })
    })
}
// ANCHOR_END: sequential_awaits

/// CPU time two executors used for the same idle wait.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    /// How long the wait lasted.
    pub wait: Duration,
    /// CPU time of the busy-polling executor over the wait.
    pub busy_polling: Duration,
    /// Polls the busy-polling executor made.
    pub busy_polls: u64,
    /// CPU time of our executor over the same wait.
    pub event_loop: Duration,
}

// ANCHOR: busy_block_on
/// The executor of anti-pattern 4: no wakers at all. It polls the future again and
/// again, and counts the polls, until the future is ready.
pub fn busy_block_on<F: Future>(future: F) -> (F::Output, u64) {
    let mut future = pin!(future);
    // A waker that does nothing: nobody will tell us when to poll, so we always do.
    let mut cx = Context::from_waker(Waker::noop());
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, polls);
        }
    }
}
// ANCHOR_END: busy_block_on

// ANCHOR: busy_polling
/// Anti-pattern 4: a busy-polling executor against ours, on the same idle wait: a
/// futures-crate oneshot that another thread fills after `wait`.
pub fn busy_polling(wait: Duration) -> CpuTimes {
    let idle_wait = || {
        let (sender, receiver) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(wait);
            let _ = sender.send(());
        });
        receiver
    };

    let before = thread_cpu_time();
    let (_, busy_polls) = busy_block_on(idle_wait());
    let busy_polling = thread_cpu_time().saturating_sub(before);

    let before = thread_cpu_time();
    let _ = block_on(idle_wait());
    let event_loop = thread_cpu_time().saturating_sub(before);
    CpuTimes {
        wait,
        busy_polling,
        busy_polls,
        event_loop,
    }
}
// ANCHOR_END: busy_polling

/// CPU time (user + system) the calling thread has used: `CLOCK_THREAD_CPUTIME_ID`,
/// which Linux and macOS both have (`getrusage(RUSAGE_THREAD)` is Linux only, and
/// `RUSAGE_SELF` would count the other threads of a test run too).
pub fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is valid for writes of one `timespec`, which is all it writes.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(
        status,
        0,
        "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed: {}",
        std::io::Error::last_os_error()
    );
    Duration::new(
        time.tv_sec.max(0) as u64,
        time.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

// ANCHOR: flood
/// What a flood of connections did to the loop, for [`flood`].
#[derive(Debug, Clone)]
pub struct Flood {
    /// Connections the accept loop took (all of them, or the run failed).
    pub accepted: u64,
    /// From the first accept to the last.
    pub elapsed: Duration,
    /// The accept loop's longest poll: how long it held the loop at once (on the
    /// slow-poll watch's clock, precise to a kernel tick, 1 to 4 ms).
    pub longest_accept_poll: Duration,
    /// The heartbeat beside it, every 10 ms.
    pub stall: Stall,
}

/// The task that is always ready: an accept loop under a flood of `connections` (two
/// threads connect and hang up as fast as they can, after filling the listen queue),
/// which spawns a reader per connection, beside a heartbeat every 10 ms, on a loop whose
/// budget per poll is `budget` (`None`: no limit). Without a budget, every accept
/// completes at once, the loop never meets a `Pending`, and everyone else waits.
pub fn flood(connections: u64, budget: Option<u32>) -> Result<Flood, Error> {
    let event_loop = EventLoop::new()
        .map_err(|e| Error::io("creating the event loop", e))?
        .budget(budget);
    let period = Duration::from_millis(10);
    let ((accepted, elapsed), stall) =
        heartbeat_on(event_loop, period, Duration::ZERO, false, || async move {
            let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .map_err(|e| Error::io("binding the flood's listener", e))?;
            let addr = listener
                .local_addr()
                .map_err(|e| Error::io("local_addr", e))?;
            let connected = Arc::new(AtomicU64::new(0));
            let clients = flood_clients(addr, connections, &connected);
            // The flood starts with the listen queue full: a burst the loop cannot
            // keep up with, as when a load balancer sends a thousand clients at once.
            let queued = connections.min(listen_queue_room());
            while connected.load(Ordering::Relaxed) < queued {
                sleep(Duration::from_millis(1)).await;
            }
            let accept_loop = spawn(async move {
                let start = Instant::now();
                let mut accepted = 0;
                while accepted < connections {
                    let (stream, _) = listener
                        .accept()
                        .await
                        .map_err(|e| Error::io("accepting in the flood", e))?;
                    accepted += 1;
                    // A plain server: one task per connection (here, reading to the end).
                    drop(spawn(async move {
                        let mut buf = [0; 64];
                        while let Ok(1..) = stream.read(&mut buf).await {}
                    }));
                }
                Ok::<_, Error>((accepted, start.elapsed()))
            });
            let (accepted, elapsed) = accept_loop.await??;
            for client in clients {
                client
                    .join()
                    .map_err(|_| Error::Other("a flood client panicked".into()))??;
            }
            Ok((accepted, elapsed))
        })?;
    // Tasks are numbered in spawn order: the heartbeat is task 1, the accept loop 2.
    let longest_accept_poll = stall
        .warnings
        .iter()
        .filter(|slow| slow.task.id == Some(2))
        .map(|slow| slow.took)
        .max()
        .unwrap_or_default();
    Ok(Flood {
        accepted,
        elapsed,
        longest_accept_poll,
        stall,
    })
}

/// Two threads that open `connections` connections to `addr` between them and close
/// each at once, counting them in `connected`.
fn flood_clients(
    addr: SocketAddr,
    connections: u64,
    connected: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<Result<(), Error>>> {
    (0..2)
        .map(|half| {
            let connected = Arc::clone(connected);
            let share = connections / 2 + if half == 0 { connections % 2 } else { 0 };
            std::thread::spawn(move || {
                for _ in 0..share {
                    let stream = std::net::TcpStream::connect(addr)
                        .map_err(|source| Error::Connect { addr, source })?;
                    drop(stream); // hung up: the server reads the end of the stream
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect()
}

/// How many connections the kernel queues for a listener: the smaller of our backlog
/// and `net.core.somaxconn`, less a margin (macOS's default is 128).
fn listen_queue_room() -> u64 {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(128);
    let backlog = u64::try_from(crate::net::LISTEN_BACKLOG).unwrap_or(128);
    somaxconn.min(backlog) * 3 / 4
}
// ANCHOR_END: flood
