//! Stage 1's `run` against the embedded slow server and against servers that misbehave.
//!
//! Run them: `cargo test -p stage1-callbacks`.

use std::io;
use std::time::{Duration, Instant};

use shared::server::SlowServer;
use shared::testkit::{Misbehaviour, RogueServer, refused_addr};
use shared::{Config, Error, limits};

const DELAY: Duration = Duration::from_millis(200);

/// Runs `requests` requests against a fresh server and checks that each one arrived,
/// matched its request, and that they overlapped.
fn run_concurrently(requests: u64) -> Duration {
    limits::check_connections(2 * requests).expect("enough file descriptors");
    let server = SlowServer::start(DELAY).expect("start the slow server");
    let report = stage1_callbacks::run(&Config::new(server.addr(), requests)).expect("verified");

    assert_eq!(report.verified() as u64, requests);
    let mut ids: Vec<u64> = report.responses().iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..requests).collect::<Vec<_>>());
    for response in report.responses() {
        assert_eq!(response.line, format!("Request {}", response.id));
        assert!(
            response.at >= DELAY,
            "an answer came before the delay: {response:?}"
        );
    }
    let stats = server.stats();
    assert_eq!(stats.answered, requests);
    // The connections were open at the same time (one at a time, the peak would be 1).
    // Not exactly `requests`: on a loaded machine the server may accept the last ones
    // after the first have been answered and closed.
    assert!(stats.peak_open > requests / 2, "{stats:?}");
    report.total()
}

#[test]
fn ten_requests_take_about_one_delay_not_ten() {
    let total = run_concurrently(10);
    // One after the other they would take 10 x 200 ms = 2 s.
    assert!(total < 5 * DELAY, "10 requests took {total:?}");
}

#[test]
fn a_thousand_requests_take_about_one_delay() {
    let total = run_concurrently(1000);
    // One after the other: 200 s. Generous, for a loaded machine.
    assert!(total < 25 * DELAY, "1000 requests took {total:?}");
}

#[test]
fn connection_refused_is_a_connect_error() {
    let addr = refused_addr();
    let error = stage1_callbacks::run(&Config::new(addr, 3)).unwrap_err();
    match &error {
        Error::Connect { addr: to, source } => {
            assert_eq!(*to, addr);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(error.to_string().contains("connection refused"), "{error}");
}

/// `run` against a server that answers with `misbehaviour` must fail, and say why.
fn fails_against(misbehaviour: Misbehaviour) -> Error {
    let server = RogueServer::start(misbehaviour).expect("start the rogue server");
    let started = Instant::now();
    let error = stage1_callbacks::run(&Config::new(server.addr(), 5)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took too long");
    error
}

#[test]
fn a_wrong_id_fails_the_report() {
    let error = fails_against(Misbehaviour::WrongId);
    assert!(matches!(error, Error::WrongResponse { .. }), "{error:?}");
    assert!(error.to_string().contains("expected `Request"), "{error}");
}

#[test]
fn an_error_line_fails_the_report() {
    let error = fails_against(Misbehaviour::ErrorLine);
    assert!(error.to_string().contains("got `ERROR go away`"), "{error}");
}

#[test]
fn invalid_utf8_fails_the_report() {
    let error = fails_against(Misbehaviour::InvalidUtf8);
    assert!(
        matches!(
            error,
            Error::Decode {
                source: shared::protocol::DecodeError::InvalidUtf8,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn half_a_line_then_hanging_up_fails_the_report() {
    let error = fails_against(Misbehaviour::CloseMidLine);
    assert!(
        matches!(
            error,
            Error::Decode {
                source: shared::protocol::DecodeError::ClosedMidLine,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn hanging_up_without_a_word_fails_the_report() {
    // An EOF, or a reset if the server closed before reading our request.
    let error = fails_against(Misbehaviour::Hangup);
    assert!(
        matches!(
            error,
            Error::Io { .. }
                | Error::Decode {
                    source: shared::protocol::DecodeError::ClosedMidLine,
                    ..
                }
        ),
        "{error:?}"
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let server = RogueServer::start(Misbehaviour::Silent).expect("start the rogue server");
    let mut config = Config::new(server.addr(), 5);
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let error = stage1_callbacks::run(&config).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("within 0.3 s"), "{error}");
}

#[test]
fn a_timeout_spares_the_requests_that_were_answered() {
    // 300 ms answers with a 5 s timeout: all verified, and run does not wait for the timeout.
    let server = SlowServer::start(Duration::from_millis(300)).expect("start the slow server");
    let mut config = Config::new(server.addr(), 3);
    config.timeout = Duration::from_secs(5);
    let report = stage1_callbacks::run(&config).expect("verified");
    assert_eq!(report.verified(), 3);
    assert!(
        report.total() < Duration::from_secs(3),
        "{:?}",
        report.total()
    );
}
