//! `select` cannot watch a descriptor of 1024 or more: the server says so and turns the
//! client away, while epoll and io_uring (Linux) or kqueue (macOS, the BSDs) serve it. Its
//! own test binary, because it opens a thousand descriptors.
//!
//! Run it: `cargo test -p stage1-callbacks --test fd_setsize`.

#![cfg(unix)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

mod common;

use common::{Serve, serve_while};

/// Serves on `listener` while one client sends a line, and returns what came back (or
/// the read error).
fn one_client(serve: Serve, listener: TcpListener) -> io::Result<Vec<u8>> {
    serve_while(serve, listener, |addr| {
        let mut client = TcpStream::connect(addr).expect("connect");
        client.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = client.write_all(b"hello\n"); // may fail if the server closed already
        let mut got = Vec::new();
        let mut buf = [0; 16];
        loop {
            match client.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\n") {
                        return Ok(got);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    })
}

/// The loops of this OS that keep their interest list in the kernel (or, for io_uring,
/// their operations): none of them has a limit on descriptor numbers.
#[cfg(target_os = "linux")]
const KERNEL_LIST: &[(&str, Serve)] = &[
    ("epoll", stage1_callbacks::os::epoll::serve),
    ("io_uring", stage1_callbacks::os::uring::serve),
];
#[cfg(kqueue)]
const KERNEL_LIST: &[(&str, Serve)] = &[("kqueue", stage1_callbacks::os::kqueue::serve)];
#[cfg(not(any(target_os = "linux", kqueue)))]
const KERNEL_LIST: &[(&str, Serve)] = &[];

#[test]
fn select_turns_away_descriptors_over_fd_setsize_and_the_others_serve_them() {
    shared::limits::check_connections(2 * libc::FD_SETSIZE as u64).expect("fd limit");
    // The listeners first, below FD_SETSIZE; then fill the descriptor table up to it,
    // so that the next accepted socket is above.
    let select_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let other_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut ballast = Vec::new();
    while ballast.last().map(AsRawFd::as_raw_fd).unwrap_or(0) < libc::FD_SETSIZE as i32 {
        ballast.push(File::open("/dev/null").expect("open /dev/null"));
    }

    // Closed by the server: EOF, or a reset if our bytes arrived first.
    match one_client(stage1_callbacks::os::select::serve, select_listener) {
        Ok(got) => assert!(got.is_empty(), "select served a descriptor it cannot watch"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }

    for &(name, serve) in KERNEL_LIST {
        let listener = other_listener.try_clone().expect("clone the listener");
        let got = one_client(serve, listener)
            .unwrap_or_else(|e| panic!("{name} did not serve past FD_SETSIZE: {e}"));
        assert_eq!(got, b"hello\n", "{name}");
    }
    drop(other_listener);
    drop(ballast);
}
