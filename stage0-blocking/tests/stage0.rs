//! Stage 0 against the embedded slow server and against servers that misbehave.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shared::server::SlowServer;
use shared::testkit::refused_addr;
use shared::{Config, Error};
use stage0_blocking::{run_jobs, run_sequential, sleep_bench};

#[test]
fn sequential_mode_verifies_every_response_one_after_another() {
    let server = SlowServer::start(Duration::from_millis(50)).unwrap();
    let report = run_sequential(&Config::new(server.addr(), 5)).unwrap();
    assert_eq!(report.verified(), 5);
    // The ids come back in the order they were sent: 4 down to 0.
    let ids: Vec<u64> = report.responses().iter().map(|r| r.id).collect();
    assert_eq!(ids, [4, 3, 2, 1, 0]);
    // Each request started only after the answer before it: arrivals are at least one
    // delay apart. (The server's peak of open connections cannot show this: it may see
    // the next connection before the previous one's close.)
    for pair in report.responses().windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(50), "{gap:?} between answers");
    }
}

#[test]
fn the_binary_explains_a_refused_addr_on_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_stage0-blocking"))
        .args(["--addr", &refused_addr().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("slow-server"), "{stderr}");
    assert!(stderr.contains("omit --addr"), "{stderr}");
}

#[test]
fn the_binary_prints_the_report_and_the_sequential_cost() {
    let output = Command::new(env!("CARGO_BIN_EXE_stage0-blocking"))
        .args(["--delay-ms", "100", "--requests", "4"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    for id in 0..4 {
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(&format!("] Request {id}"))),
            "{stdout}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("4/4 responses verified in ")),
        "{stdout}"
    );
    assert!(stdout.contains("one at a time"), "{stdout}");
}

#[test]
fn run_jobs_runs_every_job_exactly_once() {
    let done = Mutex::new(Vec::new());
    run_jobs(1_000, 50, |job| done.lock().unwrap().push(job)).unwrap();
    let done = done.into_inner().unwrap();
    assert_eq!(done.len(), 1_000, "no job twice");
    assert_eq!(
        done.into_iter().collect::<BTreeSet<_>>(),
        (0..1_000).collect()
    );
}

#[test]
fn run_jobs_really_runs_concurrency_jobs_at_once() {
    // Every job waits until all 20 are running at the same time. With fewer than 20
    // threads that moment never comes and the jobs give up after PATIENCE.
    const WORKERS: u64 = 20;
    const PATIENCE: Duration = Duration::from_secs(10);
    let running = AtomicU64::new(0);
    let met = AtomicU64::new(0);
    run_jobs(WORKERS, WORKERS, |_| {
        running.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        while running.load(Ordering::SeqCst) < WORKERS && start.elapsed() < PATIENCE {
            thread::sleep(Duration::from_millis(1));
        }
        if running.load(Ordering::SeqCst) == WORKERS {
            met.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap();
    assert_eq!(met.load(Ordering::SeqCst), WORKERS, "all jobs ran at once");
}

#[test]
fn sleep_bench_takes_rounds_of_the_sleep() {
    // 100 jobs on 50 threads: two rounds of 20 ms each, at least.
    let elapsed = sleep_bench(100, 50, Duration::from_millis(20)).unwrap();
    assert!(elapsed >= Duration::from_millis(40), "{elapsed:?}");
}

#[test]
fn more_threads_than_the_mapping_budget_are_refused_before_any_starts() {
    let Some(budget) = shared::limits::MapBudget::read() else {
        return; // not Linux
    };
    let too_many = budget.max; // four mappings each: far over the budget
    let start = Instant::now();
    let error = sleep_bench(too_many, too_many, Duration::from_secs(3600)).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "nothing was started"
    );
    let text = error.to_string();
    assert!(matches!(error, Error::Limit { .. }), "{error:?}");
    assert!(text.contains("vm.max_map_count"), "{text}");
    assert!(text.contains("Use at most"), "{text}");
}

#[test]
fn a_reader_that_stops_reading_does_not_crash_the_binary() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // `cargo run -p stage0-blocking | head -1`: stdout closes after the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_stage0-blocking"))
        .args(["--delay-ms", "100", "--requests", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("20 requests"), "{first}");
    // The reader is gone: every later line hits a closed pipe.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}
