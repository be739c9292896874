//! Stage 4 on io_uring starts no thread either: the kernel answers sockets through the
//! ring without io-wq worker threads (which would show in `/proc/self/task`).
//!
//! Alone in its own test binary, so no other test's threads come and go meanwhile.
//! Run it: `cargo test -p stage4-async-await --test one_thread_uring` (Linux only).

#![cfg(target_os = "linux")]

use stage4_async_await::{Driver, Options, run_with};

mod common;

#[test]
fn run_on_uring_spawns_no_thread() {
    if common::io_uring_refused().is_some() {
        return;
    }
    let options = Options {
        driver: Driver::Uring,
        ..Options::default()
    };
    shared::testkit::contract::spawns_no_thread(|config| run_with(config, &options));
}
