//! The echo servers (raw select, raw epoll and io_uring on Linux, raw kqueue on macOS and
//! the BSDs, callbacks on mio) answer real clients.
//!
//! Run them: `cargo test -p stage1-callbacks --test os_echo`.

#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

mod common;

use common::{Serve, serve_while};

/// Runs `serve` on a free port while `clients` talks to it, then stops it and checks
/// that it returned cleanly.
fn with_server(serve: Serve, clients: impl FnOnce(SocketAddr)) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    serve_while(serve, listener, clients);
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Many clients at once, interleaved, each getting exactly its own bytes back.
fn echoes_many_clients(serve: Serve) {
    with_server(serve, |addr| {
        let mut clients: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
        for round in 0..3 {
            for (i, client) in clients.iter_mut().enumerate() {
                client
                    .write_all(format!("Request {i}.{round}\n").as_bytes())
                    .expect("write");
            }
            for (i, client) in clients.iter_mut().enumerate() {
                let expected = format!("Request {i}.{round}\n");
                let mut got = vec![0; expected.len()];
                client.read_exact(&mut got).expect("read the echo");
                assert_eq!(String::from_utf8_lossy(&got), expected);
            }
        }
    });
}

/// More than the socket buffers hold, so the server must keep unsent bytes and wait
/// for writability (partial writes) while the client is still sending.
fn echoes_a_large_payload(serve: Serve) {
    with_server(serve, |addr| {
        let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut client = connect(addr);
        let mut writer = client.try_clone().expect("clone");
        thread::scope(|scope| {
            scope.spawn(|| writer.write_all(&payload).expect("send payload"));
            let mut echoed = vec![0; payload.len()];
            client.read_exact(&mut echoed).expect("read the echo");
            assert!(echoed == payload, "the echo differs from what was sent");
        });
    });
}

/// A large payload through server send buffers of a few KiB (accepted sockets inherit
/// the listener's), so that the kernel often takes only part of a 4 KiB echo: with
/// readiness, a `write` that returns less; with io_uring, a send that completes short
/// (which the large payload alone, through default buffers, does not bring about).
fn echoes_through_small_socket_buffers(serve: Serve) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    socket2::SockRef::from(&listener)
        .set_send_buffer_size(SMALL_BUFFER)
        .expect("SO_SNDBUF");
    serve_while(serve, listener, |addr| {
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut client = connect(addr);
        let mut writer = client.try_clone().expect("clone");
        thread::scope(|scope| {
            scope.spawn(|| writer.write_all(&payload).expect("send payload"));
            let mut echoed = vec![0; payload.len()];
            client.read_exact(&mut echoed).expect("read the echo");
            assert!(echoed == payload, "the echo differs from what was sent");
        });
    });
}

/// Smaller than one echo of 4 KiB (Linux doubles it, to leave room for its bookkeeping).
const SMALL_BUFFER: usize = 2048;

#[test]
fn select_echoes_many_clients() {
    echoes_many_clients(stage1_callbacks::os::select::serve);
}

#[test]
fn select_echoes_a_large_payload() {
    echoes_a_large_payload(stage1_callbacks::os::select::serve);
}

#[test]
fn select_echoes_through_small_socket_buffers() {
    echoes_through_small_socket_buffers(stage1_callbacks::os::select::serve);
}

#[cfg(target_os = "linux")]
#[test]
fn epoll_echoes_many_clients() {
    echoes_many_clients(stage1_callbacks::os::epoll::serve);
}

#[cfg(target_os = "linux")]
#[test]
fn epoll_echoes_a_large_payload() {
    echoes_a_large_payload(stage1_callbacks::os::epoll::serve);
}

#[cfg(target_os = "linux")]
#[test]
fn epoll_echoes_through_small_socket_buffers() {
    echoes_through_small_socket_buffers(stage1_callbacks::os::epoll::serve);
}

#[cfg(target_os = "linux")]
#[test]
fn uring_echoes_many_clients() {
    echoes_many_clients(stage1_callbacks::os::uring::serve);
}

#[cfg(target_os = "linux")]
#[test]
fn uring_echoes_a_large_payload() {
    echoes_a_large_payload(stage1_callbacks::os::uring::serve);
}

#[cfg(target_os = "linux")]
#[test]
fn uring_echoes_through_small_socket_buffers() {
    echoes_through_small_socket_buffers(stage1_callbacks::os::uring::serve);
}

/// Where io_uring is unavailable, the server says why and what to run instead, and
/// returns at once (simulated: io_uring works on the machines that run these tests).
#[cfg(target_os = "linux")]
#[test]
fn uring_says_why_where_io_uring_is_unavailable() {
    use std::io;
    use std::sync::atomic::AtomicBool;

    use stage1_callbacks::os::uring;
    let cases = [
        (
            libc::ENOSYS,
            io::ErrorKind::Unsupported,
            "Linux 5.6 or later",
        ),
        (
            libc::EPERM,
            io::ErrorKind::PermissionDenied,
            "kernel.io_uring_disabled",
        ),
    ];
    for (errno, kind, reason) in cases {
        uring::simulate_setup_error(Some(errno));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let error = uring::serve(listener, &AtomicBool::new(false)).expect_err("a refusal");
        let message = error.to_string();
        assert_eq!(error.kind(), kind, "{message}");
        assert!(message.contains(reason), "{message}");
        assert!(
            message.contains("echo_epoll"),
            "names the alternative: {message}"
        );
        assert!(uring::check().is_err(), "check agrees with serve");
    }
    uring::simulate_setup_error(None);
    uring::check().expect("io_uring works on this machine again");
}

#[cfg(kqueue)]
#[test]
fn kqueue_echoes_many_clients() {
    echoes_many_clients(stage1_callbacks::os::kqueue::serve);
}

#[cfg(kqueue)]
#[test]
fn kqueue_echoes_a_large_payload() {
    echoes_a_large_payload(stage1_callbacks::os::kqueue::serve);
}

#[cfg(kqueue)]
#[test]
fn kqueue_echoes_through_small_socket_buffers() {
    echoes_through_small_socket_buffers(stage1_callbacks::os::kqueue::serve);
}

#[test]
fn the_callback_loop_echoes_many_clients() {
    echoes_many_clients(stage1_callbacks::echo::serve);
}

#[test]
fn the_callback_loop_echoes_a_large_payload() {
    echoes_a_large_payload(stage1_callbacks::echo::serve);
}

#[test]
fn the_callback_loop_echoes_through_small_socket_buffers() {
    echoes_through_small_socket_buffers(stage1_callbacks::echo::serve);
}
