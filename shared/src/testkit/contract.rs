//! The contract every stage's `run` keeps, as assertions a stage's tests call.
//!
//! Stages differ in how they wait; what they promise does not: every response arrives
//! and matches its request, the requests really overlap, answers ending in `\r\n` are
//! answers, and a server that is not there, answers garbage, never answers or answers a
//! byte at a time gives a clear error instead of a pass or a hang. Each
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

/// Every one of `requests` ids, 0 to `requests - 1`, answered exactly once and with its
/// own line: what any client of the protocol, ours or a library's, must report.
pub fn every_request_answered_once(report: &Report, requests: u64) {
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
    }
}

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
    every_request_answered_once(&report, requests);
    for response in report.responses() {
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
    assert_is_the_timeout_line(&error);
}

/// Every stage words a timeout the same way: `timed out: no answer to request 2 within
/// 0.3 s`.
fn assert_is_the_timeout_line(error: &Error) {
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let line = error.to_string();
    assert!(
        line.starts_with("timed out: no answer to request ") && line.ends_with(" s"),
        "{line}"
    );
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
        Ok(report) => panic!(
            "a dripping answer passed a {:?} timeout: {report}",
            config.timeout
        ),
        Err(error) => error,
    };
    assert!(started.elapsed() < PATIENCE, "took {:?}", started.elapsed());
    assert_is_the_timeout_line(&error);
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

/// A timeout is a limit, not a wait: with every answer in well before it, `run` returns
/// with all of them verified as soon as the last one arrives.
pub fn a_timeout_is_not_waited_out(run: impl FnOnce(&Config) -> Result<Report, Error>) {
    let server = SlowServer::start(DELAY).expect("start the slow server");
    let config = Config {
        timeout: PATIENCE,
        ..Config::new(server.addr(), 3)
    };
    let report = run(&config).expect("a verified report");
    every_request_answered_once(&report, 3);
    assert!(
        report.total() < PATIENCE / 2,
        "waited for the timeout: {:?}",
        report.total()
    );
}

/// A timeout too far for an `Instant` to hold means no limit, not a panic on the
/// overflowing addition: `Duration::MAX`, `u64::MAX` seconds, and the first second past
/// what a Unix `Instant` (signed 64-bit seconds) can hold.
pub fn a_far_timeout_is_no_limit(run: impl Fn(&Config) -> Result<Report, Error>) {
    let server = SlowServer::start(DELAY).expect("start the slow server");
    for far in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(i64::MAX as u64 + 1),
    ] {
        let config = Config {
            timeout: far,
            ..Config::new(server.addr(), 3)
        };
        let report = run(&config).unwrap_or_else(|e| panic!("timeout {far:?}: {e}"));
        every_request_answered_once(&report, 3);
    }
}

/// Defines one `#[test]` per promise of [`contract`](crate::testkit::contract) for a
/// stage's `run`: `ten_requests_overlap`, `a_thousand_requests_overlap`,
/// `refused_is_a_connect_error`, `garbage_fails_the_report`, `silence_times_out`,
/// `a_dripping_answer_times_out`, `crlf_answers_are_accepted`,
/// `a_timeout_is_not_waited_out` and `a_far_timeout_is_no_limit`.
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

        #[test]
        fn a_timeout_is_not_waited_out() {
            $crate::testkit::contract::a_timeout_is_not_waited_out($run);
        }

        #[test]
        fn a_far_timeout_is_no_limit() {
            $crate::testkit::contract::a_far_timeout_is_no_limit($run);
        }
    };
}

