//! The point of stage 1: every request from the calling thread, no thread started.
//!
//! Alone in its own test binary, so no other test's threads come and go meanwhile.
//! Run it: `cargo test -p stage1-callbacks --test one_thread`.

#[test]
fn run_spawns_no_thread() {
    shared::testkit::contract::spawns_no_thread(stage1_callbacks::run);
}
