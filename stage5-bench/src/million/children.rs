//! The run's child processes: started from this same binary with a hidden subcommand,
//! watched line by line, and stopped, whatever happens to the parent.
//!
//! Three promises, three mechanisms:
//!
//! - A child dies with the parent. On Linux each child asks the kernel for `SIGKILL`
//!   when its parent dies (`PR_SET_PDEATHSIG`), between `fork` and `exec`; elsewhere a
//!   child sees its stdin close (the parent's end of the pipe goes with it) and exits.
//! - Ctrl-C stops the run, not just the parent. The children live in a process group of
//!   their own, so the terminal's `SIGINT` reaches the parent alone; it then ends the
//!   group and reports what the run reached.
//! - Nothing is left behind. [`Children`]'s `Drop` signals the whole group and reaps
//!   every child, on every path out: the end of a run, an error, a panic.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

/// What a child does in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A server shard.
    Server,
    /// A client process.
    Client,
}

impl Role {
    /// `server shard` or `client`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server shard",
            Role::Client => "client",
        }
    }
}

/// Something a child did.
#[derive(Debug)]
pub enum Event {
    /// It printed a line (on stdout or stderr, which share one pipe).
    Line {
        /// Which child, by its index in [`Children`].
        child: usize,
        /// The line, without its newline.
        line: String,
    },
    /// Its output ended: it exited, or closed its end of the pipe.
    Closed {
        /// Which child.
        child: usize,
    },
}

/// One child process.
#[derive(Debug)]
pub struct Child {
    /// What it does.
    pub role: Role,
    /// Its number among the children of its role, from 0.
    pub number: usize,
    process: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    /// How it ended, once reaped.
    pub status: Option<ExitStatus>,
}

impl Child {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// `server shard 3 (pid 1234)`.
    pub fn name(&self) -> String {
        format!("{} {} (pid {})", self.role.name(), self.number, self.pid())
    }
}

/// Every child of a run, and the lines they print.
#[derive(Debug)]
pub struct Children {
    /// The children, in the order they were started.
    pub list: Vec<Child>,
    /// The process group they share: the first child's pid.
    pub group: Option<u32>,
    events: Receiver<Event>,
    sender: Sender<Event>,
}

impl Default for Children {
    fn default() -> Self {
        Children::new()
    }
}

impl Children {
    /// No children yet.
    pub fn new() -> Children {
        let (sender, events) = channel();
        Children {
            list: Vec::new(),
            group: None,
            events,
            sender,
        }
    }

