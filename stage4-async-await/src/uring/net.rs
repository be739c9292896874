//! Sockets on the completion driver: every method hands the kernel an operation and what
//! it works on, and gets both back when the completion arrives.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, types};
use socket2::{Domain, SockAddr, Socket, Type};

use super::ring::{Held, check, submit};
use crate::executor::{try_with_current, with_current};

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
            submit("uring::TcpStream::connect", address, |held| {
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
                submit("uring::TcpStream::read", Held::Buffer(buf), |held| {
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
                submit("uring::TcpStream::write", Held::Buffer(buf), |held| {
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
                && let Ok(ring) = event_loop.reactor.borrow_mut().uring()
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
        submit("uring::sleep", timespec, |held| {
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
