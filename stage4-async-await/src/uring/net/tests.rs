//! The io_uring streams' own tests: buffers the kernel holds, dropped reads, a full
//! submission queue, a loop that ends with operations in flight.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::*;
use crate::uring::ring::Ring;
use crate::{block_on, spawn, yield_now};

/// Where io_uring is refused (and not on CI, which must run these), skip, saying why.
fn refused() -> bool {
    let Err(error) = block_on(async { crate::uring::check() }) else {
        return false;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run these: {error}"
    );
    eprintln!("skipped: io_uring is refused here: {error}");
    true
}

/// Runs `f` on the current loop's ring.
fn ring<R>(f: impl FnOnce(&mut Ring) -> R) -> R {
    with_current("test", |event_loop| {
        f(event_loop.reactor().uring().expect("io_uring"))
    })
}

/// Yields until `done` holds; a broken driver fails here instead of hanging.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        crate::sleep(Duration::from_millis(1)).await;
    }
}

/// A connected pair: ours on the ring, the peer a std socket.
async fn pair() -> (TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    (ours, peer)
}

/// Polls `future` once: it must be Pending (its operation is in the kernel).
async fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) {
    let mut future = Some(future);
    std::future::poll_fn(|cx| {
        let pending = future.take().unwrap().poll(cx).is_pending();
        assert!(pending, "nothing to read yet");
        Poll::Ready(())
    })
    .await;
}

#[test]
fn read_appends_to_the_spare_capacity_and_write_all_sends_everything() {
    if refused() {
        return;
    }
    block_on(async {
        let (ours, mut peer) = pair().await;
        // Far more than a socket buffer: write_all must go through partial sends.
        let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let expected = big.clone();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; expected.len()];
            peer.read_exact(&mut got).unwrap();
            assert!(got == expected, "the bytes arrived in order");
            peer.write_all(b"world").unwrap();
            peer
        });
        let (sent, big) = ours.write_all(big).await;
        sent.unwrap();
        assert_eq!(big.len(), 4 << 20, "the buffer comes back whole");
        let mut buf = Vec::with_capacity(16);
        buf.extend_from_slice(b"hello ");
        let mut read = 0;
        while buf.len() < 11 {
            let (result, back) = ours.read(buf).await;
            buf = back;
            read += result.unwrap();
        }
        assert_eq!((read, &buf[..]), (5, &b"hello world"[..]));
        drop(reader.join().unwrap());
        let (result, buf) = ours.read(Vec::with_capacity(8)).await;
        assert_eq!((result.unwrap(), buf.len()), (0, 0), "end of stream");
    });
}

// ANCHOR: dropped_read
#[test]
fn a_dropped_read_keeps_its_buffer_until_the_kernel_lets_go() {
    if refused() {
        return;
    }
    block_on(async {
        let (ours, _peer) = pair().await;
        let buf = Vec::with_capacity(64);
        let heap = buf.as_ptr();
        {
            let read = pin!(ours.read(buf));
            poll_once(read).await;
            // The read is submitted; dropping its future here must not free the buffer.
        }
        // Nor may dropping the stream: the kernel has not let go yet.
        drop(ours);
        ring(|ring| {
            assert_eq!(
                ring.in_flight(),
                1,
                "the slot outlives the future and the stream"
            );
            assert!(ring.released.is_empty(), "no completion yet");
        });
        // The cancel goes with the next submission; its completion frees the slot.
        until("the cancelled read completes", || {
            ring(|ring| ring.in_flight() == 0)
        })
        .await;
        ring(|ring| {
            let [(result, Held::Buffer(buf))] = &ring.released[..] else {
                panic!("one buffer released: {:?}", ring.released);
            };
            assert_eq!(*result, -libc::ECANCELED);
            assert_eq!(buf.as_ptr(), heap, "the very buffer the kernel had");
        });
    });
}

