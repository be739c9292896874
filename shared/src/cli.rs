//! The flags every stage binary shares, and the `main` they all run.
//!
//! A stage's `main.rs` stays a few lines long: it flattens [`Args`] into its own flags,
//! then hands its library's `run` to [`run`], which starts the embedded slow server (or
//! resolves `--addr`), checks the fd limit, prints the report and turns an error into one
//! clear line and a non-zero exit code.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::server::SlowServer;
use crate::{Config, DEFAULT_TIMEOUT, Error, Report, limits};

/// Flags shared by every stage binary. Flatten them into a stage's own parser with
/// `#[command(flatten)]`.
#[derive(clap::Args, Debug, Clone)]
// The group id defaults to the struct's name, which would clash with a stage's own
// `struct Args`.
#[group(id = "shared-args")]
pub struct Args {
    /// Talk to a slow server already running at HOST:PORT instead of starting one
    /// in-process (start one with `cargo run -p shared --bin slow-server`)
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    pub addr: Option<SocketAddr>,

    /// Delay of the embedded server before it echoes each line, in milliseconds
    /// (ignored with --addr)
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub delay_ms: u64,

    /// How many requests to make, all at once (ids N-1 down to 0)
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = at_least_one)]
    pub requests: u64,

    /// Give up on a request after this many milliseconds [default: 60000, or more when
    /// --delay-ms needs it]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub timeout_ms: Option<u64>,
}

impl Args {
    /// `--timeout-ms`, or a default that leaves the embedded server's delay room to
    /// spare: the larger of [`DEFAULT_TIMEOUT`] and twice the delay.
    pub fn timeout(&self) -> Duration {
        match self.timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None if self.addr.is_none() => {
                DEFAULT_TIMEOUT.max(2 * Duration::from_millis(self.delay_ms))
            }
            None => DEFAULT_TIMEOUT,
        }
    }
}

fn at_least_one(text: &str) -> Result<u64, String> {
    match text.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Resolves `HOST:PORT` (a host name or an IP address) to its first address: the
/// `value_parser` of `--addr` and `slow-server --listen`, so that an address that does
/// not parse or resolve is a usage error (clap prints it and exits with status 2).
pub fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    let mut addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("{e} (expected HOST:PORT, e.g. 127.0.0.1:8080)"))?;
    addrs
        .next()
        .ok_or_else(|| "the name has no address".to_string())
}

/// Starts the embedded server unless `--addr` was given, checks the fd limit, prints
/// where the requests go, runs `run_stage` with progress lines on, and prints the final
/// report line. Returns the verified report for anything the stage prints after it.
pub fn run(
    args: &Args,
    run_stage: impl FnOnce(&Config) -> Result<Report, Error>,
) -> Result<Report, Error> {
    run_with_in_flight(args, args.requests, run_stage)
}

/// [`run`] for a stage that keeps at most `in_flight` requests open at once (stage 0's
/// sequential mode: one), so the fd check asks for no more sockets than it will hold.
pub fn run_with_in_flight(
    args: &Args,
    in_flight: u64,
    run_stage: impl FnOnce(&Config) -> Result<Report, Error>,
) -> Result<Report, Error> {
    let mut server = None;
    let addr = match &args.addr {
        Some(addr) => {
            limits::check_connections(in_flight)?;
            crate::say!("{} requests to the slow server at {addr}", args.requests);
            *addr
        }
        None => {
            // Both ends of every connection live in this process.
            limits::check_connections(2 * in_flight)?;
            let delay = Duration::from_millis(args.delay_ms);
            let started = SlowServer::start(delay)
                .map_err(|e| Error::io("starting the embedded slow server", e))?;
            crate::say!(
                "{} requests to the embedded slow server at {} (delay {} ms)",
                args.requests,
                started.addr(),
                args.delay_ms
            );
            server.insert(started).addr()
        }
    };
    let config = Config {
        addr,
        requests: args.requests,
        progress: true,
        timeout: args.timeout(),
    };
    let result = run_stage(&config);
    if let Some(server) = server {
        // The embedded server stops as the standalone one does on Ctrl-C. Every client
        // of the stage has finished when `run_stage` returns, so a line still waiting
        // (the stage gave up on it) has no reader: a zero budget answers it with `ERROR
        // shutting down` at once instead of keeping the exit waiting for its delay.
        server
            .shutdown(Some(Duration::ZERO))
            .map_err(|e| Error::io("stopping the embedded slow server", e))?;
    }
    let report = result?;
    crate::say!("{report}");
    Ok(report)
}

