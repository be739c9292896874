//! The parent of a run: it starts the shards and the clients, walks them through the
//! three phases, watches every one of them, and stops them all at the end.
//!
//! 1. Open: every client opens its share of the connections; the phase ends when the
//!    clients have every handshake and the servers have accepted every connection.
//! 2. Start: one `go` line to every client at once; each task sends its request. No
//!    answer can leave a server before the delay has passed since `go`, so every request
//!    the servers count as waiting before then was waiting at the same moment as all the
//!    others: the servers' sum is the proof that they were all in flight at once.
//! 3. Verify: each task compares its answer with its request; the clients count.
//!
//! Every phase has a deadline and a stall watchdog, a child that dies ends the run, and
//! Ctrl-C ends it too: each way, every child is stopped and the report says what the
//! run reached and what was lost, by kind.

mod finish;
mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use super::children::{Children, Event, Role, how_it_ended};
use super::client::ClientArgs;
use super::floor::{FloorClientArgs, FloorServerArgs};
pub use super::outcome::{MemoryAt, Mode, Outcome, Sample};
use super::plan::{self, Machine, Plan};
use super::server::ServerArgs;
use super::wire::{GO, Message, OPEN};
use crate::text::thousands;
use watch::to_stderr;

/// How to run, beyond the plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The slow server's delay.
    pub delay: Duration,
    /// Connects in progress at once per client process.
    pub window: usize,
    /// This binary, which the children run.
    pub exe: PathBuf,
}

/// Why a phase ended early.
#[derive(Debug)]
enum Stop {
    Interrupted,
    Failed(String),
}

#[derive(Debug, Default)]
struct ClientState {
    ready: bool,
    opened: u64,
    verified: u64,
    failed: u64,
    open_done: bool,
    done: bool,
    stopping: bool,
    failures: BTreeMap<String, u64>,
    connections: u64,
}

#[derive(Debug, Default)]
struct ServerState {
    port: Option<u16>,
    stats: Option<Message>,
    stopping: bool,
}

/// Runs the plan in `mode`, whatever happens, and returns what it measured.
pub fn run(plan: &Plan, settings: &Settings, mode: Mode) -> Outcome {
    let mut run = Run::new(plan, settings, mode);
    let result = run.drive();
    run.finish(result)
}

struct Run<'a> {
    plan: &'a Plan,
    settings: &'a Settings,
    mode: Mode,
    children: Children,
    servers: Vec<ServerState>,
    clients: Vec<ClientState>,
    /// Child index -> (role, index in its role's list).
    roles: Vec<(Role, usize)>,
    last_words: Vec<VecDeque<String>>,
    outcome: Outcome,
    started: Instant,
    open_started: Option<Instant>,
    go_at: Option<Instant>,
    next_sample: Instant,
    next_print: Instant,
    printed: Option<(Instant, u64, u64)>,
    tty: bool,
    tcp_mem: Option<[u64; 3]>,
    tcp_warned: bool,
}

