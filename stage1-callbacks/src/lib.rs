//! Stage 1: one thread, many sockets, and callbacks.
//!
//! Stage 0 gave each request a thread that blocks in `read`. This stage asks the OS which
//! sockets are ready instead, first by hand ([`os::select`], then `os::epoll` on Linux or
//! `os::kqueue` on macOS and the BSDs: article section 2.2, with `os::uring`, Linux's
//! completion interface, beside them), then through a small callback
//! [`event_loop`] on mio, which runs the article's [`echo`] server of section 3.2 and its
//! callback [`client`] of section 4.1, every connection from one thread.
//!
//! - `cargo run -p stage1-callbacks`: the article's 10 requests, answered in about one
//!   delay (5 s), from one thread.
//! - `cargo run -p stage1-callbacks --example echo_select` (and `echo_epoll` and
//!   `echo_uring` on Linux, `echo_kqueue` on macOS, `echo_server`, `callback_hell`): the
//!   other listings of the chapter.
//!
//! Read stage 0 first; stage 2 keeps this loop and turns the closures into a state
//! machine.

pub mod client;
// The echo servers work on raw file descriptors (select, epoll, kqueue, mio's SourceFd):
// Unix only. The client and its event loop are mio's and portable.
#[cfg(unix)]
pub mod echo;
pub mod event_loop;
#[cfg(unix)]
pub mod os;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use shared::{Config, Error, Report, request_ids};

use crate::client::{consume_response, make_tcp_request};
use crate::event_loop::EventLoop;

// ANCHOR: run
/// Makes `config.requests` requests at once from this thread, and returns the verified
/// report when every one has been answered or `config.timeout` has passed.
pub fn run(config: &Config) -> Result<Report, Error> {
    let report = Rc::new(RefCell::new(Report::start(config)));
    // Every request starts now, so one deadline is every request's timeout (or none).
    let deadline = Instant::now().checked_add(config.timeout);
    let mut event_loop = EventLoop::new().map_err(|e| Error::io("creating the event loop", e))?;
    for id in request_ids(config.requests) {
        let report = Rc::clone(&report);
        make_tcp_request(&mut event_loop, config.addr, id, move |response| {
            consume_response(&report, id, response)
        });
    }
    // Every request is under way; nothing has been answered yet. Now wait.
    let finished = event_loop
        .run_until(deadline)
        .map_err(|e| Error::io("waiting for events", e))?;
    drop(event_loop); // and with it the requests still waiting
    let mut report = Rc::into_inner(report)
        .ok_or_else(|| Error::Other("a request outlived the event loop".into()))?
        .into_inner();
    if !finished {
        report.time_out_unanswered(config.timeout);
    }
    report.finish()
}
// ANCHOR_END: run
