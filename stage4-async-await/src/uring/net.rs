//! Sockets on the completion driver: every method hands the kernel an operation and what
//! it works on, and gets both back when the completion arrives.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{opcode, types};
use socket2::{Domain, SockAddr, Socket, Type};

use super::op::{OnDrop, OpFuture, check, submit_op};
use super::ring::Held;
use crate::context::{try_with_current, with_current};
use crate::slab::Key;

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
    /// What dropped reads and writes left in the kernel's hands, for the next ones.
    orphans: RefCell<Orphans>,
}
// ANCHOR_END: stream

// ANCHOR: orphans
/// Operations of one stream whose futures were dropped while the kernel had them (a
/// `timeout` that gave up, a `select!` that took another branch), oldest first.
///
/// NB: on the readiness driver a dropped read loses nothing: it never read, the bytes
/// wait in the socket. Here the kernel may have read them into the dropped future's
/// buffer before the cancel lands. So the ring keeps such an operation's slot (see
/// `Ring::orphan`), and the stream's next read takes it over: the bytes come out of that
/// buffer, in order, before any new read. A dropped write is not cancelled at all, since
/// part of it may already be on the wire: the next write finishes it (a short send is
/// continued from where the kernel stopped, never repeated) before its own bytes.
#[derive(Debug, Default)]
struct Orphans {
    /// Reads, oldest first.
    reads: VecDeque<Key>,
    /// Writes, each with the offset in its buffer it was sending from.
    writes: VecDeque<(Key, usize)>,
    /// Bytes a taken-over read brought beyond what its new reader had room for.
    leftover: Vec<u8>,
}

/// An operation of `stream` that, if this future is dropped before the completion, is
/// left to the stream: queued at the front (it was taken over already, so it is the
/// oldest) or at the back (a new one).
struct Kept<'s> {
    stream: &'s TcpStream,
    op: OpFuture,
    /// `None` for a read; a write's offset.
    write_from: Option<usize>,
    front: bool,
}

impl Future for Kept<'_> {
    type Output = (i32, Held);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(i32, Held)> {
        Pin::new(&mut self.op).poll(cx)
    }
}

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        if self.op.is_done() {
            return;
        }
        // The op's own drop, just after this, tells the ring to keep the slot.
        let key = self.op.key();
        let mut orphans = self.stream.orphans.borrow_mut();
        match (self.write_from, self.front) {
            (None, true) => orphans.reads.push_front(key),
            (None, false) => orphans.reads.push_back(key),
            (Some(from), true) => orphans.writes.push_front((key, from)),
            (Some(from), false) => orphans.writes.push_back((key, from)),
        }
    }
}
// ANCHOR_END: orphans

