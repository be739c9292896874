//! The async side of the article's benchmark: workers, a shared counter, exact counts.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use stage4_async_await::{run_jobs, sleep, sleep_bench};

#[test]
fn every_job_runs_exactly_once() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&seen);
    run_jobs(1_000, 37, move |id| {
        let record = Rc::clone(&record);
        async move {
            sleep(Duration::from_micros(100)).await;
            record.borrow_mut().push(id);
        }
    })
    .unwrap();
    let mut seen = seen.borrow().clone();
    seen.sort();
    assert_eq!(seen, (0..1_000).collect::<Vec<u64>>());
}

#[test]
fn concurrency_bounds_the_rounds() {
    // 200 sleeps of 5 ms on 10 workers: 20 rounds, so at least 100 ms...
    let elapsed = sleep_bench(200, 10, Duration::from_millis(5)).unwrap();
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    // ...and on 200 workers one round, far less than the 1 s they would take in a row.
    let elapsed = sleep_bench(200, 200, Duration::from_millis(5)).unwrap();
    assert!(elapsed >= Duration::from_millis(5));
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[test]
fn no_jobs_and_more_workers_than_jobs() {
    sleep_bench(0, 10, Duration::from_millis(1)).unwrap();
    sleep_bench(3, 100, Duration::from_millis(1)).unwrap();
}
