//! The slow server's protocol in HTTP/1.1, on hyper over our runtime: a server that
//! answers `POST /` with the request's body after a delay, and a client for it.
//!
//! The request body is the workspace's request line, `Request {id}`, and the answer is
//! the same line, as the line protocol's slow server echoes it: every response can be
//! checked against its request.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::HOST;
use hyper::rt::Executor;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use stage4_async_await::net::{TcpListener, TcpStream};
use stage4_async_await::{EventLoop, sleep};

use stage4_async_await::hyper::{HyperIo, LoopExecutor, LoopTimer};

/// The longest request body the server reads: the line protocol's longest line.
pub const MAX_BODY: usize = 1024;

/// The request body for request `id` (the protocol's line, without its newline).
pub fn request_body(id: u64) -> String {
    shared::protocol::expected_response(id)
}

/// How the server behaves.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// How long each answer waits, from when its request was read.
    pub delay: Duration,
    /// How long a client may take to send its request's headers (a hyper timeout, on
    /// our timers).
    pub header_timeout: Duration,
}

impl Server {
    /// Answers after `delay`; a client gets 10 s for its headers.
    pub fn new(delay: Duration) -> Server {
        Server {
            delay,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// What the server counted, shared with whoever started it.
#[derive(Debug, Default)]
pub struct Stats {
    answered: AtomicU64,
    waiting: AtomicU64,
    peak_waiting: AtomicU64,
    failed_connections: AtomicU64,
}

impl Stats {
    /// Requests answered with their echo.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// The most requests that waited out their delay at the same time: 1 if they came one
    /// after another, all of them if they overlapped.
    pub fn peak_waiting(&self) -> u64 {
        self.peak_waiting.load(Ordering::Relaxed)
    }

    /// [`Stats::peak_waiting`], and starts counting the next peak from now.
    pub fn take_peak_waiting(&self) -> u64 {
        let now = self.waiting.load(Ordering::Relaxed);
        self.peak_waiting.swap(now, Ordering::Relaxed)
    }

    /// Connections that hyper ended with an error (bad HTTP, a header timeout).
    pub fn failed_connections(&self) -> u64 {
        self.failed_connections.load(Ordering::Relaxed)
    }
}

/// One request waiting out its delay; dropping it (the answer sent, or the client gone)
/// counts it out.
struct Waiting<'a>(&'a Stats);

impl<'a> Waiting<'a> {
    fn new(stats: &'a Stats) -> Waiting<'a> {
        let now = stats.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak_waiting.fetch_max(now, Ordering::Relaxed);
        Waiting(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

// ANCHOR: serve
impl Server {
    /// Accepts connections on `listener` until it fails, each one served by hyper in a
    /// task of its own.
    pub async fn serve(self, listener: TcpListener, stats: Arc<Stats>) -> io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(LoopTimer)
            .header_read_timeout(self.header_timeout);
        loop {
            let (stream, _peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                // The client gave up before we accepted: not the server's problem.
                Err(error) if error.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(error) => return Err(error),
            };
            let answer = {
                let stats = Arc::clone(&stats);
                service_fn(move |request| answer(request, self.delay, Arc::clone(&stats)))
            };
            // A future that reads requests and writes answers until the client is done.
            let connection = http.serve_connection(HyperIo(stream), answer);
            let stats = Arc::clone(&stats);
            LoopExecutor.execute(async move {
                if connection.await.is_err() {
                    stats.failed_connections.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
}

/// Echoes the request's body after the delay, or says what is wrong with it.
async fn answer(
    request: Request<Incoming>,
    delay: Duration,
    stats: Arc<Stats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != hyper::Method::POST {
        return Ok(error(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "line too long")),
    };
    if std::str::from_utf8(&body).is_err() {
        return Ok(error(StatusCode::BAD_REQUEST, "invalid utf-8"));
    }
    let _waiting = Waiting::new(&stats);
    sleep(delay).await; // the slow server's wait: a timer, not a thread
    stats.answered.fetch_add(1, Ordering::Relaxed);
    Ok(Response::new(Full::new(body)))
}
// ANCHOR_END: serve

/// An answer with an error status and the slow server's `ERROR ...` line as its body.
fn error(status: StatusCode, why: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("ERROR {why}"))));
    *response.status_mut() = status;
    response
}

/// A [`Server`] on a thread and an event loop of its own, on `127.0.0.1`; dropping it
/// stops it. (For clients that block: on the same loop, they would wait for a server
/// that cannot run until they are done.)
#[derive(Debug)]
pub struct ServerThread {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Option<futures::channel::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl ServerThread {
    /// Starts `server` on a free port.
    pub fn start(server: Server) -> io::Result<ServerThread> {
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let serving = Arc::clone(&stats);
        let thread = thread::spawn(move || {
            EventLoop::new()?.block_on(async move {
                let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)));
                let listener = match listener.and_then(|l| Ok((l.local_addr()?, l))) {
                    Ok((addr, listener)) => {
                        let _ = bound.send(Ok(addr));
                        listener
                    }
                    Err(error) => {
                        let _ = bound.send(Err(error));
                        return Ok(());
                    }
                };
                let serve = pin!(server.serve(listener, serving));
                match futures::future::select(serve, stopped).await {
                    futures::future::Either::Left((result, _)) => result,
                    futures::future::Either::Right(_) => Ok(()), // stopped
                }
            })
        });
        let addr = addr
            .recv()
            .map_err(|_| io::Error::other("the server thread ended before it listened"))??;
        Ok(ServerThread {
            addr,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it counted so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(()); // wakes the loop from this thread, through its waker
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why a request got no answer to check.
#[derive(Debug)]
pub enum FetchError {
    /// Could not connect to the server.
    Connect {
        /// Where we tried to connect.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// hyper could not make sense of the server's answer, or the connection failed.
    Http {
        /// The request.
        id: u64,
        /// What hyper said.
        source: hyper::Error,
    },
    /// A socket error in the blocking client.
    Io {
        /// The request.
        id: u64,
        /// What the OS said.
        source: io::Error,
    },
    /// The answer is HTTP, but not a success with a text body.
    BadAnswer {
        /// The request.
        id: u64,
        /// What was wrong with it.
        what: String,
    },
    /// The thread that made the blocking request could not start, or panicked.
    Thread {
        /// The request.
        id: u64,
        /// What `spawn_blocking` said.
        error: stage4_async_await::JoinError,
    },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            FetchError::Http { id, source } => {
                write!(f, "request {id}: {source}")?;
                // hyper's message names the HTTP problem; its source, the OS error if any.
                let mut cause = std::error::Error::source(source);
                while let Some(error) = cause {
                    write!(f, ": {error}")?;
                    cause = error.source();
                }
                Ok(())
            }
            FetchError::Io { id, source } => write!(f, "request {id}: {source}"),
            FetchError::BadAnswer { id, what } => write!(f, "request {id}: {what}"),
            FetchError::Thread { id, error } => write!(f, "request {id}: {error}"),
        }
    }
}

impl std::error::Error for FetchError {}

impl From<FetchError> for shared::Error {
    fn from(error: FetchError) -> shared::Error {
        shared::Error::Other(error.to_string())
    }
}

// ANCHOR: fetch
/// Sends request `id` to the server at `addr` with hyper, on a connection of its own,
/// and returns the body of the answer.
pub async fn fetch(addr: SocketAddr, id: u64) -> Result<String, FetchError> {
    let http = |source| FetchError::Http { id, source };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| FetchError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo(stream))
        .await
        .map_err(http)?;
    // The connection is the future that reads and writes the socket: it runs as a task
    // of its own while this one waits for the answer. (Its errors reach us below too.)
    LoopExecutor.execute(connection);
    let request = Request::post("/")
        .header(HOST, addr.to_string())
        .body(Full::new(Bytes::from(request_body(id))))
        .expect("a POST with a Host header and a body is a valid request");
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(http)?;
    text_answer(id, status, body.to_bytes().to_vec())
}
// ANCHOR_END: fetch

/// The body of a successful answer, as text.
pub fn text_answer(id: u64, status: StatusCode, body: Vec<u8>) -> Result<String, FetchError> {
    let text = String::from_utf8(body).map_err(|_| FetchError::BadAnswer {
        id,
        what: format!("status {status}, and a body that is not UTF-8"),
    })?;
    if !status.is_success() {
        let what = format!("status {status}: {text}");
        return Err(FetchError::BadAnswer { id, what });
    }
    Ok(text)
}