    /// Starts `command` as a child: its stdout and stderr come back as [`Event`]s, its
    /// stdin takes our commands. Returns its index.
    pub fn spawn(&mut self, role: Role, number: usize, mut command: Command) -> io::Result<usize> {
        use std::os::unix::process::CommandExt;

        // One pipe for both stdout and stderr: lines arrive whole and in order.
        let (reader, writer) = io::pipe()?;
        command
            .stdin(Stdio::piped())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            // The first child starts the group; the others join it.
            .process_group(self.group.map_or(0, |pid| pid as i32));
        #[cfg(target_os = "linux")]
        {
            // SAFETY: getpid is async-signal-safe, and the closure below calls only
            // prctl and getppid, which are too, as code between fork and exec must.
            let parent = unsafe { libc::getpid() };
            // SAFETY: see above; the closure touches no memory but its copied `parent`.
            unsafe {
                command.pre_exec(move || die_with(parent));
            }
        }
        let mut process = command.spawn()?;
        let index = self.list.len();
        if self.group.is_none() {
            self.group = Some(process.id());
        }
        let stdin = process.stdin.take();
        let sender = self.sender.clone();
        thread::Builder::new()
            .name(format!("{} {number}", role.name()))
            .spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut bytes = Vec::new();
                // Bytes, not `lines()`: a line that is not UTF-8 must not end the reading.
                while matches!(reader.read_until(b'\n', &mut bytes), Ok(n) if n > 0) {
                    let line = String::from_utf8_lossy(&bytes).trim_end().to_string();
                    bytes.clear();
                    if sender.send(Event::Line { child: index, line }).is_err() {
                        return;
                    }
                }
                let _ = sender.send(Event::Closed { child: index });
            })?;
        self.list.push(Child {
            role,
            number,
            process,
            stdin,
            status: None,
        });
        Ok(index)
    }

    /// The next event, if one comes within `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        // Disconnected cannot happen while we hold a sender: it reads as a timeout.
        self.events.recv_timeout(timeout).ok()
    }

    /// Writes a command line to a child's stdin. A child that is gone cannot take it:
    /// that is reported by its `Closed` event, not here.
    pub fn tell(&mut self, child: usize, line: &str) {
        if let Some(stdin) = self.list[child].stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// Closes a child's stdin: a child that reads to the end takes it as "stop".
    pub fn hang_up(&mut self, child: usize) {
        self.list[child].stdin = None;
    }

    /// Whether a child has exited, reaping it if so.
    pub fn exited(&mut self, child: usize) -> Option<ExitStatus> {
        let entry = &mut self.list[child];
        if entry.status.is_none() {
            entry.status = entry.process.try_wait().ok().flatten();
        }
        entry.status
    }

    /// Waits up to `grace` for every child to exit by itself, then ends the group with
    /// `SIGTERM`, and after one more `grace` with `SIGKILL`; reaps them all.
    pub fn stop_all(&mut self, grace: Duration) {
        for child in &mut self.list {
            child.stdin = None; // a child waiting for a command reads the end
        }
        if self.wait_all(grace) {
            return;
        }
        self.signal_group(libc::SIGTERM);
        if self.wait_all(grace) {
            return;
        }
        self.signal_group(libc::SIGKILL);
        for child in &mut self.list {
            if child.status.is_none() {
                // Only our own children: each was started by this object.
                let _ = child.process.kill();
                child.status = child.process.wait().ok();
            }
        }
    }

    /// Sends `signal` to the children's process group (and to each child, in case one
    /// left the group).
    pub fn signal_group(&mut self, signal: i32) {
        // While one of its members is alive, the group's id cannot pass to anyone else.
        let alive = self.list.iter().any(|child| child.status.is_none());
        if let (Some(group), true) = (self.group, alive) {
            // SAFETY: kill only sends a signal; the group is the one our children share.
            unsafe { libc::kill(-(group as i32), signal) };
        }
        for child in &self.list {
            if child.status.is_none() {
                // SAFETY: as above, to one of our own children that has not been reaped
                // (so its pid cannot belong to another process yet).
                unsafe { libc::kill(child.pid() as i32, signal) };
            }
        }
    }

    fn wait_all(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            let running = (0..self.list.len())
                .filter(|&i| self.exited(i).is_none())
                .count();
            if running == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // On the normal path every child has been reaped already and this does nothing.
        self.stop_all(Duration::from_millis(500));
    }
}

/// In the child, between `fork` and `exec`: `SIGKILL` when the parent dies, and a check
/// that it has not died already (then the request would come too late).
///
/// NB: "the parent" is the thread that forked, not the process: children must be
/// started from a thread that lives as long as the run (the main thread here).
#[cfg(target_os = "linux")]
fn die_with(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and changes nothing else.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::other("the parent died before the child started"));
    }
    Ok(())
}

/// How a child ended, in words: `exit status 0`, `killed by signal 9 (SIGKILL)`.
pub fn how_it_ended(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "still running".into(),
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}{}", signal_name(signal)),
            _ => status.to_string(),
        },
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => " (SIGKILL: out of memory, or killed by hand)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT: a panic or an abort)",
        _ => "",
    }
}

/// Resident memory of a child, from `/proc/PID/status` (Linux), in bytes.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    shared::memory::kib_field(&status, "VmRSS:")
}

/// CPU time a child has used so far, user and system together, from `/proc/PID/stat`
/// (Linux). On loopback the kernel does most of a connection's work (both ends of the
/// handshake) in the process that calls `connect`, so this counts it too.
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|&t| t > 0)?;
    Some(std::time::Duration::from_secs_f64(
        ticks as f64 / per_second as f64,
    ))
}
