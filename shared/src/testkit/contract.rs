//! The contract every stage's `run` keeps, as assertions a stage's tests call.
//!
//! Stages differ in how they wait; what they promise does not: every response arrives
//! and matches its request, the requests really overlap, and a server that is not there,
//! answers garbage or never answers gives a clear error instead of a pass or a hang. Each
//! stage's `tests/contract.rs` turns them into one test each with
//! [`contract_tests!`](crate::contract_tests):
//!
//! ```no_run
//! # fn run(_: &shared::Config) -> Result<shared::Report, shared::Error> {
//! #     Err(shared::Error::Other("a stage's run".into()))
//! # }
//! // tests/contract.rs of a stage: `run` is the stage's `run`, e.g. `stage1_callbacks::run`.
//! shared::contract_tests!(run);
//! # fn main() {}
//! ```
//!
//! Every function panics, with what went wrong, when the stage breaks its promise.

use std::io;
use std::time::{Duration, Instant};

use super::{Misbehaviour, RogueServer, refused_addr};
use crate::protocol::DecodeError;
use crate::server::SlowServer;
use crate::{Config, Error, Report, limits};

/// The embedded server's delay in these checks: long enough to tell "overlapped" from
/// "one after another", short enough for a test suite.
pub const DELAY: Duration = Duration::from_millis(200);

/// Upper bound for anything that must not hang. Generous: a loaded CI machine must not
/// fail a correct stage.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `requests` requests against a fresh slow server and checks that each arrived,
/// matched its request, came no earlier than the delay, and that the connections were
/// open at the same time. Returns the verified report.
pub fn answers_every_request(
    run: impl FnOnce(&Config) -> Result<Report, Error>,
    requests: u64,
) -> Report {
    limits::check_connections(2 * requests).expect("enough file descriptors");
    let server = SlowServer::start(DELAY).expect("start the slow server");
    let report = run(&Config::new(server.addr(), requests)).expect("a verified report");
    assert_eq!(report.verified() as u64, requests);
    let mut ids: Vec<u64> = report.responses().iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..requests).collect::<Vec<_>>(),
        "every id exactly once"
    );
    for response in report.responses() {
        assert_eq!(response.line, format!("Request {}", response.id));
        assert!(
            response.at >= DELAY,
            "answered before the delay: {response:?}"
        );
    }
    let stats = server.stats();
    assert_eq!(stats.answered, requests, "{stats:?}");
    if requests > 1 {
        // One at a time, the peak would be 1. Not exactly `requests`: on a loaded
        // machine the server may accept the last ones after the first have closed.
        assert!(stats.peak_open > requests / 2, "not concurrent: {stats:?}");
    }
    report
}

/// Ten requests with a 200 ms delay finish in far less than the 2 s they would take one
/// after another.
pub fn ten_requests_overlap(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    let report = answers_every_request(run, 10);
    assert!(report.total() < 5 * DELAY, "not concurrent: {report}");
}

/// A thousand requests with a 200 ms delay: all verified, in a small multiple of one
/// delay (one after another: 200 s).
pub fn a_thousand_requests_overlap(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    let report = answers_every_request(run, 1_000);
    assert!(report.total() < 25 * DELAY, "not concurrent: {report}");
}