impl<'a> Run<'a> {
    fn new(plan: &'a Plan, settings: &'a Settings, mode: Mode) -> Run<'a> {
        let sources = plan.clients.iter().flat_map(|c| &c.sources);
        let first = sources.clone().next().map(|s| s.to_string());
        let last = sources.last().map(|s| s.to_string());
        let now = Instant::now();
        Run {
            plan,
            settings,
            mode,
            children: Children::new(),
            servers: Vec::new(),
            clients: Vec::new(),
            roles: Vec::new(),
            last_words: Vec::new(),
            outcome: Outcome {
                mode: Some(mode),
                connections: plan.connections,
                processes: (plan.clients.len(), plan.servers),
                sources: (first.unwrap_or_default(), last.unwrap_or_default()),
                delay: settings.delay,
                tcp_mem: plan::tcp_mem(),
                ..Outcome::default()
            },
            started: now,
            open_started: None,
            go_at: None,
            next_sample: now,
            next_print: now,
            printed: None,
            tty: std::io::stderr().is_terminal(),
            tcp_mem: plan::tcp_mem(),
            tcp_warned: false,
        }
    }

    fn drive(&mut self) -> Result<(), Stop> {
        install_signal_handlers();
        let n = self.plan.connections;
        let startup = Duration::from_secs(30)
            + Duration::from_millis(200) * (self.plan.servers + self.plan.clients.len()) as u32;
        let deadline = Instant::now() + startup;

        // The first shard picks the port; the others share it.
        self.spawn_server(0, 0)?;
        self.pump("starting", deadline, None, |run| {
            run.servers[0].port.is_some()
        })?;
        let port = self.servers[0].port.unwrap_or(0);
        for shard in 1..self.plan.servers {
            self.spawn_server(shard, port)?;
        }
        self.pump("starting", deadline, None, |run| {
            run.servers.iter().all(|s| s.port.is_some())
        })?;
        for i in 0..self.plan.clients.len() {
            self.spawn_client(i, port)?;
        }
        self.pump("starting", deadline, None, |run| {
            run.clients.iter().all(|c| c.ready)
        })?;
        let before = self.memory("before");
        self.outcome.memory.push(before);

        // Phase 1: open.
        let open_limit = open_deadline(n);
        let open_started = Instant::now();
        self.open_started = Some(open_started);
        self.next_sample = open_started;
        for child in self.client_children() {
            self.children.tell(child, OPEN);
        }
        self.pump(
            "opening",
            open_started + open_limit + Duration::from_secs(10),
            Some(Duration::from_secs(60)),
            |run| {
                let clients = run.clients.iter().all(|c| c.open_done);
                clients && run.server_sum("accepted") >= run.client_sum(|c| c.opened)
            },
        )?;
        self.outcome.open_time = Some(open_started.elapsed());
        self.outcome.opened = self.client_sum(|c| c.opened);
        self.outcome.open_at_once = self.server_sum("open");
        self.end_progress_line();
        let all_open = self.memory("all open");
        self.outcome.memory.push(all_open);
        if self.mode == Mode::Floor {
            return Ok(());
        }

        // Phase 2 and 3: the start signal, then every answer.
        let go_at = Instant::now();
        self.go_at = Some(go_at);
        for child in self.client_children() {
            self.children.tell(child, GO);
        }
        let answer_limit = answer_deadline(n, self.settings.delay);
        self.pump(
            "answering",
            go_at + answer_limit + Duration::from_secs(10),
            Some(self.settings.delay + Duration::from_secs(60)),
            |run| run.clients.iter().all(|c| c.done),
        )?;
        self.outcome.answer_time = Some(go_at.elapsed());
        self.outcome.verified = self.client_sum(|c| c.verified);
        self.end_progress_line();
        Ok(())
    }

    fn spawn_server(&mut self, shard: usize, port: u16) -> Result<(), Stop> {
        let fd_limit = self.plan.fd_limit;
        let args = match self.mode {
            Mode::Run => ServerArgs {
                port,
                delay_ms: self.settings.delay.as_millis() as u64,
                backlog: self.plan.backlog,
                fd_limit,
            }
            .to_args(),
            Mode::Floor => FloorServerArgs {
                port,
                backlog: self.plan.backlog,
                fd_limit,
            }
            .to_args(),
        };
        self.spawn(Role::Server, shard, args)?;
        self.servers.push(ServerState::default());
        Ok(())
    }

    fn spawn_client(&mut self, i: usize, port: u16) -> Result<(), Stop> {
        let share = &self.plan.clients[i];
        let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let open_deadline = open_deadline(self.plan.connections);
        let args = match self.mode {
            Mode::Run => ClientArgs {
                server,
                sources: share.sources.clone(),
                first_id: share.first_id,
                connections: share.connections,
                window: self.settings.window,
                fd_limit: self.plan.fd_limit,
                open_deadline_ms: open_deadline.as_millis() as u64,
                answer_deadline_ms: answer_deadline(self.plan.connections, self.settings.delay)
                    .as_millis() as u64,
            }
            .to_args(),
            Mode::Floor => FloorClientArgs {
                server,
                sources: share.sources.clone(),
                connections: share.connections,
                window: self.settings.window,
                fd_limit: self.plan.fd_limit,
                open_deadline_ms: open_deadline.as_millis() as u64,
            }
            .to_args(),
        };
        let connections = share.connections;
        self.spawn(Role::Client, i, args)?;
        self.clients.push(ClientState {
            connections,
            ..ClientState::default()
        });
        Ok(())
    }

    fn spawn(&mut self, role: Role, number: usize, args: Vec<String>) -> Result<(), Stop> {
        let mut command = Command::new(&self.settings.exe);
        command.args(args);
        let index = self.children.spawn(role, number, command).map_err(|e| {
            Stop::Failed(format!(
                "cannot start {} {number} ({}): {e}",
                role.name(),
                self.settings.exe.display()
            ))
        })?;
        debug_assert_eq!(index, self.roles.len());
        if let Some(group) = self.children.group {
            GROUP.store(group as i32, Ordering::Relaxed); // for a second Ctrl-C
        }
        self.roles.push((role, number));
        self.last_words.push(VecDeque::new());
        Ok(())
    }

    fn client_children(&self) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&i| self.roles[i].0 == Role::Client)
            .collect()
    }

    fn server_children(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.roles.len()).filter(|&i| self.roles[i].0 == Role::Server)
    }

    fn client_sum(&self, field: impl Fn(&ClientState) -> u64) -> u64 {
        self.clients.iter().map(field).sum()
    }

    fn server_sum(&self, key: &str) -> u64 {
        self.servers
            .iter()
            .filter_map(|s| s.stats.as_ref())
            .map(|m| m.get(key))
            .sum()
    }

    /// Handles events until `done` holds; fails at `deadline`, after `stall` without
    /// progress, on Ctrl-C, or when a child ends before its time.
    fn pump(
        &mut self,
        phase: &str,
        deadline: Instant,
        stall: Option<Duration>,
        done: impl Fn(&Run) -> bool,
    ) -> Result<(), Stop> {
        let mut progress = self.progress_mark();
        let mut moved = Instant::now();
        loop {
            if done(self) {
                return Ok(());
            }
            if INTERRUPTED.load(Ordering::Relaxed) {
                return Err(Stop::Interrupted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Stop::Failed(format!(
                    "{phase}: not finished after {:.0} s (the phase's deadline); {}",
                    (now - self.started).as_secs_f64(),
                    self.where_we_are()
                )));
            }
            let mark = self.progress_mark();
            if mark != progress {
                (progress, moved) = (mark, now);
            } else if let Some(stall) = stall
                && now - moved >= stall
            {
                return Err(Stop::Failed(format!(
                    "{phase}: no progress for {} s; {}",
                    stall.as_secs(),
                    self.where_we_are()
                )));
            }
            match self.children.next_event(Duration::from_millis(20)) {
                Some(Event::Line { child, line }) => self.on_line(child, &line),
                Some(Event::Closed { child }) => self.on_closed(child)?,
                None => {}
            }
            self.tick();
        }
    }

    fn progress_mark(&self) -> (u64, u64, u64, u64) {
        (
            self.client_sum(|c| c.opened + c.failed),
            self.server_sum("accepted"),
            self.server_sum("waiting") + self.server_sum("answered"),
            self.client_sum(|c| c.verified),
        )
    }

    fn where_we_are(&self) -> String {
        format!(
            "{} of {} connections opened, {} accepted, {} answers verified",
            thousands(self.client_sum(|c| c.opened)),
            thousands(self.plan.connections),
            thousands(self.server_sum("accepted")),
            thousands(self.client_sum(|c| c.verified))
        )
    }

    fn on_line(&mut self, child: usize, line: &str) {
        let (role, number) = self.roles[child];
        let Some(message) = Message::parse(line) else {
            // A child's own words (a warning, an error, the first failure of a kind).
            self.end_progress_line();
            to_stderr(format_args!("{} {number}: {line}\n", role.name()));
            let words = &mut self.last_words[child];
            words.push_back(line.to_string());
            if words.len() > 5 {
                words.pop_front();
            }
            return;
        };
        match role {
            Role::Server => {
                let server = &mut self.servers[number];
                match message.word.as_str() {
                    "listening" => server.port = u16::try_from(message.get("port")).ok(),
                    "stats" => {
                        server.stats = Some(message);
                        self.watch_waiting();
                    }
                    _ => {}
                }
            }
            Role::Client => {
                let client = &mut self.clients[number];
                match message.word.as_str() {
                    "ready" => {
                        client.ready = true;
                        if let Some(&bytes) = message.fields.get("task_future_bytes") {
                            self.outcome.task_future_bytes = Some(bytes);
                        }
                    }
                    "progress" => {
                        client.opened = message.get("opened");
                        client.verified = message.get("verified");
                        client.failed = message.get("failed");
                    }
                    "opened" => {
                        client.opened = message.get("ok");
                        client.failed = message.get("failed");
                        client.open_done = true;
                    }
                    "failures" => client.failures = message.fields,
                    "done" => {
                        client.verified = message.get("verified");
                        client.failed = message.get("failed");
                        client.done = true;
                    }
                    _ => {}
                }
                if self.mode == Mode::Run && self.go_at.is_some() {
                    self.watch_waiting();
                }
            }
        }
    }

    // ANCHOR: watch_waiting
    /// Until the delay has passed since the start signal, no server can have answered
    /// anything: every request reached its server after `go` and waits the whole delay
    /// from there. So a shard's count of waiting requests only grows until then, each
    /// shard's last report is a floor under what it holds now, and the sum of the last
    /// reports counts requests that are all waiting at the same moment: this one.
    fn watch_waiting(&mut self) {
        let Some(go_at) = self.go_at else { return };
        let since_go = go_at.elapsed();
        let opened = self.outcome.opened;
        let arrived = self.server_sum("waiting") + self.server_sum("answered");
        if self.outcome.all_arrived.is_none() && arrived >= opened {
            self.outcome.all_arrived = Some(since_go);
        }
        let took = self.outcome.memory.len() > 2; // before, all open, and this one
        if since_go < self.settings.delay {
            let waiting = self.server_sum("waiting");
            let best = self.outcome.waiting_at_once.map_or(0, |(w, _)| w);
            if waiting > best {
                self.outcome.waiting_at_once = Some((waiting, since_go));
            }
            if waiting >= opened && !took {
                let memory = self.memory("all waiting");
                self.outcome.memory.push(memory);
            }
        } else if !took {
            // The first answers are due and not every request has arrived: memory at
            // the most requests in flight there will be.
            let memory = self.memory("in flight");
            self.outcome.memory.push(memory);
        }
    }
    // ANCHOR_END: watch_waiting

    fn on_closed(&mut self, child: usize) -> Result<(), Stop> {
        // The pipe closes as the process exits: give the kernel a moment to say how.
        let mut status = self.children.exited(child);
        for _ in 0..100 {
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            status = self.children.exited(child);
        }
        let (role, number) = self.roles[child];
        let expected = match role {
            Role::Server => self.servers[number].stopping,
            Role::Client => self.clients[number].done || self.clients[number].stopping,
        };
        if expected {
            return Ok(());
        }
        let mut why = format!(
            "{} ended before its time: {}",
            self.children.list[child].name(),
            how_it_ended(status)
        );
        if let Some(last) = self.last_words[child].back() {
            why += &format!("; its last words: {last}");
        }
        Err(Stop::Failed(why))
    }
}

