//! No byte lost when a read or a write is cancelled: a task that wraps every read in a
//! short `timeout` (the future is dropped thousands of times, sometimes just as the
//! kernel completes it) still gets every byte the peer sent, in order, on both drivers;
//! and on io_uring, writes dropped midway still reach the peer, each byte once, in order.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use stage4_async_await::{block_on, timeout};

#[cfg(target_os = "linux")]
mod common;

/// How many bytes the peer sends, one at a time, and how many timed-out reads the
/// reader must live through at least.
const BYTES: usize = 4_000;
const CANCELLATIONS: u64 = 10_000;

/// A peer that sends byte `i % 251` for i in 0..BYTES, one at a time, about every
/// 100 µs, then sets `sent` and holds the connection open until the reader hangs up.
fn numbered_bytes_peer() -> (SocketAddr, Arc<AtomicBool>, thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicBool::new(false));
    let sent_all = Arc::clone(&sent);
    let peer = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        for i in 0..BYTES {
            stream.write_all(&[(i % 251) as u8]).unwrap();
            thread::sleep(Duration::from_micros(100));
        }
        sent_all.store(true, Ordering::Release);
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest); // until the reader closes
    });
    (addr, sent, peer)
}

/// Whether the reader should stop: it lived through enough cancellations, and it has
/// every byte, or the peer sent everything and 100 ms of reads in a row brought nothing
/// (bytes were lost: `check` says where).
fn done(got: usize, cancellations: u64, sent: &AtomicBool, idle: u64) -> bool {
    let quiet = sent.load(Ordering::Acquire) && idle * TIMEOUT.as_micros() as u64 > 100_000;
    cancellations >= CANCELLATIONS && (got >= BYTES || quiet)
}

/// What a reader got, and how often its read was dropped by the timeout.
fn check(got: &[u8], cancellations: u64) {
    assert_eq!(got.len(), BYTES, "bytes lost or made up");
    let first_gap = got
        .iter()
        .enumerate()
        .position(|(i, &byte)| byte != (i % 251) as u8);
    assert_eq!(
        first_gap, None,
        "the bytes arrived out of order or with a gap"
    );
    assert!(
        cancellations >= CANCELLATIONS,
        "only {cancellations} reads were cancelled"
    );
}

const TIMEOUT: Duration = Duration::from_micros(50);

#[test]
fn timed_out_reads_lose_no_byte_on_the_readiness_driver() {
    use stage4_async_await::net::TcpStream;
    let (addr, sent, peer) = numbered_bytes_peer();
    let (got, cancellations) = block_on(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut got, mut cancellations, mut idle) = (Vec::new(), 0, 0);
        while !done(got.len(), cancellations, &sent, idle) {
            let mut buf = [0; 4096];
            match timeout(TIMEOUT, stream.read(&mut buf)).await {
                Ok(read) => {
                    got.extend_from_slice(&buf[..read.unwrap()]);
                    idle = 0;
                }
                Err(_elapsed) => {
                    cancellations += 1;
                    idle += 1;
                }
            }
        }
        (got, cancellations)
    });
    peer.join().unwrap();
    check(&got, cancellations);
}

#[cfg(target_os = "linux")]
#[test]
fn timed_out_reads_lose_no_byte_on_io_uring() {
    use stage4_async_await::uring::TcpStream;
    if common::io_uring_refused().is_some() {
        return;
    }
    let (addr, sent, peer) = numbered_bytes_peer();
    let (got, cancellations) = block_on(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut got, mut cancellations, mut idle) = (Vec::new(), 0, 0);
        while !done(got.len(), cancellations, &sent, idle) {
            match timeout(TIMEOUT, stream.read(Vec::with_capacity(4096))).await {
                Ok((read, buf)) => {
                    read.unwrap();
                    got.extend_from_slice(&buf);
                    idle = 0;
                }
                Err(_elapsed) => {
                    cancellations += 1;
                    idle += 1;
                }
            }
        }
        (got, cancellations)
    });
    peer.join().unwrap();
    check(&got, cancellations);
}

