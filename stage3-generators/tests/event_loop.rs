//! The four players together, against the embedded slow server. The contract every stage
//! keeps (verified reports, refused, garbage, silence) is in `tests/contract.rs`.
//!
//! `cargo test -p stage3-generators --test event_loop`
#![cfg(not(miri))]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use shared::server::SlowServer;
use shared::{Config, Error};
use stage3_generators::event_loop::EventLoop;
use stage3_generators::stack;
use stage3_generators::task::Task;
use stage3_generators::{run, sleep_bench, sleep_bench_probed};

mod common;

use common::Noisy;

#[test]
fn sleep_bench_runs_exactly_the_jobs_asked_for() {
    let run = sleep_bench_probed(1000, 100, Duration::from_millis(2), || {}).unwrap();
    assert_eq!(run.jobs, 1000);
    assert_eq!(run.workers, 100);
    // Ten rounds of 2 ms at least; far less than 1000 sleeps one after another (2 s).
    assert!(run.elapsed >= Duration::from_millis(20), "{run:?}");
    assert!(run.elapsed < Duration::from_millis(1000), "{run:?}");

    let run = sleep_bench_probed(7, 100, Duration::from_millis(1), || {}).unwrap();
    assert_eq!((run.jobs, run.workers), (7, 7), "no idle workers");
    assert!(sleep_bench(0, 10, Duration::from_millis(1)).is_ok());
}

#[test]
fn the_probe_runs_while_every_worker_is_alive() {
    let before = stack::stacks_in_use();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let probed = seen.clone();
    let run = sleep_bench_probed(50, 50, Duration::from_millis(5), move || {
        // Each live coroutine holds a stack: the 50 workers, and the task gathering them.
        probed.borrow_mut().push(stack::stacks_in_use() - before);
    })
    .unwrap();
    assert_eq!(run.jobs, 50);
    assert_eq!(
        *seen.borrow(),
        [51],
        "the probe runs once, with every worker alive"
    );
    assert_eq!(stack::stacks_in_use(), before, "every stack went back");
}

#[test]
fn a_task_waits_for_another_tasks_result_and_timers_keep_order() {
    let event_loop = EventLoop::new(false).unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let mut sleepers = Vec::new();
    for (name, ms) in [("c", 300), ("a", 100), ("b", 200), ("a2", 100)] {
        let order = order.clone();
        sleepers.push(
            Task::spawn(&event_loop, name, move |co| {
                co.sleep(Duration::from_millis(ms));
                order.borrow_mut().push(name);
                ms
            })
            .unwrap(),
        );
    }
    let total = Task::spawn(&event_loop, "sum", move |co| {
        sleepers.iter().map(|t| co.wait(t.result())).sum::<u64>()
    })
    .unwrap();
    let started = Instant::now();
    let sum = event_loop
        .run_until_complete(total.result(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(sum, 700);
    // Equal deadlines fire in the order the timers were set (the sequence number).
    assert_eq!(*order.borrow(), ["a", "a2", "b", "c"]);
    // Concurrent sleeps: about 300 ms, not 700.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
}

#[test]
fn a_future_that_nothing_will_complete_is_an_error_not_a_hang() {
    let event_loop = EventLoop::new(false).unwrap();
    let never = event_loop.create_future::<()>("never");
    let error = event_loop
        .run_until_complete(&never, Duration::from_secs(60))
        .unwrap_err();
    assert!(error.to_string().contains("can never complete"), "{error}");
}

#[test]
fn closing_the_loop_drops_what_waiting_tasks_hold() {
    let event_loop = EventLoop::new(false).unwrap();
    let drops = Rc::new(Cell::new(0));
    let held = Noisy(drops.clone());
    let sleeper = Task::spawn(&event_loop, "sleeper", move |co| {
        let _held = held;
        co.sleep(Duration::from_secs(3600));
    })
    .unwrap();
    let error = event_loop
        .run_until_complete(sleeper.result(), Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_eq!(drops.get(), 0, "still suspended");
    event_loop.close();
    drop(sleeper);
    assert_eq!(
        drops.get(),
        1,
        "closing the loop unwound the suspended task"
    );
}

#[test]
fn the_binary_traces_the_articles_sequence() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stage3-generators"))
        .args(["--requests", "2", "--delay-ms", "100", "--trace"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // The article's sequence, in order, for the task of request 1.
    let steps = [
        "task `request 1` created (its result: future ",
        "first step scheduled",
        "task `request 1` resumed",
        "task `request 1` yielded future",
        "registers its step as a done-callback",
        "loop waits in poll",
        "(readable) is ready",
        "(readable) set_result: 1 callback(s) scheduled",
        "task `request 1` complete",
        "2/2 responses verified in ",
    ];
    let mut rest = &stdout[..];
    for step in steps {
        let at = rest
            .find(step)
            .unwrap_or_else(|| panic!("`{step}` missing or out of order in:\n{stdout}"));
        rest = &rest[at + step.len()..];
    }
}

#[test]
fn the_mprotect_fallback_runs_the_same_workload() {
    let server = SlowServer::start(Duration::from_millis(50)).unwrap();
    let addr = server.addr();
    // A fresh thread: the forced fallback applies to its own stack pool only.
    let report = std::thread::spawn(move || {
        stage3_generators::stack::force_mprotect_guards(true);
        assert_eq!(
            stage3_generators::stack::guard_kind().unwrap(),
            stage3_generators::stack::Guard::Mprotect
        );
        run(&Config::new(addr, 200)).map(|report| report.verified())
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(report, 200);
}

#[test]
fn the_stack_size_is_checked_and_used() {
    let event_loop = EventLoop::new(false).unwrap();
    event_loop.set_stack_size(1000);
    let error = Task::spawn(&event_loop, "tiny", |_| ()).err().unwrap();
    assert!(error.to_string().contains("16 KiB to 1024 MiB"), "{error}");
    event_loop.set_stack_size(32 * 1024);
    let task = Task::spawn(&event_loop, "small", |co| {
        co.sleep(Duration::from_millis(1));
        5
    })
    .unwrap();
    let five = event_loop
        .run_until_complete(task.result(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(five, 5);

    let binary = env!("CARGO_BIN_EXE_stage3-generators");
    let refused = std::process::Command::new(binary)
        .args(["--stack-kib", "8"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("8 is not in 16..="), "{stderr}");
    let small = std::process::Command::new(binary)
        .args(["--stack-kib", "32", "--requests", "20", "--delay-ms", "50"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&small.stdout);
    assert!(small.status.success(), "{stdout}");
    assert!(stdout.contains("20/20 responses verified"), "{stdout}");
}