/// How long opening may take: a minute, and a second per 2,000 connections (a loaded
/// two-core machine opens about 17,000 a second).
pub fn open_deadline(connections: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(connections / 2)
}

/// How long the answers may take after the start signal: the delay, a minute, and a
/// second per 10,000 requests.
pub fn answer_deadline(connections: u64, delay: Duration) -> Duration {
    delay + Duration::from_secs(60) + Duration::from_millis(connections / 10)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static GROUP: AtomicI32 = AtomicI32::new(0);

/// The first Ctrl-C (or SIGTERM, SIGHUP) asks the run to stop and report; a second one
/// ends the children's group at once, and this process.
fn install_signal_handlers() {
    extern "C" fn on_signal(_: libc::c_int) {
        if INTERRUPTED.swap(true, Ordering::Relaxed) {
            let group = GROUP.load(Ordering::Relaxed);
            // SAFETY: kill and _exit are async-signal-safe; the group is our children's.
            unsafe {
                if group > 0 {
                    libc::kill(-group, libc::SIGKILL);
                }
                libc::_exit(130);
            }
        }
    }
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only touches atomics and calls async-signal-safe functions.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Reads the machine and plans `connections` (what `--floor` and the run share).
pub fn machine_and_plan(ask: plan::Ask) -> (Machine, Result<Plan, Vec<plan::Refusal>>) {
    let machine = Machine::read();
    let plan = plan::plan(ask, &machine);
    (machine, plan)
}
