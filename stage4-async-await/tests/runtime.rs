//! The executor's contract: what a waker may do, what spawn and JoinHandle promise, and
//! that any standard future runs here, the futures crate's included.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::panic::catch_unwind;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use stage4_async_await::anti_patterns::thread_cpu_time;
use stage4_async_await::net::{TcpListener, TcpStream};
use stage4_async_await::{
    DEFAULT_SLOW_POLL_THRESHOLD, EventLoop, JoinError, block_on, join_all, sleep, sleep_until,
    spawn, spawn_blocking, timeout, yield_now,
};

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
        assert!(message.contains("tests/runtime.rs:"), "{message}");
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
    assert!(text.contains("tests/runtime.rs:"), "{text}");
    assert!(text.contains("blocked the event loop"), "{text}");
}

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
fn a_listener_and_a_stream_talk() {
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut decoder = shared::LineDecoder::new();
            while let Some(line) = stream.read_line(&mut decoder).await.unwrap() {
                stream
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let client = TcpStream::connect(addr).await.unwrap();
        // Two thousand lines in one write_all: the server reads them in pieces, lines
        // split across reads, and echoes each (25 KB: well within the socket buffers,
        // since this client writes everything before it reads).
        let lines: String = (0..2_000).map(|i| format!("Request {i}\n")).collect();
        client.write_all(lines.as_bytes()).await.unwrap();
        client.shutdown_write().unwrap();
        let mut decoder = shared::LineDecoder::new();
        let mut count = 0;
        while let Some(line) = client.read_line(&mut decoder).await.unwrap() {
            assert_eq!(line, format!("Request {count}"));
            count += 1;
        }
        assert_eq!(count, 2_000);
        server.await.unwrap();
    });
}

// The futures crate knows nothing of our runtime: it sees only Context and Waker.

#[test]
fn futures_channels_woken_from_std_threads() {
    block_on(async {
        let (sender, mut receiver) = futures::channel::mpsc::unbounded();
        for thread_id in 0..4u64 {
            let sender = sender.clone();
            thread::spawn(move || {
                for i in 0..100 {
                    thread::sleep(Duration::from_micros(50));
                    sender.unbounded_send(thread_id * 1000 + i).unwrap();
                }
            });
        }
        drop(sender);
        let mut received = Vec::new();
        while let Some(value) = receiver.next().await {
            received.push(value);
        }
        received.sort();
        let expected: Vec<u64> = (0..4)
            .flat_map(|t| (0..100).map(move |i| t * 1000 + i))
            .collect();
        assert_eq!(received, expected);

        let (sender, receiver) = futures::channel::oneshot::channel();
        thread::spawn(move || {
            thread::sleep(20 * MS);
            sender.send("from a thread").unwrap();
        });
        assert_eq!(receiver.await, Ok("from a thread"));
    });
}

#[test]
fn futures_unordered_yields_in_completion_order() {
    let order = block_on(async {
        let mut set: FuturesUnordered<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| async move {
                sleep(Duration::from_millis(ms)).await;
                ms
            })
            .collect();
        let mut order = Vec::new();
        while let Some(ms) = set.next().await {
            order.push(ms);
        }
        order
    });
    assert_eq!(order, [10, 20, 30]);
}

#[test]
fn a_stream_of_timers() {
    let started = Instant::now();
    let total: u64 = block_on(
        futures::stream::iter(1..=5u64)
            .then(|i| async move {
                sleep(2 * MS).await;
                i
            })
            .fold(0, |sum, i| async move { sum + i }),
    );
    assert_eq!(total, 15);
    assert!(started.elapsed() >= 10 * MS);
}

