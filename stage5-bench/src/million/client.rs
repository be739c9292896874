//! A client process of the run: stage 4's event loop on one thread, one task per
//! connection, each walking the three phases in order.
//!
//! The task is stage 4's `make_tcp_request`, cut in two where the run needs it: stage 4's
//! connect (from a source address of our choosing), then a wait at a gate until every
//! connection of every process is open, then stage 4's `request_on`, which sends the
//! request and reads the answer; the task compares it with the request.
//!
//! The parent drives it through stdin (`open`, then `go`) and reads its counts on stdout
//! every [`REPORT_EVERY`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use shared::Error;
use shared::protocol::{DecodeError, expected_response};
use stage4_async_await::client::request_on;
use stage4_async_await::net::TcpStream;
use stage4_async_await::{EventLoop, spawn, timeout};

use super::net::kind_of;
use super::wire::{GO, Message, OPEN};
use super::{REPORT_EVERY, read_commands, set_fd_limit};

/// What a client process is told on its command line (the hidden subcommand
/// `client-process`).
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server shards' shared address
    #[arg(long)]
    pub server: SocketAddr,
    /// Source addresses, used in turn
    #[arg(long, value_delimiter = ',', required = true)]
    pub sources: Vec<Ipv4Addr>,
    /// The first request id; the process sends `first_id..first_id + connections`
    #[arg(long)]
    pub first_id: u64,
    /// How many connections it opens
    #[arg(long)]
    pub connections: u64,
    /// Connects in progress at once, at most
    #[arg(long)]
    pub window: usize,
    /// The open-file limit to run with
    #[arg(long)]
    pub fd_limit: u64,
    /// How long opening may take, from the `open` command
    #[arg(long)]
    pub open_deadline_ms: u64,
    /// How long the answers may take, from the `go` command
    #[arg(long)]
    pub answer_deadline_ms: u64,
}

impl ClientArgs {
    /// The command line that gives these arguments to a child.
    pub fn to_args(&self) -> Vec<String> {
        let sources: Vec<String> = self.sources.iter().map(|s| s.to_string()).collect();
        [
            "client-process",
            "--server",
            &self.server.to_string(),
            "--sources",
            &sources.join(","),
            "--first-id",
            &self.first_id.to_string(),
            "--connections",
            &self.connections.to_string(),
            "--window",
            &self.window.to_string(),
            "--fd-limit",
            &self.fd_limit.to_string(),
            "--open-deadline-ms",
            &self.open_deadline_ms.to_string(),
            "--answer-deadline-ms",
            &self.answer_deadline_ms.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }
}

/// Runs a client process until its connections are answered; the parent reads its
/// stdout.
pub fn run(args: ClientArgs) -> Result<(), Error> {
    set_fd_limit(args.fd_limit)?;
    let (sender, mut commands) = mpsc::unbounded();
    read_commands(
        move |line| {
            let _ = sender.unbounded_send(line);
        },
        // The parent is gone, or wants us gone: nobody will read what we would say.
        || std::process::exit(0),
    );
    // NB: a hundred processes share two cores here, so a poll the scheduler preempts
    // looks slow; stage 4's warning stays for polls slower than a second, which only a
    // blocking call of ours could take.
    let event_loop = EventLoop::new()
        .map_err(|e| Error::io("creating the event loop", e))?
        .slow_poll_threshold(Duration::from_secs(1));
    event_loop.block_on(async move {
        let counts = Rc::new(Counts::new(args.connections, args.window));
        let size = std::mem::size_of_val(&connection(0, args.sources[0], args.server, &counts));
        say(Message::new("ready").with("task_future_bytes", size as u64));
        wait_for(&mut commands, OPEN).await?;

        // Phase 1: open every connection, a window of them at a time.
        drop(spawn(open_all(args.clone(), Rc::clone(&counts))));
        let goal = |c: &Counts| c.opened.get() + c.failed_total() >= c.total;
        let opened_in_time = report_until(&counts, goal, ms(args.open_deadline_ms)).await;
        if !opened_in_time {
            counts.give_up("connect");
        }
        counts.report_failures();
        say(Message::new("opened")
            .with("ok", counts.opened.get())
            .with("failed", counts.failed_total()));

        // Phase 2: the start signal, for every connection of every process at once.
        wait_for(&mut commands, GO).await?;
        counts.gate.open();

        // Phase 3: every answer read and compared.
        let goal = |c: &Counts| c.verified.get() + c.failed_total() >= c.total;
        if !report_until(&counts, goal, ms(args.answer_deadline_ms)).await {
            counts.give_up("answer");
        }
        counts.report_failures();
        say(Message::new("done")
            .with("verified", counts.verified.get())
            .with("failed", counts.failed_total()));
        Ok(())
    })
}

/// Spawns one task per connection, keeping at most `window` connects in progress: a
/// burst of thousands of handshakes at once would overflow the servers' accept queues,
/// and each dropped handshake is retried only a second later.
async fn open_all(args: ClientArgs, counts: Rc<Counts>) {
    let ids = args.first_id..args.first_id + args.connections;
    for (i, id) in ids.enumerate() {
        counts.window.acquire().await;
        if !counts.counts("connect") {
            return; // the deadline passed: the rest already count as failed
        }
        let source = args.sources[i % args.sources.len()];
        // NB: the JoinHandle is dropped, which detaches the task: the counts say how
        // each one ended, and a million handles would cost memory for nothing.
        drop(spawn(connection(id, source, args.server, &counts)));
    }
}

// ANCHOR: connection
/// One connection's life: open, wait for everyone, request, verify, stay open.
///
/// It is stage 4's `make_tcp_request` cut in two: `TcpStream::connect_from` (a connect
/// from a source address of our choosing), the gate, then `request_on`, which sends the
/// request and reads the answer exactly as `make_tcp_request` does after its connect.
fn connection(
    id: u64,
    source: Ipv4Addr,
    server: SocketAddr,
    counts: &Rc<Counts>,
) -> impl Future<Output = ()> + 'static {
    let counts = Rc::clone(counts);
    async move {
        let connected = TcpStream::connect_from(source.into(), server).await;
        counts.window.release();
        let stream = match connected {
            Ok(stream) => stream,
            Err(error) => return counts.fail("connect", kind_of(&error), &error),
        };
        if !counts.counts("connect") {
            return; // too late: already counted as failed
        }
        counts.opened.set(counts.opened.get() + 1);
        counts.check_goal();

        counts.gate.wait().await;

        match request_on(&stream, id).await {
            Ok(line) if line == expected_response(id) => {
                if counts.counts("answer") {
                    counts.verified.set(counts.verified.get() + 1);
                    // Open until every answer of this process is in: see `Counts::kept`.
                    counts.kept.borrow_mut().push(stream);
                    counts.check_goal();
                }
            }
            Ok(line) => counts.fail("answer", "wrong", &format!("{id}: {line:?}")),
            Err(error) => {
                let (step, cause) = failure(&error);
                counts.fail(step, cause, &error);
            }
        }
    }
}
// ANCHOR_END: connection

