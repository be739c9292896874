//! Still the point of stage 1: all requests from the calling thread, no thread spawned.
//!
//! Alone in its own test binary, so no other test's threads come and go meanwhile.
//! Run it: `cargo test -p stage2-state-machine --test one_thread`.

#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use shared::Config;
use shared::server::SlowServer;

/// Threads of this process now, from `/proc/self/task`.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
fn run_spawns_no_thread() {
    let server = SlowServer::start(Duration::from_millis(300)).expect("slow server");
    // A watcher samples the thread count while `run` works.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(threads(), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    let before = threads(); // test thread, server, watcher, harness
    let report = stage2_state_machine::run(&Config::new(server.addr(), 50)).expect("verified");
    done.store(true, Ordering::Release);
    watcher.join().expect("watcher");
    assert_eq!(report.verified(), 50);
    assert_eq!(peak.load(Ordering::Relaxed), before, "run started a thread");
}