/// No server at the address: [`Error::Connect`] with `ConnectionRefused`, whose message
/// says so.
pub fn refused_is_a_connect_error(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    let addr = refused_addr();
    let error = run(&Config::new(addr, 3)).expect_err("no server: no report");
    match &error {
        Error::Connect { addr: to, source } => {
            assert_eq!(*to, addr);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
    assert!(error.to_string().contains("connection refused"), "{error}");
}

/// Every kind of garbage from the server fails the report, promptly, with an error
/// that names it.
pub fn garbage_fails_the_report(run: impl Fn(&Config) -> Result<Report, Error>) {
    use Misbehaviour::*;
    for misbehaviour in [WrongId, ErrorLine, InvalidUtf8, CloseMidLine, Hangup] {
        let server = RogueServer::start(misbehaviour).expect("start the rogue server");
        let mut config = Config::new(server.addr(), 3);
        config.timeout = PATIENCE;
        let started = Instant::now();
        let error = match run(&config) {
            Ok(report) => panic!("{misbehaviour:?} passed: {report}"),
            Err(error) => error,
        };
        assert!(
            started.elapsed() < PATIENCE,
            "{misbehaviour:?} took too long"
        );
        let closed = |e: &Error| {
            matches!(
                e,
                Error::Decode {
                    source: DecodeError::ClosedMidLine,
                    ..
                }
            )
        };
        let named = match misbehaviour {
            WrongId => matches!(error, Error::WrongResponse { .. }),
            ErrorLine => error.to_string().contains("got `ERROR go away`"),
            InvalidUtf8 => matches!(
                error,
                Error::Decode {
                    source: DecodeError::InvalidUtf8,
                    ..
                }
            ),
            CloseMidLine => closed(&error),
            // An EOF, or a reset when the server closed before reading our request.
            Hangup => closed(&error) || matches!(error, Error::Io { .. }),
            Silent | Drip | Crlf => unreachable!(),
        };
        assert!(named, "{misbehaviour:?} gave {error:?}");
    }
}

/// A server that accepts and never answers: [`Error::Timeout`] after `config.timeout`,
/// not a hang.
pub fn silence_times_out(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    let server = RogueServer::start(Misbehaviour::Silent).expect("start the rogue server");
    let mut config = Config::new(server.addr(), 3);
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let error = run(&config).expect_err("silence: no report");
    assert!(started.elapsed() < PATIENCE, "took {:?}", started.elapsed());
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
}

/// A server that answers correctly but one byte every
/// [`DRIP_INTERVAL`](super::DRIP_INTERVAL): [`Error::Timeout`] after `config.timeout`
/// for the whole request, although no single read waits that long.
pub fn a_dripping_answer_times_out(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    let server = RogueServer::start(Misbehaviour::Drip).expect("start the rogue server");
    let mut config = Config::new(server.addr(), 3);
    // Three drips; `Request 2\n` takes ten.
    config.timeout = 3 * super::DRIP_INTERVAL;
    let started = Instant::now();
    let error = match run(&config) {
        Ok(report) => panic!("a dripping answer passed a {:?} timeout: {report}", config.timeout),
        Err(error) => error,
    };
    assert!(started.elapsed() < PATIENCE, "took {:?}", started.elapsed());
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
}

/// Answers that end in `\r\n` instead of `\n` are answers all the same.
pub fn crlf_answers_are_accepted(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    let server = RogueServer::start(Misbehaviour::Crlf).expect("start the rogue server");
    let report = run(&Config::new(server.addr(), 3)).expect("a verified report");
    assert_eq!(report.verified(), 3);
    for response in report.responses() {
        assert_eq!(response.line, format!("Request {}", response.id));
    }
}

/// Defines one `#[test]` per promise of [`contract`](crate::testkit::contract) for a
/// stage's `run`: `ten_requests_overlap`, `a_thousand_requests_overlap`,
/// `refused_is_a_connect_error`, `garbage_fails_the_report`, `silence_times_out`,
/// `a_dripping_answer_times_out` and `crlf_answers_are_accepted`.
#[macro_export]
macro_rules! contract_tests {
    ($run:path) => {
        #[test]
        fn ten_requests_overlap() {
            $crate::testkit::contract::ten_requests_overlap($run);
        }

        #[test]
        fn a_thousand_requests_overlap() {
            $crate::testkit::contract::a_thousand_requests_overlap($run);
        }

        #[test]
        fn refused_is_a_connect_error() {
            $crate::testkit::contract::refused_is_a_connect_error($run);
        }

        #[test]
        fn garbage_fails_the_report() {
            $crate::testkit::contract::garbage_fails_the_report($run);
        }

        #[test]
        fn silence_times_out() {
            $crate::testkit::contract::silence_times_out($run);
        }

        #[test]
        fn a_dripping_answer_times_out() {
            $crate::testkit::contract::a_dripping_answer_times_out($run);
        }

        #[test]
        fn crlf_answers_are_accepted() {
            $crate::testkit::contract::crlf_answers_are_accepted($run);
        }
    };
}

/// The promise of stages 1 to 4: `run` makes fifty requests from the calling thread and
/// starts no thread. Linux only (it counts `/proc/self/task`); elsewhere it checks just
/// the report.
///
/// Call it from a test binary of its own (`tests/one_thread.rs`), so that no other
/// test's threads come and go while it counts.
pub fn spawns_no_thread(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread;

    /// Threads of this process now, where the OS tells.
    fn threads() -> Option<usize> {
        Some(std::fs::read_dir("/proc/self/task").ok()?.count())
    }

    let server = SlowServer::start(DELAY).expect("start the slow server");
    // A watcher samples the thread count while `run` works.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(threads().unwrap_or(0), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    let before = threads(); // the test thread, the server, the watcher, the harness
    let report = run(&Config::new(server.addr(), 50)).expect("a verified report");
    done.store(true, Ordering::Release);
    watcher.join().expect("the watcher thread");
    assert_eq!(report.verified(), 50);
    if let Some(before) = before {
        assert_eq!(peak.load(Ordering::Relaxed), before, "run started a thread");
    }
}
