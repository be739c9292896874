//! Graceful shutdown: of the library's server, and of the `slow-server` binary on
//! SIGTERM and Ctrl-C (SIGINT), as its clients see it.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use shared::server::SlowServer;
use support::{PATIENCE, ServerProcess, connect, read_to_close, send_request};

#[test]
fn shutdown_answers_every_request_received_then_ends() {
    let delay = Duration::from_millis(300);
    let server = SlowServer::start(delay).unwrap();
    let addr = server.addr();
    let clients: Vec<TcpStream> = (0..5).map(|id| send_request(addr, id)).collect();
    let idle = connect(addr); // connected, says nothing: closed at once
    while server.stats().waiting < 5 {
        thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    let stats = server.shutdown(None).unwrap();
    assert!(start.elapsed() < PATIENCE);
    for (id, client) in clients.into_iter().enumerate() {
        assert_eq!(read_to_close(client), format!("Request {id}\n"));
    }
    assert_eq!(read_to_close(idle), "", "nothing waited on it: EOF");
    assert_eq!(
        (stats.answered, stats.cut_short, stats.open),
        (5, 0, 0),
        "{stats:?}"
    );
    assert_eq!((stats.waiting, stats.peak_waiting), (0, 5), "{stats:?}");
}

#[test]
fn a_drain_budget_that_runs_out_answers_error_shutting_down() {
    let server = SlowServer::start(Duration::from_secs(60)).unwrap();
    let addr = server.addr();
    let mut client = connect(addr);
    client.write_all(b"Request 1\nRequest 2\n").unwrap();
    while server.stats().waiting < 2 {
        thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    let stats = server.shutdown(Some(Duration::from_millis(100))).unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < PATIENCE, "{took:?}");
    assert_eq!(read_to_close(client), "ERROR shutting down\n");
    assert_eq!((stats.answered, stats.cut_short), (0, 2), "{stats:?}");
}

#[test]
fn requests_in_flight_get_their_answers_after_sigterm() {
    let mut server = ServerProcess::start(&["--delay-ms", "500", "--stats-ms", "10"]);
    let clients: Vec<TcpStream> = (0..3).map(|id| send_request(server.addr, id)).collect();
    server.stats_until("3 requests waiting", |s| s.waiting == 3);
    server.signal(libc::SIGTERM);
    server.stderr_line("SIGTERM: no new connections");
    for (id, client) in clients.into_iter().enumerate() {
        assert_eq!(read_to_close(client), format!("Request {id}\n"));
    }
    let status = server.exit_within(PATIENCE);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let summary = server.stderr_line("stopped");
    assert!(
        summary.contains("3 requests answered while draining, 0 cut short"),
        "{summary}"
    );
    // The last word on stdout: the counters as the server left.
    let last = server.rest_of_stdout().pop().expect("a final stats line");
    let last: shared::server::ServerStats = last.parse().unwrap();
    assert_eq!(
        (last.answered, last.peak_waiting, last.open),
        (3, 3, 0),
        "{last:?}"
    );
}

#[test]
fn the_listener_refuses_new_connections_after_the_first_signal() {
    let mut server = ServerProcess::start(&["--delay-ms", "2000", "--stats-ms", "10"]);
    let addr = server.addr;
    let in_flight = send_request(addr, 7);
    server.stats_until("the request waiting", |s| s.waiting == 1);
    server.signal(libc::SIGINT);
    server.stderr_line("SIGINT: no new connections");
    // The loop closes its listener as soon as it sees the signal: soon, not at once.
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connect after the signal: {e}"),
            Ok(mut stream) => {
                // In before the listener closed: closed at once, as nothing waits on it.
                // (A handshake the kernel drops with the listener can leave a client
                // that sends nothing waiting for ever: hence the timeout.)
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let mut received = Vec::new();
                let _ = stream.read_to_end(&mut received);
                assert!(received.is_empty(), "{received:?}");
                assert!(start.elapsed() < PATIENCE, "still accepting");
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    assert_eq!(read_to_close(in_flight), "Request 7\n");
    assert_eq!(server.exit_within(PATIENCE).code(), Some(0));
}

/// A client that sends and never reads: its answers fill the socket buffers and cannot
/// go out. The drain budget, not the client, decides when the server leaves.
#[test]
fn a_client_that_never_reads_cannot_hold_the_exit() {
    let drain = Duration::from_millis(300);
    let mut server = ServerProcess::start(&[
        "--delay-ms",
        "0",
        "--stats-ms",
        "10",
        "--drain-ms",
        &drain.as_millis().to_string(),
    ]);
    let mut stream = connect(server.addr);
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let line = format!("{}\n", "x".repeat(1000));
    let mut sent = 0usize;
    loop {
        match stream.write(line.as_bytes()) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
        assert!(sent < 1 << 30, "the server never pushed back");
    }
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.exit_within(PATIENCE);
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(took >= drain, "left before its budget ran out: {took:?}");
    // What the client finally reads is whole answers, then the connection's end.
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received); // a reset is fine: the server gave up
    assert!(received.len() >= 1001, "{} bytes", received.len());
    drop(stream);
}

#[test]
fn a_second_signal_during_the_drain_stops_at_once() {
    let mut server = ServerProcess::start(&["--delay-ms", "60000", "--stats-ms", "10"]);
    let in_flight = send_request(server.addr, 1);
    server.stats_until("the request waiting", |s| s.waiting == 1);
    server.signal(libc::SIGTERM);
    server.stderr_line("SIGTERM: no new connections");
    let start = Instant::now();
    server.signal(libc::SIGINT);
    let status = server.exit_within(PATIENCE);
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    assert!(start.elapsed() < PATIENCE);
    server.stderr_line("second signal: stopping at once");
    // No answer: the server is gone, and so is the connection.
    let mut in_flight = in_flight;
    let mut rest = Vec::new();
    let _ = in_flight.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
}

/// `--stats-ms` lines on a stdout that fails: the server keeps serving (its stats are not
/// its work), and exits 1 with one `error:` line when it stops; into a closed pipe, it
/// exits 0 without a word.
#[cfg(target_os = "linux")]
#[test]
fn a_stats_line_that_cannot_be_written_fails_the_exit_not_the_service() {
    use std::process::{Command, Stdio};
    for (stdout, expected) in [("/dev/full", Some(1)), ("closed pipe", Some(0))] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slow-server"));
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--delay-ms",
            "10",
            "--stats-ms",
            "5",
        ]);
        command.stderr(Stdio::piped());
        if stdout == "/dev/full" {
            command.stdout(
                std::fs::File::options()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            );
        } else {
            command.stdout(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        drop(child.stdout.take());
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut banner = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut banner).unwrap();
        let addr: std::net::SocketAddr = banner
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split(',').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{banner}"));
        thread::sleep(Duration::from_millis(50)); // a few stats lines fail meanwhile
        let mut answer = String::new();
        let mut client = std::io::BufReader::new(send_request(addr, 3));
        std::io::BufRead::read_line(&mut client, &mut answer).unwrap();
        assert_eq!(answer, "Request 3\n", "{stdout}");
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let status = child.wait().unwrap();
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        assert_eq!(status.code(), expected, "{stdout}: {rest}");
        let errors: Vec<&str> = rest.lines().filter(|l| l.starts_with("error:")).collect();
        match expected {
            Some(1) => assert_eq!(
                errors,
                ["error: writing the report to stdout: No space left on device (os error 28)"]
            ),
            _ => assert!(errors.is_empty(), "{stdout}: {rest}"),
        }
    }
}
