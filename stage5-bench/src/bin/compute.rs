//! Where the event loop loses: jobs that compute instead of wait.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin compute              # about 20 seconds
//! cargo run --release -p stage5-bench --bin compute -- --runs 7
//! ```
//!
//! Two measurements:
//!
//! 1. The same compute-bound jobs (hashing a buffer for a few milliseconds each) run one
//!    after another, as tasks on one stage 4 loop, through stage 4's `spawn_blocking`, and
//!    on one thread per core. The loop is one thread, so it can use one core.
//! 2. A mixed load: a stage 4 loop serves an echo connection while other tasks of the
//!    same loop compute, and a client sends a request every 2 ms and times each one. With the compute on the loop, a request waits for every job that runs
//!    before the loop gets back to the socket; moved off the loop with `spawn_blocking`,
//!    it waits only for the OS to schedule the loop's thread.

use std::cell::Cell;
use std::hash::Hasher;
use std::hint::black_box;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shared::protocol::{LineDecoder, expected_response, request};
use stage4_async_await::net::TcpStream;
use stage4_async_await::{EventLoop, join_all, spawn, spawn_blocking, yield_now};
use stage5_bench::stats::Summary;
use stage5_bench::text::{machine, print_markdown};

#[derive(clap::Parser)]
/// Compute-bound jobs on one event loop, off it, and on a thread per core.
struct Args {
    /// Runs of each measurement; the tables show their median and range.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
    /// Jobs in the first measurement.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    jobs: u64,
    /// How long one job computes, in milliseconds (calibrated on this machine).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    job_ms: u64,
    /// Tasks that compute during the mixed load, each running jobs back to back.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    computing_tasks: u64,
}

// ANCHOR: job
/// One compute-bound job: hash a 1 MiB buffer `passes` times with std's `DefaultHasher`
/// (SipHash). No I/O, no allocation, nothing to wait for: only work for a core.
fn job(passes: u32) -> u64 {
    static BUFFER: [u8; 1 << 20] = [0x5A; 1 << 20];
    let mut hasher = std::hash::DefaultHasher::new();
    for _ in 0..passes {
        hasher.write(black_box(&BUFFER));
    }
    hasher.finish()
}
// ANCHOR_END: job

