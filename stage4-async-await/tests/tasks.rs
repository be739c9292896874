//! Tasks: what `spawn`, `JoinHandle`, `join_all` and `spawn_blocking` promise, what a
//! panic does (to its task only), and how the loop refuses to be misused.

use std::cell::{Cell, RefCell};
use std::panic::catch_unwind;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use stage4_async_await::{
    DEFAULT_SLOW_POLL_THRESHOLD, EventLoop, JoinError, block_on, join_all, sleep, spawn,
    spawn_blocking, yield_now,
};

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_dropped_join_handle_detaches_the_task() {
    let ran = Rc::new(Cell::new(false));
    let flag = Rc::clone(&ran);
    block_on(async move {
        drop(spawn(async move {
            sleep(20 * MS).await;
            flag.set(true);
        }));
        sleep(100 * MS).await;
    });
    assert!(ran.get(), "the detached task did not run to the end");
}

#[test]
fn a_panic_reaches_the_joiner_and_the_other_tasks_go_on() {
    block_on(async {
        let ticks = Rc::new(Cell::new(0));
        let counter = Rc::clone(&ticks);
        let ticker = spawn(async move {
            for _ in 0..10 {
                sleep(5 * MS).await;
                counter.set(counter.get() + 1);
            }
        });
        let doomed = spawn(async {
            sleep(10 * MS).await;
            panic!("request {} went wrong", 7);
        });
        let error = doomed.await.unwrap_err();
        assert_eq!(error, JoinError::Panicked("request 7 went wrong".into()));
        assert_eq!(error.to_string(), "task panicked: request 7 went wrong");
        ticker.await.unwrap();
        assert_eq!(ticks.get(), 10);
    });
}

#[test]
fn tasks_left_running_are_cancelled_when_block_on_returns() {
    // The handle leaves the loop unawaited on purpose.
    #[allow(clippy::async_yields_async)]
    let handle = block_on(async { spawn(sleep(Duration::from_secs(3600))) });
    assert!(handle.is_finished());
    assert_eq!(
        futures::executor::block_on(handle),
        Err(JoinError::Cancelled)
    );
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast_ref::<&str>().unwrap().to_string(),
    }
}

#[test]
fn a_nested_block_on_panics_and_says_to_await() {
    let payload = catch_unwind(|| block_on(async { block_on(async { 1 }) })).unwrap_err();
    let message = panic_message(payload);
    assert!(
        message.contains("from inside a running event loop"),
        "{message}"
    );
    assert!(message.contains("`.await` the future instead"), "{message}");

    // From a task, the message names the task, and the loop goes on (so can a new one).
    block_on(async {
        let error = spawn(async { block_on(sleep(MS)) }).await.unwrap_err();
        let JoinError::Panicked(message) = error else {
            panic!("{error:?}")
        };
        assert!(message.contains("in task 1, spawned at "), "{message}");
        assert!(message.contains("tests/tasks.rs:"), "{message}");
        sleep(MS).await;
    });
    block_on(sleep(MS));
}

#[test]
fn spawn_outside_a_loop_says_where_to_call_it() {
    let payload = catch_unwind(|| drop(spawn(async {}))).unwrap_err();
    let message = panic_message(payload);
    assert!(message.contains("inside block_on"), "{message}");
}