#[test]
fn bytes_a_dropped_read_took_come_out_of_the_next_read() {
    if refused() {
        return;
    }
    block_on(async {
        let (ours, mut peer) = pair().await;
        // No cancel: the kernel is sure to finish the read nobody awaits any more.
        ring(|ring| ring.cancel_on_drop = false);
        {
            let read = pin!(ours.read(Vec::with_capacity(64)));
            poll_once(read).await;
        }
        // Data comes after the future is gone: the kernel writes it into the buffer
        // the slot kept. Freed with the future, that write would hit freed memory;
        // freed with its completion, those bytes would be lost.
        peer.write_all(b"hello").unwrap();
        let key = ours.orphans.borrow().reads[0];
        until("the dropped read completes", || {
            ring(|ring| ring.is_done(key))
        })
        .await;
        peer.write_all(b"world").unwrap();
        // The next read takes the dropped one over: its bytes first, in order.
        let (read, buf) = ours.read(Vec::with_capacity(64)).await;
        assert_eq!((read.unwrap(), &buf[..]), (5, &b"hello"[..]));
        let (read, buf) = ours.read(Vec::with_capacity(64)).await;
        assert_eq!((read.unwrap(), &buf[..]), (5, &b"world"[..]));
        ring(|ring| assert_eq!(ring.in_flight(), 0, "the taken-over slot is freed"));
    });
}

#[test]
fn a_taken_over_read_bigger_than_the_new_buffer_is_handed_out_in_pieces() {
    if refused() {
        return;
    }
    block_on(async {
        let (ours, mut peer) = pair().await;
        ring(|ring| ring.cancel_on_drop = false);
        {
            let read = pin!(ours.read(Vec::with_capacity(64)));
            poll_once(read).await;
        }
        peer.write_all(b"0123456789").unwrap();
        let key = ours.orphans.borrow().reads[0];
        until("the dropped read completes", || {
            ring(|ring| ring.is_done(key))
        })
        .await;
        let mut got = Vec::new();
        while got.len() < 10 {
            let (read, buf) = ours.read(Vec::with_capacity(4)).await;
            assert!(read.unwrap() <= 4);
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, b"0123456789");
    });
}
// ANCHOR_END: dropped_read

#[test]
fn more_operations_than_the_submission_queue_holds_all_complete() {
    if refused() {
        return;
    }
    block_on(async {
        // 20,000 timeouts queued in one poll: the submission queue takes 1,024, the
        // backlog the rest, for the reactor's turn to submit.
        let sleeps = (0..20_000).map(|_| sleep(Duration::from_millis(1)));
        let all = crate::join_all(sleeps.collect::<Vec<_>>());
        let results = crate::timeout(Duration::from_secs(10), all)
            .await
            .expect("every operation submitted and completed");
        assert_eq!(results.len(), 20_000);
        for result in results {
            result.expect("every timeout completes");
        }
        ring(|ring| assert_eq!(ring.in_flight(), 0));
    });
}

#[test]
fn a_loop_that_ends_with_reads_in_flight_cancels_them_and_returns() {
    if refused() {
        return;
    }
    for cancel_on_drop in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peers = std::thread::spawn(move || {
            (0..10)
                .map(|_| listener.accept().unwrap().0)
                .collect::<Vec<_>>()
        });
        block_on(async move {
            ring(|ring| ring.cancel_on_drop = cancel_on_drop);
            for _ in 0..10 {
                // Tasks that read forever: the loop ends with their reads in flight.
                drop(spawn(async move {
                    let stream = TcpStream::connect(addr).await.unwrap();
                    let _ = stream.read(Vec::with_capacity(64)).await;
                    unreachable!("nobody writes");
                }));
            }
            until("every read is in flight", || {
                ring(|ring| ring.in_flight() == 10)
            })
            .await;
            yield_now().await;
        });
        // Dropping the ring waited for the ten completions (its own cancels).
        drop(peers.join().unwrap());
    }
}

#[test]
fn a_kernel_without_multishot_accept_gets_one_accept_per_connection() {
    if refused() {
        return;
    }
    block_on(async {
        // As on Linux before 5.19: each `accept` submits one single accept.
        ring(|ring| ring.multishot_accept = false);
        let listener = crate::uring::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = std::thread::spawn(move || {
            (0..20)
                .map(|i| {
                    std::thread::sleep(Duration::from_micros(500));
                    let mut stream = std::net::TcpStream::connect(addr).unwrap();
                    stream.write_all(&[i]).unwrap();
                    stream
                })
                .collect::<Vec<_>>()
        });
        let mut got = Vec::new();
        while got.len() < 20 {
            // Dropped accepts too: the single accept in flight goes to the next one.
            let Ok(accepted) = crate::timeout(Duration::from_micros(200), listener.accept()).await
            else {
                continue;
            };
            let (stream, _) = accepted.unwrap();
            let (read, buf) = stream.read(Vec::with_capacity(1)).await;
            assert_eq!(read.unwrap(), 1);
            got.push(buf[0]);
        }
        got.sort();
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
        drop(clients.join().unwrap());
    });
}
