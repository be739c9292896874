//! The article's intro anti-pattern, measured: N requests waiting on a slow server, held
//! by N processes, by N threads, and by N async tasks. What does each waiting request
//! cost in memory?
//!
//! ```text
//! cargo run --release -p stage5-bench --bin memory              # 200 of each, seconds
//! cargo run --release -p stage5-bench --bin memory -- --requests 500 --runs 5
//! ```
//!
//! Every waiter connects to one slow server (in this process, answering only after a
//! minute), sends its request and waits in a read. When all N wait, we read their
//! memory; then they are stopped, without waiting for the answers.
//!
//! - processes: this binary again, in a hidden `--hold-one ADDR` mode, N times. Each
//!   reports when it waits; we read each child's resident size (RSS) and, on Linux, its
//!   proportional size (PSS: pages shared with other processes, the binary and the C
//!   library, divided among them).
//! - Python processes, when `python3` is on the `PATH`: the same waiting request as a
//!   few lines of Python, which is what the article's anti-pattern (a process per API
//!   call with `multiprocessing`) starts.
//! - threads and tasks: one child process per run, in a hidden `--hold MODEL N ADDR`
//!   mode, measures how much its own resident size grew from before the first waiter to
//!   when all of them wait (the server is not in it, so its buffers are not counted).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shared::memory::resident_bytes;
use shared::protocol::request;
use shared::server::SlowServer;
use stage5_bench::cell;
use stage5_bench::stats::Summary;
use stage5_bench::text::{machine, print_markdown};

#[derive(clap::Parser)]
/// Resident memory of N waiting requests: as processes, threads and async tasks.
struct Args {
    /// Waiting requests held as processes.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=5_000))]
    requests: u64,
    /// Waiting requests held as threads and as tasks: more than processes, because a
    /// heap grows in steps of 128 KiB or more, which would blur a few hundred bytes each.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    in_process: u64,
    /// Runs of each kind; the table shows the median and range.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
    /// Hidden: be one waiting process.
    #[arg(long, value_name = "ADDR", hide = true)]
    hold_one: Option<SocketAddr>,
    /// Hidden: hold N waiting requests as threads or tasks and print the growth.
    #[arg(long, num_args = 3, value_names = ["MODEL", "N", "ADDR"], hide = true)]
    hold: Option<Vec<String>>,
}

