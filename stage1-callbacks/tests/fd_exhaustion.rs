//! Running out of file descriptors must not lose clients: each echo server stops
//! accepting while `accept` fails with `EMFILE`, and serves the queued clients once
//! descriptors are free again.
//!
//! The open-file limit is per process, and the test must know that the server really met
//! `EMFILE` (not guess with a sleep), so each server runs in a child: this test binary
//! again, with `FD_EXHAUSTION_SERVER` naming the server. The child lowers its limit,
//! queues clients, and waits on its stdin; the parent reads the child's stderr until the
//! server's "cannot accept: Too many open files" line, then tells the child to restore
//! the limit and check that every queued client is echoed.
//!
//! Run it: `cargo test -p stage1-callbacks --test fd_exhaustion`.

#![cfg(target_os = "linux")]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

mod common;

use common::{Serve, serve_while};

fn set_soft_limit(soft: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the call.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(read, 0, "getrlimit");
    limit.rlim_cur = soft;
    // SAFETY: `limit` is a valid `rlimit`; a soft limit at or below the hard one is allowed.
    let written = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(written, 0, "setrlimit");
}

/// Sends `line` and checks that it comes back.
fn echo(mut client: TcpStream, line: &str) {
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client.write_all(line.as_bytes()).expect("write");
    let mut echo = vec![0; line.len()];
    client
        .read_exact(&mut echo)
        .expect("a queued client was never served");
    assert_eq!(echo, line.as_bytes());
}

/// How long the parent waits for the child's server to meet `EMFILE`, and for the child
/// to finish: generous, for a loaded machine; a correct run takes well under a second.
const PATIENCE: Duration = Duration::from_secs(30);

/// Which server the child runs.
const SERVER_VAR: &str = "FD_EXHAUSTION_SERVER";

fn server(name: &str) -> Serve {
    match name {
        "select" => stage1_callbacks::os::select::serve,
        "epoll" => stage1_callbacks::os::epoll::serve,
        "uring" => stage1_callbacks::os::uring::serve,
        "callbacks" => stage1_callbacks::echo::serve,
        other => panic!("no server named {other}"),
    }
}

/// The child: clients connect while the server cannot accept; once the parent has seen
/// the server say so and the limit is back, every one of them must be echoed.
fn survives_fd_exhaustion(serve: Serve) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let normal = shared::limits::fd_limit().expect("RLIMIT_NOFILE").soft;
    serve_while(serve, listener, |addr| {
        // One echo first, so the server has made its poller before descriptors run out.
        echo(TcpStream::connect(addr).expect("connect"), "warm-up\n");
        // The client sockets exist before the limit drops; connecting needs no new one.
        let sockets: Vec<Socket> = (0..3)
            .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket"))
            .collect();
        set_soft_limit(3); // stdin, stdout, stderr: no new descriptor for anyone
        for socket in &sockets {
            socket.connect(&addr.into()).expect("connect"); // queued, not accepted
        }
        // The parent answers on stdin (descriptor 0, already open) once the server has
        // told stderr that it cannot accept.
        let mut go = [0u8; 1];
        io::stdin()
            .read_exact(&mut go)
            .expect("the parent's go-ahead");
        set_soft_limit(normal);
        for (i, socket) in sockets.into_iter().enumerate() {
            echo(socket.into(), &format!("client {i}\n"));
        }
    });
}

/// The parent: runs the child for `name` and checks that its server met `EMFILE` before
/// the limit came back, and that the child's clients were all echoed.
fn in_child(name: &str) {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(SERVER_VAR, name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stderr = child.stderr.take().expect("the child's stderr");
    let (lines, seen) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    let met_emfile = loop {
        match seen.recv_timeout(PATIENCE) {
            Ok(line) => {
                let emfile = line.contains("cannot accept")
                    && (line.contains("Too many open files") || line.contains("os error 24"));
                log.push(line);
                if emfile {
                    break true;
                }
            }
            // The child ended, or its server never said it was out of descriptors.
            Err(_) => break false,
        }
    };
    if met_emfile {
        // Closing the pipe after the byte: a child blocked elsewhere still ends.
        let mut stdin = child.stdin.take().expect("the child's stdin");
        let _ = stdin.write_all(b"g");
    } else {
        let _ = child.kill();
    }
    drop(child.stdin.take());
    let status = child.wait().expect("wait for the child");
    reader.join().expect("stderr reader");
    log.extend(seen.try_iter());
    let log = log.join("\n");
    assert!(
        met_emfile,
        "{name}: the server never reported EMFILE within {PATIENCE:?}:\n{log}"
    );
    assert!(
        status.success(),
        "{name}: the child failed ({status}):\n{log}"
    );
}

const TEST: &str = "every_server_serves_the_clients_queued_while_out_of_descriptors";

#[test]
fn every_server_serves_the_clients_queued_while_out_of_descriptors() {
    if let Ok(name) = std::env::var(SERVER_VAR) {
        return survives_fd_exhaustion(server(&name));
    }
    for name in ["select", "epoll", "uring", "callbacks"] {
        in_child(name);
    }
}