/// Chunks of 64 KiB, each filled with its own number: the peer can tell a chunk sent
/// twice, torn, or out of order.
#[cfg(target_os = "linux")]
const CHUNK: usize = 64 * 1024;

#[cfg(target_os = "linux")]
#[test]
fn writes_dropped_midway_on_io_uring_still_reach_the_peer_once_and_in_order() {
    use stage4_async_await::uring::TcpStream;
    if common::io_uring_refused().is_some() {
        return;
    }
    const CHUNKS: usize = 64;
    // A small receive buffer (inherited by the accepted socket) and a slow reader: the
    // writes wait in the kernel, and the timeouts below drop some of them midway.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.set_recv_buffer_size(16 * 1024).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(16).unwrap();
    let listener = std::net::TcpListener::from(listener);
    let addr = listener.local_addr().unwrap();
    // A slow reader: the socket buffers fill, and writes wait in the kernel.
    let peer = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 16 * 1024];
        loop {
            match stream.read(&mut buf).unwrap() {
                0 => return got,
                read => got.extend_from_slice(&buf[..read]),
            }
            thread::sleep(Duration::from_micros(500));
        }
    });
    let outcomes = block_on(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut outcomes = Vec::new();
        for i in 0..CHUNKS {
            // Give up waiting after 1 ms and go on with the next chunk.
            let write = stream.write_all(vec![i as u8; CHUNK]);
            match timeout(Duration::from_millis(1), write).await {
                Ok((written, _buf)) => {
                    written.unwrap();
                    outcomes.push(true);
                }
                Err(_elapsed) => outcomes.push(false),
            }
        }
        stream.flush().await.unwrap();
        outcomes
    });
    let got = peer.join().unwrap();
    // Whole chunks only, in order, none twice: a write dropped midway was finished by
    // the stream (a dropped write that never reached the kernel sent nothing at all).
    assert_eq!(got.len() % CHUNK, 0, "a chunk was torn");
    let chunks: Vec<u8> = got.chunks(CHUNK).map(|chunk| chunk[0]).collect();
    for (chunk, bytes) in chunks.iter().zip(got.chunks(CHUNK)) {
        assert!(
            bytes.iter().all(|b| b == chunk),
            "chunk {chunk} mixed with another"
        );
    }
    assert!(
        chunks.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice: {chunks:?}"
    );
    for (i, &completed) in outcomes.iter().enumerate() {
        if completed {
            assert!(
                chunks.contains(&(i as u8)),
                "chunk {i} was written, not received"
            );
        }
    }
    let dropped: Vec<u8> = (0..CHUNKS as u8)
        .filter(|&i| !outcomes[i as usize])
        .collect();
    assert!(
        !dropped.is_empty(),
        "no write was dropped: the test proved nothing"
    );
    assert!(
        dropped.iter().any(|i| chunks.contains(i)),
        "no dropped write was finished: {dropped:?} dropped, {chunks:?} received"
    );
}

/// A far deadline means "never", on io_uring as on the timer queue: a sleep of
/// `Duration::MAX`, `u64::MAX` seconds or just past `i64::MAX` seconds does not fail at
/// once (the kernel's seconds are signed) and does not fire; the near sleep beside it does.
#[cfg(target_os = "linux")]
#[test]
fn a_far_io_uring_sleep_means_never() {
    use stage4_async_await::uring;
    if common::io_uring_refused().is_some() {
        return;
    }
    let far = [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(i64::MAX as u64 + 1),
        Duration::from_secs(i64::MAX as u64),
    ];
    block_on(async move {
        for duration in far {
            let slept = timeout(Duration::from_millis(20), uring::sleep(duration)).await;
            assert!(slept.is_err(), "a sleep of {duration:?} ended: {slept:?}");
            let slept = stage4_async_await::sleep(duration);
            assert!(timeout(Duration::from_millis(5), slept).await.is_err());
        }
        // And a near one still completes.
        uring::sleep(Duration::from_millis(1)).await.unwrap();
    });
}
