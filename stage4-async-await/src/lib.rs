//! Stage 4: `async`/`await` on std's `Future`, run by an executor and a reactor we build
//! ourselves.
//!
//! Read stage 3 first: its four players (generator, `Future`, `Task`, `EventLoop`) are all
//! here, renamed. The generator is now written by the compiler: an `async fn` is a state
//! machine ([`client`], and [`desugared`] for the same state machine written by hand).
//!
//! The modules are layers, and this is their reading order, bottom up: each file uses only
//! the files listed before it (`.ci/check-layers` fails on an import that runs upward).
//!
//! 1. Leaves, which know nothing of the runtime: `slab` (the slots tasks, sockets and
//!    timers live in), [`trace`] (`--trace` lines), [`join_handle`] (a task's result),
//!    [`task`] (the article's `Task`: a boxed future and its flags), [`slow_poll`].
//! 2. Driver parts, which know [`Waker`](std::task::Waker)s and nothing of tasks:
//!    [`timers`] (every deadline in one queue, and the precise wake-up), and on Linux the
//!    io_uring ring (`uring::ring`).
//! 3. The [`reactor`], which owns the driver parts and waits on mio (epoll, kqueue) until
//!    a socket is ready or a timer is due; it hands up nothing but wakers.
//! 4. The [`context`]: the one thread-local the futures see (the loop's id, its reactor,
//!    its clock, tracing), installed by `block_on`, which refuses to nest.
//! 5. The futures, the article's `Future`: [`time`] (`sleep`, `timeout`), [`net`]
//!    (`TcpStream`, `TcpListener`), [`join`] (`join_all`), and on Linux `uring` (the same
//!    sockets on io_uring, with owned buffers). They use the context, never the executor.
//! 6. The [`executor`], the article's `EventLoop`: the ready queue, the tasks and their
//!    wakers, `block_on`, `spawn`.
//! 7. The programs: [`client`] (`make_tcp_request` and `consume_response`), [`desugared`],
//!    [`anti_patterns`], and [`run`] below.
//!
//! ```text
//! cargo run -p stage4-async-await                                   # ten requests, ~5 s
//! cargo run -p stage4-async-await -- --requests 2 --delay-ms 200 --trace
//! cargo run --release -p stage4-async-await -- --requests 9000 --delay-ms 100
//! cargo run --release -p stage4-async-await --example task_sleep_bench -- 1000000 1000000 10
//! cargo run -p stage4-async-await -- --driver uring                 # io_uring (Linux)
//! ```
//!
//! - [`EventLoop`], [`block_on`], [`spawn`], [`JoinHandle`] (with `abort`),
//!   [`AbortHandle`], [`yield_now`], [`spawn_blocking`]: the executor.
//! - [`sleep`], [`sleep_until`], [`timeout`]: timers.
//! - [`net::TcpStream`], [`net::TcpListener`]: sockets; on Linux, `uring::TcpStream` and
//!   `uring::TcpListener` (`--driver uring`): the kernel does the I/O and owns the buffer
//!   meanwhile, so reads and writes take a `Vec<u8>` and give it back; a dropped read or
//!   write loses nothing (the stream's next one takes it over).
//! - [`join_all`]: the article's `asyncio.gather`.
//! - [`run`] and [`sleep_bench`]: the article's demo and benchmark.
//!
//! Any standard future runs here, including the `futures` crate's channels, locks and
//! streams: the runtime only ever talks to a future through `poll` and a `Waker`.

use std::cell::RefCell;
use std::rc::Rc;

use shared::{Config, Error, Report, request_ids};

pub mod anti_patterns;
pub mod client;
pub mod context;
pub mod desugared;
pub mod executor;
#[cfg(feature = "hyper")]
pub mod hyper;
pub mod join;
pub mod join_handle;
pub mod net;
pub mod reactor;
mod slab;
mod sleep_bench;
pub mod slow_poll;
pub mod task;
pub mod time;
pub mod timers;
pub mod trace;
#[cfg(target_os = "linux")]
pub mod uring;