impl TcpStream {
    /// A stream for a connection the kernel accepted (see [`super::TcpListener`]).
    pub(super) fn accepted(fd: OwnedFd, loop_id: u32) -> TcpStream {
        TcpStream {
            fd: Some(fd),
            loop_id,
            orphans: RefCell::default(),
        }
    }

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
            orphans: RefCell::default(),
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
    /// Cancel-safe: if this future is dropped (a `timeout`, a `select!`) while the kernel
    /// has the read, no byte is lost. The kernel is asked to stop, the operation's slot
    /// keeps the buffer until it does, and whatever it read by then comes out of the next
    /// `read` on this stream, before anything newer.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let mut buf = buf;
        loop {
            let spare = buf.capacity() - buf.len();
            if spare == 0 {
                return (Ok(0), buf);
            }
            // First what dropped reads brought: older bytes than any new read's.
            if let Some(read) = self.take_leftover(&mut buf) {
                return (Ok(read), buf);
            }
            // A read whose future was dropped: take it over, it is older than a new one.
            let orphan = self.orphans.borrow_mut().reads.pop_front();
            if let Some(key) = orphan {
                let op = OpFuture::adopt(key, self.loop_id, OnDrop::Keep { cancel: true });
                let (result, held) = self.keep(op, None, true).await;
                match check(result) {
                    // The cancel stopped it in time: it read nothing.
                    Err(error) if error.raw_os_error() == Some(libc::ECANCELED) => continue,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return (Err(error), buf),
                    // The end of the stream, seen by the dropped read: this read's answer.
                    Ok(0) => return (Ok(0), buf),
                    Ok(read) => {
                        // Into the leftover: the next turn of this loop takes them.
                        self.hand_over(into_buffer(held), read as usize);
                        continue;
                    }
                }
            }
            let (result, held) = match self.submit_recv(buf) {
                Ok(op) => self.keep(op, None, false).await,
                Err((error, held)) => return (Err(error), into_buffer(held)),
            };
            buf = into_buffer(held);
            match check(result) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return (Err(error), buf),
                Ok(read) => {
                    // SAFETY: the kernel wrote `read` bytes after the old length, within
                    // the capacity.
                    unsafe { buf.set_len(buf.len() + read as usize) };
                    return (Ok(read as usize), buf);
                }
            }
        }
    }
    // ANCHOR_END: read

    /// Submits a `recv` into `buf`'s spare capacity.
    fn submit_recv(&self, buf: Vec<u8>) -> Result<OpFuture, (io::Error, Held)> {
        let fd = types::Fd(self.fd());
        let len = u32::try_from(buf.capacity() - buf.len()).unwrap_or(u32::MAX);
        // SAFETY: the entry points into the spare capacity of the buffer its slot
        // holds; a `Vec`'s heap memory stays where it is when the `Vec` moves.
        unsafe {
            submit_op("uring::TcpStream::read", Held::Buffer(buf), |held| {
                let Held::Buffer(buf) = held else {
                    unreachable!()
                };
                let end = buf.as_mut_ptr().add(buf.len());
                opcode::Recv::new(fd, end, len).build()
            })
        }
    }

    /// Awaits `op`; if this future is dropped first, the operation is left to the stream.
    fn keep(&self, op: OpFuture, write_from: Option<usize>, front: bool) -> Kept<'_> {
        let cancel = write_from.is_none(); // stop a read, let a write finish
        Kept {
            stream: self,
            op: op.on_drop(OnDrop::Keep { cancel }),
            write_from,
            front,
        }
    }

    /// Moves the `read` bytes a dropped read left after `old`'s length into the
    /// leftover, where the next reads find them.
    fn hand_over(&self, mut old: Vec<u8>, read: usize) {
        let start = old.len();
        // SAFETY: the kernel wrote `read` bytes after the old length, within the capacity.
        unsafe { old.set_len(start + read) };
        self.orphans
            .borrow_mut()
            .leftover
            .extend_from_slice(&old[start..]);
    }

    /// Moves as many leftover bytes as fit into `buf`'s spare capacity; `None` if none.
    fn take_leftover(&self, buf: &mut Vec<u8>) -> Option<usize> {
        let mut orphans = self.orphans.borrow_mut();
        if orphans.leftover.is_empty() {
            return None;
        }
        let take = orphans.leftover.len().min(buf.capacity() - buf.len());
        buf.extend_from_slice(&orphans.leftover[..take]);
        orphans.leftover.drain(..take);
        Some(take)
    }

    /// Writes some of `buf[from..]`; returns how many bytes went, and the buffer. Writes
    /// whose futures were dropped go first, whole, so that bytes keep their order.
    async fn send(&self, buf: Vec<u8>, from: usize) -> (io::Result<usize>, Vec<u8>) {
        if let Err(error) = self.finish_dropped_writes().await {
            return (Err(error), buf);
        }
        self.send_once(buf, from, false).await
    }

    /// One `send` of `buf[from..]`, retried if interrupted; `front`: it continues a
    /// dropped write, and goes back to the front of the queue if dropped again.
    async fn send_once(
        &self,
        buf: Vec<u8>,
        from: usize,
        front: bool,
    ) -> (io::Result<usize>, Vec<u8>) {
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
                Ok(op) => self.keep(op, Some(from), front).await,
                Err((error, held)) => return (Err(error), into_buffer(held)),
            };
            buf = into_buffer(held);
            match check(result) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                result => return (result.map(|sent| sent as usize), buf),
            }
        }
    }

    // ANCHOR: finish_dropped_writes
    /// Finishes the writes whose futures were dropped, oldest first: waits for each
    /// (the kernel may still be sending it), then sends whatever it had not sent yet.
    async fn finish_dropped_writes(&self) -> io::Result<()> {
        loop {
            let Some((key, from)) = self.orphans.borrow_mut().writes.pop_front() else {
                return Ok(());
            };
            let keep = OnDrop::Keep { cancel: false };
            let op = OpFuture::adopt(key, self.loop_id, keep);
            let (result, held) = self.keep(op, Some(from), true).await;
            let mut buf = into_buffer(held);
            let mut sent = match check(result) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => 0,
                Err(error) => return Err(error),
                Ok(sent) => sent as usize,
            };
            // Never again what the kernel sent: from where it stopped, to the end.
            let mut at = from + sent;
            while at < buf.len() {
                let (result, back) = self.send_once(buf, at, true).await;
                buf = back;
                sent = result?;
                if sent == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                at += sent;
            }
        }
    }
    // ANCHOR_END: finish_dropped_writes

    /// Writes some of `buf`; returns how many bytes went, and the buffer.
    ///
    /// If this future is dropped while the kernel has the write, the write is not
    /// cancelled (part of it may be on the wire already): the stream's next write
    /// finishes it first, so the peer gets every byte once, in order. Dropping the
    /// stream cancels it.
    pub async fn write(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.send(buf, 0).await
    }

    /// Finishes the writes whose futures were dropped (see [`TcpStream::write`]): once it
    /// returns `Ok`, every byte written so far has been handed to the kernel. Call it
    /// before dropping a stream whose writes may have been dropped.
    pub async fn flush(&self) -> io::Result<()> {
        self.finish_dropped_writes().await
    }

    /// Writes all of `buf`, however many partial writes it takes, and gives it back.
    /// Dropped midway, the rest still goes out, as for [`TcpStream::write`].
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
        let orphans = std::mem::take(self.orphans.get_mut());
        // Closing through the ring saves a system call per connection; with no loop
        // (or no ring) here, `fd` closes the usual way as it drops.
        try_with_current(|event_loop| {
            if event_loop.id == self.loop_id
                && let Ok(ring) = event_loop.reactor().uring()
            {
                // Nobody will read or write here again: what dropped futures left in
                // the kernel's hands is cancelled, and freed once the kernel lets go.
                let writes = orphans.writes.iter().map(|&(key, _)| key);
                for key in orphans.reads.iter().copied().chain(writes) {
                    ring.abandon(key);
                }
                ring.close(fd);
            }
        });
    }
}

// ANCHOR: sleep
/// Sleeps for `duration` as an io_uring timeout: one operation per sleep, the kernel's
/// timer instead of the reactor's queue (to compare with [`crate::sleep`]).
pub async fn sleep(duration: Duration) -> io::Result<()> {
    // The kernel's seconds are signed: a longer sleep is "forever", as on the mio
    // driver, and not EINVAL (u64::MAX seconds would read as -1).
    let seconds = duration.as_secs().min(i64::MAX as u64);
    let timespec = types::Timespec::new()
        .sec(seconds)
        .nsec(duration.subsec_nanos());
    let timespec = Held::Timespec(Box::new(timespec));
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
mod tests;