/// The promise of stages 1 to 4: `run` makes fifty requests from the calling thread and
/// starts no thread.
///
/// On Linux x86_64 and aarch64, `run` works on a thread of its own whose seccomp filter
/// refuses to create threads (`clone` with `CLONE_THREAD` fails with `EPERM`, `clone3`
/// with `ENOSYS`, so that glibc falls back to `clone`). Every way to start a thread ends
/// in one of these two system calls, so a thread that `run` starts, however briefly it
/// lives, makes its spawn fail, and this check panics with "`run` started a thread".
/// What it cannot see: work that `run` hands to a thread that already existed before it
/// was called (a pool started earlier), and a thread made through another system-call
/// ABI than the native one (x86_64's 32-bit `int 0x80` entry), which no Rust code uses. Other tests' threads are not counted, so the
/// check may share a test binary. Where the filter is not available (other OSes and
/// architectures, or a kernel without seccomp) it checks just the report, and says so on
/// stderr.
pub fn spawns_no_thread(run: impl FnOnce(&Config) -> Result<Report, Error> + Send) {
    let server = SlowServer::start(DELAY).expect("start the slow server");
    let config = Config::new(server.addr(), 50);
    let outcome = std::thread::scope(|scope| {
        let watched = scope.spawn(|| {
            let forbidden = no_new_threads::forbid();
            (forbidden, run(&config))
        });
        watched.join()
    });
    let started_a_thread = "`run` started a thread: the test's seccomp filter refused it";
    let (forbidden, result) = match outcome {
        Ok(outcome) => outcome,
        // std::thread::spawn panics when the OS refuses the thread.
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!("{started_a_thread} ({message})");
        }
    };
    if let Err(why) = &forbidden {
        eprintln!("spawns_no_thread: not checking for threads here: {why}");
    }
    match result {
        Ok(report) => assert_eq!(report.verified(), 50),
        Err(error)
            if forbidden.is_ok() && error.to_string().contains("Operation not permitted") =>
        {
            panic!("{started_a_thread} ({error})")
        }
        Err(error) => panic!("a verified report: {error}"),
    }
}

/// A seccomp filter that refuses new threads to the calling thread (and to any thread it
/// would start: none can be started).
mod no_new_threads {
    /// Installs the filter on the calling thread, for the rest of its life.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    pub fn forbid() -> Result<(), String> {
        use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
        use libc::{SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, sock_filter, sock_fprog};

        // `AUDIT_ARCH_*` from <linux/audit.h>: the filter only judges native system calls.
        #[cfg(target_arch = "x86_64")]
        const ARCH: u32 = 0xC000_003E;
        #[cfg(target_arch = "aarch64")]
        const ARCH: u32 = 0xC000_00B7;
        // Offsets in `struct seccomp_data`: nr, arch, then args[0] (its low half on
        // these little-endian targets).
        const NR: u32 = 0;
        const ARCH_AT: u32 = 4;
        const ARG0: u32 = 16;

        let op = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let load = |offset: u32| op(BPF_LD | BPF_W | BPF_ABS, offset, 0, 0);
        let jump_if_eq = |k: u32, jt: u8, jf: u8| op(BPF_JMP | BPF_JEQ | BPF_K, k, jt, jf);
        let jump_if_set = |k: u32, jt: u8, jf: u8| op(BPF_JMP | BPF_JSET | BPF_K, k, jt, jf);
        let ret = |k: u32| op(BPF_RET | BPF_K, k, 0, 0);
        let refuse = |errno: i32| ret(SECCOMP_RET_ERRNO | errno as u32);
        // A jump skips `jt` or `jf` instructions: `jf = 7` at 1 lands on 9.
        let filter = [
            load(ARCH_AT),                                // 0
            jump_if_eq(ARCH, 0, 7),                       // 1: another ABI: allow
            load(NR),                                     // 2
            jump_if_eq(libc::SYS_clone3 as u32, 0, 1),    // 3
            refuse(libc::ENOSYS),                         // 4: glibc falls back to clone
            jump_if_eq(libc::SYS_clone as u32, 0, 3),     // 5: not clone: allow
            load(ARG0),                                   // 6: clone's flags
            jump_if_set(libc::CLONE_THREAD as u32, 0, 1), // 7
            refuse(libc::EPERM),                          // 8: a new thread
            ret(SECCOMP_RET_ALLOW),                       // 9
        ];
        let program = sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: prctl with these arguments only sets a flag on the calling thread:
        // it may no longer gain privileges (what an unprivileged seccomp filter needs).
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(format!(
                "PR_SET_NO_NEW_PRIVS: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `program` points to `filter`, which outlives the call (the kernel copies
        // it); the filter only allows calls or makes them fail, on this thread only.
        let installed = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const sock_fprog,
            )
        };
        if installed != 0 {
            return Err(format!("seccomp: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// No filter on this OS or architecture.
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    pub fn forbid() -> Result<(), String> {
        Err("seccomp filters are used on Linux x86_64 and aarch64 only".to_string())
    }
}
