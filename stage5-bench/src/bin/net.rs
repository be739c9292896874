//! The network benchmark: an echo server per runtime against one load generator, and
//! hyper's HTTP/1.1 server on stage 4 and on tokio (see the library's `net` module).
//!
//! ```text
//! cargo run --release -p stage5-bench --bin net                        # stage 4 and the floor
//! cargo run --release -p stage5-bench --bin net --features reference   # + tokio, smol, monoio,
//!                                                                      #   hyper on tokio
//! cargo run --release -p stage5-bench --bin net -- --conns 64 --runs 3 --secs 2
//! cargo run --release -p stage5-bench --bin net -- --plot target/net.svg
//! cargo run --release -p stage5-bench --bin net -- --load-driver mio   # the portable load
//! ```
//!
//! Each cell (a server at a connection count) runs `--runs` times, the servers and the
//! connection counts interleaved (round 1 runs every cell once, then round 2), each run in
//! fresh processes: a server pinned to one CPU, the load generator (on io_uring where it
//! works, else on mio: the output says which) to another. The table shows medians, the
//! spread of the requests per second, and ratios as medians of the ratios within each
//! round. System calls are counted in one more run per cell, under `perf stat`, which is
//! not timed (a counted call costs a little more).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shared::Error;
use stage5_bench::net::chart::{self, Bar, Group};
use stage5_bench::net::harness::{self, Plan, Sample};
use stage5_bench::net::load::{self, Driver, Load};
use stage5_bench::net::perf::{self, Syscalls};
use stage5_bench::net::{MESSAGE, Protocol, Server};
use stage5_bench::pin;
use stage5_bench::stats::{Summary, percent};
use stage5_bench::text::{machine, print_markdown, thousands};

/// A load generator busy this share of the window or more may have been the limit.
const LOAD_BOUND: f64 = 0.9;

/// hyper's rows run at these connection counts only.
const HTTP_CONNS: [usize; 2] = [64, 1024];

#[derive(Parser, Debug)]
/// An echo server per runtime against one load generator, and hyper on stage 4 and tokio.
struct Args {
    /// Connection counts, each with one request in flight per connection
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64, 1024, 10_000])]
    conns: Vec<usize>,
    /// Servers to run (floor, stage4-mio, stage4-uring, tokio, smol, monoio, hyper-stage4,
    /// hyper-tokio) [default: every one this build has]
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Runs per cell; the table shows their median and spread
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
    /// Seconds each run measures
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Seconds each run warms up first, once every connection has its first answer
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Bytes per echo message
    #[arg(long, default_value_t = MESSAGE)]
    size: usize,
    /// Do not count system calls (no `perf stat` runs)
    #[arg(long)]
    no_perf: bool,
    /// Seconds of each counted (`perf stat`) run
    #[arg(long, default_value_t = 2.0)]
    perf_secs: f64,
    /// How the load generator talks to the kernel: uring (Linux) or mio [default: uring
    /// where io_uring works, else mio]
    #[arg(long, value_name = "DRIVER")]
    load_driver: Option<String>,
    /// Where to write the SVG picture of the table
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// (Internal) serve as this server until stdin closes
    #[arg(long, hide = true)]
    serve: Option<String>,
    /// (Internal) run the load generator against this address
    #[arg(long, hide = true)]
    load: Option<String>,
    /// (Internal) the load generator's protocol
    #[arg(long, hide = true, default_value = "echo")]
    protocol: String,
    /// (Internal) the CPU to pin this process to
    #[arg(long, hide = true)]
    cpu: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shared::cli::exit(run(&args))
}

fn seconds(flag: &str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() || flag == "--warmup")
        .ok_or_else(|| Error::Other(format!("{flag} {value}: a number of seconds, above 0")))
}

