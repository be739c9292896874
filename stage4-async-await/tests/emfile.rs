//! At the descriptor limit, `accept` says so (`EMFILE`, "Too many open files") and the
//! listener stays usable: the connection waits in the listen queue, the server backs off
//! and serves the ones it has, and every client is served once descriptors come free.
//! On both drivers.
//!
//! One test in its own binary: it lowers this process's open-file limit, which would
//! starve any test running beside it.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use stage4_async_await::{block_on, sleep, spawn};

#[cfg(target_os = "linux")]
mod common;

const CLIENTS: usize = 24;

/// How many descriptors this process has open now (the lowest free one is a good
/// guess: tests open and close, so holes are few, and the guess only sets a limit).
fn open_descriptors() -> libc::rlim_t {
    let probe = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    probe.as_raw_fd() as libc::rlim_t
}

fn set_open_file_limit(soft: libc::rlim_t) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid, writable rlimit.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(status, 0);
    let old = limit.rlim_cur;
    limit.rlim_cur = soft;
    // SAFETY: a valid rlimit; lowering the soft limit is always allowed.
    let status = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(status, 0);
    old
}

/// The clients, each on a thread with a socket made before the limit was lowered:
/// connects, sends its number, and returns the line it gets back.
fn clients(addr: SocketAddr, sockets: Vec<socket2::Socket>) -> Vec<thread::JoinHandle<String>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            thread::spawn(move || {
                socket.connect(&addr.into()).unwrap();
                let mut stream = std::net::TcpStream::from(socket);
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                writeln!(stream, "{i}").unwrap();
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).unwrap();
                line
            })
        })
        .collect()
}

/// Accepts `CLIENTS` connections, answering each with the line it sent, and counts the
/// `EMFILE`s met on the way (backing off 5 ms after each, as a server must).
macro_rules! serve_at_the_limit {
    ($listener:expr, $echo_one:expr) => {{
        let listener = Rc::new($listener);
        let (mut served, mut emfiles) = (0, 0);
        while served < CLIENTS {
            match listener.accept().await {
                Ok((stream, _)) => {
                    drop(spawn($echo_one(stream)));
                    served += 1;
                }
                Err(error) if error.raw_os_error() == Some(libc::EMFILE) => {
                    emfiles += 1;
                    sleep(Duration::from_millis(5)).await;
                }
                Err(error) => panic!("accept failed otherwise: {error}"),
            }
        }
        emfiles
    }};
}

/// Runs `server` with the open-file limit at what is open now plus `room`, and the
/// clients against it; returns what the clients got and the `EMFILE`s the server met.
fn at_the_limit(
    room: libc::rlim_t,
    server: impl FnOnce(Vec<socket2::Socket>) -> (Vec<String>, u32),
) {
    // The clients' sockets exist before the limit drops: only the server runs short.
    let sockets: Vec<_> = (0..CLIENTS)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    let old = set_open_file_limit(open_descriptors() + room);
    let (answers, emfiles) = server(sockets);
    set_open_file_limit(old);
    let mut answers = answers;
    answers.sort_by_key(|line| line.trim().parse::<usize>().unwrap());
    let expected: Vec<String> = (0..CLIENTS).map(|i| format!("{i}\n")).collect();
    assert_eq!(answers, expected, "every client served, with its own line");
    assert!(
        emfiles > 0,
        "the limit was never met: the test proved nothing"
    );
}

#[test]
fn at_the_descriptor_limit_accept_says_emfile_and_every_client_is_served_in_the_end() {
    // The readiness driver.
    at_the_limit(8, |sockets| {
        block_on(async move {
            use stage4_async_await::net::{TcpListener, TcpStream};
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let clients = clients(listener.local_addr().unwrap(), sockets);
            let echo_one = |stream: TcpStream| async move {
                let mut decoder = shared::protocol::LineDecoder::new();
                if let Ok(Some(line)) = stream.read_line(&mut decoder).await {
                    let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
                }
            };
            let emfiles = serve_at_the_limit!(listener, echo_one);
            let joined = stage4_async_await::spawn_blocking(move || {
                clients.into_iter().map(|c| c.join().unwrap()).collect()
            });
            (joined.await.unwrap(), emfiles)
        })
    });

    // The completion driver.
    #[cfg(target_os = "linux")]
    if common::io_uring_refused().is_none() {
        at_the_limit(8, |sockets| {
            block_on(async move {
                use stage4_async_await::uring::{TcpListener, TcpStream};
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let clients = clients(listener.local_addr().unwrap(), sockets);
                let echo_one = |stream: TcpStream| async move {
                    // The line may come in pieces: read until its end.
                    let mut buf = Vec::with_capacity(64);
                    while !buf.ends_with(b"\n") {
                        let (read, back) = stream.read(buf).await;
                        buf = back;
                        if !read.is_ok_and(|n| n > 0) {
                            return;
                        }
                    }
                    let _ = stream.write_all(buf).await;
                };
                let emfiles = serve_at_the_limit!(listener, echo_one);
                let joined = stage4_async_await::spawn_blocking(move || {
                    clients.into_iter().map(|c| c.join().unwrap()).collect()
                });
                (joined.await.unwrap(), emfiles)
            })
        });
    }
}
