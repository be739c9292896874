//! The million, small: the same binary, the same processes and phases, on sizes that run
//! in seconds, with the open-file limit per process forced low so that even a small run
//! crosses it and must be sharded. What a reader would check: every answer verified,
//! every connection open and every request waiting at once, and no process left behind,
//! whether the run ends well, is interrupted, or loses a shard.

// The runs themselves read /proc to find what they left behind: Linux only. The refusal
// and the plan are checked everywhere.
#[cfg(target_os = "linux")]
use std::io::{BufRead, BufReader, Read};
#[cfg(target_os = "linux")]
use std::process::{Child, Stdio};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MILLION: &str = env!("CARGO_BIN_EXE_million");

/// Every process of a run carries this in its environment (children inherit it), so a
/// test finds its own processes, and only them, among everything on the machine.
const TAG: &str = "MILLION_TEST_RUN";

fn command(tag: &str, args: &[&str]) -> Command {
    let mut command = Command::new(MILLION);
    command.args(args).env(TAG, tag);
    command
}

fn run(tag: &str, args: &[&str]) -> (Output, String, String) {
    let output = command(tag, args)
        .output()
        .expect("the million binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// The processes still alive (not zombies) whose environment carries `tag`.
#[cfg(target_os = "linux")]
fn left_behind(tag: &str) -> Vec<String> {
    let marker = format!("{TAG}={tag}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue; // gone meanwhile, or not ours to read
        };
        let ours = environ
            .split(|&b| b == 0)
            .any(|var| var == marker.as_bytes());
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if ours && !zombie {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// Waits a moment for processes that are exiting, then asserts none is left.
#[cfg(target_os = "linux")]
fn assert_nothing_left(tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = left_behind(tag);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The report with every run of spaces and line breaks made one space: long lines wrap.
fn flat(stdout: &str) -> String {
    stdout.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The open-file limit a process of this machine may raise itself to.
#[allow(
    clippy::unnecessary_cast,
    reason = "rlim_t is u64 on Linux, not everywhere"
)]
fn hard_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_max as u64
}

#[cfg(target_os = "linux")]
fn line<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout
        .lines()
        .map(str::trim_start)
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?}:\n{stdout}"))
}

#[cfg(target_os = "linux")]
#[test]
fn thirty_thousand_connections_over_four_processes_a_side_all_at_once_all_verified() {
    if hard_fd_limit() < 8_000 {
        eprintln!("skipped: this machine allows fewer than 8,000 descriptors a process");
        return;
    }
    let tag = format!("sharded-{}", std::process::id());
    let (output, stdout, stderr) = run(
        &tag,
        &[
            "--connections",
            "30000",
            "--max-fds-per-process",
            "8000",
            "--delay-ms",
            "2000",
        ],
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Past one process's limit: sharded on both sides, each client from its own address.
    assert!(
        flat(&stdout).contains("so 4 client processes and 4 server processes"),
        "{stdout}"
    );
    let layout = line(&stdout, "the run:");
    assert!(
        layout.contains("4 client processes from 127.0.0.2 to 127.0.0.5")
            && layout.contains("4 server shards"),
        "{layout}"
    );
    assert!(line(&stdout, "opened").contains("30,000 of 30,000 connections"));
    assert!(line(&stdout, "open at once").starts_with("open at once    30,000 "));
    // All waiting at once, proven by the servers' counts before any answer was due.
    assert!(
        line(&stdout, "waiting at once").starts_with("waiting at once 30,000: all of them"),
        "{stdout}"
    );
    assert!(line(&stdout, "verified").starts_with("verified        30,000 answers"));
    assert_eq!(line(&stdout, "failures"), "failures        none");
    // Memory per connection, by part, at both moments.
    let table = line(&stdout, "| bytes per connection");
    assert!(
        table.contains("all open") && table.contains("all waiting"),
        "{table}"
    );
    for part in [
        "client processes (RSS)",
        "server processes (RSS)",
        "kernel: slab",
    ] {
        let row = line(&stdout, &format!("| {part}"));
        assert!(row.contains(" B "), "{row}");
    }
    assert_nothing_left(&tag);
}

#[cfg(target_os = "linux")]
#[test]
fn the_floor_opens_every_connection_across_processes_and_the_run_is_compared_with_it() {
    let tag = format!("floor-{}", std::process::id());
    let svg = std::env::temp_dir().join(format!("million-{}.svg", std::process::id()));
    let (output, stdout, stderr) = run(
        &tag,
        &[
            "--connections",
            "6000",
            "--max-fds-per-process",
            "2000",
            "--delay-ms",
            "500",
            "--compare-floor",
            "--svg",
            svg.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let floor = line(&stdout, "the floor:");
    assert!(floor.contains("4 acceptors"), "{floor}");
    // The floor's report comes first, then the run's, with the ratio of the two rates.
    let compared = "with bare connects and accepts in the same layout: the run opened at ";
    assert!(flat(&stdout).contains(compared), "{stdout}");
    let picture = std::fs::read_to_string(&svg).unwrap();
    std::fs::remove_file(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("waiting (servers)"));
    assert_nothing_left(&tag);
}

#[test]
fn a_size_the_machine_cannot_hold_is_refused_before_anything_starts() {
    let tag = format!("refused-{}", std::process::id());
    let started = Instant::now();
    let (output, stdout, stderr) = run(&tag, &["--connections", "1000000000"]);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let said = flat(&stderr);
    assert!(
        said.contains("1,000,000,000 connections cannot run on this machine"),
        "{stderr}"
    );
    if cfg!(target_os = "linux") {
        // Each limit by name, with its value and what to do about it.
        for words in [
            "memory: MemAvailable is ",
            "drop_caches",
            "fs.file-max: ",
            "sysctl -w fs.file-max=",
        ] {
            assert!(said.contains(words), "{words}: {stderr}");
        }
    }
}

#[test]
fn the_plan_of_a_run_is_printed_without_starting_it() {
    let tag = format!("plan-{}", std::process::id());
    let started = Instant::now();
    let (output, stdout, stderr) = run(
        &tag,
        &[
            "--connections",
            "100000",
            "--max-fds-per-process",
            "10000",
            "--plan",
        ],
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let said = flat(&stdout);
    for words in [
        "100,000 connections: stage 4's client against the slow server",
        "open files per process: ",
        "source addresses: ",
        "memory: ",
        "listen backlog: ",
    ] {
        assert!(said.contains(words), "{words}: {stdout}");
    }
    // Where the machine allows 10,000 descriptors a process, the layout follows from it.
    if hard_fd_limit() >= 10_000 {
        assert!(
            said.contains("so 11 client processes and 11 server processes"),
            "{stdout}"
        );
    }
    // Nothing ran: no report.
    assert!(!said.contains("the run:"), "{stdout}");
    #[cfg(target_os = "linux")]
    assert_nothing_left(&tag);
}

/// Starts a run whose answers take long, and returns it once every request is waiting.
#[cfg(target_os = "linux")]
fn start_long_run(tag: &str) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = command(
        tag,
        &[
            "--connections",
            "2000",
            "--max-fds-per-process",
            "600",
            "--delay-ms",
            "60000",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Progress lines come on stderr once a second: wait for every request waiting.
    let (sender, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("waiting 2,000 ") => return (child, lines),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no progress line with every request waiting within 60 s");
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn finish(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the run did not end within {limit:?} after being stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    (status, stdout)
}

#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_stops_every_process_and_the_report_says_what_was_reached() {
    let tag = format!("interrupted-{}", std::process::id());
    let (child, _lines) = start_long_run(&tag);
    // SAFETY: kill sends SIGINT to the run we started, whose pid we hold.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (status, stdout) = finish(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(
        line(&stdout, "opened").contains("2,000 of 2,000"),
        "{stdout}"
    );
    assert!(line(&stdout, "stopped").contains("interrupted"), "{stdout}");
    // Every request is accounted for: none was answered, each is counted as unfinished.
    assert!(stdout.contains("unfinished_interrupted: 2,000"), "{stdout}");
    assert_nothing_left(&tag);
}

#[cfg(target_os = "linux")]
#[test]
fn a_shard_that_dies_ends_the_run_and_takes_every_process_with_it() {
    let tag = format!("shard-dies-{}", std::process::id());
    let (child, _lines) = start_long_run(&tag);
    let shard = left_behind(&tag)
        .into_iter()
        .find(|process| process.contains(" server-shard "))
        .expect("a server shard");
    let pid: i32 = shard.split(':').next().unwrap().parse().unwrap();
    // SAFETY: kill sends SIGKILL to a server shard of the run we started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (status, stdout) = finish(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stdout}");
    let ended = format!("(pid {pid}) ended before its time: killed by signal 9");
    assert!(flat(&stdout).contains(&ended), "{stdout}");
    assert!(
        line(&stdout, "failures").starts_with("failures        2,000"),
        "{stdout}"
    );
    assert_nothing_left(&tag);
}