pub use executor::{EventLoop, block_on, spawn, spawn_blocking, yield_now};
pub use join::{JoinAll, join_all};
pub use join_handle::{AbortHandle, JoinError, JoinHandle};
pub use sleep_bench::{run_jobs, sleep_bench};
pub use slow_poll::{DEFAULT_SLOW_POLL_THRESHOLD, SlowPoll};
pub use task::TaskInfo;
pub use time::{Elapsed, Sleep, sleep, sleep_until, timeout};

/// How [`run_with`] runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print each step of the executor and the reactor.
    pub trace: bool,
    /// Which I/O the requests use: readiness (mio) or completion (io_uring).
    pub driver: Driver,
}

// ANCHOR: driver
/// How the tasks' sockets do I/O. The executor and the timers are the same for both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// Readiness: mio (epoll, kqueue) says when a socket is ready, then the task reads.
    #[default]
    Mio,
    /// Completion: io_uring reads and writes for the task and says when it is done
    /// (Linux 5.6 or later).
    Uring,
}
// ANCHOR_END: driver

/// Makes `config.requests` requests at once, one task each, and verifies the answers.
pub fn run(config: &Config) -> Result<Report, Error> {
    run_with(config, &Options::default())
}

// ANCHOR: run
/// [`run`], with tracing if asked for.
pub fn run_with(config: &Config, options: &Options) -> Result<Report, Error> {
    let event_loop = EventLoop::new()
        .map_err(|e| Error::io("creating the event loop", e))?
        .trace(options.trace);
    let report = Rc::new(RefCell::new(Report::start(config)));
    // block_on cancels the tasks still running (after a timeout or an error): their
    // sockets close.
    event_loop.block_on(async {
        if options.driver == Driver::Uring {
            check_uring()?; // no io_uring here: one clear error, before any request
        }
        run_tasks(config, options.driver, &report).await
    })?;
    let report = Rc::try_unwrap(report)
        .map_err(|_| Error::Other("a task outlived its event loop".into()))?;
    report.into_inner().finish()
}

/// One task per request, and the main future waits for all of them.
async fn run_tasks(
    config: &Config,
    driver: Driver,
    report: &Rc<RefCell<Report>>,
) -> Result<(), Error> {
    let mut tasks = Vec::new();
    for id in request_ids(config.requests) {
        let (report, config) = (report.clone(), config.clone());
        let task = spawn(async move {
            let record = |id, response| report.borrow_mut().record(id, response);
            match driver {
                Driver::Mio => client::consume_response(&config, id, record).await,
                #[cfg(target_os = "linux")]
                Driver::Uring => uring::consume_response(&config, id, record).await,
                #[cfg(not(target_os = "linux"))]
                Driver::Uring => unreachable!("check_uring refused it"),
            }
        });
        tasks.push(task);
    }
    // Python: `asyncio.gather(*tasks)`, a future that waits for each of the others.
    // NB: one deadline for the whole run rather than a timer per request: all requests
    // start at once, so it is the same limit, and the loop stays small.
    match timeout(config.timeout, join_all(tasks)).await {
        // Only a panic in a task ends up in a JoinError.
        Ok(joined) => joined.into_iter().try_for_each(|task| Ok(task?)),
        // Requests still unanswered fail in the report; the answers we have still count.
        Err(_elapsed) => {
            report.borrow_mut().time_out_unanswered(config.timeout);
            Ok(())
        }
    }
}
// ANCHOR_END: run

/// Whether the io_uring driver can run here: an error that says why not.
fn check_uring() -> Result<(), Error> {
    #[cfg(target_os = "linux")]
    return uring::check().map_err(|e| Error::io("--driver uring", e));
    #[cfg(not(target_os = "linux"))]
    return Err(Error::Other(
        "--driver uring: io_uring is Linux-only; on this OS use --driver mio (the default), \
         which runs on kqueue"
            .into(),
    ));
}
