//! Async TCP: [`TcpStream`] and [`TcpListener`], mio's non-blocking sockets made into
//! futures.
//!
//! Every operation follows one pattern (`Io::poll_io`): try the system call; if it
//! says `WouldBlock`, leave the task's waker with the reactor and return `Pending`; the
//! reactor calls the waker when epoll reports the socket ready, and the task tries again.
//! `Interrupted` is retried at once. Sockets are registered edge-triggered, so a
//! `WouldBlock` is what guarantees the next event: never wait without seeing one.

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
    /// Runs `op` until it does not say `WouldBlock`; if it does, the task's waker waits
    /// with the reactor for `direction` (in the entry `waiter` of a future, or as a
    /// `poll_*` caller's when `waiter` is `None`).
    fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        mut waiter: Option<&mut Option<u64>>,
        mut op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        // A task out of budget yields before the system call (see `consume_budget`).
        ready!(with_current("socket I/O", |event_loop| event_loop.consume_budget(cx)));
        loop {
            match op(&self.source) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let registered = with_current("socket I/O", |event_loop| {
                        event_loop.refund_budget(); // no progress, no cost
                        let here = event_loop.id == self.loop_id;
                        if here {
                            let mut reactor = event_loop.reactor();
                            let waiter = waiter.as_deref_mut();
                            reactor.set_waker(self.key, direction, waiter, cx.waker());
                            event_loop.trace_waker(Waiting::Socket(self.key, direction));
                        }
                        here
                    });
                    if !registered {
                        return Poll::Ready(Err(io::Error::other(
                            "socket used on another event loop than the one it was created on",
                        )));
                    }
                    return Poll::Pending;
                }
                result => return Poll::Ready(result),
            }
        }
    }
    // ANCHOR_END: poll_io
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
    ) -> Poll<io::Result<T>> {
        self.io
            .poll_io(cx, self.direction, Some(&mut self.entry), op)
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
        poll_fn(|cx| waiter.poll(cx, connected)).await?;
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
        self.io.poll_io(cx, Direction::Write, None, connected)
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
        bind_address_no_port(&socket)?;
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
        poll_fn(|cx| waiter.poll(cx, connected)).await?;
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
        poll_fn(|cx| waiter.poll(cx, |mut socket| socket.read(buf))).await
    }

    /// [`TcpStream::read`] as a poll function (for `futures::io::AsyncRead`). Every task
    /// that gets `Pending` here is woken at the next event, then it must poll again.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.io
            .poll_io(cx, Direction::Read, None, |mut socket| socket.read(buf))
    }

    /// Writes some bytes of `buf`, returning how many.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut waiter = Waiter::new(&self.io, Direction::Write);
        poll_fn(|cx| waiter.poll(cx, |mut socket| socket.write(buf))).await
    }

    /// [`TcpStream::write`] as a poll function (for `futures::io::AsyncWrite`).
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io
            .poll_io(cx, Direction::Write, None, |mut socket| socket.write(buf))
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
            let read = ready!(waiter.poll(cx, |mut socket| socket.read(&mut buf)))?;
            decoder.push(&buf[..read]);
            Poll::Ready(Ok(read))
        })
        .await
    }
    // ANCHOR_END: read_into

    // ANCHOR: read_line
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
    // ANCHOR_END: read_line

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

/// Lets the kernel choose a bound socket's port at `connect` (see
/// [`TcpStream::connect_from`]).
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd, and a pointer to a c_int with its size, as the option
    // expects; the kernel only reads it.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

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
        let (stream, peer) = poll_fn(|cx| waiter.poll(cx, |listener| listener.accept())).await?;
        Ok((
            TcpStream {
                io: Io::register(stream, "TcpListener::accept")?,
            },
            peer,
        ))
    }
}

#[cfg(test)]
mod tests {
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
                    let stream =
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
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
}
