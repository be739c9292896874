//! Stage 4's client against the embedded slow server and against servers that misbehave.

use std::io;
use std::time::{Duration, Instant};

use shared::server::SlowServer;
use shared::testkit::{Misbehaviour, RogueServer, refused_addr};
use shared::{Config, Error};
use stage4_async_await::client::make_tcp_request;
use stage4_async_await::{block_on, run, timeout};

const DELAY: Duration = Duration::from_millis(200);

#[test]
fn ten_requests_are_verified_and_run_concurrently() {
    let server = SlowServer::start(DELAY).unwrap();
    let report = run(&Config::new(server.addr(), 10)).unwrap();
    assert_eq!(report.verified(), 10);
    // In a row, ten requests would take 10 x 200 ms = 2 s.
    assert!(report.total() < 5 * DELAY, "not concurrent: {report}");
    assert!(server.stats().peak_open >= 2, "{:?}", server.stats());
    assert_eq!(server.stats().answered, 10);
}

#[test]
fn a_thousand_requests_on_one_thread() {
    shared::limits::check_connections(2_000).unwrap();
    let server = SlowServer::start(DELAY).unwrap();
    let report = run(&Config::new(server.addr(), 1_000)).unwrap();
    assert_eq!(report.verified(), 1_000);
    assert_eq!(server.stats().answered, 1_000);
    // A thousand requests in a row would take 200 s; one thread waits for all at once.
    assert!(report.total() < 20 * DELAY, "not concurrent: {report}");
    assert!(server.stats().peak_open >= 100, "{:?}", server.stats());
}

#[test]
fn connection_refused_is_a_clear_error() {
    match run(&Config::new(refused_addr(), 3)) {
        Err(Error::Connect { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

#[test]
fn garbage_from_the_server_fails_the_report() {
    for misbehaviour in [
        Misbehaviour::WrongId,
        Misbehaviour::ErrorLine,
        Misbehaviour::InvalidUtf8,
        Misbehaviour::CloseMidLine,
        Misbehaviour::Hangup,
    ] {
        let server = RogueServer::start(misbehaviour).unwrap();
        let error = run(&Config::new(server.addr(), 3)).unwrap_err();
        let text = error.to_string();
        match misbehaviour {
            Misbehaviour::WrongId => {
                assert!(matches!(error, Error::WrongResponse { .. }), "{error:?}")
            }
            Misbehaviour::ErrorLine => assert!(text.contains("ERROR go away"), "{text}"),
            Misbehaviour::InvalidUtf8 => assert!(text.contains("invalid utf-8"), "{text}"),
            Misbehaviour::CloseMidLine | Misbehaviour::Hangup => {
                assert!(
                    matches!(error, Error::Decode { .. } | Error::Io { .. }),
                    "{error:?}"
                )
            }
            Misbehaviour::Silent => unreachable!(),
        }
    }
}

#[test]
fn a_silent_server_times_out() {
    let server = RogueServer::start(Misbehaviour::Silent).unwrap();
    // The runtime's own `timeout` around the article's coroutine...
    let started = Instant::now();
    let outcome = block_on(timeout(
        Duration::from_millis(200),
        make_tcp_request(server.addr(), 7, Duration::from_secs(60)),
    ));
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(5));

    // ...and the config's timeout inside it, which `run` uses.
    let mut config = Config::new(server.addr(), 3);
    config.timeout = Duration::from_millis(200);
    let started = Instant::now();
    match run(&config) {
        Err(Error::Timeout { what }) => assert!(what.contains("within 0.2 s"), "{what}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_binary_prints_the_report() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stage4-async-await"))
        .args(["--requests", "5", "--delay-ms", "100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("5/5 responses verified"), "{stdout}");
}

#[test]
fn the_binary_explains_an_fd_limit_instead_of_failing_half_way() {
    // A child process with at most 200 open files asks for 500 requests: both ends of
    // each connection count against it, so `shared::cli::run` refuses before starting.
    let output = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 200 && exec \"$0\" --requests 500 --delay-ms 10",
        ])
        .arg(env!("CARGO_BIN_EXE_stage4-async-await"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_request_in_flight_is_a_state_machine_of_about_a_kilobyte() {
    // Stage 3 gave every request a 64 KiB stack; here the compiler sizes the future to
    // the variables alive across an .await: mostly the 1 KiB read buffer.
    let request = make_tcp_request(refused_addr(), 1, Duration::from_secs(1));
    let size = std::mem::size_of_val(&request);
    assert!((1024..2048).contains(&size), "{size} bytes");
}