#[test]
fn a_blocking_poll_triggers_the_slow_poll_warning() {
    assert_eq!(DEFAULT_SLOW_POLL_THRESHOLD, Duration::from_millis(100));
    let warnings = Rc::new(RefCell::new(Vec::new()));
    let record = Rc::clone(&warnings);
    EventLoop::new()
        .unwrap()
        .slow_poll_threshold(30 * MS)
        .on_slow_poll(move |slow| record.borrow_mut().push(*slow))
        .block_on(async {
            // Waiting the right way: no warning, however long.
            spawn(sleep(60 * MS)).await.unwrap();
            // Blocking the thread inside a task: a warning naming the task.
            spawn(async { thread::sleep(60 * MS) }).await.unwrap();
        });
    // NB: not "exactly one warning": on a loaded machine any poll can be descheduled
    // for 30 ms. What must hold: the blocking task is named, for about its 60 ms (the
    // watch reads a coarse clock, precise to a kernel tick: 1 to 4 ms, 10 at worst).
    let warnings = warnings.borrow();
    let slow = warnings
        .iter()
        .find(|slow| slow.task.id == Some(2))
        .unwrap_or_else(|| panic!("no warning names task 2: {warnings:?}"));
    assert!(slow.took >= 50 * MS, "{slow:?}");
    let text = slow.to_string();
    assert!(text.contains("task 2, spawned at "), "{text}");
    assert!(text.contains("tests/tasks.rs:"), "{text}");
    assert!(text.contains("blocked the event loop"), "{text}");
}

#[test]
fn join_all_keeps_the_order_and_waits_for_all_at_once() {
    // How many are asleep at once, at most: one after another it would be 1.
    let (asleep, most) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let outputs = block_on(join_all([100u64, 20, 60, 100, 40].map(|ms| {
        let (asleep, most) = (Rc::clone(&asleep), Rc::clone(&most));
        async move {
            asleep.set(asleep.get() + 1);
            most.set(most.get().max(asleep.get()));
            sleep(Duration::from_millis(ms)).await;
            asleep.set(asleep.get() - 1);
            ms
        }
    })));
    assert_eq!(outputs, [100, 20, 60, 100, 40]);
    assert_eq!(most.get(), 5, "all five wait at once");
    let none: Vec<u8> = block_on(join_all(Vec::<std::future::Ready<u8>>::new()));
    assert!(none.is_empty());
}

#[test]
fn spawn_blocking_returns_the_result_or_the_panic() {
    block_on(async {
        let thread = spawn_blocking(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(thread.await, Ok(Some("spawn_blocking".to_string())));
        let error = spawn_blocking(|| panic!("blocking {}", "boom"))
            .await
            .unwrap_err();
        assert_eq!(error, JoinError::Panicked("blocking boom".into()));
    });
}

/// Drops a task's future with a destructor that panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a destructor panicked");
    }
}

#[test]
fn a_panicking_destructor_leaves_the_thread_able_to_block_on_again() {
    let other_dropped = Rc::new(Cell::new(false));
    let flag = Rc::clone(&other_dropped);
    let payload = catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(async move {
            // Both still sleep when block_on returns, so both are cancelled.
            drop(spawn(async {
                let _bomb = PanicsOnDrop;
                sleep(Duration::from_secs(3600)).await;
            }));
            drop(spawn(async move {
                struct SetOnDrop(Rc<Cell<bool>>);
                impl Drop for SetOnDrop {
                    fn drop(&mut self) {
                        self.0.set(true);
                    }
                }
                let _set = SetOnDrop(flag);
                sleep(Duration::from_secs(3600)).await;
            }));
            yield_now().await;
        })
    }))
    .unwrap_err();
    assert_eq!(panic_message(payload), "a destructor panicked");
    assert!(other_dropped.get(), "the other task was not cancelled");
    // The thread is not left "inside a running event loop".
    assert_eq!(block_on(async { 7 }), 7);
    assert_eq!(block_on(async { spawn(async { 8 }).await.unwrap() }), 8);
}

#[test]
fn a_panicking_main_future_and_a_panicking_destructor_still_leave_the_thread_clean() {
    // Unwinding from the main future drops the tasks; one destructor panics on the way.
    // That second panic is caught (two at once would abort the process); the first goes on.
    let payload = catch_unwind(|| {
        block_on(async {
            drop(spawn(async {
                let _bomb = PanicsOnDrop;
                sleep(Duration::from_secs(3600)).await;
            }));
            yield_now().await;
            panic!("the main future panicked");
        })
    })
    .unwrap_err();
    assert_eq!(panic_message(payload), "the main future panicked");
    assert_eq!(block_on(async { 9 }), 9);
}
