//! Stage 3: generators, and the article's four players (generator, `Future`, `Task`,
//! `EventLoop`).
//!
//! Read stage 2 first: its event loop drives one hand-written state machine per
//! connection. Here the state machine is gone. Each request is a task whose code reads
//! like the blocking client of stage 0, because it runs on a stack of its own (a
//! stackful coroutine, [`generator`]) and suspends wherever it would have blocked.
//!
//! The players, in the order to read them:
//!
//! 1. [`generator`]: `resume` / `suspend` (Python's `send` / `yield`), on stacks from
//!    [`stack`], switched by a few lines of assembly.
//! 2. [`future`]: a result not there yet, with done-callbacks.
//! 3. [`task`]: steps a generator; when it yields a future, steps it again once that
//!    future is done.
//! 4. [`event_loop`]: runs ready callbacks, turns socket readiness and timers into
//!    completed futures.
//!
//! Then [`client`]: `make_tcp_request` and `consume_response`, and [`run`] below. The
//! coroutine side of the article's benchmark is [`sleep_bench`].
//!
//! `cargo run -p stage3-generators` (add `-- --trace` to watch the players at work).

pub mod client;
pub mod event_loop;
pub mod future;
pub mod generator;
mod sleep_bench;
pub mod stack;
mod switch;
pub mod task;

use std::cell::RefCell;
use std::rc::Rc;

use shared::{Config, Error, Report, request_ids};

pub use sleep_bench::{SleepBench, sleep_bench, sleep_bench_probed, sleep_bench_with};

use event_loop::EventLoop;
use task::Task;

/// How [`run_with`] runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Print each step of the loop, the tasks and their futures.
    pub trace: bool,
    /// Usable bytes of each task's stack.
    pub stack_size: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            trace: false,
            stack_size: stack::DEFAULT_STACK_SIZE,
        }
    }
}

/// Makes `config.requests` requests at once, one task each, and verifies the answers.
pub fn run(config: &Config) -> Result<Report, Error> {
    run_with(config, &Options::default())
}

// ANCHOR: run
/// [`run`], with options: tracing, the size of each task's stack.
pub fn run_with(config: &Config, options: &Options) -> Result<Report, Error> {
    stack::check_stack_budget(config.requests + 1)?;
    let event_loop = EventLoop::new(options.trace)?;
    event_loop.set_stack_size(options.stack_size);
    let report = Rc::new(RefCell::new(Report::start(config)));
    let outcome = run_tasks(&event_loop, config, &report);
    // Cancel the tasks still suspended (after a timeout or an error): their sockets close.
    event_loop.close();
    stack::release_free_stacks();
    outcome?;
    let report = Rc::try_unwrap(report)
        .map_err(|_| Error::Other("a task outlived its event loop".into()))?;
    report.into_inner().finish()
}

/// One task per request, and one that waits for all of them.
fn run_tasks(
    event_loop: &EventLoop,
    config: &Config,
    report: &Rc<RefCell<Report>>,
) -> Result<(), Error> {
    let mut tasks = Vec::new();
    for id in request_ids(config.requests) {
        let (report, config) = (report.clone(), config.clone());
        let task = Task::spawn(event_loop, format!("request {id}"), move |co| {
            client::consume_response(co, &config, id, |id, response| {
                report.borrow_mut().record(id, response);
            });
        })?;
        tasks.push((id, task));
    }
    // Python: `asyncio.gather(*tasks)`, a task that waits for each of the others.
    let waited = tasks.clone();
    let all = Task::spawn(event_loop, "gather", move |co| {
        for (_, task) in &waited {
            co.wait(task.result());
        }
    })?;
    // NB: one deadline for the whole run rather than a timer per request: all requests
    // start at once, so it is the same limit, and the loop stays small.
    match event_loop.run_until_complete(all.result(), config.timeout) {
        // Requests still unanswered fail in the report; the answers we have still count.
        Err(Error::Timeout { .. }) => {
            report.borrow_mut().time_out_unanswered(config.timeout);
            Ok(())
        }
        outcome => outcome,
    }
}
// ANCHOR_END: run
