//! Timers: `sleep`, `sleep_until` and `timeout` fire in deadline order, cost no CPU while
//! they wait, and stay with the loop that set them.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use stage4_async_await::anti_patterns::thread_cpu_time;
use stage4_async_await::{block_on, join_all, sleep, sleep_until, spawn, timeout, yield_now};

const MS: Duration = Duration::from_millis(1);

#[test]
fn an_idle_loop_with_a_pending_timer_burns_no_cpu() {
    let before = thread_cpu_time();
    let started = Instant::now();
    block_on(sleep(300 * MS));
    let (cpu, wall) = (thread_cpu_time() - before, started.elapsed());
    assert!(wall >= 300 * MS);
    // A spinning loop would use about 300 ms.
    assert!(cpu < 50 * MS, "{cpu:?} of CPU for a {wall:?} sleep");
}

#[test]
fn timers_fire_in_deadline_order() {
    let order = block_on(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = [30u64, 10, 20, 10, 0]
            .into_iter()
            .enumerate()
            .map(|(i, ms)| {
                let order = Rc::clone(&order);
                spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(i);
                })
            })
            .collect();
        for result in join_all(tasks).await {
            result.unwrap();
        }
        Rc::into_inner(order).unwrap().into_inner()
    });
    // Equal deadlines keep their order: 1 before 3 (the (deadline, sequence) key).
    assert_eq!(order, [4, 1, 3, 2, 0]);
}

#[test]
fn a_timeout_cancels_the_future_and_a_quick_future_beats_it() {
    block_on(async {
        let slow = timeout(20 * MS, sleep(Duration::from_secs(3600))).await;
        assert_eq!(slow.unwrap_err().to_string(), "no result within 20 ms");
        let quick = timeout(Duration::from_secs(3600), async { 5 }).await;
        assert_eq!(quick, Ok(5));
    });
}

#[test]
fn a_sleep_moved_to_another_loop_leaves_that_loops_timers_alone() {
    let mut moved = Box::pin(sleep(30 * MS));
    // Polled once on a first loop, which sets a timer there, then that loop ends.
    block_on(poll_fn(|cx| {
        assert!(moved.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    }));
    // On a second loop its old timer key is also the key of this loop's first timer:
    // used there, it would steal that timer and never set its own.
    let started = Instant::now();
    block_on(async move {
        let other = spawn(sleep(500 * MS));
        yield_now().await; // `other` sets its timer first and gets that key
        moved.await;
        assert!(
            started.elapsed() < 400 * MS,
            "the moved sleep missed its deadline"
        );
        other.await.unwrap();
    });
}

#[test]
fn after_a_stall_tasks_whose_timers_expired_first_run_before_block_on_returns() {
    // What had run when the main future returned (the rest is cancelled right after).
    let ran = block_on(async {
        let ran = Rc::new(RefCell::new(Vec::new()));
        // Deadlines from one instant, so their order does not depend on how fast the
        // tasks are polled (under an emulator, polling 100 tasks can take milliseconds).
        let start = Instant::now();
        for i in 0..100u64 {
            let ran = Rc::clone(&ran);
            drop(spawn(async move {
                sleep_until(start + Duration::from_millis(10 + i % 20)).await;
                ran.borrow_mut().push(i);
            }));
        }
        let main_sleep = sleep_until(start + 100 * MS);
        yield_now().await; // every task has set its timer: 10 to 29 ms after `start`
        // The loop stalls past every deadline, the main future's included.
        thread::sleep(150 * MS);
        main_sleep.await;
        ran.borrow().clone()
    });
    // Every timer expired before the main future's (its 100 ms is the latest deadline),
    // so every task ran before block_on returned.
    assert_eq!(ran.len(), 100, "{ran:?}");
    // And in deadline order: 10 ms sleepers first, equal deadlines in the order set.
    let mut expected: Vec<u64> = (0..100).collect();
    expected.sort_by_key(|i| (i % 20, *i));
    assert_eq!(ran, expected);
}