#[test]
fn a_futures_mutex_held_across_an_await_excludes_others() {
    block_on(async {
        let lock = Rc::new(futures::lock::Mutex::new(0u32));
        let inside = Rc::new(Cell::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (lock, inside) = (Rc::clone(&lock), Rc::clone(&inside));
                spawn(async move {
                    let mut guard = lock.lock().await;
                    inside.set(inside.get() + 1);
                    assert_eq!(inside.get(), 1, "two tasks inside the lock");
                    sleep(MS).await; // held across an await: the others must wait
                    *guard += 1;
                    inside.set(inside.get() - 1);
                })
            })
            .collect();
        for result in join_all(tasks).await {
            result.unwrap();
        }
        assert_eq!(*lock.lock().await, 20);
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
fn the_futures_crates_io_adapters_work_on_our_sockets() {
    use futures::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            for i in 0..3 {
                AsyncWriteExt::write_all(&mut stream, format!("line {i}\n").as_bytes())
                    .await
                    .unwrap();
                sleep(MS).await;
            }
            stream.close().await.unwrap();
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let lines: Vec<String> = BufReader::new(stream)
            .lines()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(lines, ["line 0", "line 1", "line 2"]);
        server.await.unwrap();
    });
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

/// Runs `future` with a generous deadline: a task that is never woken fails the test
/// instead of hanging it.
fn within_10_s<F: Future>(future: F) -> F::Output {
    block_on(timeout(Duration::from_secs(10), future)).expect("a waiter was never woken")
}

#[test]
fn several_tasks_accepting_on_one_listener_serve_every_client() {
    let served = within_10_s(async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        let addr = listener.local_addr().unwrap();
        let mut served = Vec::new();
        // Rounds of four acceptors, each taking one connection: every acceptor must be
        // woken, not only the last one that waited.
        for round in 0..5u64 {
            let acceptors: Vec<_> = (0..4)
                .map(|_| {
                    let listener = Rc::clone(&listener);
                    spawn(async move {
                        let (stream, _) = listener.accept().await.unwrap();
                        let mut buf = [0u8; 64];
                        let read = stream.read(&mut buf).await.unwrap();
                        stream.write_all(&buf[..read]).await.unwrap();
                    })
                })
                .collect();
            yield_now().await; // every acceptor now waits on the listener
            let clients: Vec<_> = (0..4)
                .map(|i| {
                    spawn(async move {
                        let stream = TcpStream::connect(addr).await.unwrap();
                        let message = format!("client {}", round * 4 + i);
                        stream.write_all(message.as_bytes()).await.unwrap();
                        let mut buf = [0u8; 64];
                        let read = stream.read(&mut buf).await.unwrap();
                        assert_eq!(&buf[..read], message.as_bytes());
                        round * 4 + i
                    })
                })
                .collect();
            for result in join_all(acceptors).await {
                result.unwrap();
            }
            for result in join_all(clients).await {
                served.push(result.unwrap());
            }
        }
        served
    });
    assert_eq!(served, (0..20).collect::<Vec<u64>>());
}

/// Two tasks wait to read one stream, through `read` futures or through `poll_read`;
/// one byte arrives, then another: each byte must wake a reader still waiting.
fn two_tasks_read_one_stream(through_poll_read: bool) -> Vec<u8> {
    within_10_s(async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream = Rc::new(listener.accept().await.unwrap().0);
        let got = Rc::new(RefCell::new(Vec::new()));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (stream, got) = (Rc::clone(&stream), Rc::clone(&got));
                spawn(async move {
                    let mut buf = [0u8; 1];
                    let read = if through_poll_read {
                        poll_fn(|cx| stream.poll_read(cx, &mut buf)).await
                    } else {
                        stream.read(&mut buf).await
                    };
                    assert_eq!(read.unwrap(), 1);
                    got.borrow_mut().push(buf[0]);
                })
            })
            .collect();
        yield_now().await; // both readers now wait on the stream
        for (sent, byte) in [b'a', b'b'].into_iter().enumerate() {
            client.write_all(&[byte]).await.unwrap();
            while got.borrow().len() == sent {
                sleep(MS).await;
            }
        }
        for result in join_all(readers).await {
            result.unwrap();
        }
        Rc::into_inner(got).unwrap().into_inner()
    })
}

#[test]
fn two_tasks_reading_one_stream_are_both_woken() {
    assert_eq!(two_tasks_read_one_stream(false), b"ab");
    assert_eq!(two_tasks_read_one_stream(true), b"ab");
}

#[test]
fn a_dropped_read_leaves_the_other_readers_waiting() {
    // One reader gives up (its future is dropped by a timeout); the other still waits,
    // and must still be woken by the next byte.
    let got = within_10_s(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream = Rc::new(listener.accept().await.unwrap().0);
        let patient = spawn({
            let stream = Rc::clone(&stream);
            async move {
                let mut buf = [0u8; 1];
                stream.read(&mut buf).await.unwrap();
                buf[0]
            }
        });
        yield_now().await;
        let mut buf = [0u8; 1];
        assert!(timeout(10 * MS, stream.read(&mut buf)).await.is_err());
        client.write_all(b"z").await.unwrap();
        patient.await.unwrap()
    });
    assert_eq!(got, b'z');
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
