//! The readiness sockets' own tests: waiters taken off by dropped futures, the listen
//! backlog, a task that polls again and again.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use super::*;
use crate::{block_on, join_all, spawn, timeout, yield_now};

fn waiting<S: mio::event::Source>(io: &Io<S>, direction: Direction) -> (usize, usize) {
    with_current("test", |event_loop| {
        event_loop.reactor().waiting(io.key, direction)
    })
}

#[test]
fn dropped_futures_take_their_wakers_off_the_socket() {
    block_on(async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        // A hundred tasks give up accepting: nothing of them may stay on the listener.
        let quitters = (0..100).map(|_| {
            let listener = Rc::clone(&listener);
            spawn(async move {
                let accept = timeout(Duration::from_millis(5), listener.accept()).await;
                assert!(accept.is_err());
            })
        });
        let waiting_at_once = {
            let quitters: Vec<_> = quitters.collect();
            yield_now().await;
            let at_once = waiting(&listener.io, Direction::Read);
            for result in join_all(quitters).await {
                result.unwrap();
            }
            at_once
        };
        assert_eq!(waiting_at_once, (100, 0));
        assert_eq!(waiting(&listener.io, Direction::Read), (0, 0));
    });
}

/// More connects than mio's backlog of 128 complete while the loop accepts none: the
/// kernel queues them all, because `bind` asked for [`LISTEN_BACKLOG`]. With a
/// backlog of 128, the 130th connect finds the queue full, its SYN is dropped and
/// retried, and it times out (nobody accepts while this test blocks the loop).
#[cfg(target_os = "linux")]
#[test]
fn connects_beyond_128_complete_into_the_backlog_before_any_accept() {
    use std::collections::HashSet;
    // The kernel caps every backlog at net.core.somaxconn (4,096 since Linux 5.4).
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let clients = 1000.min(somaxconn);
    assert!(
        clients > 200,
        "net.core.somaxconn is {somaxconn} here: it caps every listen backlog below \
         what this test needs (raise it with `sysctl net.core.somaxconn=4096`)"
    );
    shared::limits::check_connections(2 * clients as u64).expect("enough descriptors");
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Blocking connects from the loop's own thread: no accept can run meanwhile.
        let connected: HashSet<SocketAddr> = (0..clients)
            .map(|i| {
                let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .unwrap_or_else(|e| {
                        panic!("connect {} of {clients} found no room: {e}", i + 1)
                    });
                stream.local_addr().unwrap()
            })
            .collect();
        // Now the loop accepts: every one of them is waiting in the queue.
        let mut accepted = HashSet::new();
        for _ in 0..clients {
            let (_stream, peer) = timeout(Duration::from_secs(10), listener.accept())
                .await
                .expect("a queued connection to accept")
                .unwrap();
            accepted.insert(peer);
        }
        assert_eq!(accepted, connected);
    });
}

#[test]
fn a_task_polling_again_and_again_waits_once() {
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut polls = 0;
        let mut buf = [0u8; 8];
        // The same task, a thousand spurious polls: one entry each way, not a thousand.
        poll_fn(|cx| {
            for _ in 0..1000 {
                assert!(client.poll_read(cx, &mut buf).is_pending());
            }
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        assert_eq!(waiting(&client.io, Direction::Read), (0, 1));
        let mut read = std::pin::pin!(client.read(&mut buf));
        poll_fn(|cx| {
            for _ in 0..1000 {
                assert!(read.as_mut().poll(cx).is_pending());
            }
            Poll::Ready(())
        })
        .await;
        assert_eq!(waiting(&client.io, Direction::Read), (1, 1));
    });
}