/// How many passes make a job of about `ms` milliseconds here.
fn calibrate(ms: u64) -> u32 {
    let one: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            black_box(job(4));
            start.elapsed().as_secs_f64() / 4.0
        })
        .collect();
    // The fastest pass is the one nothing interrupted.
    let fastest = one.iter().copied().fold(f64::MAX, f64::min).max(1e-7);
    ((ms as f64 / 1000.0) / fastest).round().max(1.0) as u32
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let passes = calibrate(args.job_ms);
    shared::say!("Machine: {}.", machine());
    let times = if passes == 1 {
        "once".to_string()
    } else {
        format!("{passes} times")
    };
    let runs = if args.runs == 1 {
        "one run".to_string()
    } else {
        format!("{} runs, and the fastest and slowest", args.runs)
    };
    shared::say!(
        "One job: hash 1 MiB {times} with std's DefaultHasher (calibrated to about {} ms on \
         this machine). Each figure: the median of {runs}.",
        args.job_ms,
    );
    shared::say!();
    match jobs_table(&args, passes, cores) {
        Ok(()) => {}
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    shared::say!();
    match mixed_table(&args, passes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. The same jobs, four ways.

/// How the jobs of the first table run.
#[derive(Debug, Clone, Copy)]
enum Way {
    OneThread,
    Loop,
    SpawnBlocking,
    ThreadPerCore,
}

impl Way {
    fn label(self, cores: usize) -> String {
        match self {
            Way::OneThread => "one thread, one job after another".into(),
            Way::Loop => "stage 4 loop, a task per job".into(),
            Way::SpawnBlocking => "stage 4, spawn_blocking per job".into(),
            Way::ThreadPerCore => format!("{cores} threads, one per core"),
        }
    }
}

// ANCHOR: ways
/// Runs `jobs` jobs of `passes` the given way and returns the wall time.
fn run_jobs(way: Way, jobs: u64, passes: u32, cores: usize) -> Result<Duration, String> {
    let start = Instant::now();
    // (The caller reads the CPU time around this call: it shows how many cores were used.)
    let hashes: u64 = match way {
        Way::OneThread => (0..jobs).map(|_| job(passes)).fold(0, u64::wrapping_add),
        Way::Loop => new_loop()?.block_on(async move {
            let tasks = (0..jobs).map(|_| spawn(async move { job(passes) }));
            let results = join_all(tasks.collect::<Vec<_>>()).await;
            results.into_iter().try_fold(0u64, |sum, hash| {
                hash.map(|h| sum.wrapping_add(h)).map_err(|e| e.to_string())
            })
        })?,
        Way::SpawnBlocking => new_loop()?.block_on(async move {
            let calls = (0..jobs).map(|_| spawn_blocking(move || job(passes)));
            let results = join_all(calls.collect::<Vec<_>>()).await;
            results.into_iter().try_fold(0u64, |sum, hash| {
                hash.map(|h| sum.wrapping_add(h)).map_err(|e| e.to_string())
            })
        })?,
        Way::ThreadPerCore => {
            let next = AtomicU64::new(0);
            let sum = AtomicU64::new(0);
            std::thread::scope(|scope| {
                for _ in 0..cores {
                    scope.spawn(|| {
                        while next.fetch_add(1, Ordering::Relaxed) < jobs {
                            sum.fetch_add(job(passes), Ordering::Relaxed);
                        }
                    });
                }
            });
            sum.into_inner()
        }
    };
    black_box(hashes);
    Ok(start.elapsed())
}
// ANCHOR_END: ways

/// CPU time of the whole process (every thread, finished ones included), user and system.
#[cfg(unix)]
fn cpu_time() -> Option<Duration> {
    // SAFETY: an all-zero rusage is valid for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(not(unix))]
fn cpu_time() -> Option<Duration> {
    None
}

/// A stage 4 loop that does not warn about slow polls: here they are the point.
fn new_loop() -> Result<EventLoop, String> {
    EventLoop::new()
        .map(|l| l.slow_poll_threshold(Duration::MAX))
        .map_err(|e| format!("creating the event loop: {e}"))
}

fn jobs_table(args: &Args, passes: u32, cores: usize) -> Result<(), String> {
    let ways = [
        Way::OneThread,
        Way::Loop,
        Way::SpawnBlocking,
        Way::ThreadPerCore,
    ];
    // Interleaved runs, so that a noisy moment is shared by all four ways.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut used: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for _ in 0..args.runs {
        for (i, way) in ways.iter().enumerate() {
            let cpu_before = cpu_time();
            let wall = run_jobs(*way, args.jobs, passes, cores)?.as_secs_f64();
            times[i].push(wall);
            if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
                used[i].push((after - before).as_secs_f64() / wall);
            }
        }
    }
    let summaries: Vec<Summary> = times
        .iter()
        .map(|t| Summary::of(t).ok_or("no runs"))
        .collect::<Result<_, _>>()?;
    let on_loop = summaries[1].median;
    // What one job costs here: the plain loop's median, divided by the jobs.
    let one_after_another = summaries[0].median;
    shared::say!(
        "{} jobs, {:.1} ms each one after another, on {cores} cores. Cores used: the \
         process's CPU time over the wall time (fewer than there are when other programs \
         hold some of them):",
        args.jobs,
        one_after_another * 1e3 / args.jobs as f64
    );
    shared::say!();
    let rows: Vec<Vec<String>> = ways
        .iter()
        .zip(&summaries)
        .zip(&used)
        .map(|((way, s), used)| {
            vec![
                way.label(cores),
                format!("{:.1} ms", s.median * 1e3),
                format!("{:.1} - {:.1}", s.min * 1e3, s.max * 1e3),
                format!("{:.2}", on_loop / s.median),
                Summary::of(used).map_or("-".into(), |u| format!("{:.2}", u.median)),
            ]
        })
        .collect();
    print_markdown(
        &[
            "how the jobs run",
            "wall time",
            "fastest - slowest",
            "speed-up vs loop",
            "cores used",
        ],
        &rows,
        &[0],
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. A mixed load: I/O round trips while tasks compute.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Compute {
    Nowhere,
    OnTheLoop,
    OffTheLoop,
}

impl Compute {
    fn label(self) -> &'static str {
        match self {
            Compute::Nowhere => "nothing computes",
            Compute::OnTheLoop => "on the loop, yielding between jobs",
            Compute::OffTheLoop => "off the loop, with spawn_blocking",
        }
    }
}

/// How long the mixed load runs, and how often the client sends a request.
const MIXED_FOR: Duration = Duration::from_millis(600);
const REQUEST_EVERY: Duration = Duration::from_millis(2);

// ANCHOR: mixed
/// One run of the mixed load. The loop serves one echo connection; `tasks` other tasks
/// run jobs back to back (where `compute` says) until the client is done. The client, a
/// thread of its own, has a request due every [`REQUEST_EVERY`] for [`MIXED_FOR`] and
/// returns each one's latency, from when it was due to its answer.
fn mixed(compute: Compute, tasks: u64, passes: u32) -> Result<Vec<Duration>, String> {
    // The connection is set up before the loop starts, so that the server's side can
    // have TCP_NODELAY: with Nagle's algorithm an echo would wait for the client's next
    // request to carry the ACK of the previous one, and every answer would take 2 ms.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("binding the echo server: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let client = std::thread::spawn(move || client(addr));
    let (accepted, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    accepted.set_nodelay(true).map_err(|e| e.to_string())?;
    new_loop()?.block_on(async move {
        let done = Rc::new(Cell::new(false));
        let workers: Vec<_> = (0..tasks)
            .map(|_| {
                let done = Rc::clone(&done);
                spawn(async move {
                    while !done.get() {
                        match compute {
                            Compute::Nowhere => return,
                            // Any .await gives the loop a turn; yield_now is the cheapest.
                            Compute::OnTheLoop => {
                                black_box(job(passes));
                                yield_now().await;
                            }
                            Compute::OffTheLoop => {
                                let _ = spawn_blocking(move || job(passes)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        // The echo server: every line sent back, until the client leaves.
        let stream = TcpStream::from_std(accepted).map_err(|e| e.to_string())?;
        let mut decoder = LineDecoder::new();
        while let Some(line) = stream
            .read_line(&mut decoder)
            .await
            .map_err(|e| format!("echo server: {e}"))?
        {
            stream
                .write_all(format!("{line}\n").as_bytes())
                .await
                .map_err(|e| format!("echo server: {e}"))?;
        }
        drop(stream); // closes the connection: the client's reader sees the end
        done.set(true);
        for worker in workers {
            worker.await.map_err(|e| e.to_string())?;
        }
        client
            .join()
            .map_err(|_| "the client thread panicked".to_string())?
    })
}

/// The client: blocking std I/O on threads of its own, outside the loop it measures. It
/// sends each request when it is due, whether or not the earlier ones were answered (as
/// independent users would), and a second thread times each answer from when its
/// request was due.
fn client(addr: std::net::SocketAddr) -> Result<Vec<Duration>, String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(addr).map_err(|e| format!("client: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let start = Instant::now();
    let due = move |id: u64| start + REQUEST_EVERY * id as u32;
    let answers = std::thread::spawn(move || -> Result<Vec<Duration>, String> {
        let mut latencies = Vec::new();
        for (id, line) in (0u64..).zip(reader.lines()) {
            let line = line.map_err(|e| format!("client read: {e}"))?;
            latencies.push(due(id).elapsed());
            if line != expected_response(id) {
                return Err(format!("request {id}: wrong answer {line:?}"));
            }
        }
        Ok(latencies)
    });
    let mut writer = stream;
    let mut sent = 0;
    while due(sent) <= start + MIXED_FOR {
        std::thread::sleep(due(sent).saturating_duration_since(Instant::now()));
        writer
            .write_all(request(sent).as_bytes())
            .map_err(|e| format!("client write: {e}"))?;
        sent += 1;
    }
    // The server answers what it has, sees the end of the stream, and closes: the
    // reader then sees the end too.
    writer
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let latencies = answers
        .join()
        .map_err(|_| "the client's reader panicked".to_string())??;
    if latencies.len() as u64 != sent {
        return Err(format!("{} of {sent} requests answered", latencies.len()));
    }
    Ok(latencies)
}
// ANCHOR_END: mixed

fn mixed_table(args: &Args, passes: u32) -> Result<(), String> {
    let ways = [Compute::Nowhere, Compute::OnTheLoop, Compute::OffTheLoop];
    // Per way: every round trip of every run, and each run's median.
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut medians: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for _ in 0..args.runs {
        for (i, way) in ways.iter().enumerate() {
            let trips = mixed(*way, args.computing_tasks, passes)?;
            let ms: Vec<f64> = trips.iter().map(|d| d.as_secs_f64() * 1e3).collect();
            medians[i].push(Summary::of(&ms).map_or(f64::NAN, |s| s.median));
            all[i].extend(ms);
        }
    }
    shared::say!(
        "Mixed load: a stage 4 loop echoes the lines of one connection while {} other tasks \
         of the loop run jobs back to back; a client sends a request every {} ms for {} ms, \
         answered or not, and times each from when it was due to its answer. Runs: {}; the \
         requests of all runs pooled, and the range of the runs' medians:",
        args.computing_tasks,
        REQUEST_EVERY.as_millis(),
        MIXED_FOR.as_millis(),
        args.runs
    );
    shared::say!();
    let rows: Vec<Vec<String>> = ways
        .iter()
        .enumerate()
        .map(|(i, way)| {
            let mut sorted = all[i].clone();
            sorted.sort_by(f64::total_cmp);
            let pick = |q: f64| {
                let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
                sorted
                    .get(at)
                    .map_or("-".to_string(), |ms| format!("{ms:.2} ms"))
            };
            let runs = Summary::of(&medians[i]);
            vec![
                way.label().to_string(),
                sorted.len().to_string(),
                pick(0.5),
                runs.map_or("-".into(), |s| format!("{:.2} - {:.2}", s.min, s.max)),
                pick(0.99),
                pick(1.0),
            ]
        })
        .collect();
    print_markdown(
        &[
            "where the compute runs",
            "requests",
            "median",
            "runs' medians",
            "99th percentile",
            "slowest",
        ],
        &rows,
        &[0],
    );
    Ok(())
}
