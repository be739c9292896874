//! The point of stage 4: every request from the calling thread, no thread started.
//!
//! Alone in its own test binary, so no other test's threads come and go meanwhile.
//! Run it: `cargo test -p stage4-async-await --test one_thread`.

#[test]
fn run_spawns_no_thread() {
    shared::testkit::contract::spawns_no_thread(stage4_async_await::run);
}
