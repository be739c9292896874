//! Anti-pattern 1 in the article's own form: a blocking HTTP request inside a task (the
//! article's `requests.get` in a coroutine), against hyper's client on the loop.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example blocking_http
//! ```

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::StatusCode;
use shared::{Config, Error, Report, request_ids};
use stage4_async_await::anti_patterns::{Stall, heartbeat_during};
use stage4_async_await::{join_all, spawn, spawn_blocking, timeout};

use crate::echo::{FetchError, fetch, request_body, text_answer};

/// How long the blocking client waits for an answer before it gives up.
pub const BLOCKING_PATIENCE: Duration = Duration::from_secs(10);

// ANCHOR: blocking_fetch
/// The same request over std's blocking sockets, HTTP/1.1 written by hand: what
/// `requests.get` is in the article next to aiohttp. Fine on a thread of its own; inside
/// a task it holds the event loop until the answer is in.
pub fn blocking_fetch(addr: SocketAddr, id: u64) -> Result<String, FetchError> {
    let io = |source| FetchError::Io { id, source };
    let mut stream = std::net::TcpStream::connect(addr)
        .map_err(|source| FetchError::Connect { addr, source })?;
    stream
        .set_read_timeout(Some(BLOCKING_PATIENCE))
        .map_err(io)?;
    let body = request_body(id);
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    // `connection: close`: the answer ends where the stream does.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(io)?;
    parse_answer(id, &answer)
}
// ANCHOR_END: blocking_fetch

/// Splits an HTTP/1.1 answer into its status and body (enough for our server's answers:
/// a status line, headers, a blank line, then the body up to the end of the stream).
fn parse_answer(id: u64, answer: &[u8]) -> Result<String, FetchError> {
    let bad = |what: &str| FetchError::BadAnswer {
        id,
        what: what.to_string(),
    };
    let end = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| bad("the answer is not HTTP: no end of headers"))?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| bad("the answer is not HTTP/1.1: no status line"))?;
    text_answer(id, status, answer[end + 4..].to_vec())
}

/// How each task makes its request, for [`fetch_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// [`blocking_fetch`] called in the task: the whole loop waits for each answer.
    Blocking,
    /// hyper's client, awaited: only the task waits.
    Hyper,
    /// [`blocking_fetch`] on a thread of its own with `spawn_blocking`, awaited.
    SpawnBlocking,
}

/// What [`fetch_all`] measured.
#[derive(Debug)]
pub struct Fetched {
    /// The verified answers, and the wall time from the first request to the last answer.
    pub report: Report,
    /// The heartbeat beside the requests, and the runtime's warnings.
    pub stall: Stall,
}

// ANCHOR: fetch_all
/// Makes `requests` requests to the HTTP server at `addr`, one task each, all joined
/// like the article's `gather`, each task making its request `how`; a heartbeat ticks
/// beside them (slow-poll threshold: `threshold`).
pub fn fetch_all(
    how: How,
    addr: SocketAddr,
    requests: u64,
    threshold: Duration,
) -> Result<Fetched, Error> {
    let (report, stall) = heartbeat_during(threshold, || async move {
        let config = Config::new(addr, requests);
        let report = Rc::new(RefCell::new(Report::start(&config)));
        let tasks = request_ids(requests).map(|id| {
            let report = Rc::clone(&report);
            spawn(async move {
                let answer = match how {
                    How::Blocking => blocking_fetch(addr, id), // holds the loop: don't
                    How::Hyper => fetch(addr, id).await,
                    How::SpawnBlocking => spawn_blocking(move || blocking_fetch(addr, id))
                        .await
                        .unwrap_or_else(|error| Err(FetchError::Thread { id, error })),
                };
                report.borrow_mut().record(id, answer.map_err(Error::from));
            })
        });
        let tasks: Vec<_> = tasks.collect();
        if timeout(config.timeout, join_all(tasks)).await.is_err() {
            report.borrow_mut().time_out_unanswered(config.timeout);
        }
        // Take it out: tasks cut off by the timeout run until the loop ends, and would
        // only record into the empty report left behind.
        report.replace(Report::start(&config)).finish()
    })?;
    Ok(Fetched { report, stall })
}
// ANCHOR_END: fetch_all
