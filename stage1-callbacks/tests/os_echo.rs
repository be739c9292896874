//! The echo servers (raw select, raw epoll on Linux, raw kqueue on macOS and the BSDs,
//! callbacks on mio) answer real clients.
//!
//! Run them: `cargo test -p stage1-callbacks --test os_echo`.

#![cfg(unix)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

type Serve = fn(TcpListener, &AtomicBool) -> io::Result<()>;

/// Sets the stop flag when dropped, also while a failed check unwinds, so that the scope
/// can join the server thread instead of waiting for it forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `serve` on a free port while `clients` talks to it, then stops it and checks
/// that it returned cleanly.
fn with_server(serve: Serve, clients: impl FnOnce(SocketAddr)) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let server = scope.spawn(|| serve(listener, &stop));
        let _stop = StopOnDrop(&stop);
        clients(addr);
        stop.store(true, Ordering::Relaxed);
        server
            .join()
            .expect("server thread")
            .expect("serve returned an error");
    });
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

#[test]
fn select_echoes_many_clients() {
    echoes_many_clients(stage1_callbacks::os::select::serve);
}

#[test]
fn select_echoes_a_large_payload() {
    echoes_a_large_payload(stage1_callbacks::os::select::serve);
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

#[test]
fn the_callback_loop_echoes_many_clients() {
    echoes_many_clients(stage1_callbacks::echo::serve);
}

#[test]
fn the_callback_loop_echoes_a_large_payload() {
    echoes_a_large_payload(stage1_callbacks::echo::serve);
}
