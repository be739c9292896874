//! Async TCP: [`TcpStream`] and [`TcpListener`], mio's non-blocking sockets made into
//! futures.
//!
//! Every operation follows one pattern (`Io::poll_io`): try the system call; if it
//! says `WouldBlock`, leave the task's waker with the reactor and return `Pending`; the
//! reactor calls the waker when epoll reports the socket ready, and the task tries again.
//! `Interrupted` is retried at once. Sockets are registered edge-triggered, so a
//! `WouldBlock` is what guarantees the next event: never wait without seeing one.
//!
//! A read shorter than its buffer guarantees the next event too: it emptied the socket,
//! so whatever arrives next is new, and edge-triggered epoll reports every arrival. The
//! reactor keeps what it last heard per socket and direction ("ready", or not since the
//! last `WouldBlock` or short read), and an operation on a socket not ready waits for
//! the event without asking the kernel first: one `recvfrom` per request, not two.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use shared::protocol::{DecodeError, LineDecoder};

use crate::context::{try_with_current, with_current};
use crate::slab::Key;
use crate::trace::{Direction, Waiting};

/// A mio socket registered with the current event loop.
#[derive(Debug)]
struct Io<S: mio::event::Source> {
    source: S,
    key: Key,
    /// The loop the socket is registered with: it cannot move to another one.
    loop_id: u32,
}

impl<S: mio::event::Source> Io<S> {
    fn register(mut source: S, what: &str) -> io::Result<Io<S>> {
        let (key, loop_id) = with_current(what, |event_loop| {
            let key = event_loop.reactor().register(&mut source);
            key.map(|key| (key, event_loop.id))
        })?;
        Ok(Io {
            source,
            key,
            loop_id,
        })
    }

    // ANCHOR: poll_io
    /// Runs `op` unless the socket is known not to be ready in `direction`, retrying
    /// `Interrupted`; if it says `WouldBlock` (or was not run), the task's waker waits
    /// with the reactor for `direction` (in the entry `waiter` of a future, or as a
    /// `poll_*` caller's when `waiter` is `None`). A result for which `drained` holds
    /// (a short read or write) marks the socket not ready until the next event.
    fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        waiter: Option<&mut Option<u64>>,
        mut op: impl FnMut(&S) -> io::Result<T>,
        drained: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        with_current("socket I/O", |event_loop| {
            if event_loop.id != self.loop_id {
                return Poll::Ready(Err(io::Error::other(
                    "socket used on another event loop than the one it was created on",
                )));
            }
            // A task out of budget yields before the system call (see `consume_budget`).
            ready!(event_loop.consume_budget(cx));
            if event_loop.reactor().is_ready(self.key, direction) {
                loop {
                    match op(&self.source) {
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                        Ok(value) => {
                            if drained(&value) {
                                event_loop.reactor().clear_ready(self.key, direction);
                            }
                            return Poll::Ready(Ok(value));
                        }
                        Err(error) => return Poll::Ready(Err(error)),
                    }
                }
            }
            event_loop.refund_budget(); // no progress, no cost
            let mut reactor = event_loop.reactor();
            reactor.clear_ready(self.key, direction);
            reactor.set_waker(self.key, direction, waiter, cx.waker());
            event_loop.trace_waker(Waiting::Socket(self.key, direction));
            Poll::Pending
        })
    }
    // ANCHOR_END: poll_io
}

/// Whether a read or write of `n` bytes of a `len`-byte buffer emptied the socket (or
/// filled it): fewer than asked, but not the end of the stream.
fn short(n: usize, len: usize) -> bool {
    n > 0 && n < len
}

// ANCHOR: waiter
/// One future's wait on one direction of a socket. Many may wait on the same socket at
/// once; dropping one (a `timeout` that gave up, a `select` that chose another branch)
/// takes its waker off the socket's list, so the list only holds tasks that still wait.
struct Waiter<'a, S: mio::event::Source> {
    io: &'a Io<S>,
    direction: Direction,
    /// Its entry in the reactor's list, once it has waited.
    entry: Option<u64>,
}

impl<'a, S: mio::event::Source> Waiter<'a, S> {
    fn new(io: &'a Io<S>, direction: Direction) -> Self {
        Waiter {
            io,
            direction,
            entry: None,
        }
    }

    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnMut(&S) -> io::Result<T>,
        drained: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        self.io
            .poll_io(cx, self.direction, Some(&mut self.entry), op, drained)
    }
}

