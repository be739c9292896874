//! A deadline too far for an `Instant` to hold means "never", as it does in stage 4: a
//! far `sleep` never fires and a near one beside it still does, and a far timeout on
//! `run_until_complete` is no limit. Nothing panics on the overflowing addition.
//!
//! `cargo test -p stage3-generators --test far_deadlines`
#![cfg(not(miri))]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use shared::server::SlowServer;
use shared::{Config, Error};
use stage3_generators::event_loop::EventLoop;
use stage3_generators::run;
use stage3_generators::task::Task;

/// `Duration::MAX`, `u64::MAX` seconds, and the first second past what a Unix `Instant`
/// (a `timespec` with signed 64-bit seconds) can hold.
const FAR: [Duration; 3] = [
    Duration::MAX,
    Duration::from_secs(u64::MAX),
    Duration::from_secs(i64::MAX as u64 + 1),
];

#[test]
fn a_far_sleep_never_fires_and_a_near_one_beside_it_completes() {
    for far in FAR {
        let event_loop = EventLoop::new(false).unwrap();
        let fired = Rc::new(Cell::new(false));
        let woke = fired.clone();
        let sleeper = Task::spawn(&event_loop, "far", move |co| {
            co.sleep(far);
            woke.set(true);
        })
        .unwrap();
        let near = Task::spawn(&event_loop, "near", |co| {
            co.sleep(Duration::from_millis(10));
            7
        })
        .unwrap();
        let seven = event_loop.run_until_complete(near.result(), Duration::from_secs(5));
        assert_eq!(seven.unwrap(), 7, "{far:?}");
        assert!(!fired.get(), "{far:?}");
        // Only the far sleep is left, and no timer stands for it: the loop says at once
        // that nothing can complete it, rather than waiting out the timeout.
        let error = event_loop
            .run_until_complete(sleeper.result(), Duration::from_secs(60))
            .unwrap_err();
        assert!(error.to_string().contains("can never complete"), "{error}");
        assert!(!fired.get(), "{far:?}");
        event_loop.close();
    }
}

#[test]
fn run_until_complete_with_a_far_timeout_returns_the_result() {
    // Also a deadline an `Instant` can hold but that is years away: the loop's wait in
    // poll is capped, so no kernel is asked to wait that long.
    let ten_years = Duration::from_secs(10 * 365 * 24 * 60 * 60);
    for far in FAR.into_iter().chain([ten_years]) {
        let event_loop = EventLoop::new(false).unwrap();
        let task = Task::spawn(&event_loop, "near", |co| {
            co.sleep(Duration::from_millis(10));
            42
        })
        .unwrap();
        let answer = event_loop.run_until_complete(task.result(), far);
        assert_eq!(answer.unwrap(), 42, "{far:?}");
    }
}

#[test]
fn a_far_timeout_with_nothing_pending_is_still_an_error_not_a_hang() {
    for far in FAR {
        let event_loop = EventLoop::new(false).unwrap();
        let never = event_loop.create_future::<()>("never");
        let error = event_loop.run_until_complete(&never, far).unwrap_err();
        assert!(
            matches!(&error, Error::Other(text) if text.contains("can never complete")),
            "{far:?}: {error:?}"
        );
    }
}

#[test]
fn a_run_with_a_far_timeout_waits_on_its_sockets_and_verifies_every_answer() {
    let server = SlowServer::start(Duration::from_millis(50)).unwrap();
    for far in FAR {
        let config = Config {
            timeout: far,
            ..Config::new(server.addr(), 20)
        };
        let report = run(&config).unwrap();
        assert_eq!(report.verified(), 20, "{far:?}");
    }
}
