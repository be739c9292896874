//! Sockets on the completion driver: every method hands the kernel an operation and what
//! it works on, and gets both back when the completion arrives.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, types};
use socket2::{Domain, SockAddr, Socket, Type};

use super::op::{check, submit_op};
use super::ring::Held;
use crate::context::{try_with_current, with_current};

// ANCHOR: stream
/// A TCP connection whose reads and writes are io_uring operations.
///
/// Compare with [`crate::net::TcpStream`]: there `read(&self, buf: &mut [u8])` lends the
/// kernel a buffer for the length of one system call, made by the future itself once
/// epoll said the socket is readable. Here the kernel does the read whenever data comes,
/// long after `read` was called, into memory the future cannot promise to keep: a future
/// may be dropped at any `.await`. So the buffer moves in, and comes back with the result.
#[derive(Debug)]
pub struct TcpStream {
    /// `None` once dropped: the ring closes it.
    fd: Option<OwnedFd>,
    loop_id: u32,
}
// ANCHOR_END: stream

impl TcpStream {
    fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    // ANCHOR: connect
    /// Connects to `addr`: a `connect` operation, with the address held by its slot.
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        // NB: a blocking socket, unlike mio's: io_uring waits for the socket itself (and
        // gives an O_NONBLOCK socket's EAGAIN back to us instead of waiting).
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        let stream = TcpStream {
            fd: Some(socket.into()),
            loop_id: with_current("uring::TcpStream::connect", |event_loop| event_loop.id),
        };
        let fd = types::Fd(stream.fd());
        let address = Held::Address(Box::new(SockAddr::from(addr)));
        // SAFETY: the entry points into the address its slot holds.
        let op = unsafe {
            submit_op("uring::TcpStream::connect", address, |held| {
                let Held::Address(address) = held else {
                    unreachable!()
                };
                opcode::Connect::new(fd, address.as_ptr().cast(), address.len()).build()
            })
        };
        let (result, _address) = op.map_err(|(error, _)| error)?.await;
        check(result)?;
        Ok(stream)
    }
    // ANCHOR_END: connect

    // ANCHOR: read
    /// Reads into `buf`'s spare capacity (`buf.len()..buf.capacity()`) and returns the
    /// byte count with the buffer, its length grown by that count. `Ok(0)` is the end of
    /// the stream, or a buffer without spare capacity (as std's `read` of an empty slice).
    ///
    /// If this future is dropped before the completion, the buffer is not freed with it:
    /// the operation's slot keeps it until the kernel is done (a cancel is submitted, so
    /// that is soon).
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let mut buf = buf;
        loop {
            let spare = buf.capacity() - buf.len();
            if spare == 0 {
                return (Ok(0), buf);
            }
            let fd = types::Fd(self.fd());
            let len = u32::try_from(spare).unwrap_or(u32::MAX);
            // SAFETY: the entry points into the spare capacity of the buffer its slot
            // holds; a `Vec`'s heap memory stays where it is when the `Vec` moves.
            let op = unsafe {
                submit_op("uring::TcpStream::read", Held::Buffer(buf), |held| {
                    let Held::Buffer(buf) = held else {
                        unreachable!()
                    };
                    let end = buf.as_mut_ptr().add(buf.len());
                    opcode::Recv::new(fd, end, len).build()
                })
            };
            let (result, held) = match op {
                Ok(op) => op.await,
                Err((error, held)) => return (Err(error), into_buffer(held)),
            };
            buf = into_buffer(held);
            match check(result) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return (Err(error), buf),
                Ok(read) => {
                    let read = read as usize;
                    // SAFETY: the kernel wrote `read` bytes after the old length, within
                    // the capacity.
                    unsafe { buf.set_len(buf.len() + read) };
                    return (Ok(read), buf);
                }
            }
        }
    }
    // ANCHOR_END: read

    /// Writes some of `buf[from..]`; returns how many bytes went, and the buffer.
    async fn send(&self, buf: Vec<u8>, from: usize) -> (io::Result<usize>, Vec<u8>) {
        let mut buf = buf;
        loop {
            let fd = types::Fd(self.fd());
            let len = u32::try_from(buf.len() - from).unwrap_or(u32::MAX);
            // SAFETY: the entry points into the buffer its slot holds.
            let op = unsafe {
                submit_op("uring::TcpStream::write", Held::Buffer(buf), |held| {
                    let Held::Buffer(buf) = held else {
                        unreachable!()
                    };
                    opcode::Send::new(fd, buf.as_ptr().add(from), len).build()
                })
            };
            let (result, held) = match op {
                Ok(op) => op.await,
                Err((error, held)) => return (Err(error), into_buffer(held)),
            };
            buf = into_buffer(held);
            match check(result) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                result => return (result.map(|sent| sent as usize), buf),
            }
        }
    }

    /// Writes some of `buf`; returns how many bytes went, and the buffer.
    pub async fn write(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.send(buf, 0).await
    }

    /// Writes all of `buf`, however many partial writes it takes, and gives it back.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (mut buf, mut written) = (buf, 0);
        while written < buf.len() {
            let (result, back) = self.send(buf, written).await;
            buf = back;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(sent) => written += sent,
                Err(error) => return (Err(error), buf),
            }
        }
        (Ok(()), buf)
    }
}

