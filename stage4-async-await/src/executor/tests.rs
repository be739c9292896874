//! The executor's own tests: its clock, and wakers from stopped loops and other threads.

use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::context::{LoopContext, with_current};
use crate::time::sleep;

const MS: Duration = Duration::from_millis(1);

#[test]
fn the_loop_clock_advances_with_every_turn_and_never_runs_ahead() {
    block_on(async {
        let mut last = with_current("test", LoopContext::now);
        for _ in 0..3 {
            thread::sleep(5 * MS); // a busy poll: the clock must see it next turn
            yield_now().await;
            let now = with_current("test", LoopContext::now);
            assert!(now >= last + 5 * MS, "{:?} after {:?}", now - last, last);
            assert!(now <= Instant::now());
            last = now;
        }
    });
}

#[test]
fn a_sleep_set_late_in_a_long_poll_still_lasts_its_duration() {
    // The loop's clock was read before this poll began, 50 ms before the sleep is
    // set: measured from that clock, the sleep would be over before it started.
    block_on(async {
        yield_now().await;
        thread::sleep(50 * MS);
        let set = Instant::now();
        sleep(20 * MS).await;
        assert!(set.elapsed() >= 20 * MS, "fired after {:?}", set.elapsed());
    });
}

#[test]
fn a_waker_of_a_stopped_loop_is_harmless_even_when_its_slot_is_reused() {
    let stale =
        block_on(async { std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await });
    stale.wake_by_ref(); // no loop runs on this thread
    // The next loop on this thread may take the same slot in `LOOPS`: the stale
    // waker then wakes its main future, spuriously. Never a panic, a lost task or
    // a hang.
    let done = block_on(async move {
        let task = spawn(sleep(20 * MS));
        yield_now().await;
        let from_thread = stale.clone();
        thread::spawn(move || from_thread.wake()).join().unwrap();
        stale.wake();
        task.await
    });
    assert!(done.is_ok());
}

#[test]
fn a_task_woken_again_and_again_from_another_thread_is_queued_once() {
    block_on(async {
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        // The loop is busy (in this very poll), so nothing drains the queue meanwhile.
        thread::spawn(move || (0..1000).for_each(|_| waker.wake_by_ref()))
            .join()
            .unwrap();
        let queued = CURRENT.with_borrow(|inner| {
            let remote = inner.as_ref().unwrap().shared.remote.lock().unwrap();
            remote.wakes.len()
        });
        assert_eq!(queued, 1);
    });
}
