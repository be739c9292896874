//! A server on io_uring: `uring::TcpListener` accepts (one multishot accept for every
//! connection), and its streams echo. Bad peers as on the readiness driver: a reset, a
//! half-close, an `accept` dropped while the kernel accepts; and the server goes on
//! serving the others. (Descriptor exhaustion: `tests/emfile.rs`.)
//!
//! Run them: `cargo test -p stage4-async-await --test uring_server` (Linux only).

#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream as StdStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use stage4_async_await::uring::{TcpListener, TcpStream};
use stage4_async_await::{block_on, spawn, timeout};

mod common;

const SECOND: Duration = Duration::from_secs(1);

/// Echoes what `stream` reads until the end of the stream; returns how many bytes, or
/// the error that ended it.
async fn echo(stream: TcpStream) -> std::io::Result<usize> {
    let mut total = 0;
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let (read, back) = stream.read(buf).await;
        match read? {
            0 => return Ok(total),
            read => total += read,
        }
        let (written, back) = stream.write_all(back).await;
        written?;
        buf = back;
    }
}

/// Runs an echo server on io_uring until `clients` (run on threads, given the address)
/// are done; returns each connection's outcome, in the order they ended.
fn serve<T: Send + 'static>(
    connections: usize,
    clients: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> (T, Vec<std::io::Result<usize>>) {
    block_on(async move {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        let addr = listener.local_addr().unwrap();
        let clients = thread::spawn(move || clients(addr));
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (stream, peer) = timeout(10 * SECOND, listener.accept())
                .await
                .expect("every client is accepted")
                .unwrap();
            assert!(peer.ip().is_loopback());
            tasks.push(spawn(echo(stream)));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let clients = stage4_async_await::spawn_blocking(move || clients.join().unwrap());
        (clients.await.unwrap(), outcomes)
    })
}

/// A client: sends `message`, half-closes, reads the echo to the end.
fn echo_client(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = StdStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(10 * SECOND)).unwrap();
    stream.write_all(message).unwrap();
    stream.shutdown(Shutdown::Write).unwrap(); // a half-close: we still read
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    echoed
}

#[test]
fn a_hundred_clients_at_once_each_get_their_own_bytes_back() {
    if common::io_uring_refused().is_some() {
        return;
    }
    let (echoes, outcomes) = serve(100, |addr| {
        let clients: Vec<_> = (0..100u32)
            .map(|i| {
                thread::spawn(move || {
                    let message: Vec<u8> = format!("client {i} ").repeat(500).into_bytes();
                    (echo_client(addr, &message), message)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (echoed, sent) in echoes {
        assert!(echoed == sent, "a client got back other bytes than it sent");
    }
    for outcome in outcomes {
        assert!(outcome.unwrap() > 0);
    }
}

#[test]
fn a_reset_peer_ends_its_connection_with_an_error_and_the_others_are_served() {
    if common::io_uring_refused().is_some() {
        return;
    }
    let (echoed, outcomes) = serve(2, |addr| {
        // First a peer that resets: SO_LINGER of zero makes its close send RST.
        let rude = socket2::Socket::from(StdStream::connect(addr).unwrap());
        rude.set_linger(Some(Duration::ZERO)).unwrap();
        let mut rude = StdStream::from(rude);
        rude.write_all(b"hello").unwrap();
        thread::sleep(Duration::from_millis(50));
        drop(rude);
        // Then a polite one, served as if nothing happened.
        echo_client(addr, b"still here")
    });
    assert_eq!(echoed, b"still here");
    let errors: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{outcomes:?}");
    assert_eq!(errors[0].kind(), ErrorKind::ConnectionReset, "{errors:?}");
}

#[test]
fn accepts_dropped_by_a_timeout_lose_no_connection() {
    if common::io_uring_refused().is_some() {
        return;
    }
    const CLIENTS: usize = 200;
    let (echoed, timeouts) = block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = thread::spawn(move || {
            (0..CLIENTS)
                .map(|i| {
                    thread::sleep(Duration::from_micros(300));
                    echo_client(addr, format!("{i}").as_bytes())
                })
                .collect::<Vec<_>>()
        });
        let (mut accepted, mut timeouts) = (0, 0);
        while accepted < CLIENTS {
            // An accept given up after 100 µs, again and again: the kernel may have
            // accepted for it just then; that connection must go to the next accept.
            match timeout(Duration::from_micros(100), listener.accept()).await {
                Ok(stream) => {
                    drop(spawn(echo(stream.unwrap().0)));
                    accepted += 1;
                }
                Err(_elapsed) => timeouts += 1,
            }
        }
        let clients = stage4_async_await::spawn_blocking(move || clients.join().unwrap());
        (clients.await.unwrap(), timeouts)
    });
    for (i, echo) in echoed.iter().enumerate() {
        assert_eq!(echo, format!("{i}").as_bytes());
    }
    assert!(
        timeouts > 0,
        "no accept was dropped: the test proved nothing"
    );
}

#[test]
fn dropping_the_listener_refuses_new_connections_and_serves_the_accepted() {
    if common::io_uring_refused().is_some() {
        return;
    }
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = thread::spawn(move || echo_client(addr, b"before"));
        let (stream, _) = listener.accept().await.unwrap();
        drop(listener);
        stage4_async_await::sleep(Duration::from_millis(20)).await; // the close goes out
        let refused = StdStream::connect(addr);
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
        echo(stream).await.unwrap();
        let echoed = stage4_async_await::spawn_blocking(move || client.join().unwrap());
        assert_eq!(echoed.await.unwrap(), b"before");
    });
}
