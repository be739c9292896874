//! Any standard future runs here, the futures crate's included: its channels, streams,
//! locks and I/O adapters know nothing of our runtime, only `Context` and `Waker`.

use std::cell::Cell;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use stage4_async_await::net::{TcpListener, TcpStream};
use stage4_async_await::{block_on, join_all, sleep, spawn};

const MS: Duration = Duration::from_millis(1);

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
