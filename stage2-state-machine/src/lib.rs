//! Stage 2: the same loop, and every request an explicit state machine.
//!
//! Stage 1 kept each request's progress in closures that registered one another. This
//! stage keeps it in a struct with a `State` enum, which the [`event_loop`] owns and
//! dispatches to by token: the article's class-based [`client`] of section 4.2.
//!
//! - `cargo run -p stage2-state-machine`: the article's 10 requests, answered in about
//!   one delay (5 s), from one thread.
//!
//! Read stage 1 first, then `diff -u stage1-callbacks/src/client.rs
//! stage2-state-machine/src/client.rs`: that diff is the lesson.

pub mod client;
pub mod event_loop;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use shared::{Config, Error, Report, request_ids};

use crate::client::{consume_response, make_tcp_request};
use crate::event_loop::EventLoop;

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
