//! The processes of one measurement: a server, a load generator, and `perf stat` when it
//! is there, and what passes between them.
//!
//! The `net` binary runs itself in two hidden modes: `--serve SERVER` (prints `listening
//! ADDR`, then answers each `usage` line on its stdin with its own `getrusage`, and exits
//! when its stdin closes) and `--load ADDR` (prints `start` and `stop` around the measured
//! window, then one `result` line). The parent samples the server's CPU time at `start`
//! and `stop`, so the server's cost and the load generator's count cover the same window.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use shared::Error;

use super::Server;
use super::load::{self, Driver, Load, Mark, Measured};
use crate::pin;

/// What `getrusage` says about a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time in user space.
    pub user: Duration,
    /// CPU time in the kernel, on the process's behalf (its system calls).
    pub system: Duration,
    /// The largest resident set so far, in bytes.
    pub peak_rss: u64,
}

impl Usage {
    /// This process's usage now (all its threads); zero if the OS would not say.
    pub fn now() -> Usage {
        // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a writable rusage for the duration of the call.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return Usage::default();
        }
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        // NB: Linux counts ru_maxrss in KiB, macOS in bytes.
        let unit = if cfg!(target_vendor = "apple") {
            1
        } else {
            1024
        };
        Usage {
            user: time(usage.ru_utime),
            system: time(usage.ru_stime),
            peak_rss: (usage.ru_maxrss as u64).saturating_mul(unit),
        }
    }

    /// User and system time together.
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }

    /// The line a server child answers `usage` with.
    pub fn line(&self) -> String {
        format!(
            "usage {} {} {}",
            self.user.as_nanos(),
            self.system.as_nanos(),
            self.peak_rss
        )
    }

    /// The usage in a [`line`](Usage::line).
    pub fn parse(line: &str) -> Option<Usage> {
        let mut words = line.strip_prefix("usage ")?.split(' ');
        let mut next = || words.next()?.parse::<u64>().ok();
        Some(Usage {
            user: Duration::from_nanos(next()?),
            system: Duration::from_nanos(next()?),
            peak_rss: next()?,
        })
    }
}

/// Pins this process to `cpu` (if given) and raises its descriptor limit: the first
/// thing each child does.
fn prepare(cpu: Option<usize>, connections: u64) -> Result<(), Error> {
    if let Some(cpu) = cpu {
        pin::to(cpu).map_err(|e| Error::io(format!("pinning to CPU {cpu}"), e))?;
    }
    shared::limits::check_connections(connections)?;
    Ok(())
}