/// How long the slow server takes to answer: far longer than any run.
const SERVER_DELAY: Duration = Duration::from_secs(60);
/// How long we wait for N waiters before giving up on a run.
const READY_WITHIN: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    if let Some(addr) = args.hold_one {
        return hold_one(addr);
    }
    if let Some(hold) = &args.hold {
        return match hold_many(hold) {
            Ok(line) => {
                shared::say!("{line}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                shared::say!("failed {error}");
                ExitCode::FAILURE
            }
        };
    }
    match table(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The children.

/// One waiting request as a Python process, for `python3 -c SCRIPT HOST PORT`.
const PYTHON_HOLD_ONE: &str = r#"
import socket, sys
def rss():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"Request 0\n")
print("waiting rss=%d" % rss(), flush=True)
s.recv(64)
"#;

/// One waiting request as a process: connect, send, say so, wait for the answer.
fn hold_one(addr: SocketAddr) -> ExitCode {
    let run = || -> std::io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        stream.write_all(request(0).as_bytes())?;
        shared::say!("waiting rss={}", resident_bytes().unwrap_or(0));
        let mut answer = [0u8; 64];
        let _ = stream.read(&mut answer)?; // the parent stops us long before
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            shared::say!("failed {error}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: hold
/// N waiting requests as threads or as stage 4 tasks, in this process: returns
/// `grown=BYTES` once all of them wait, then stops them.
fn hold_many(args: &[String]) -> Result<String, String> {
    let usage = "usage: memory --hold threads|tasks N ADDR";
    let [model, n, addr] = args else {
        return Err(usage.into());
    };
    let n: u64 = n.parse().map_err(|_| usage.to_string())?;
    let addr: SocketAddr = addr.parse().map_err(|_| usage.to_string())?;
    let before = resident_bytes().ok_or("this OS does not tell us our resident size")?;
    let all_waiting = match model.as_str() {
        "threads" => hold_threads(n, addr)?,
        "tasks" => hold_tasks(n, addr)?,
        _ => return Err(usage.into()),
    };
    Ok(format!("grown={}", all_waiting.saturating_sub(before)))
}

/// Each thread: a blocking connect, write, and read, as stage 0 does.
fn hold_threads(n: u64, addr: SocketAddr) -> Result<u64, String> {
    let waiting = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        streams.push(stream.try_clone().map_err(|e| e.to_string())?);
        let waiting = Arc::clone(&waiting);
        threads.push(std::thread::spawn(move || {
            if stream.write_all(request(0).as_bytes()).is_ok() {
                waiting.fetch_add(1, Ordering::SeqCst);
                let mut answer = [0u8; 64];
                let _ = stream.read(&mut answer); // ends when the socket is shut down
            }
        }));
    }
    let deadline = Instant::now() + READY_WITHIN;
    while waiting.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let rss = resident_bytes().unwrap_or(0);
    let all = waiting.load(Ordering::SeqCst) == n;
    // Shutting the sockets down ends every read, so every thread ends.
    for stream in &streams {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    for thread in threads {
        let _ = thread.join();
    }
    if !all {
        return Err(format!("not all {n} threads were waiting within a minute"));
    }
    Ok(rss)
}

/// Each task: stage 4's async connect, write and read, on one loop.
fn hold_tasks(n: u64, addr: SocketAddr) -> Result<u64, String> {
    use stage4_async_await::{EventLoop, net, sleep, spawn};
    let event_loop = EventLoop::new()
        .map_err(|e| format!("event loop: {e}"))?
        .slow_poll_threshold(Duration::MAX);
    event_loop.block_on(async move {
        let waiting = Rc::new(std::cell::Cell::new(0u64));
        for _ in 0..n {
            let waiting = Rc::clone(&waiting);
            // Dropping the handle detaches the task: it runs until the loop ends.
            drop(spawn(async move {
                let Ok(stream) = net::TcpStream::connect(addr).await else {
                    return;
                };
                if stream.write_all(request(0).as_bytes()).await.is_ok() {
                    waiting.set(waiting.get() + 1);
                    let mut answer = [0u8; 64];
                    let _ = stream.read(&mut answer).await;
                }
            }));
        }
        let deadline = Instant::now() + READY_WITHIN;
        while waiting.get() < n && Instant::now() < deadline {
            sleep(Duration::from_millis(1)).await;
        }
        if waiting.get() < n {
            return Err(format!("not all {n} tasks were waiting within a minute"));
        }
        // Returning drops (cancels) every task, and with it its socket.
        Ok(resident_bytes().unwrap_or(0))
    })
}
// ANCHOR_END: hold

// ---------------------------------------------------------------------------------------
// The parent.

/// What one run of N waiters measured, in bytes per waiting request.
#[derive(Debug, Default)]
struct PerRequest {
    rss: Vec<f64>,
    pss: Vec<f64>,
}

fn table(args: &Args) -> Result<(), String> {
    if resident_bytes().is_none() {
        return Err(
            "this OS does not tell this program resident sizes (it reads /proc): nothing to \
             measure"
                .into(),
        );
    }
    let most = args.requests.max(args.in_process);
    shared::limits::check_connections(most * 2 + 16).map_err(|e| e.to_string())?;
    let server =
        SlowServer::start(SERVER_DELAY).map_err(|e| format!("starting the slow server: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let n = args.requests;
    let (mut processes, mut threads, mut tasks) = (
        PerRequest::default(),
        PerRequest::default(),
        PerRequest::default(),
    );
    let mut python = PerRequest::default();
    let python_version = stage5_bench::python::version();
    let ip = server.addr().ip().to_string();
    let port = server.addr().port().to_string();
    // Interleaved runs: a noisy moment is shared by all three.
    for round in 1..=args.runs {
        eprint!("[{round}/{}] {n} processes... ", args.runs);
        let mut ours = Command::new(&exe);
        ours.args(["--hold-one", &server.addr().to_string()]);
        let (rss, pss) = hold_processes(&mut ours, n)?;
        processes.rss.push(rss);
        processes.pss.extend(pss);
        if python_version.is_some() {
            eprint!("{n} Python processes... ");
            let mut theirs = Command::new("python3");
            theirs.args(["-c", PYTHON_HOLD_ONE, &ip, &port]);
            let (rss, pss) = hold_processes(&mut theirs, n)?;
            python.rss.push(rss);
            python.pss.extend(pss);
        }
        let m = args.in_process;
        eprint!("{m} threads... ");
        threads
            .rss
            .push(hold_in_child(&exe, "threads", m, server.addr())?);
        eprintln!("{m} tasks...");
        tasks
            .rss
            .push(hold_in_child(&exe, "tasks", m, server.addr())?);
    }
    shared::say!("Machine: {}.", machine());
    shared::say!(
        "Requests wait on a slow server, each held by a process ({n} at once), a thread or a \
         stage 4 task ({} at once). Memory per waiting request: the median of {} runs, the \
         smallest and largest, and what {n} would take.",
        stage5_bench::text::thousands(args.in_process),
        args.runs
    );
    shared::say!();
    let row = |label: &str, values: &[f64]| -> Vec<String> {
        match Summary::of(values) {
            Some(s) => vec![
                label.to_string(),
                cell::bytes(s.median),
                format!("{} - {}", cell::bytes(s.min), cell::bytes(s.max)),
                format!("{:.1} MiB", s.median * n as f64 / (1 << 20) as f64),
            ],
            None => vec![
                label.to_string(),
                "not measured".into(),
                String::new(),
                String::new(),
            ],
        }
    };
    let mut rows = vec![
        row("processes (this binary), resident (RSS)", &processes.rss),
        row(
            "processes (this binary), proportional (PSS)",
            &processes.pss,
        ),
    ];
    if let Some(version) = &python_version {
        rows.push(row(&format!("{version} processes, RSS"), &python.rss));
        rows.push(row(&format!("{version} processes, PSS"), &python.pss));
    }
    rows.extend([
        row("threads (std::thread, blocking read)", &threads.rss),
        row("stage 4 tasks (one event loop)", &tasks.rss),
    ]);
    print_markdown(
        &[
            "each waiting request is",
            "memory each",
            "smallest - largest",
            &format!("all {n}"),
        ],
        &rows,
        &[0],
    );
    shared::say!();
    shared::say!(
        "RSS counts every page a process maps, so the pages of the binary and the C library \
         are counted once per process; PSS divides shared pages among the processes that \
         share them{}. Threads and tasks: how much one process grew, divided by how many \
         waited. Not counted anywhere: \
         the kernel's own memory (socket buffers, and for processes and threads their kernel \
         stacks and page tables).",
        if processes.pss.is_empty() {
            " (not on this OS: it needs Linux's /proc/PID/smaps_rollup)"
        } else {
            ""
        }
    );
    Ok(())
}

/// Starts `n` copies of `command` (each prints `waiting rss=BYTES` once it waits), reads
/// their memory once all wait, stops them. Returns RSS and (on Linux) PSS per process.
fn hold_processes(command: &mut Command, n: u64) -> Result<(f64, Option<f64>), String> {
    let mut children = Children(Vec::new());
    for _ in 0..n {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting a waiting process: {e}"))?;
        children.0.push(child);
    }
    let (mut rss, mut pss) = (0u64, Some(0u64));
    for child in &mut children.0 {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading a waiting process: {e}"))?;
        let own: u64 = line
            .trim()
            .strip_prefix("waiting rss=")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("a waiting process said {line:?}"))?;
        rss += own;
        pss = pss.and_then(|sum| Some(sum + proportional_bytes(child.id())?));
    }
    drop(children); // stops and reaps them
    Ok((rss as f64 / n as f64, pss.map(|p| p as f64 / n as f64)))
}

/// The waiting processes; dropping them kills and reaps each (only these, which we
/// started).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// `Pss:` of `/proc/PID/smaps_rollup`, in bytes.
fn proportional_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    shared::memory::kib_field(&text, "Pss:")
}

/// Runs `--hold MODEL N ADDR` in a fresh child and returns its growth per request.
fn hold_in_child(
    exe: &std::path::Path,
    model: &str,
    n: u64,
    addr: SocketAddr,
) -> Result<f64, String> {
    let output = Command::new(exe)
        .args(["--hold", model, &n.to_string(), &addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting the {model} child: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or("").trim();
    let grown: u64 = line
        .strip_prefix("grown=")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("the {model} child said {line:?}"))?;
    Ok(grown as f64 / n as f64)
}
