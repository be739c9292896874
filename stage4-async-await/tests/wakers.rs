//! The executor's promises about wakers: a wake from any thread, at any time, during
//! the task's own poll or after it finished, is never lost and never harmful.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use stage4_async_await::{block_on, join_all, sleep, spawn, timeout, yield_now};

const MS: Duration = Duration::from_millis(1);

/// A future that completes once `flag` is set, leaving its waker for whoever sets it.
fn wait_for(flag: Arc<(AtomicBool, Mutex<Option<Waker>>)>) -> impl Future<Output = ()> {
    poll_fn(move |cx| {
        // Waker first, flag second: a set between the two is seen on the next poll.
        *flag.1.lock().unwrap() = Some(cx.waker().clone());
        if flag.0.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

fn set_from_thread(flag: &Arc<(AtomicBool, Mutex<Option<Waker>>)>, after: Duration) {
    let flag = Arc::clone(flag);
    thread::spawn(move || {
        thread::sleep(after);
        flag.0.store(true, Ordering::Release);
        if let Some(waker) = flag.1.lock().unwrap().take() {
            waker.wake();
        }
    });
}

#[test]
fn a_wake_from_another_thread_reaches_the_sleeping_loop() {
    // Nothing else to wait for: the loop sleeps in epoll_wait with no timeout, and only
    // the mio::Waker can get it out.
    for _ in 0..20 {
        let flag = Arc::new((AtomicBool::new(false), Mutex::new(None)));
        set_from_thread(&flag, 5 * MS);
        let started = Instant::now();
        block_on(wait_for(flag));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // And the same for a spawned task while the main future waits on its JoinHandle.
    let flag = Arc::new((AtomicBool::new(false), Mutex::new(None)));
    set_from_thread(&flag, 20 * MS);
    block_on(async move { spawn(wait_for(flag)).await.unwrap() });
}

#[test]
fn a_task_woken_during_its_own_poll_is_polled_again() {
    let polls = Rc::new(Cell::new(0));
    let counted = Rc::clone(&polls);
    let outcome = block_on(timeout(Duration::from_secs(2), async move {
        spawn(poll_fn(move |cx| {
            counted.set(counted.get() + 1);
            if counted.get() == 1 {
                // Woken many times while running: queued once, polled once more.
                for _ in 0..1000 {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }))
        .await
    }));
    assert!(outcome.is_ok(), "the wake-up was lost");
    assert_eq!(polls.get(), 2);
}

#[test]
fn a_waker_outlives_its_task_harmlessly() {
    block_on(async {
        let stored = Rc::new(RefCell::new(None::<Waker>));
        let keep = Rc::clone(&stored);
        spawn(poll_fn(move |cx| {
            *keep.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready(())
        }))
        .await
        .unwrap();
        let stale = stored.borrow_mut().take().unwrap();

        // A new task now occupies the finished task's slot; it must not be polled by the
        // stale waker.
        let polls = Rc::new(Cell::new(0));
        let counted = Rc::clone(&polls);
        let release = Arc::new((AtomicBool::new(false), Mutex::new(None)));
        let wait = wait_for(Arc::clone(&release));
        let mut wait = Box::pin(wait);
        let newcomer = spawn(poll_fn(move |cx| {
            counted.set(counted.get() + 1);
            wait.as_mut().poll(cx)
        }));
        yield_now().await;
        assert_eq!(polls.get(), 1);
        for _ in 0..100 {
            stale.wake_by_ref();
        }
        let from_thread = stale.clone();
        thread::spawn(move || from_thread.wake()).join().unwrap();
        stale.wake();
        sleep(10 * MS).await;
        assert_eq!(polls.get(), 1, "a stale waker polled another task");

        set_from_thread(&release, MS);
        newcomer.await.unwrap();
        assert_eq!(polls.get(), 2);
    });
}

#[test]
fn wakes_racing_in_from_many_threads_are_never_lost() {
    // Tasks park on oneshots that four threads fill at their own pace, so wakes arrive
    // while the loop polls, while it decides to sleep, and while it sleeps.
    for round in 0..5u64 {
        let outcome = block_on(timeout(Duration::from_secs(10), async move {
            let mut senders = Vec::new();
            let tasks: Vec<_> = (0..2_000u64)
                .map(|i| {
                    let (sender, receiver) = futures::channel::oneshot::channel();
                    senders.push((i, sender));
                    spawn(async move { receiver.await.unwrap() })
                })
                .collect();
            let mut chunks: Vec<Vec<_>> = (0..4).map(|_| Vec::new()).collect();
            for (i, sender) in senders {
                chunks[(i % 4) as usize].push((i, sender));
            }
            for chunk in chunks {
                thread::spawn(move || {
                    for (i, sender) in chunk {
                        if (i + round) % 97 == 0 {
                            thread::sleep(Duration::from_micros(200));
                        }
                        sender.send(i).unwrap();
                    }
                });
            }
            let outputs: Vec<u64> = join_all(tasks)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(outputs, (0..2_000).collect::<Vec<_>>());
        }));
        assert!(outcome.is_ok(), "round {round}: a wake-up was lost");
    }
}
