//! The measuring binaries, run as a reader runs them but on tiny sizes: every row is
//! there, every figure parses, bad input is refused. No timing is asserted: these
//! binaries exist to measure, and a loaded machine must not fail them.

use std::process::Command;

fn run(exe: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{exe}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn latency_prints_every_row_and_removes_its_scratch_file() {
    let dir = std::env::temp_dir().join(format!("latency-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = env!("CARGO_BIN_EXE_latency");
    let (ok, stdout, stderr) = run(exe, &["--runs", "1", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{stdout}\n{stderr}");
    for row in [
        "L1 cache load",
        "L2 cache load",
        "main-memory load",
        "uncontended mutex lock+unlock",
        "mutex hand-off, two threads",
        "non-blocking system call",
        "thread context switch",
        "stage 3 resume + suspend",
        "stage 4 task wake + poll",
        "loopback TCP round trip",
        "4 KiB read, not in cache",
        "write 4 KiB + fsync",
    ] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {row} ")))
            .unwrap_or_else(|| panic!("no row {row:?}:\n{stdout}"));
        // A figure in ns, or a plain "not measured" with its reason below the table.
        assert!(
            line.contains(" ns |") || line.contains("not measured"),
            "{line}"
        );
    }
    assert!(stdout.contains(" (0.5 s) |"), "{stdout}");
    assert!(
        stdout.contains("L1 cache load beside L1 cache reference"),
        "{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "scratch files left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn latency_refuses_nonsense() {
    let exe = env!("CARGO_BIN_EXE_latency");
    let (ok, _, stderr) = run(exe, &["--runs", "0"]);
    assert!(!ok && stderr.contains("--runs"), "{stderr}");
}

#[test]
fn compute_runs_every_way_and_checks_every_answer() {
    let exe = env!("CARGO_BIN_EXE_compute");
    let (ok, stdout, stderr) = run(exe, &["--runs", "1", "--jobs", "4", "--job-ms", "1"]);
    // The mixed load's client compares every answer with its request and fails the run
    // on a wrong one, so success means every round trip was a real echo.
    assert!(ok, "{stdout}\n{stderr}");
    for row in [
        "one thread, one job after another",
        "stage 4 loop, a task per job",
        "stage 4, spawn_blocking",
        "threads, one per core",
        "nothing computes",
        "on the loop, yielding between jobs",
        "off the loop, with spawn_blocking",
    ] {
        assert!(stdout.contains(row), "no row {row:?}:\n{stdout}");
    }
    let (ok, _, stderr) = run(exe, &["--jobs", "0"]);
    assert!(!ok && stderr.contains("--jobs"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn memory_holds_waiting_requests_in_every_model() {
    use shared::server::SlowServer;
    use std::time::Duration;

    let exe = env!("CARGO_BIN_EXE_memory");
    let server = SlowServer::start(Duration::from_secs(60)).unwrap();
    let addr = server.addr().to_string();
    for model in ["threads", "tasks"] {
        // Two hundred: a few hundred bytes a task, so that twenty could fit in pages
        // the process had already, and show no growth at all.
        let (ok, stdout, stderr) = run(exe, &["--hold", model, "200", &addr]);
        assert!(ok, "{model}: {stdout}\n{stderr}");
        let grown: u64 = stdout
            .trim()
            .strip_prefix("grown=")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{model}: {stdout:?}"));
        // Two hundred sockets, futures or stacks are never free, and never a gigabyte.
        assert!(grown > 0 && grown < 1 << 30, "{model}: {grown}");
    }
    // Every one of the four hundred requests reached the server (the last ones may still
    // wait in its accept queue when the process that made them has gone).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.stats().accepted < 400 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.stats().accepted, 400, "{:?}", server.stats());

    let (ok, stdout, _) = run(exe, &["--hold", "fibers", "20", &addr]);
    assert!(!ok && stdout.starts_with("failed usage"), "{stdout}");

    let (ok, stdout, stderr) = run(
        exe,
        &["--requests", "5", "--in-process", "20", "--runs", "1"],
    );
    assert!(ok, "{stdout}\n{stderr}");
    for row in [
        "processes (this binary), resident (RSS)",
        "processes (this binary), proportional (PSS)",
        "threads (std::thread, blocking read)",
        "stage 4 tasks (one event loop)",
    ] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {row}")))
            .unwrap_or_else(|| panic!("no row {row:?}:\n{stdout}"));
        assert!(!line.contains("not measured"), "{line}");
    }
}

#[test]
fn table_prints_three_tables_that_fit_the_book() {
    let exe = env!("CARGO_BIN_EXE_table");
    let plot = std::env::temp_dir().join(format!("table-test-{}.svg", std::process::id()));
    let args = ["--quick", "--runs", "1", "--no-python", "--plot"];
    let (ok, stdout, stderr) = run(exe, &[&args[..], &[plot.to_str().unwrap()]].concat());
    assert!(ok, "{stdout}\n{stderr}");
    // Every line but a note on a cell that did not run fits the book's box unwrapped.
    for line in stdout.lines().filter(|line| !line.starts_with("- ")) {
        assert!(line.chars().count() <= 110, "{line:?}\n{stdout}");
    }
    // Wall time, CPU time and memory, each with the Rust heading over its rows.
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|line| line.trim_start().starts_with("tasks | at once |"))
        .collect();
    assert_eq!(headers.len(), 3, "{stdout}");
    assert!(headers[0].ends_with("| floor"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| *l == "Rust").count(),
        3,
        "{stdout}"
    );
    for at_once in ["100", "1,000", "10,000"] {
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|line| line.starts_with(&format!("10,000 | {at_once:>7} |")))
            .collect();
        // The 10,000-worker row is also in the memory table.
        let tables = if at_once == "10,000" { 3 } else { 2 };
        assert_eq!(rows.len(), tables, "{at_once}:\n{stdout}");
        // Stage 4's tasks ran, in every table: a time, a CPU time, a size.
        for row in rows {
            let tasks = row.split(" | ").nth(4).unwrap_or_default().trim();
            let figure = tasks.trim_end_matches(" B").trim_end_matches(" KiB");
            assert!(figure.parse::<f64>().is_ok(), "{row:?}\n{stdout}");
        }
    }
    assert!(
        std::fs::metadata(&plot).is_ok_and(|m| m.len() > 0),
        "no plot"
    );
    std::fs::remove_file(&plot).unwrap();
}