/// Prints a line on stdout, as `println!` does, but without its panic on a write error.
///
/// - A stdout nobody reads any more (`cargo run -p stage0-blocking | head`) ends the
///   output quietly: Rust ignores `SIGPIPE`, so the write fails with `EPIPE`, and the
///   lines after it are dropped. We do not restore the signal, because the servers and
///   clients rely on `EPIPE` to notice a peer that left.
/// - Any other error (a full disk, `> /dev/full`, a closed descriptor) also drops the
///   lines after it, and makes the process fail: [`exit`] prints `error: writing the
///   report to stdout: ...` on stderr and returns a failure code, and a binary whose
///   `main` does not end in [`exit`] fails the same way when it ends (the check runs from
///   `atexit`), so no binary can report success with a truncated report.
#[macro_export]
macro_rules! say {
    () => {
        $crate::cli::say_line(::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::say_line(::std::format_args!($($arg)*))
    };
}

/// Stdout failed: nothing more is written to it.
static STDOUT_ENDED: AtomicBool = AtomicBool::new(false);
/// The first stdout error that was not `EPIPE`.
static STDOUT_ERROR: OnceLock<String> = OnceLock::new();
/// The error has been printed (by [`exit`]), so the `atexit` check stays quiet.
static STDOUT_ERROR_REPORTED: AtomicBool = AtomicBool::new(false);

/// What [`say!`](crate::say) calls.
pub fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if STDOUT_ENDED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        STDOUT_ENDED.store(true, Ordering::Relaxed);
        // Nobody reading is not an error worth failing for.
        if error.kind() != std::io::ErrorKind::BrokenPipe
            && STDOUT_ERROR.set(error.to_string()).is_ok()
        {
            // SAFETY: `atexit` only records the function; `fail_at_exit` is an
            // `extern "C" fn()` that lives as long as the program.
            unsafe { libc::atexit(fail_at_exit) };
        }
    }
}

/// The first error writing stdout other than a closed pipe, if there was one.
pub fn stdout_error() -> Option<&'static str> {
    STDOUT_ERROR.get().map(String::as_str)
}

/// Prints the stdout error once; true if there was one.
fn report_stdout_error() -> bool {
    let Some(error) = stdout_error() else {
        return false;
    };
    if !STDOUT_ERROR_REPORTED.swap(true, Ordering::Relaxed) {
        eprintln!("error: writing the report to stdout: {error}");
    }
    true
}

/// Runs as the process exits normally (after `main` returns, or `process::exit`): a
/// binary that did not end through [`exit`] still fails when its output was lost.
extern "C" fn fail_at_exit() {
    if report_stdout_error() {
        // SAFETY: `_exit` ends the process at once, with no further cleanup: we are
        // already inside `exit`'s cleanup, and only the status is left to decide.
        unsafe { libc::_exit(1) };
    }
}

/// Prints an error as one line on stderr and picks the exit code; a lost report (see
/// [`say!`](crate::say)) is an error too.
pub fn exit(result: Result<impl Sized, Error>) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    if let Err(error) = result {
        eprintln!("error: {error}");
        code = ExitCode::FAILURE;
    }
    if report_stdout_error() {
        code = ExitCode::FAILURE;
    }
    code
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// A stage's parser, as every stage's `main.rs` writes it.
    #[derive(Parser, Debug)]
    struct Args {
        #[command(flatten)]
        common: super::Args,
        #[arg(long)]
        trace: bool,
    }

    #[test]
    fn a_stage_can_flatten_the_shared_flags() {
        Args::command().debug_assert();
        let args = Args::parse_from(["stage", "--requests", "3", "--delay-ms", "100", "--trace"]);
        assert_eq!(args.common.requests, 3);
        assert!(args.trace);
        assert_eq!(args.common.timeout(), DEFAULT_TIMEOUT);
    }

    #[test]
    fn the_default_timeout_outlasts_a_long_delay() {
        let args = Args::parse_from(["stage", "--delay-ms", "100000"]);
        assert_eq!(args.common.timeout(), Duration::from_secs(200));
        let args = Args::parse_from(["stage", "--timeout-ms", "250"]);
        assert_eq!(args.common.timeout(), Duration::from_millis(250));
    }

    #[test]
    fn zero_requests_is_refused_by_the_parser() {
        assert!(Args::try_parse_from(["stage", "--requests", "0"]).is_err());
    }

    #[test]
    fn a_bad_addr_says_what_was_expected() {
        let error = parse_addr("no-port-here").unwrap_err();
        assert!(error.contains("HOST:PORT"), "{error}");
        let error = Args::try_parse_from(["stage", "--addr", ":::"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(error.exit_code(), 2, "a usage error");
        assert!(error.to_string().contains("--addr"), "{error}");
    }

    /// A stage that gives up with a request still waiting: the embedded server stops
    /// gracefully at once, and the request gets `ERROR shutting down`, not a bare EOF
    /// after the server's 60 s delay.
    #[test]
    fn the_embedded_server_stops_gracefully_when_the_stage_ends() {
        use std::io::{Read, Write};
        let args = Args::parse_from(["stage", "--delay-ms", "60000", "--requests", "1"]);
        let mut left_behind = None;
        let start = std::time::Instant::now();
        let result = run(&args.common, |config| {
            let mut stream = std::net::TcpStream::connect(config.addr).unwrap();
            stream.write_all(b"Request 0\n").unwrap();
            std::thread::sleep(Duration::from_millis(100)); // let the server read it
            left_behind = Some(stream);
            Err(Error::Other("gave up".into()))
        });
        assert!(matches!(result, Err(Error::Other(_))), "{result:?}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        let mut answer = String::new();
        left_behind.unwrap().read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "ERROR shutting down\n");
    }

    #[test]
    fn host_names_resolve_like_addresses() {
        let addr = parse_addr("localhost:8080").unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 8080);
    }
}