impl<S: mio::event::Source> Drop for Waiter<'_, S> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry {
            try_with_current(|event_loop| {
                if event_loop.id == self.io.loop_id {
                    let mut reactor = event_loop.reactor();
                    reactor.cancel_wait(self.io.key, self.direction, entry);
                }
            });
        }
    }
}
// ANCHOR_END: waiter

impl<S: mio::event::Source> Drop for Io<S> {
    fn drop(&mut self) {
        try_with_current(|event_loop| {
            if event_loop.id == self.loop_id {
                let mut reactor = event_loop.reactor();
                reactor.deregister(self.key, &mut self.source);
            }
        });
    }
}

// ANCHOR: connected
/// Writable means the handshake ended, one way or the other (see mio's
/// `TcpStream::connect` docs): an error in `SO_ERROR`, or a peer address.
fn connected(socket: &mio::net::TcpStream) -> io::Result<()> {
    if let Some(error) = socket.take_error()? {
        return Err(error);
    }
    match socket.peer_addr() {
        Ok(_) => Ok(()),
        // Still connecting: a spurious wake-up, wait for the next event.
        Err(error) if error.kind() == io::ErrorKind::NotConnected => {
            Err(io::ErrorKind::WouldBlock.into())
        }
        Err(error) => Err(error),
    }
}
// ANCHOR_END: connected

/// A TCP connection, the article's `reader, writer` pair in one value.
#[derive(Debug)]
pub struct TcpStream {
    io: Io<mio::net::TcpStream>,
}

impl TcpStream {
    // ANCHOR: connect
    /// Connects to `addr` (the article's `asyncio.open_connection`).
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::start_connect(addr)?;
        let mut waiter = Waiter::new(&stream.io, Direction::Write);
        poll_fn(|cx| waiter.poll(cx, connected, |_| false)).await?;
        drop(waiter);
        Ok(stream)
    }

    /// Starts connecting to `addr` and returns at once, with the handshake under way:
    /// [`TcpStream::poll_connect`] says when it is over. (What `connect` does, for a
    /// future written by hand.)
    pub fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: Io::register(mio::net::TcpStream::connect(addr)?, "TcpStream::connect")?,
        })
    }

    /// `Ready(Ok(()))` once the handshake that [`TcpStream::start_connect`] began has
    /// succeeded, `Ready(Err(..))` if it failed.
    pub fn poll_connect(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io
            .poll_io(cx, Direction::Write, None, connected, |_| false)
    }
    // ANCHOR_END: connect

    /// Connects to `addr` from the local address `from` (its port chosen by the kernel):
    /// one machine can then open more connections to one server than one source
    /// address has ports (about 28,000 on Linux), from 127.0.0.2, 127.0.0.3, ...
    ///
    /// NB: on Linux, `IP_BIND_ADDRESS_NO_PORT` makes the kernel choose the port at
    /// `connect`, per destination, rather than at `bind`, where it would have to keep
    /// it unique across every destination.
    pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        shared::limits::bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(from, 0).into())?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(error) => return Err(error),
        }
        let stream = TcpStream {
            io: Io::register(
                mio::net::TcpStream::from_std(socket.into()),
                "TcpStream::connect_from",
            )?,
        };
        let mut waiter = Waiter::new(&stream.io, Direction::Write);
        poll_fn(|cx| waiter.poll(cx, connected, |_| false)).await?;
        drop(waiter);
        Ok(stream)
    }

    /// Wraps a connected std stream (it is made non-blocking).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream {
            io: Io::register(mio::net::TcpStream::from_std(stream), "TcpStream::from_std")?,
        })
    }

    /// Reads some bytes into `buf`; `Ok(0)` is end of stream. Takes `&self`: several
    /// tasks may read one stream (each read gets whatever bytes are there).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut waiter = Waiter::new(&self.io, Direction::Read);
        let len = buf.len();
        poll_fn(|cx| waiter.poll(cx, |mut socket| socket.read(buf), |&n| short(n, len))).await
    }

    /// [`TcpStream::read`] as a poll function (for `futures::io::AsyncRead`). Every task
    /// that gets `Pending` here is woken at the next event, then it must poll again.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io.poll_io(
            cx,
            Direction::Read,
            None,
            |mut socket| socket.read(buf),
            |&n| short(n, len),
        )
    }

    /// Writes some bytes of `buf`, returning how many.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut waiter = Waiter::new(&self.io, Direction::Write);
        let len = buf.len();
        poll_fn(|cx| waiter.poll(cx, |mut socket| socket.write(buf), |&n| short(n, len))).await
    }

    /// [`TcpStream::write`] as a poll function (for `futures::io::AsyncWrite`).
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io.poll_io(
            cx,
            Direction::Write,
            None,
            |mut socket| socket.write(buf),
            |&n| short(n, len),
        )
    }

    /// Writes all of `buf`, however many partial writes it takes.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                written => buf = &buf[written..],
            }
        }
        Ok(())
    }

    // ANCHOR: read_into
    /// Reads what the socket holds into `decoder`; returns how many bytes, `Ok(0)` at the
    /// end of the stream.
    ///
    /// NB: the bytes go through a buffer on the stack of the poll that reads them, not
    /// one kept in the future: readiness lends the kernel a buffer only for the length of
    /// one `read(2)`, so a future that waits needs none. A million requests waiting for
    /// their answers carry no buffer at all (a `[u8; 1024]` held across the `.await`
    /// would be a gigabyte). On io_uring, the kernel holds the buffer while it waits.
    pub async fn read_into(&self, decoder: &mut LineDecoder) -> io::Result<usize> {
        let mut waiter = Waiter::new(&self.io, Direction::Read);
        poll_fn(|cx| {
            let mut buf = [0u8; 1024];
            let len = buf.len();
            let read = waiter.poll(cx, |mut socket| socket.read(&mut buf), |&n| short(n, len));
            let read = ready!(read)?;
            decoder.push(&buf[..read]);
            Poll::Ready(Ok(read))
        })
        .await
    }
    // ANCHOR_END: read_into

    /// Reads the next protocol line through `decoder`: `Ok(None)` at a clean end of
    /// stream, `Err` on a decode error or a connection closed mid-line.
    pub async fn read_line(&self, decoder: &mut LineDecoder) -> Result<Option<String>, LineError> {
        loop {
            if let Some(line) = decoder.next_line()? {
                return Ok(Some(line));
            }
            if self.read_into(decoder).await? == 0 {
                decoder.finish()?;
                return Ok(None);
            }
        }
    }

    /// Shuts down the writing half: the peer reads end of stream.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.io.source.shutdown(std::net::Shutdown::Write)
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.source.peer_addr()
    }
}

