//! The point of stage 3: every request from the calling thread, no thread started.
//!
//! Alone in its own test binary, so no other test's threads come and go meanwhile.
//! Run it: `cargo test -p stage3-generators --test one_thread`.
#![cfg(not(miri))]

#[test]
fn run_spawns_no_thread() {
    shared::testkit::contract::spawns_no_thread(stage3_generators::run);
}
