//! Stage 4's servers, and the floor under every server.
//!
//! Each echo server is what a user of the runtime writes: bind, accept in a loop, and
//! one task per connection that reads what came and writes it back. The runtime decides
//! how many system calls, wake-ups and allocations that costs; the floor shows what the
//! kernel alone costs, with no runtime at all.

use std::io;
use std::net::SocketAddr;

use stage4_async_await::{EventLoop, spawn};

use super::BUFFER;

/// The echo server on stage 4's mio driver: a task per connection.
pub fn stage4_mio(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
    use stage4_async_await::net::TcpListener;
    EventLoop::new()?.block_on(async {
        let listener = TcpListener::bind(addr)?;
        bound(listener.local_addr()?);
        loop {
            let (stream, _peer) = listener.accept().await?;
            drop(spawn(echo(stream))); // a dropped JoinHandle lets its task run on
        }
    })
}

async fn echo(stream: stage4_async_await::net::TcpStream) {
    let mut buf = vec![0; BUFFER];
    loop {
        match stream.read(&mut buf).await {
            // The peer closed, or reset: this connection is done, the others go on.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The echo server on stage 4's io_uring driver: the buffer goes to the kernel with each
/// operation and comes back with its result.
#[cfg(target_os = "linux")]
pub fn stage4_uring(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
    use stage4_async_await::uring::{self, TcpListener};
    EventLoop::new()?.block_on(async {
        uring::check()?; // no io_uring here: one clear error, before any connection
        let listener = TcpListener::bind(addr)?;
        bound(listener.local_addr()?);
        loop {
            let (stream, _peer) = listener.accept().await?;
            drop(spawn(echo_uring(stream)));
        }
    })
}

#[cfg(target_os = "linux")]
async fn echo_uring(stream: stage4_async_await::uring::TcpStream) {
    let mut buf = Vec::with_capacity(BUFFER);
    loop {
        buf.clear(); // a read fills the spare capacity: all of it, each time
        let (read, back) = stream.read(buf).await;
        buf = back;
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
        let (written, back) = stream.write_all(buf).await;
        buf = back;
        if written.is_err() {
            return;
        }
    }
}

/// Why the io_uring row cannot run, if it cannot.
pub fn uring_unavailable() -> Option<&'static str> {
    cfg!(not(target_os = "linux")).then_some("io_uring is Linux-only")
}

#[cfg(not(target_os = "linux"))]
pub(super) fn stage4_uring(_addr: SocketAddr, _bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        uring_unavailable().unwrap_or("unavailable"),
    ))
}

/// hyper's HTTP/1.1 server on stage 4: our `TcpStream`, executor and timers behind
/// hyper's runtime traits, answering every request with [`hello`].
pub fn hyper_stage4(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
    use stage4_async_await::hyper::{HyperIo, LoopTimer};
    use stage4_async_await::net::TcpListener;
    EventLoop::new()?.block_on(async {
        let listener = TcpListener::bind(addr)?;
        bound(listener.local_addr()?);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(LoopTimer).auto_date_header(false);
        loop {
            let (stream, _peer) = listener.accept().await?;
            let connection = http.serve_connection(HyperIo(stream), service_fn(hello));
            drop(spawn(async move {
                let _ = connection.await; // a client that went away ends its connection
            }));
        }
    })
}

pub use http::{hello, service_fn};

mod http {
    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    pub use hyper::service::service_fn;
    use hyper::{Request, Response};

    /// The answer of both hyper servers: `hello`, whatever was asked.
    pub async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
    }
}

/// The floor: one thread, one mio loop, and per request only the system calls it needs,
/// one `recv` and one `send` (plus a share of an `epoll_wait`). No tasks, no wakers, no
/// allocation per request. Its system CPU per request is the kernel's share, which no
/// runtime can go below on readiness.
pub fn floor(addr: SocketAddr, bound: &dyn Fn(SocketAddr)) -> io::Result<()> {
    use mio::net::TcpListener;
    use mio::{Events, Interest, Poll, Token};

    const LISTENER: Token = Token(usize::MAX);
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    bound(listener.local_addr()?);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut connections: Vec<Option<Connection>> = Vec::new();
    let mut free = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0; BUFFER];
    loop {
        match poll.poll(&mut events, None) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        for event in &events {
            if event.token() == LISTENER {
                loop {
                    let (stream, _peer) = match listener.accept() {
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        result => result?,
                    };
                    let key = free.pop().unwrap_or_else(|| {
                        connections.push(None);
                        connections.len() - 1
                    });
                    let mut connection = Connection {
                        stream,
                        pending: Vec::new(),
                    };
                    poll.registry().register(
                        &mut connection.stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    connections[key] = Some(connection);
                }
                continue;
            }
            let key = event.token().0;
            let Some(connection) = connections.get_mut(key).and_then(Option::as_mut) else {
                continue; // closed earlier in this round
            };
            // A writable edge only sends what waits; a readable one reads and echoes.
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            let open = if readable {
                connection.serve(&mut buf)
            } else {
                connection.flush()
            };
            if !open {
                if let Some(mut gone) = connections[key].take() {
                    let _ = poll.registry().deregister(&mut gone.stream);
                }
                free.push(key);
            }
        }
    }
}

/// One connection of the floor server, with what it could not send yet.
struct Connection {
    stream: mio::net::TcpStream,
    pending: Vec<u8>,
}

impl Connection {
    /// Echoes what arrived; `false` when the connection is over.
    fn serve(&mut self, buf: &mut [u8]) -> bool {
        use std::io::Read;
        loop {
            // Bytes the socket could not take yet wait for the writable edge; until they
            // are sent, read nothing more (the client's bytes wait in its socket).
            if !self.flush() {
                return false;
            }
            if !self.pending.is_empty() {
                return true;
            }
            match self.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    // NB: a read shorter than the buffer emptied the socket: the next
                    // bytes to arrive make a new edge, so there is no need to read again
                    // until `WouldBlock` (which would be one more `recv` per request).
                    if n < buf.len() {
                        return self.flush();
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Sends what is pending; `false` on an error.
    fn flush(&mut self) -> bool {
        use std::io::Write;
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}
