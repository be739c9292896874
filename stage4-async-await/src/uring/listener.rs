//! A listening socket on the completion driver: the kernel accepts for us.
//!
//! Where the kernel has it (Linux 5.19 and later), one *multishot* accept serves every
//! connection: submitted once, it completes once per new connection, each completion
//! carrying the new socket's fd, until it ends (an error, a cancel). The connections wait
//! in the operation's slot until `accept` takes them, so a dropped `accept` loses none.
//! On an older kernel, each `accept` submits one single accept.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::task::ready;

use io_uring::{opcode, types};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::TcpStream;
use super::op::{OnDrop, OpFuture, check, submit_op};
use super::ring::Held;
use crate::context::{try_with_current, with_current};
use crate::slab::Key;
use crate::trace::Waiting;

// ANCHOR: listener
/// A listening TCP socket whose connections io_uring accepts.
#[derive(Debug)]
pub struct TcpListener {
    /// `None` once dropped: the ring closes it.
    fd: Option<OwnedFd>,
    loop_id: u32,
    /// The armed multishot accept, or a single accept an `accept` future left when it
    /// was dropped (the next `accept` takes it over).
    pending: Cell<Option<Key>>,
}
// ANCHOR_END: listener

impl TcpListener {
    /// Binds to `addr` (port 0 picks a free port) with the same listen backlog as the
    /// readiness driver's ([`crate::net::LISTEN_BACKLOG`]). Call it inside `block_on`.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let loop_id = with_current("uring::TcpListener::bind", |event_loop| {
            event_loop.reactor().uring().map(|_| event_loop.id)
        })?;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // As mio's and std's `bind` do: a restarted server gets its port back at once.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(crate::net::LISTEN_BACKLOG)?;
        Ok(TcpListener {
            fd: Some(socket.into()),
            loop_id,
            pending: Cell::new(None),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let fd = self.fd.as_ref().expect("open until dropped");
        SockRef::from(fd)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("a TCP listener without an IP address"))
    }

    fn raw_fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    // ANCHOR: accept
    /// Waits for the next connection. Cancel-safe: a connection the kernel accepted for
    /// an `accept` that was dropped goes to the next one.
    ///
    /// At the descriptor limit it returns the error (`EMFILE`: "Too many open files")
    /// and the listener stays usable: the connection waits in the listen queue until a
    /// descriptor is free. Back off before calling it again, as with `accept(2)`.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let result = if self.multishot() {
                self.next_multishot().await
            } else {
                self.next_single().await
            };
            let fd = match result {
                // The multishot accept ended, or was paused because nobody took its
                // connections as fast as they came: arm a new one.
                None => continue,
                Some(result) if result == -libc::ECANCELED => continue,
                Some(result) => match check(result) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                    Ok(fd) => fd,
                },
            };
            // SAFETY: the kernel created this fd for us: nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let peer = SockRef::from(&fd).peer_addr()?.as_socket();
            let peer = peer.ok_or_else(|| io::Error::other("a peer without an address"))?;
            return Ok((TcpStream::accepted(fd, self.loop_id), peer));
        }
    }
    // ANCHOR_END: accept

    fn multishot(&self) -> bool {
        with_current("uring::TcpListener::accept", |event_loop| {
            event_loop
                .reactor()
                .uring()
                .is_ok_and(|ring| ring.multishot_accept)
        })
    }

    /// The next result of the multishot accept, armed if it is not: `Some(fd)` or
    /// `Some(-errno)`; `None` if it ended.
    async fn next_multishot(&self) -> Option<i32> {
        let key = match self.pending.get() {
            Some(key) => key,
            None => {
                let fd = self.raw_fd();
                let key = with_current("uring::TcpListener::accept", |event_loop| {
                    let mut reactor = event_loop.reactor();
                    reactor.uring().map(|ring| ring.start_accepting(fd))
                });
                let key = match key {
                    Ok(key) => key,
                    Err(error) => return Some(-error.raw_os_error().unwrap_or(libc::EIO)),
                };
                self.pending.set(Some(key));
                key
            }
        };
        let next = poll_fn(|cx| {
            with_current("uring::TcpListener::accept", |event_loop| {
                ready!(event_loop.consume_budget(cx));
                let mut reactor = event_loop.reactor();
                let ring = reactor.uring().expect("the ring that took the accept");
                let poll = ring.poll_accept(key, cx.waker());
                if poll.is_pending() {
                    event_loop.refund_budget(); // no progress, no cost
                    event_loop.trace_waker(Waiting::Operation(key));
                }
                poll
            })
        })
        .await;
        if next.is_none() {
            self.pending.set(None); // the slot is gone: arm a new one next time
        }
        next
    }

    /// One single accept (a kernel without multishot accept), taking over the one a
    /// dropped `accept` left, if any.
    async fn next_single(&self) -> Option<i32> {
        let op = match self.pending.take() {
            Some(key) => OpFuture::adopt(key, self.loop_id, OnDrop::Keep { cancel: false }),
            None => {
                let fd = types::Fd(self.raw_fd());
                // SAFETY: the entry points at no memory (no address asked for).
                let op = unsafe {
                    submit_op("uring::TcpListener::accept", Held::Nothing, |_| {
                        opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                            .flags(libc::SOCK_CLOEXEC)
                            .build()
                    })
                };
                match op {
                    Ok(op) => op.on_drop(OnDrop::Keep { cancel: false }),
                    Err((error, _)) => return Some(-error.raw_os_error().unwrap_or(libc::EIO)),
                }
            }
        };
        // Dropped before the completion: the next `accept` takes the operation over.
        let key = op.key();
        let guard = KeepPending(&self.pending, key);
        let (result, _nothing) = op.await;
        std::mem::forget(guard);
        Some(result)
    }
}

/// Leaves a single accept in flight to the listener if the future awaiting it is
/// dropped (forgotten once it completes).
struct KeepPending<'a>(&'a Cell<Option<Key>>, Key);

impl Drop for KeepPending<'_> {
    fn drop(&mut self) {
        self.0.set(Some(self.1));
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else {
            return;
        };
        let pending = self.pending.take();
        // Closing through the ring, after the accept in flight is cancelled (connections
        // it accepted for nobody are closed); with no loop here, `fd` closes as it drops.
        try_with_current(|event_loop| {
            if event_loop.id == self.loop_id
                && let Ok(ring) = event_loop.reactor().uring()
            {
                if let Some(key) = pending {
                    ring.abandon(key);
                }
                ring.close(fd);
            }
        });
    }
}
