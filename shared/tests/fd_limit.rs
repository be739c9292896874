//! The standalone server at its file-descriptor limit: it keeps serving the connections
//! it has, says so once, and serves the waiting ones when room comes free, also when the
//! room is taken by idle connections.
//!
//! Checked on Linux, the reference platform: the whole file, so that no import is left
//! unused elsewhere.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn at_the_fd_limit_the_server_keeps_serving_and_logs_one_line() {
    let (mut child, mut stderr, addr, banner) = server_with_32_fds("--delay-ms 300");
    assert!(banner.contains("listening on"), "{banner}");

    // 40 connections, more than the 32 descriptors the server may have.
    let clients: Vec<_> = (0..40)
        .map(|id| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                stream
                    .write_all(format!("Request {id}\n").as_bytes())
                    .unwrap();
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).unwrap();
                (id, line)
            })
        })
        .collect();
    let start = Instant::now();
    for client in clients {
        let (id, line) = client.join().unwrap();
        assert_eq!(line, format!("Request {id}\n"));
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not a flood: {log}");
    assert!(lines[0].contains("out of file descriptors"), "{log}");
    assert!(lines[0].contains("ulimit -n"), "{log}");
}

/// Idle connections alone must not keep a newcomer waiting at the fd limit: the idle
/// timeout closes them, and the newcomer is served.
#[test]
fn idle_connections_make_room_for_a_newcomer_at_the_fd_limit() {
    let (mut child, _stderr, addr, banner) =
        server_with_32_fds("--delay-ms 10 --idle-timeout-ms 300");
    assert!(
        banner.contains("idle connections closed after 300 ms"),
        "{banner}"
    );

    // 40 clients that connect and say nothing: more than the server has descriptors for.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let mut newcomer = TcpStream::connect(&addr).unwrap();
    newcomer
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    newcomer.write_all(b"Request 41\n").unwrap();
    let mut line = String::new();
    let answered = BufReader::new(&newcomer).read_line(&mut line);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(idle);
    assert_eq!(
        answered.map(|_| line.as_str()).ok(),
        Some("Request 41\n"),
        "the newcomer waited behind idle connections"
    );
}

/// The standalone server in a child process limited to 32 file descriptors (the limit is
/// per process, so this cannot be done in the test process itself), on a free port, with
/// `flags`: the child, its stderr, its address and its first line.
fn server_with_32_fds(flags: &str) -> (Child, BufReader<ChildStderr>, String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 32 && exec {} --listen {addr} {flags}",
            env!("CARGO_BIN_EXE_slow-server")
        ))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start slow-server");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    (child, stderr, addr, banner)
}