/// Which step of `request_on` failed, and why, as a failure key's two halves.
fn failure(error: &Error) -> (&'static str, &'static str) {
    match error {
        // `request_on` words its I/O errors "sending request 7", "reading the answer to
        // request 7".
        Error::Io { context, source } if context.starts_with("sending") => {
            ("send", kind_of(source))
        }
        Error::Io { source, .. } => ("read", kind_of(source)),
        Error::Decode {
            source: DecodeError::ClosedMidLine,
            ..
        } => ("read", "closed"),
        Error::Decode { .. } => ("read", "decode"),
        _ => ("read", "other"),
    }
}

/// Prints the counts every [`REPORT_EVERY`] until `goal` holds (`true`) or `deadline`
/// passes (`false`).
async fn report_until(counts: &Counts, goal: Goal, deadline: Duration) -> bool {
    counts.goal.set(Some(goal));
    let start = std::time::Instant::now();
    let reached = loop {
        if goal(counts) {
            break true;
        }
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            break false;
        }
        // Woken by the task that reaches the goal, or by the clock.
        let _ = timeout(REPORT_EVERY.min(left), counts.reached()).await;
        counts.report_progress();
    };
    counts.goal.set(None);
    reached
}

async fn wait_for(commands: &mut mpsc::UnboundedReceiver<String>, word: &str) -> Result<(), Error> {
    while let Some(line) = commands.next().await {
        if line.trim() == word {
            return Ok(());
        }
    }
    Err(Error::Other(format!(
        "the parent closed stdin before `{word}`"
    )))
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn say(message: Message) {
    println!("{message}");
}

/// What the main future waits for: a condition on the counts.
type Goal = fn(&Counts) -> bool;

/// The process's counts, shared by its tasks (one thread: `Cell`s).
struct Counts {
    total: u64,
    opened: Cell<u64>,
    verified: Cell<u64>,
    failures: RefCell<BTreeMap<String, u64>>,
    /// Connections whose answer was verified, kept open until every answer of the
    /// process is in, then closed together when the process ends. NB: closing costs
    /// about what opening does, and a close after each answer would slow the reading of
    /// the others while their answers wait in the kernel, each holding a page of socket
    /// buffer (`net.ipv4.tcp_mem` counts pages per socket).
    kept: RefCell<Vec<TcpStream>>,
    window: Window,
    gate: Gate,
    /// What the main future waits for, and its waker.
    goal: Cell<Option<Goal>>,
    waiter: Cell<Option<Waker>>,
    /// Set when a phase's deadline passed: its stragglers are no longer counted.
    connects_closed: Cell<bool>,
    answers_closed: Cell<bool>,
}

impl Counts {
    fn new(total: u64, window: usize) -> Counts {
        Counts {
            total,
            opened: Cell::new(0),
            verified: Cell::new(0),
            failures: RefCell::new(BTreeMap::new()),
            kept: RefCell::new(Vec::new()),
            window: Window::new(window),
            gate: Gate::new(total as usize),
            goal: Cell::new(None),
            waiter: Cell::new(None),
            connects_closed: Cell::new(false),
            answers_closed: Cell::new(false),
        }
    }

    fn failed_total(&self) -> u64 {
        self.failures.borrow().values().sum()
    }

    /// Counts a failure by `step_cause`; the first of each kind is printed whole.
    fn fail(&self, step: &str, cause: &str, detail: &dyn std::fmt::Display) {
        if !self.counts(step) {
            return;
        }
        let key = format!("{step}_{cause}");
        let mut failures = self.failures.borrow_mut();
        let count = failures.entry(key.clone()).or_insert(0);
        if *count == 0 {
            eprintln!("first {key}: {detail}");
        }
        *count += 1;
        drop(failures);
        self.check_goal();
    }

    /// The phase's deadline passed: what has not finished counts as failed, under
    /// `step_deadline`, and tasks that finish later are not counted again.
    fn give_up(&self, step: &str) {
        let done = match step {
            "connect" => self.opened.get(),
            _ => self.verified.get(),
        };
        let unfinished = self.total - done - self.failed_total();
        let key = format!("{step}_deadline");
        *self.failures.borrow_mut().entry(key).or_insert(0) += unfinished;
        match step {
            "connect" => self.connects_closed.set(true),
            _ => self.answers_closed.set(true),
        }
    }

    /// Whether a task's outcome in `step` still counts.
    fn counts(&self, step: &str) -> bool {
        match step {
            "connect" => !self.connects_closed.get(),
            _ => !self.answers_closed.get(),
        }
    }

    fn check_goal(&self) {
        if let Some(goal) = self.goal.get()
            && goal(self)
            && let Some(waker) = self.waiter.take()
        {
            waker.wake();
        }
    }

    fn reached(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| match self.goal.get() {
            Some(goal) if !goal(self) => {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
            _ => Poll::Ready(()),
        })
    }

    fn report_progress(&self) {
        // The failures by kind first, so that the parent's sum of them never lags the
        // count in the progress line.
        self.report_failures();
        say(Message::new("progress")
            .with("opened", self.opened.get())
            .with("verified", self.verified.get())
            .with("failed", self.failed_total()));
    }

    fn report_failures(&self) {
        let failures = self.failures.borrow();
        if !failures.is_empty() {
            let mut message = Message::new("failures");
            message.fields = failures.clone();
            say(message);
        }
    }
}

/// At most `free` connects at once: `acquire` waits for a slot, a finished connect
/// gives its slot back.
struct Window {
    free: Cell<usize>,
    waiter: Cell<Option<Waker>>,
}

impl Window {
    fn new(size: usize) -> Window {
        Window {
            free: Cell::new(size.max(1)),
            waiter: Cell::new(None),
        }
    }

    fn acquire(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            if self.free.get() > 0 {
                self.free.set(self.free.get() - 1);
                Poll::Ready(())
            } else {
                // Only the spawning task ever waits here.
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    fn release(&self) {
        self.free.set(self.free.get() + 1);
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }
}

// ANCHOR: gate
/// Closed until the start signal; then every task waiting at it runs.
struct Gate {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    fn new(capacity: usize) -> Gate {
        Gate {
            open: Cell::new(false),
            // One waker (16 bytes) per connection: reserved once, not doubled as it grows.
            waiters: RefCell::new(Vec::with_capacity(capacity)),
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        let mut waiting = false;
        poll_fn(move |cx| {
            if self.open.get() {
                return Poll::Ready(());
            }
            // A task is woken only by the gate here, so it registers once.
            if !waiting {
                waiting = true;
                self.waiters.borrow_mut().push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    fn open(&self) {
        self.open.set(true);
        for waker in self.waiters.take() {
            waker.wake();
        }
    }
}
// ANCHOR_END: gate