fn into_buffer(held: Held) -> Vec<u8> {
    match held {
        Held::Buffer(buf) => buf,
        _ => unreachable!("a read or a write holds its buffer"),
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else {
            return;
        };
        // Closing through the ring saves a system call per connection; with no loop
        // (or no ring) here, `fd` closes the usual way as it drops.
        try_with_current(|event_loop| {
            if event_loop.id == self.loop_id
                && let Ok(ring) = event_loop.reactor().uring()
            {
                ring.close(fd);
            }
        });
    }
}

// ANCHOR: sleep
/// Sleeps for `duration` as an io_uring timeout: one operation per sleep, the kernel's
/// timer instead of the reactor's queue (to compare with [`crate::sleep`]).
pub async fn sleep(duration: Duration) -> io::Result<()> {
    let timespec = Held::Timespec(Box::new(types::Timespec::from(duration)));
    // SAFETY: the entry points into the timespec its slot holds.
    let op = unsafe {
        submit_op("uring::sleep", timespec, |held| {
            let Held::Timespec(timespec) = held else {
                unreachable!()
            };
            opcode::Timeout::new(&**timespec).build()
        })
    };
    let (result, _timespec) = op.map_err(|(error, _)| error)?.await;
    match check(result) {
        // A timeout that expires completes with ETIME: that is its success.
        Err(error) if error.raw_os_error() == Some(libc::ETIME) => Ok(()),
        other => other.map(drop),
    }
}
// ANCHOR_END: sleep

#[cfg(test)]
mod tests {
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
            ring(|ring| {
                assert_eq!(ring.in_flight(), 1, "the slot outlives the future");
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
    fn without_a_cancel_the_kernel_fills_a_buffer_nobody_awaits() {
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
            // Data comes after the future is gone: the kernel writes it into the buffer
            // the slot kept. Freed with the future, that write would hit freed memory.
            peer.write_all(b"hello").unwrap();
            until("the abandoned read completes", || {
                ring(|ring| ring.in_flight() == 0)
            })
            .await;
            ring(|ring| {
                let [(5, Held::Buffer(buf))] = &ring.released[..] else {
                    panic!("one 5-byte read released: {:?}", ring.released);
                };
                // SAFETY: the kernel initialised the 5 bytes it reported, at the start
                // of the spare capacity (the length was 0).
                let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr(), 5) };
                assert_eq!(bytes, b"hello");
            });
            // And those bytes are gone from the stream: a later read gets what follows.
            // (A readiness read, dropped, loses nothing: the bytes stay in the socket.)
            peer.write_all(b"world").unwrap();
            let (read, buf) = ours.read(Vec::with_capacity(64)).await;
            assert_eq!((read.unwrap(), &buf[..]), (5, &b"world"[..]));
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
}