/// The hidden `--serve` mode: serves until its stdin closes.
pub fn serve_child(server: Server, cpu: Option<usize>, connections: u64) -> Result<(), Error> {
    prepare(cpu, connections)?;
    thread::Builder::new()
        .name("usage".into())
        .spawn(|| {
            for line in std::io::stdin().lock().lines() {
                match line.as_deref() {
                    Ok("usage") => println!("{}", Usage::now().line()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // The parent is done with us (or gone): no need to wind the runtime down.
            std::process::exit(0);
        })
        .map_err(|e| Error::io("starting the usage thread", e))?;
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    server
        .serve(any_port, &|addr| println!("listening {addr}"))
        .map_err(|e| Error::io(format!("{} server", server.key()), e))
}

/// The hidden `--load` mode: runs the load and prints its marks and its result.
pub fn load_child(load: &Load, cpu: Option<usize>) -> Result<(), Error> {
    prepare(cpu, load.connections as u64)?;
    let measured = load::run(load, &mut |mark| match mark {
        Mark::Ready => println!("ready"),
        Mark::Start => println!("start"),
        Mark::Stop => println!("stop"),
    })?;
    println!("{}", result_line(&measured));
    Ok(())
}

fn result_line(m: &Measured) -> String {
    let ns = |d: Option<Duration>| d.map_or(0, |d| d.as_nanos());
    format!(
        "result {} {} {} {} {} {}",
        m.requests,
        m.elapsed.as_nanos(),
        ns(m.latency.quantile(0.5)),
        ns(m.latency.quantile(0.99)),
        m.fewest,
        m.cpu.as_nanos()
    )
}

/// One measured window of one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Answers in the window.
    pub requests: u64,
    /// The window's length.
    pub elapsed: Duration,
    /// The median and 99th percentile latency.
    pub p50: Duration,
    /// See [`Sample::p50`].
    pub p99: Duration,
    /// The fewest answers any one connection got.
    pub fewest: u64,
    /// The server's CPU time in the window.
    pub server: Usage,
    /// The load generator's CPU time in the window.
    pub load_cpu: Duration,
}

impl Sample {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Microseconds of the server's user and system time per request.
    pub fn per_request(&self) -> (f64, f64) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.requests.max(1) as f64;
        (per(self.server.user), per(self.server.system))
    }

    /// How busy the load generator was: its CPU time over the window.
    pub fn load_busy(&self) -> f64 {
        self.load_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How one measurement runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// This binary, to run in its hidden modes.
    pub exe: std::path::PathBuf,
    /// The CPUs of the server and of the load generator (`None`: not pinned).
    pub cpus: (Option<usize>, Option<usize>),
    /// Warm-up and window.
    pub warmup: Duration,
    /// See [`Plan::warmup`].
    pub window: Duration,
    /// The echo message's size.
    pub size: usize,
    /// How the load generator talks to the kernel.
    pub load_driver: Driver,
}

/// A child process whose stdout lines arrive on a channel and whose stderr is kept.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    what: String,
}

impl Process {
    fn start(what: String, command: &mut Command) -> Result<Process, Error> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("starting the {what}"), e))?;
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Process {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
            what,
        })
    }

    /// The next line of its stdout, or an error with what it said on stderr.
    fn line(&mut self, timeout: Duration) -> Result<String, Error> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(Error::Other(format!(
                "the {} said nothing for {} s",
                self.what,
                timeout.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(self.failure()),
        }
    }

    /// The process ended: its status and its stderr as an error.
    fn failure(&mut self) -> Error {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Error::Other(format!(
            "the {} failed ({status}): {}",
            self.what,
            stderr.trim()
        ))
    }

    fn ask(&mut self, line: &str) -> Result<(), Error> {
        let stdin = self.stdin.as_mut().expect("open until stop");
        writeln!(stdin, "{line}").map_err(|_| self.failure())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `server` against `connections` connections: one sample, and the system calls
/// per request if `perf` is given (then the sample's figures include perf's own cost).
pub fn measure(
    plan: &Plan,
    server: Server,
    connections: usize,
    perf: bool,
) -> Result<(Sample, Option<super::perf::Syscalls>), Error> {
    let (server_cpu, load_cpu) = plan.cpus;
    let mut command = Command::new(&plan.exe);
    command.args(["--serve", server.key(), "--conns", &connections.to_string()]);
    if let Some(cpu) = server_cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let mut serving = Process::start(format!("{} server", server.key()), &mut command)?;
    let startup = Duration::from_secs(30);
    let line = serving.line(startup)?;
    let addr: std::net::SocketAddr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Error::Other(format!("the server said `{line}`, not its address")))?;
    let mut counter = if perf {
        Some(super::perf::Perf::attach(serving.child.id())?)
    } else {
        None
    };

    let mut command = Command::new(&plan.exe);
    command.args([
        "--load",
        &addr.to_string(),
        "--protocol",
        server.protocol().key(),
        "--conns",
        &connections.to_string(),
        "--warmup",
        &plan.warmup.as_secs_f64().to_string(),
        "--secs",
        &plan.window.as_secs_f64().to_string(),
        "--size",
        &plan.size.to_string(),
        "--load-driver",
        plan.load_driver.key(),
    ]);
    if let Some(cpu) = load_cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let mut loading = Process::start("load generator".into(), &mut command)?;
    let usage = |serving: &mut Process| -> Result<Usage, Error> {
        serving.ask("usage")?;
        let line = serving.line(Duration::from_secs(10))?;
        Usage::parse(&line)
            .ok_or_else(|| Error::Other(format!("the server said `{line}`, not its usage")))
    };
    let connect = startup + plan.warmup + Duration::from_secs(30);
    let expect = |loading: &mut Process, word: &str, timeout| -> Result<(), Error> {
        let line = loading.line(timeout)?;
        if line == word {
            Ok(())
        } else {
            Err(Error::Other(format!(
                "the load generator said `{line}`, not `{word}`"
            )))
        }
    };
    // The load runs all along. The window opens (`go`) once the server is sampled and
    // perf counts; when its time is up (`stop`), perf stops counting and the server is
    // sampled before the window closes (`end`): counts and window differ only by the
    // latency of a pipe, however long perf takes to answer.
    expect(&mut loading, "ready", connect)?;
    let before = usage(&mut serving)?;
    if let Some(counter) = &mut counter {
        counter.enable()?;
    }
    loading.ask("go")?;
    expect(&mut loading, "stop", plan.window + Duration::from_secs(30))?;
    if let Some(counter) = &mut counter {
        counter.disable()?;
    }
    let after = usage(&mut serving)?;
    loading.ask("end")?;
    let line = loading.line(Duration::from_secs(30))?;
    let numbers: Vec<u64> = line
        .strip_prefix("result ")
        .map(|rest| rest.split(' ').filter_map(|w| w.parse().ok()).collect())
        .unwrap_or_default();
    let [requests, elapsed, p50, p99, fewest, load_ns] = numbers[..] else {
        return Err(Error::Other(format!("the load generator said `{line}`")));
    };
    let syscalls = counter.map(|c| c.finish()).transpose()?;
    let sample = Sample {
        requests,
        elapsed: Duration::from_nanos(elapsed),
        p50: Duration::from_nanos(p50),
        p99: Duration::from_nanos(p99),
        fewest,
        server: Usage {
            user: after.user.saturating_sub(before.user),
            system: after.system.saturating_sub(before.system),
            peak_rss: after.peak_rss,
        },
        load_cpu: Duration::from_nanos(load_ns),
    };
    // The server must still be serving: a crash in the window would show here.
    if !matches!(serving.child.try_wait(), Ok(None)) {
        return Err(serving.failure());
    }
    Ok((sample, syscalls))
}
