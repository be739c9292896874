//! The million, for real: a million concurrent TCP connections on one machine, every
//! request in flight at once, every answer verified.
//!
//! The article stops at a million tasks that sleep; this opens a million loopback
//! connections between stage 4's client and the workspace's slow server, on a machine
//! whose processes may hold 20,000 descriptors each. Past one process's limit the run is
//! sharded: the server as several processes sharing one port (`SO_REUSEPORT`, as nginx's
//! workers do), the clients as several processes, each from source addresses of its own
//! (127.0.0.2 and up) so that no range of ports runs out.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin million -- --connections 1000000 --delay-ms 5000
//! cargo run --release -p stage5-bench --bin million -- --connections 100000 --compare-floor
//! cargo run --release -p stage5-bench --bin million -- --connections 30000 --max-fds-per-process 8000
//! ```
//!
//! The parts, in the order a run uses them:
//!
//! - [`plan`]: every limit read first; the layout, or a refusal naming each limit.
//! - [`children`]: the processes, started from this binary, watched and always stopped.
//! - [`client`]: a client process: stage 4's event loop, one task per connection.
//! - [`server`]: a server shard: the slow server on a shared port.
//! - [`floor`]: the same layout as bare loops of connects and accepts.
//! - [`run`](mod@run): the parent: three phases, progress, watchdogs.
//! - [`outcome`], [`report`] and [`picture`]: what the run found, as data, in words and
//!   as an SVG.
//! - [`kernel`], [`net`], [`wire`]: `/proc` readings, sockets, the lines between
//!   processes.

pub mod children;
pub mod client;
pub mod floor;
pub mod kernel;
pub mod net;
pub mod outcome;
pub mod picture;
pub mod plan;
pub mod report;
pub mod run;
pub mod server;
pub mod wire;

use std::io::BufRead;
use std::time::Duration;

use shared::Error;

/// How often children report their counts, and the finest grain of every time the run
/// measures.
pub const REPORT_EVERY: Duration = Duration::from_millis(100);

/// Sets this process's open-file limit to `limit` (at most the hard limit): each child
/// runs with the limit its share was planned for, so a plan that overflows it fails
/// here, loudly, and not on a reader's machine with a different limit.
pub fn set_fd_limit(limit: u64) -> Result<(), Error> {
    let current =
        shared::limits::raise_fd_limit().map_err(|e| Error::io("reading RLIMIT_NOFILE", e))?;
    if limit >= current.soft {
        return Ok(());
    }
    let lowered = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: current.hard as libc::rlim_t,
    };
    // SAFETY: `lowered` is a valid `rlimit`, and lowering the soft limit changes nothing
    // but this limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) } != 0 {
        return Err(Error::io(
            "setting RLIMIT_NOFILE",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Reads the parent's commands from stdin on a thread of its own: `on_line` for each
/// line, then `on_end` when stdin ends (the parent is gone, or wants us gone).
pub fn read_commands(
    mut on_line: impl FnMut(String) + Send + 'static,
    on_end: impl FnOnce() + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("commands".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) => on_line(line),
                    Err(_) => break,
                }
            }
            on_end();
        });
    if spawned.is_err() {
        // Without it no command would ever arrive: better to end now than to hang.
        eprintln!("error: cannot start the thread that reads the parent's commands");
        std::process::exit(3);
    }
}

/// What the reader asked for on the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections, all open at once.
    pub connections: u64,
    /// The slow server's delay.
    pub delay: Duration,
    /// Run the floor only.
    pub floor: bool,
    /// Run the floor after the run, and compare their opening rates.
    pub compare_floor: bool,
    /// Descriptors per process, below the machine's limit.
    pub max_fds_per_process: Option<u64>,
    /// Connects in progress at once per client process.
    pub window: usize,
    /// Where to write the picture of the run.
    pub svg: Option<std::path::PathBuf>,
    /// Print the plan (or the refusal) and stop: nothing is started.
    pub plan_only: bool,
}

/// The run, as the `million` binary runs it: plan, run (then the floor if asked), report.
/// Exit status: 0 when everything was verified (and, for the run, all waiting at once),
/// 1 when not, 2 when refused before starting, 130 when interrupted.
pub fn main(options: &Options) -> std::process::ExitCode {
    use std::process::ExitCode;

    use run::{Mode, Settings};
    let ask = plan::Ask {
        connections: options.connections,
        max_fds_per_process: options.max_fds_per_process,
    };
    let (machine, plan) = run::machine_and_plan(ask);
    let plan = match plan {
        Ok(plan) => plan,
        Err(refusals) => {
            eprint!("{}", report::refusal_text(options.connections, &refusals));
            return ExitCode::from(2);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this program's own path to start its children: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mode = if options.floor {
        Mode::Floor
    } else {
        Mode::Run
    };
    shared::say!("{}", report::plan_text(&plan, &machine, mode));
    if options.plan_only {
        return ExitCode::SUCCESS;
    }
    if let Some(waiting) = kernel::Snapshot::read().map(|s| s.time_wait)
        && waiting > options.connections / 100
    {
        let note = format!(
            "note: {} sockets in TIME_WAIT from an earlier run hold kernel memory until they \
             expire (within a minute): the kernel's figures below may come out low.",
            crate::text::thousands(waiting)
        );
        shared::say!("{}", report::wrap(&note, "  ", "    "));
    }
    let settings = Settings {
        delay: options.delay,
        window: options.window,
        exe,
    };
    // NB: the run goes first, on a machine whose kernel caches the floor has not grown
    // yet, so that its memory figures are the ones a first run would see.
    let outcome = run::run(&plan, &settings, mode);
    let floor = if options.compare_floor && mode == Mode::Run && !outcome.interrupted {
        kernel::settle(Duration::from_secs(10));
        let floor = run::run(&plan, &settings, Mode::Floor);
        shared::say!("{}", report::outcome_text(&floor, None));
        Some(floor)
    } else {
        None
    };
    shared::say!("{}", report::outcome_text(&outcome, floor.as_ref()));
    if let Some(path) = &options.svg {
        let title = format!(
            "{} connections on one machine: stage 4's client, the slow server",
            crate::text::thousands(options.connections)
        );
        if let Err(e) = std::fs::write(path, picture::svg(&title, &outcome)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    match floor {
        Some(floor) if !floor.complete() => exit_code(&floor),
        _ => exit_code(&outcome),
    }
}

fn exit_code(outcome: &run::Outcome) -> std::process::ExitCode {
    use std::process::ExitCode;
    match (outcome.complete(), outcome.interrupted) {
        (_, true) => ExitCode::from(130),
        (true, false) => ExitCode::SUCCESS,
        (false, false) => ExitCode::FAILURE,
    }
}