// The futures crate's I/O traits, so its adapters (`BufReader`, `lines`, `copy`) work on
// our sockets: the same poll functions, behind its names.
impl futures::io::AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_read(&self, cx, buf)
    }
}

impl futures::io::AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_write(&self, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // no buffer of ours: every write went to the kernel
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// Why [`TcpStream::read_line`] returned no line.
#[derive(Debug)]
pub enum LineError {
    /// The socket failed.
    Io(io::Error),
    /// The bytes are not protocol lines.
    Decode(DecodeError),
}

impl From<io::Error> for LineError {
    fn from(error: io::Error) -> LineError {
        LineError::Io(error)
    }
}

impl From<DecodeError> for LineError {
    fn from(error: DecodeError) -> LineError {
        LineError::Decode(error)
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Io(error) => error.fmt(f),
            LineError::Decode(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for LineError {}

// ANCHOR: backlog
/// How many connections the kernel completes and queues for a listener before anyone
/// calls `accept`: the listen backlog, the same 4,096 as the slow server's.
///
/// NB: mio's `TcpListener::bind` (like std's) asks for 128. On one thread, a thousand
/// tasks can connect in one round of the loop before the accepting task gets its turn;
/// over the backlog, Linux drops the handshake and the client retries it a second later
/// (then two, then four). The kernel caps the value at `net.core.somaxconn` (4,096 on
/// Linux since 5.4; 128 by default on macOS, `kern.ipc.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;
// ANCHOR_END: backlog

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpListener {
    io: Io<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (port 0 picks a free port), with a listen backlog of
    /// [`LISTEN_BACKLOG`] connections. Call it inside `block_on`.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // As mio's `bind` does: a restarted server gets its port back at once.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        socket.set_nonblocking(true)?;
        let listener = mio::net::TcpListener::from_std(socket.into());
        Ok(TcpListener {
            io: Io::register(listener, "TcpListener::bind")?,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source.local_addr()
    }

    /// Waits for the next connection. Several tasks may accept on one listener at once:
    /// each new connection wakes them all, and each tries to take one.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let mut waiter = Waiter::new(&self.io, Direction::Read);
        // An accept never says "drained": more connections may wait behind this one.
        let accept = |listener: &mio::net::TcpListener| listener.accept();
        let (stream, peer) = poll_fn(|cx| waiter.poll(cx, accept, |_| false)).await?;
        Ok((
            TcpStream {
                io: Io::register(stream, "TcpListener::accept")?,
            },
            peer,
        ))
    }
}

#[cfg(test)]
mod tests;