/// The load generator's driver: the one asked for, if this machine can run it, else the
/// best here, with why it is not io_uring.
fn load_driver(args: &Args) -> Result<(Driver, Option<String>), Error> {
    let Some(key) = &args.load_driver else {
        return Ok(Driver::best());
    };
    let driver = Driver::from_key(key)
        .ok_or_else(|| Error::Other(format!("--load-driver {key}: uring or mio")))?;
    match driver.unavailable() {
        None => Ok((driver, None)),
        Some(why) => Err(Error::Other(format!("--load-driver {key}: {why}"))),
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let count = || args.conns.iter().copied().max().unwrap_or(1) as u64;
    if let Some(key) = &args.serve {
        let server = Server::from_key(key)
            .ok_or_else(|| Error::Other(format!("--serve {key}: no such server")))?;
        return harness::serve_child(server, args.cpu, count());
    }
    if let Some(addr) = &args.load {
        let load = Load {
            addr: addr
                .parse()
                .map_err(|_| Error::Other(format!("--load {addr}: not an address")))?,
            connections: count() as usize,
            warmup: seconds("--warmup", args.warmup)?,
            window: seconds("--secs", args.secs)?,
            protocol: Protocol::from_key(&args.protocol).ok_or_else(|| {
                Error::Other(format!("--protocol {}: echo or http", args.protocol))
            })?,
            size: args.size,
            paced: true,
            driver: load_driver(args)?.0,
        };
        return harness::load_child(&load, args.cpu);
    }
    bench(args)
}

/// Every run of one cell.
struct Cell {
    server: Server,
    connections: usize,
    samples: Vec<Sample>,
    /// The counted run's system calls, and the requests of its window.
    syscalls: Option<(Syscalls, f64)>,
}

fn bench(args: &Args) -> Result<(), Error> {
    let (servers, not_run) = servers(&args.servers)?;
    if args.conns.is_empty() || args.conns.contains(&0) {
        return Err(Error::Other(
            "--conns: one or more counts, each above 0".into(),
        ));
    }
    if args.size < load::MIN_SIZE {
        return Err(Error::Other(format!(
            "--size: at least {} bytes",
            load::MIN_SIZE
        )));
    }
    // Each child raises its own limit; checking here first refuses at once, with the fix.
    shared::limits::check_connections(*args.conns.iter().max().unwrap_or(&1) as u64)?;
    let (load_driver, not_uring) = load_driver(args)?;
    let cpus = pin::allowed_cpus();
    let plan = Plan {
        exe: std::env::current_exe().map_err(|e| Error::io("finding this program", e))?,
        cpus: match cpus[..] {
            [a, b, ..] => (Some(a), Some(b)),
            _ => (None, None),
        },
        warmup: seconds("--warmup", args.warmup)?,
        window: seconds("--secs", args.secs)?,
        size: args.size,
        load_driver,
    };
    eprintln!(
        "load generator: {}{}",
        load_driver.key(),
        not_uring
            .as_ref()
            .map_or(String::new(), |why| format!(" ({why})"))
    );
    let mut cells: Vec<Cell> = Vec::new();
    for &connections in &args.conns {
        for &server in &servers {
            if server.protocol() == Protocol::Echo || HTTP_CONNS.contains(&connections) {
                cells.push(Cell {
                    server,
                    connections,
                    samples: Vec::new(),
                    syscalls: None,
                });
            }
        }
    }
    if cells.is_empty() {
        return Err(Error::Other(
            "no cell to run: hyper runs at 64 and 1024 only".into(),
        ));
    }
    // Interleaved rounds, each starting one cell further on, so that no server always
    // runs right after the same other.
    for round in 0..args.runs as usize {
        let count = cells.len();
        for i in 0..count {
            let cell = &mut cells[(i + round) % count];
            let (sample, _) = harness::measure(&plan, cell.server, cell.connections, false)?;
            let (user, system) = sample.per_request();
            eprintln!(
                "round {}/{}: {:>18}, {:<18} {:>9} requests/s, CPU µs per request: \
                 server {:.2}, load generator {:.2} ({})",
                round + 1,
                args.runs,
                connections(cell.connections),
                cell.server.label(),
                thousands(sample.rate().round() as u64),
                user + system,
                micros(sample.load_cpu) / sample.requests.max(1) as f64,
                percent(sample.load_busy())
            );
            cell.samples.push(sample);
        }
    }
    let perf_off = if args.no_perf {
        Some("not counted (--no-perf)".to_string())
    } else {
        perf::unavailable().map(|why| format!("n/a: {why}"))
    };
    if perf_off.is_none() {
        let counted = Plan {
            window: seconds("--perf-secs", args.perf_secs)?,
            ..plan.clone()
        };
        for cell in &mut cells {
            let (sample, syscalls) =
                harness::measure(&counted, cell.server, cell.connections, true)?;
            let syscalls = syscalls.map(|s| (s, sample.requests as f64));
            eprintln!(
                "counted: {:>18}, {:<18} {:.2} system calls per request",
                connections(cell.connections),
                cell.server.label(),
                syscalls
                    .as_ref()
                    .map_or(0.0, |(s, requests)| s.total as f64 / requests.max(1.0))
            );
            cell.syscalls = syscalls;
        }
    }
    print(
        args,
        &plan,
        &cells,
        &not_run,
        perf_off.as_deref(),
        not_uring.as_deref(),
    );
    if let Some(path) = &args.plot {
        write_plot(path, &cells)?;
        eprintln!("picture written to {}", path.display());
    }
    Ok(())
}

/// Servers this build cannot run, each with the reason.
type NotRun = Vec<(Server, &'static str)>;

/// The servers asked for (or all), split into those this build runs and those it cannot.
fn servers(asked: &[String]) -> Result<(Vec<Server>, NotRun), Error> {
    let asked: Vec<Server> = if asked.is_empty() {
        Server::ALL.to_vec()
    } else {
        asked
            .iter()
            .map(|key| {
                Server::from_key(key)
                    .ok_or_else(|| Error::Other(format!("--servers: no server `{key}`")))
            })
            .collect::<Result<_, _>>()?
    };
    let (run, not): (Vec<Server>, Vec<Server>) =
        asked.into_iter().partition(|s| s.unavailable().is_none());
    let not = not
        .into_iter()
        .map(|s| (s, s.unavailable().unwrap_or_default()))
        .collect();
    Ok((run, not))
}

/// The median over rounds of `of(this round) / of(the other cell's same round)`.
fn paired(a: &Cell, b: Option<&Cell>, of: impl Fn(&Sample) -> f64) -> Option<f64> {
    let b = b?;
    let ratios: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| of(x) / of(y))
        .filter(|r| r.is_finite())
        .collect();
    Summary::of(&ratios).map(|s| s.median)
}

fn median(cell: &Cell, of: impl Fn(&Sample) -> f64) -> f64 {
    let values: Vec<f64> = cell.samples.iter().map(of).collect();
    Summary::of(&values).map_or(f64::NAN, |s| s.median)
}

/// System calls per request: `3.02`, `0.071`, `0.0042`: two significant digits at least.
fn calls(per_request: f64) -> String {
    match per_request {
        v if v >= 0.1 => format!("{v:.2}"),
        v if v >= 0.01 => format!("{v:.3}"),
        v => format!("{v:.4}"),
    }
}

/// `1 connection`, `1,024 connections`.
fn connections(n: usize) -> String {
    match n {
        1 => "1 connection".into(),
        n => format!("{} connections", thousands(n as u64)),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `8.5`, `62.1`, `1,204`: microseconds.
fn us(value: f64) -> String {
    if value < 100.0 {
        format!("{value:.1}")
    } else {
        thousands(value.round() as u64)
    }
}

fn print(
    args: &Args,
    plan: &Plan,
    cells: &[Cell],
    not_run: &[(Server, &str)],
    perf_off: Option<&str>,
    not_uring: Option<&str>,
) {
    let find = |server: Server, connections: usize| {
        cells
            .iter()
            .find(|c| c.server == server && c.connections == connections)
    };
    let pinned = match plan.cpus {
        (Some(s), Some(l)) => format!("server pinned to CPU {s}, load generator to CPU {l}"),
        _ => "not pinned (one CPU, or an OS without CPU affinity): server and load generator \
              may share a core"
            .into(),
    };
    shared::say!("Machine: {}; {pinned}.", machine());
    shared::say!(
        "Load: one load generator process, no runtime, on {}{}; a closed loop: each \
         connection has one request in flight; echo messages of {} bytes, hyper's rows \
         `GET /` answered `hello`; every answer checked byte for byte. Load CPU: its own \
         CPU time over the window (near 100%, it was the limit, not the server).",
        plan.load_driver.describe(),
        not_uring.map_or(String::new(), |why| format!(" (not io_uring: {why})")),
        plan.size
    );
    shared::say!(
        "Each cell: the median of {} runs of {} s (after {} s of warm-up), interleaved; \
         spread = (max - min) / median of req/s; × {} = the median of the ratios within a \
         round.",
        args.runs,
        plan.window.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        "tokio (hyper on tokio for hyper)"
    );
    shared::say!();
    let header = [
        "conns", "server", "req/s", "spread", "× tokio", "p50 µs", "p99 µs", "load CPU",
    ];
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|cell| {
            let rates: Vec<f64> = cell.samples.iter().map(Sample::rate).collect();
            let rate = Summary::of(&rates);
            let versus = paired(
                cell,
                find(cell.server.baseline(), cell.connections),
                Sample::rate,
            );
            vec![
                thousands(cell.connections as u64),
                cell.server.label().to_string(),
                rate.map_or("-".into(), |r| thousands(r.median.round() as u64)),
                rate.map_or("-".into(), |r| r.spread_text()),
                versus.map_or("-".into(), |v| format!("{v:.2}")),
                us(median(cell, |s| micros(s.p50))),
                us(median(cell, |s| micros(s.p99))),
                percent(median(cell, Sample::load_busy)),
            ]
        })
        .collect();
    print_markdown(&header, &rows, &[1]);
    shared::say!();
    shared::say!(
        "CPU per request: the server's own getrusage over the same window, user and system \
         apart; × floor = (user + system) over the floor's system time at the same count. \
         System calls per request: {}. Peak RSS: the server's largest resident size.",
        perf_off.unwrap_or("perf stat on the server's pid, in one more run per cell")
    );
    shared::say!();
    let header = [
        "conns",
        "server",
        "user µs",
        "system µs",
        "× floor",
        "syscalls",
        "peak RSS",
    ];
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|cell| {
            let user = median(cell, |s| s.per_request().0);
            let system = median(cell, |s| s.per_request().1);
            let floor = find(Server::Floor, cell.connections);
            let times_floor = floor.and_then(|floor| {
                let ratios: Vec<f64> = cell
                    .samples
                    .iter()
                    .zip(&floor.samples)
                    .map(|(s, f)| (s.per_request().0 + s.per_request().1) / f.per_request().1)
                    .filter(|r| r.is_finite())
                    .collect();
                Summary::of(&ratios).map(|s| s.median)
            });
            vec![
                thousands(cell.connections as u64),
                cell.server.label().to_string(),
                format!("{user:.2}"),
                format!("{system:.2}"),
                times_floor.map_or("-".into(), |v| format!("{v:.2}")),
                cell.syscalls
                    .as_ref()
                    .map_or("n/a".into(), |(s, requests)| {
                        calls(s.total as f64 / requests.max(1.0))
                    }),
                format!(
                    "{:.1} MiB",
                    median(cell, |s| s.server.peak_rss as f64) / (1 << 20) as f64
                ),
            ]
        })
        .collect();
    print_markdown(&header, &rows, &[1]);
    if cells.iter().any(|c| c.syscalls.is_some()) {
        shared::say!();
        shared::say!(
            "System calls per request, by call (tracepoints raw_syscalls:sys_enter and \
             syscalls:sys_enter_*, counted for {} s):",
            args.perf_secs
        );
        for cell in cells {
            let Some((calls, requests)) = &cell.syscalls else {
                continue;
            };
            let per = |n: u64| n as f64 / requests.max(1.0);
            let named: u64 = calls.by_name.iter().map(|(_, n)| n).sum();
            let mut parts: Vec<String> = calls
                .by_name
                .iter()
                .filter(|(_, n)| per(*n) >= 0.0005)
                .map(|(name, n)| format!("{name} {}", self::calls(per(*n))))
                .collect();
            if per(calls.total.saturating_sub(named)) >= 0.0005 {
                parts.push(format!("other {}", self::calls(per(calls.total - named))));
            }
            shared::say!(
                "- {}, {}: {} = {}",
                connections(cell.connections),
                cell.server.label(),
                self::calls(per(calls.total)),
                parts.join(" + ")
            );
        }
    }
    let starved = cells_where(cells, |c| c.samples.iter().any(|s| s.fewest == 0));
    if !starved.is_empty() {
        shared::say!();
        shared::say!(
            "Some connection got no answer in a whole window (an unfair server, or a window \
             too short for so many connections): {}.",
            starved.join(", ")
        );
    }
    let load_bound = cells_where(cells, |c| median(c, Sample::load_busy) >= LOAD_BOUND);
    if !load_bound.is_empty() {
        shared::say!();
        shared::say!(
            "The load generator was busy {} or more of the window, so it may have been the \
             limit rather than the server (compare these by CPU per request): {}. On \
             loopback the sender's CPU runs much of the receiver's side of TCP, so a load \
             generator costs about what the leanest server does.",
            percent(LOAD_BOUND),
            load_bound.join(", ")
        );
    }
    if !not_run.is_empty() {
        shared::say!();
        shared::say!("Not run:");
        for (server, why) in not_run {
            shared::say!("- {}: {why}.", server.label());
        }
    }
}

/// "server at connections" for every cell where `holds`.
fn cells_where(cells: &[Cell], holds: impl Fn(&Cell) -> bool) -> Vec<String> {
    cells
        .iter()
        .filter(|c| holds(c))
        .map(|c| {
            format!(
                "{} at {}",
                c.server.label(),
                thousands(c.connections as u64)
            )
        })
        .collect()
}

fn write_plot(path: &std::path::Path, cells: &[Cell]) -> Result<(), Error> {
    let mut groups: Vec<Group> = Vec::new();
    for cell in cells
        .iter()
        .filter(|c| c.server.protocol() == Protocol::Echo)
    {
        let bar = Bar {
            server: cell.server.label().to_string(),
            rate: median(cell, Sample::rate),
            user_us: median(cell, |s| s.per_request().0),
            system_us: median(cell, |s| s.per_request().1),
        };
        let floor = (cell.server == Server::Floor).then_some(bar.system_us);
        match groups
            .iter_mut()
            .find(|g| g.connections == cell.connections)
        {
            Some(group) => {
                group.floor_us = group.floor_us.or(floor);
                group.bars.push(bar);
            }
            None => groups.push(Group {
                connections: cell.connections,
                bars: vec![bar],
                floor_us: floor,
            }),
        }
    }
    let svg = chart::svg(
        "Echo servers, one thread each: throughput and CPU per request",
        &groups,
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::write(path, svg).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
